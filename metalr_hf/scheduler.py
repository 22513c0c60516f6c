"""``MetaLRScheduler``: the learning rate set by a meta-learner, step by step.

    lr_g(t) = base_lr_g · prior(t) · exp(δ_t) · b_t · γ_t

- ``prior`` is a schedule from `schedules.py`, with warmup (by default WSD on every run; ``prior="auto"``, the lab's
  default: WSD on a run marked ``pretrained``, cosine otherwise);
- ``δ_t ∈ [-δ_max, δ_max]`` is the learner's correction, computed from the features of steps ``≤ t-1``, and at
  most ``log(max_boost)``: by default 0 (it may only lower the LR) on a run marked ``pretrained`` when the learner
  was not meta-trained for such runs (:func:`knows_pretrained_runs`);
- ``b_t`` is the non-finite back-off: halved at each step whose loss or gradient is not finite (the learner
  never sees such a step), then recovering by ``×2`` over ``recovery`` good steps, up to 1;
- ``γ_t`` is the divergence guard: while the smoothed log-loss (an EMA of the median of the last three, so that no
  single step moves it) sits more than ``log(guard_ratio)`` above its best value, it shrinks by ``×0.7`` a step,
  whatever the learner says; it recovers like ``b_t``.

The loss is read on a log scale: a loss of exactly 0 is skipped; from the first negative loss on, the run reads the
gradient and optimizer statistics only (warned once). A non-finite δ (whatever its cause) is replaced by 0: that
step follows the prior (warned once, naming the learner).

:class:`MetaController` holds this logic for ``B`` runs at once; the scheduler is a controller with ``B = 1``
and meta-training drives a controller over a whole population, so both use the same code.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import struct
import warnings
import weakref

import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LRScheduler

from .features import (
    FEATURE_NAMES,
    SCHEMA_VERSION,
    FeatureExtractor,
    SignalReader,
    Signals,
    finite_values,
)
from .hub import DEFAULT_FINETUNE_LEARNER as FINETUNE
from .hub import DEFAULT_LEARNER
from .learner import MetaLearner
from .options import BoostPolicy, MetaSchedulerOptions, check_controller_options, check_prior, resolve_prior
from .reader import check_layout, optimizer_chain
from .schedules import prior_multiplier

__all__ = ["MetaController", "MetaLRScheduler", "get_scheduler", "load_learner"]

logger = logging.getLogger(__name__)

# Keys accepted in `lr_scheduler_kwargs` for the "meta" scheduler (see `options.MetaSchedulerOptions`).
META_SCHEDULER_KWARGS = MetaSchedulerOptions.names()


def knows_pretrained_runs(learner) -> bool:
    """Whether ``learner`` was meta-trained for runs that fine-tune pretrained weights: it reads the ``pretrained``
    feature, or its card (``card.json``) says ``"fine_tuning": true``. Under ``max_boost="auto"`` only such a
    learner may raise the LR of a pretrained run."""
    reads = "pretrained" in getattr(learner, "config", {}).get("feature_names", FEATURE_NAMES)
    return reads or getattr(learner, "card_context", {}).get("fine_tuning") is True


def load_learner(meta_learner=None, **hub_kwargs) -> MetaLearner:
    """A ``MetaLearner`` from an instance, a folder, a Hub repo id, or ``None`` (the bundled default)."""
    if isinstance(meta_learner, MetaLearner):
        return meta_learner
    if (
        meta_learner is not None
        and not isinstance(meta_learner, (str, bytes))
        and not hasattr(meta_learner, "__fspath__")
    ):
        raise TypeError(
            f"meta_learner must be a MetaLearner, a folder, a Hub repo id or None, got {type(meta_learner).__name__}"
        )
    return MetaLearner.from_pretrained(meta_learner, **{k: v for k, v in hub_kwargs.items() if v is not None})


class MetaController:
    """The learning-rate controller of ``B`` runs: features → learner → guarded scale on the prior.

    Args:
        learner (`MetaLearner`): the policy.
        num_training_steps (`int` or `Tensor[B]`), num_warmup_steps (`int` or `Tensor[B]`): horizons, warmups.
        batch_size (`int`, defaults to 1).
        prior (`str`, defaults to `"auto"`), min_lr_ratio (`float`, 0.0), decay_fraction (`float`, 0.2):
            the prior schedule (see `schedules.py`); ``"auto"``: per run, `wsd` on the runs marked ``pretrained``,
            `cosine` on the others (:data:`options.AUTO_PRIORS`).
        guard (`bool`, defaults to `True`), guard_ratio (`float`, 3.0), recovery (`int`, 10): see module docstring.
        pretrained (`bool` or `Tensor[B]`, defaults to `False`): the runs fine-tune pretrained weights (a feature).
        max_boost (`float`, `"auto"`, `"peak"` or `None`, defaults to `"auto"`): the most the learner may raise the
            LR above the prior, ``exp(δ) ≤ max_boost`` (≥ 1). ``"peak"``: no cap on δ, but the LR never exceeds the
            base LR (``prior · exp(δ) · b · γ ≤ 1``). ``"auto"``: 1 on the runs marked ``pretrained`` when the learner
            was not meta-trained for such runs (:func:`knows_pretrained_runs`: it may only lower their LR), no
            cap otherwise. ``None``: no cap but the learner's own bound.
    """

    def __init__(
        self,
        learner: MetaLearner,
        num_training_steps,
        num_warmup_steps=0,
        batch_size: int = 1,
        prior: str = "auto",
        min_lr_ratio: float = 0.0,
        decay_fraction: float = 0.2,
        guard: bool = True,
        guard_ratio: float = 3.0,
        recovery: int = 10,
        pretrained=False,
        max_boost="auto",
    ):
        check_controller_options(prior, min_lr_ratio, decay_fraction, guard_ratio, recovery, max_boost)
        self.boost = BoostPolicy(max_boost, knows_pretrained_runs(learner))
        self.learner = learner
        self.extractor = FeatureExtractor(num_training_steps, batch_size=batch_size, pretrained=pretrained)
        B = self.extractor.batch_size
        self.T = self.extractor.T
        self.warmup = torch.as_tensor(num_warmup_steps, dtype=torch.float64).reshape(-1).expand(B).clone()
        self.prior, self.prior_kwargs = prior, {"min_lr_ratio": min_lr_ratio, "decay_fraction": decay_fraction}
        self.guard, self.log_guard_ratio, self.recover = guard, math.log(guard_ratio), 2.0 ** (1.0 / int(recovery))
        with torch.no_grad():
            self.learner_state = learner.init_state(B).cpu()
        # One run (the scheduler) is driven in Python floats, a population in [B] tensors: the same rule.
        self.scalar = self.extractor.scalar
        self._T, self._warmup = float(self.T[0]), float(self.warmup[0])
        self._control: dict = {}
        self.delta = torch.zeros(B)
        self.backoff = torch.ones(B)
        self.guard_scale = torch.ones(B)
        self.best = torch.full((B,), float("inf"), dtype=torch.float64)
        self.features = torch.zeros(B, len(FEATURE_NAMES))
        self._priors: dict = {}
        self.step_count = 0  # optimizer steps whose signals were consumed
        self.nonfinite_decisions = 0  # steps whose learner output was not finite (the prior was used instead)
        self._stepper = None  # the learner's one-run step (made at the first scalar update)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_stepper"] = None  # NumPy buffers packed from the learner: remade by the copy at its first step
        return state

    def _control_property(name, dtype):  # noqa: N805  (a property factory, used in the class body)
        def get(self):
            value = self._control[name]
            return torch.tensor([value], dtype=dtype) if self.scalar else value

        def set_(self, value):
            if self.scalar:
                value = torch.as_tensor(value, dtype=dtype).reshape(-1)
                value = [float(v) for v in value] if name == "features" else float(value[0])
            self._control[name] = value

        return property(get, set_)

    delta = _control_property("delta", torch.float32)
    backoff = _control_property("backoff", torch.float32)
    guard_scale = _control_property("guard_scale", torch.float32)
    best = _control_property("best", torch.float64)
    del _control_property

    @property
    def features(self) -> torch.Tensor:
        f = self._control["features"]
        return torch.tensor([f], dtype=torch.float32) if self.scalar else f

    @features.setter
    def features(self, value) -> None:
        self._control["features"] = [float(v) for v in value.reshape(-1)] if self.scalar else value

    def boost_cap(self) -> torch.Tensor:
        """The ``[B]`` upper bound on δ that ``max_boost`` sets (``inf``: none)."""
        pretrained = self.extractor.pretrained > 0.5
        return torch.where(pretrained, self.boost.delta_cap(True), self.boost.delta_cap(False)).float()

    def prior_at(self, step) -> torch.Tensor:
        """The ``[B]`` prior multipliers at ``step`` (``"auto"``: each run's by whether it is marked pretrained)."""
        if self.prior != "auto":
            return prior_multiplier(self.prior, step, self.T, self.warmup, **self.prior_kwargs)
        pretrained = self.extractor.pretrained > 0.5
        scratch, finetune = (
            prior_multiplier(resolve_prior("auto", flag), step, self.T, self.warmup, **self.prior_kwargs)
            for flag in (False, True)
        )
        return torch.where(pretrained, finetune, scratch)

    def run_prior(self, run: int = 0) -> str:
        """The prior schedule run ``run`` follows (``"auto"`` resolved)."""
        return resolve_prior(self.prior, float(self.extractor.pretrained[run]) > 0.5)

    def set_prior(self, prior: str) -> None:
        """Change the prior (``"auto"`` or a schedule name); a resumed run keeps the one it was written with."""
        check_prior(prior)
        self.prior = prior
        self._priors.clear()

    def _prior_value(self, step: int) -> float:
        """``prior_at(step)`` of a scalar controller, remembered for the few steps that ask again."""
        name = resolve_prior(self.prior, self.extractor._pretrained_value > 0.5)
        value = self._priors.get((name, step))
        if value is None:
            if len(self._priors) > 8:
                self._priors.clear()
            value = prior_multiplier(name, int(step), self._T, self._warmup, **self.prior_kwargs)
            value = self._priors[(name, step)] = float(value)
        return value

    def scale(self, step) -> torch.Tensor:
        """``prior(step) · exp(δ) · b · γ`` for every run (float64, ``[B]``)."""
        if self.scalar:
            return torch.tensor([self.scale_value(step)], dtype=torch.float64)
        corr = torch.exp(self.delta.double()) * self.backoff.double() * self.guard_scale.double()
        scale = self.prior_at(step) * corr
        return scale.clamp(max=1.0) if self.boost.peak else scale

    def scale_value(self, step: int) -> float:
        """:meth:`scale` of a scalar controller, as a float."""
        c = self._control
        scale = self._prior_value(step) * math.exp(c["delta"]) * c["backoff"] * c["guard_scale"]
        return min(scale, 1.0) if self.boost.peak else scale

    @torch.no_grad()
    def update_values(self, x: dict, has_loss: bool, step: int | None = None) -> bool:
        """:meth:`update` of a scalar controller, from the signals as Python floats (``x`` maps the signal names to
        floats); returns whether they were finite. The same rule as the batched path, without tensor overhead."""
        return self._update_values(x, has_loss, step)

    def _update_values(self, x: dict, has_loss: bool, step: int | None) -> bool:
        """:meth:`update_values` for a caller already under ``torch.no_grad()`` (the scheduler's step)."""
        c = self._control
        ok = finite_values(x, has_loss)
        step = self.step_count if step is None else step
        feats = self.extractor.update_values(x, ok, has_loss, self._prior_value(step), c["delta"])
        stepper = self._stepper
        if stepper is None or (stepper and not stepper.fresh()):
            stepper = self._stepper = self.learner.one_run_step() or False
        if stepper:  # the learner's step in preallocated NumPy buffers (CPU): no allocation, a quarter of the time
            delta, state = stepper(feats, self.learner_state)
            state_finite = stepper.state_finite
        else:
            device = self.learner.device
            delta, state = self.learner(torch.tensor([feats], device=device), self.learner_state.to(device))
            delta, state = float(delta[0]), state.cpu()
            state_finite = math.isfinite(float(state.sum()))  # a NaN or inf anywhere shows in the sum
        cap = self.boost.delta_cap(self.extractor._pretrained_value > 0.5)
        delta = min(delta, cap) if delta == delta else delta
        # A non-finite decision never reaches the LR, whatever its cause: that run falls back to the prior.
        sane = math.isfinite(delta) and state_finite
        if ok:
            if not sane:
                self.nonfinite_decisions += 1
            c["delta"] = _f32(delta) if sane else 0.0
            if sane:
                self.learner_state = state
        c["features"] = feats
        # Non-finite back-off (in float32, as the batched path).
        c["backoff"] = _f32(min(c["backoff"] * self.recover, 1.0) if ok else max(c["backoff"] * 0.5, 2**-10))
        # Divergence guard on the smoothed log-loss.
        if self.guard:
            v = self.extractor.values
            seen = v["n_loss"] > 0
            if seen:
                c["best"] = min(c["best"], v["guard_ema"])
            if seen and v["guard_ema"] - c["best"] > self.log_guard_ratio:
                c["guard_scale"] = _f32(max(c["guard_scale"] * 0.7, 2**-10))
            elif ok:
                c["guard_scale"] = _f32(min(c["guard_scale"] * self.recover, 1.0))
        self.step_count += 1
        return ok

    @torch.no_grad()
    def update(self, signals: Signals, step=None) -> torch.Tensor:
        """Consume the signals of optimizer step ``step`` (default: the count of steps consumed so far); returns
        the ``[B]`` mask of runs whose signals were finite (the others are skipped by the learner)."""
        if self.scalar:
            return torch.tensor([self.update_values(*signals.run_values(), step)])
        ok = signals.finite().reshape(-1)
        step = self.step_count if step is None else step
        feats = self.extractor.update(signals, prior=self.prior_at(step), prev_delta=self.delta)
        device = self.learner.device
        delta, state = self.learner(feats.to(device), self.learner_state.to(device))
        delta, state = torch.minimum(delta.float().cpu(), self.boost_cap()), state.cpu()
        # A non-finite decision never reaches the LR, whatever its cause: that run falls back to the prior.
        sane = torch.isfinite(delta) & torch.isfinite(state).all(-1)
        self.nonfinite_decisions += int((ok & ~sane).sum())
        delta = torch.where(sane, delta, torch.zeros_like(delta))
        ok_state = ok & sane
        self.delta = torch.where(ok, delta, self.delta)
        self.learner_state = torch.where(ok_state[:, None], state, self.learner_state)
        self.features = feats
        # Non-finite back-off.
        self.backoff = torch.where(
            ok, (self.backoff * self.recover).clamp(max=1.0), (self.backoff * 0.5).clamp(min=2**-10)
        )
        # Divergence guard on the smoothed log-loss.
        if self.guard:
            s = self.extractor.state
            seen = s["n_loss"] > 0
            self.best = torch.where(seen, torch.minimum(self.best, s["guard_ema"]), self.best)
            blown = seen & (s["guard_ema"] - self.best > self.log_guard_ratio)
            shrink = (self.guard_scale * 0.7).clamp(min=2**-10)
            grow = (self.guard_scale * self.recover).clamp(max=1.0)
            self.guard_scale = torch.where(blown, shrink, torch.where(ok, grow, self.guard_scale)).float()
        self.step_count += 1
        return ok

    def state_dict(self) -> dict:
        return {
            "extractor": self.extractor.state_dict(),
            "learner_state": self.learner_state.clone(),
            "delta": self.delta.clone(),
            "backoff": self.backoff.clone(),
            "guard_scale": self.guard_scale.clone(),
            "best": self.best.clone(),
            "features": self.features.clone(),
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["learner_state"].shape) != tuple(self.learner_state.shape):
            raise ValueError(
                f"Recurrent state of shape {tuple(state['learner_state'].shape)} does not fit this learner "
                f"({tuple(self.learner_state.shape)})"
            )
        self.extractor.load_state_dict(state["extractor"])
        for key in ("learner_state", "delta", "backoff", "guard_scale", "best", "features"):
            setattr(self, key, state[key].clone())
        self.step_count = int(state["step_count"])


def _f32(x: float) -> float:
    """``x`` rounded to float32, as the batched controller keeps its scales."""
    return struct.unpack("f", struct.pack("f", x))[0]


class MetaLRScheduler(LRScheduler):
    """Learning-rate scheduler driven by a meta-learned recurrent policy (see the module docstring for the rule).

    Args:
        optimizer (`torch.optim.Optimizer`): its param groups' ``lr`` at construction are the base LRs.
        num_training_steps (`int`): number of optimizer steps ``T`` of the run (required, > 0).
        num_warmup_steps (`int`, *optional*, defaults to 0): linear warmup of the prior.
        meta_learner (`MetaLearner`, `str` or `None`, *optional*): a learner, a local folder, a Hub repo id, or
            ``None`` for the pair bundled in the package (works offline): ``metalr-finetune-v1`` for a run that
            fine-tunes pretrained weights, ``metalr-default-v3`` otherwise (see ``pretrained``).
        revision, cache_dir, token, local_files_only: where a Hub learner comes from (`revision` pins a commit).
        prior (`str`, defaults to `"wsd"`): one of `constant`, `cosine`, `linear`, `wsd`, or `"auto"`: `wsd` on a
            run that fine-tunes pretrained weights (see ``pretrained``), `cosine` otherwise. A resumed run keeps
            the prior its checkpoint was written with unless ``prior`` is given (cosine for checkpoints written
            before ``"auto"``, ``"auto"`` for those written before WSD became the default).
        min_lr_ratio, decay_fraction, guard, guard_ratio, recovery, max_boost: see `MetaController`.
        pretrained (`bool` or `None`, defaults to `None`): whether the model was loaded from pretrained weights
            (the learner's ``pretrained`` feature). ``None``: a ``Trainer`` with :class:`MetaLRCallback` reads it
            from the model's weights (``trainer.weights_look_pretrained``: have they left the model's own
            initialisation?); a bare scheduler assumes False.
            A resumed run keeps the value its checkpoint was written with.
        decision_lag (`int` or `None`, defaults to `None`): 1 applies the learner's decision one step later, so
            the statistics stay on the accelerator and the host never waits for it; 0 applies it at once (what
            meta-training simulates). `None` picks 1 when the parameters live on an accelerator, else 0.
        last_epoch (`int`, defaults to -1): as in every PyTorch scheduler.

    Use it as any PyTorch scheduler, handing it the loss of each optimizer step before ``step()``:

    ```python
    scheduler = MetaLRScheduler(optimizer, num_training_steps=1000, num_warmup_steps=50)
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        scheduler.observe(loss.detach())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    ```

    Without ``observe`` it still runs on the gradient and optimizer statistics (warning once). Under
    ``torch.distributed`` every rank reduces its signals with one all-reduce, so all ranks set the same LR.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_training_steps: int | None = None,
        num_warmup_steps: int = 0,
        meta_learner: MetaLearner | str | None = None,
        last_epoch: int = -1,
        **options,
    ):
        unknown = sorted(set(options) - set(META_SCHEDULER_KWARGS))
        if unknown:
            raise TypeError(
                f"MetaLRScheduler got unknown option(s) {unknown}; valid options: {sorted(META_SCHEDULER_KWARGS)}"
            )
        opts = MetaSchedulerOptions(meta_learner=meta_learner, **options)
        if num_training_steps is not None:
            _check_horizon(num_training_steps)  # before the learner is loaded
        if not _is_count(num_warmup_steps) or int(num_warmup_steps) < 0:
            raise ValueError(f"num_warmup_steps must be a whole number >= 0, got {num_warmup_steps!r}")
        _check_group_lrs(optimizer)
        check_layout(optimizer)
        self.opts = opts
        self.pretrained_given = opts.pretrained is not None
        lag = opts.decision_lag
        if lag is None:  # auto: lag on accelerators (no host-device sync per step), none on the CPU
            on_cpu = all(p.device.type == "cpu" for g in optimizer.param_groups for p in g["params"])
            lag = 0 if on_cpu else 1
        self.decision_lag = int(lag)
        self._held: tuple[torch.Tensor, int] | None = None
        # Building the learner's layers draws from the global generator (their random init, then overwritten by
        # the saved weights): done in a fork, so that the training's dropout masks and data order are the ones a
        # run without metalr-hf would draw, and meta and a baseline of the same seed stay paired.
        # Unset `meta_learner`: the bundled pair, DEFAULT_LEARNER for runs from scratch and DEFAULT_FINETUNE_LEARNER
        # for runs that fine-tune pretrained weights (`pretrained`, given or read from the weights by the callback).
        self.default_pair = opts.meta_learner is None or (
            isinstance(opts.meta_learner, str) and opts.meta_learner == "default"
        )
        self.learner = self._load(opts.meta_learner if not (self.default_pair and opts.pretrained) else FINETUNE)
        self.num_warmup_steps = int(num_warmup_steps)
        # the controller's options, recorded in the state: those given, as before the options were a dataclass
        self.options = {k: v for k, v in opts.controller_kwargs().items() if k in options}
        self.controller: MetaController | None = None
        self.num_training_steps: int | None = None
        if num_training_steps is not None:
            self.set_num_training_steps(num_training_steps)
        self._pending_loss = None
        self._pending_count = 0
        self._pending_grad_norm = None
        self._warned: set[str] = set()
        self.no_loss_hint: str | None = None  # why no loss arrives, where the feeder knows (the Trainer callback)
        self._in_incident = False
        self._last_values: list[float] | None = None
        self._buffers: list | None = None
        self._flip = 0
        self._reader = SignalReader(optimizer)
        super().__init__(optimizer, last_epoch)
        self._hook = _register_adopt_hook(self)

    def _load(self, meta_learner) -> MetaLearner:
        with torch.random.fork_rng(devices=[]):
            return load_learner(meta_learner, **self.opts.hub_kwargs())

    def set_pretrained(self, pretrained: bool) -> None:
        """Whether the run fine-tunes pretrained weights (the learner's ``pretrained`` feature), before the first
        step; the Trainer callback reads it from the model's weights when ``lr_scheduler_kwargs`` did not say. With
        the default learner (``meta_learner`` unset) it also picks the learner of the pair: the bundled
        fine-tuning learner for a pretrained run, the default one otherwise."""
        pretrained = bool(pretrained)
        if self.controller is not None and self.controller.step_count > 0:
            # resumed from a checkpoint written before the feature existed: the feature only, the learner and the
            # prior stay
            self.controller.set_prior(self.controller.run_prior())
            self.controller.extractor.pretrained = float(pretrained)
            return
        self.opts.pretrained = pretrained
        if self.default_pair:
            self._use_learner(FINETUNE if pretrained else DEFAULT_LEARNER)
        if self.controller is not None:
            self.controller.extractor.pretrained = float(pretrained)

    def set_num_training_steps(self, num_training_steps: int) -> None:
        """Fix the horizon ``T`` of a scheduler built with ``num_training_steps=None`` (``MetaLRCallback`` does it
        from the Trainer's ``max_steps`` when training begins), before the first step."""
        _check_horizon(num_training_steps)
        if self.controller is not None and self.controller.step_count > 0:
            self._change_horizon(int(num_training_steps))
            return
        self.num_training_steps = int(num_training_steps)
        self.controller = self._new_controller()
        if hasattr(self, "base_lrs"):  # set after construction: the LR of the current step follows
            self._set_group_lrs(self.get_lr())

    def _change_horizon(self, num_training_steps: int) -> None:
        """A run that has taken steps gets a new horizon (a resume with another ``max_steps``, epochs over another
        number of ranks): as a stock scheduler, the schedule follows the new ``T`` from the current step on, and the
        learner's state, statistics, prior and guards carry over (the time constants follow ``T``). Warned."""
        old = self.num_training_steps
        if num_training_steps == old:
            return
        state, prior = self.controller.state_dict(), self.controller.prior
        self.num_training_steps = num_training_steps
        self.controller = self._new_controller()
        self.controller.load_state_dict(state)
        self.controller.set_prior(prior)
        message = (
            f"MetaLRScheduler: the run's horizon changed from {old} to {num_training_steps} optimizer steps at step "
            f"{self.last_epoch} (resumed with another max_steps, epochs or number of processes?); the schedule "
            f"follows {num_training_steps} from here on, with the learner's state carried over."
        )
        if self.last_epoch >= num_training_steps:
            message += " The run is already past its new end: the LR stays at the end of the schedule."
        self._warn_once(f"horizon_{old}_{num_training_steps}", message)
        if self.controller.step_count > 0:
            self._set_group_lrs(self.get_lr())

    def _use_learner(self, name: str) -> None:
        """Switch to the bundled learner ``name`` of the default pair, before the first step or when a checkpoint
        is loaded. A built controller is rebuilt around it; the param groups' LRs are left as they are (a fresh
        controller's δ is 0 whichever learner it has, and a loaded checkpoint brings the run's own)."""
        if self.learner.source.get("name_or_path") != name:
            self.learner = self._load(name)
            if self.controller is not None:
                self.controller = self._new_controller()

    def _new_controller(self) -> MetaController:
        return MetaController(
            self.learner,
            self.num_training_steps,
            self.num_warmup_steps,
            pretrained=bool(self.opts.pretrained),
            **self.opts.controller_kwargs(),
        )

    def _need_controller(self) -> MetaController:
        if self.controller is None:
            raise RuntimeError(
                "MetaLRScheduler was built with num_training_steps=None and stepped before it was set: pass "
                "num_training_steps, call set_num_training_steps(T), or add MetaLRCallback() to the Trainer."
            )
        return self.controller

    # -- signals -------------------------------------------------------------------------------------------
    def observe(self, loss, grad_norm=None) -> None:
        """Hand over the loss of the optimizer step about to be taken (and, optionally, the gradient norm before
        clipping). Several calls before one ``step()`` are averaged (gradient accumulation)."""
        if grad_norm is not None and not (torch.is_tensor(grad_norm) and grad_norm.dim() == 0):
            if isinstance(grad_norm, (str, bytes, bool)) or not _is_number_like(grad_norm, scalar=True):
                raise TypeError(
                    "MetaLRScheduler.observe(grad_norm=...) takes one real number (a float or a one-element "
                    f"tensor: the norm of all gradients), got {grad_norm!r:.80}"
                )
        if torch.is_tensor(loss) and loss.dim() == 0 and loss.dtype == torch.float32:  # the usual case, cheaply
            self._add_pending(loss.detach(), grad_norm)
            return
        if isinstance(loss, (str, bytes)) or loss is None or isinstance(loss, bool):
            raise TypeError(f"MetaLRScheduler.observe(loss) takes a number or a tensor, got {loss!r:.80}")
        try:
            loss = torch.as_tensor(loss).detach()
            if loss.is_complex():
                raise TypeError("a complex loss has no order: pass its real objective (e.g. its absolute value)")
            loss = loss.float().reshape(-1)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(
                f"MetaLRScheduler.observe(loss) takes a real number or tensor, got {loss!r:.80} ({e})"
            ) from None
        if loss.numel() == 0:
            raise ValueError("MetaLRScheduler.observe(loss) got an empty tensor: pass the loss of the step")
        self._add_pending(loss.mean(), grad_norm)

    def _add_pending(self, loss: torch.Tensor, grad_norm) -> None:
        self._pending_loss = loss if self._pending_loss is None else self._pending_loss + loss.to(self._pending_loss)
        self._pending_count += 1
        if grad_norm is not None:
            if hasattr(grad_norm, "full_tensor"):  # a DTensor (FSDP2's total norm): its value, not a shard's
                grad_norm = grad_norm.full_tensor()
            self._pending_grad_norm = scalar_f32(torch.as_tensor(grad_norm))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)
            logger.warning(message)

    def _collect_signals(self) -> torch.Tensor:
        """The ``[S]`` float64 signal vector of this step (the fields of :class:`Signals`), reduced over ranks.

        It is written into one of two buffers kept from step to step (a held decision keeps the other). On an
        accelerator a non-blocking copy to pinned host memory starts here; it is read one step later
        (``decision_lag=1``), so the scheduler never makes the host wait for the device."""
        stats = self._reader._read_into(max(self.last_epoch, 0))  # Σg², g·m, …, Σv, adaptive (under no_grad)
        device = stats.device
        if self._buffers is None or self._buffers[0][0].device != device:
            on_host = device.type == "cpu"
            self._buffers = []
            for _ in range(2):
                vec = torch.empty(_NUM_SIGNALS, dtype=torch.float64, device=device)
                host = (
                    None
                    if on_host
                    else torch.empty(_NUM_SIGNALS, dtype=torch.float64, pin_memory=device.type == "cuda")
                )
                vec_np = vec.numpy() if on_host else None
                self._buffers.append((vec, host, vec[0], vec[1], vec[2], vec[3], vec[3:], vec_np))  # views made once
        self._flip ^= 1
        vec, host, v_loss, v_has_loss, v_grad_norm, v_gg, v_stats, vec_np = self._buffers[self._flip]
        if self._pending_loss is None:
            hint = self.no_loss_hint or (
                "call `scheduler.observe(loss)` before `scheduler.step()`, or add `MetaLRCallback()` to the Trainer."
            )
            self._warn_once(
                "no_loss",
                f"MetaLRScheduler received no loss: {hint} Running on gradient and optimizer statistics only.",
            )
        pending, count, norm = self._pending_loss, self._pending_count, self._pending_grad_norm
        if host is None and (pending is None or pending.is_cpu) and (norm is None or norm.is_cpu):
            # on the CPU: the values written through a NumPy view (no tensor operations)
            a = vec_np
            a[3:] = self._reader.out_np
            a[0] = math.nan if pending is None else float(pending) / count
            a[1] = 0.0 if pending is None else 1.0
            a[2] = math.sqrt(a[3]) if norm is None else float(norm)
        else:
            if pending is None:
                v_loss.fill_(math.nan)
                v_has_loss.fill_(0.0)
            else:
                v_loss.copy_(pending)
                if count > 1:
                    v_loss.div_(count)
                v_has_loss.fill_(1.0)
            v_stats.copy_(stats)
            if norm is None:
                torch.sqrt(v_gg, out=v_grad_norm)
            else:
                v_grad_norm.copy_(norm)
        self._pending_loss, self._pending_count, self._pending_grad_norm = None, 0, None
        reduced = _all_reduce_mean(vec)
        if reduced is not vec and norm is None:  # the norm of the reduced sums (of every shard, under FSDP2)
            torch.sqrt(reduced[3], out=reduced[2])
        vec = reduced
        if host is None:
            return vec
        return host.copy_(vec, non_blocking=True)

    def _consume(self, vec: torch.Tensor, step: int) -> None:
        """Feed one step's signals to the controller (the learner sees only finite ones)."""
        values = vec.tolist() if vec.dim() == 1 else vec.reshape(-1).tolist()
        self._last_values = values
        x = dict(zip(_SIGNAL_NAMES, values))
        has_loss = x.pop("has_loss") > 0.5
        if has_loss and x["loss"] < 0:
            self._warn_once(
                "negative_loss",
                f"MetaLRScheduler: negative loss {x['loss']:.4g} at step {step}. The learner reads the loss on a log "
                "scale, which a negative loss does not have: from this step on it runs on the gradient and "
                "optimizer statistics only (as without `observe`). To keep the loss features, hand `observe` a "
                "positive transform of your objective (e.g. `loss - lower_bound`).",
            )
        elif has_loss and x["loss"] == 0:
            self._warn_once(
                "zero_loss",
                f"MetaLRScheduler: a loss of exactly 0 at step {step} cannot be read on a log scale; the "
                "learner skips the loss of such steps (the gradient statistics are still read).",
            )
        if x["gg"] == 0.0:
            self._warn_once(
                "no_grad",
                "MetaLRScheduler found no gradients at `step()` (zero_grad before step, or a sharded backend); "
                "the gradient features use the gradient norm the Trainer reports, the others stay neutral.",
            )
        before = self.controller.nonfinite_decisions
        self._report(self.controller._update_values(x, has_loss, step))  # one run: the float path (under no_grad)
        if self.controller.nonfinite_decisions > before:
            self._warn_once(
                "nonfinite_delta",
                f"MetaLRScheduler: the meta-learner {self.learner.source.get('name_or_path')!r} returned a non-finite "
                f"correction at step {step}; the LR follows the prior schedule at such steps. The learner's weights "
                "or config are probably damaged.",
            )

    @property
    def last_signals(self) -> Signals | None:
        """The signals of the last step the controller consumed (``[1]`` tensors), or ``None``."""
        if self._last_values is None:
            return None
        return Signals.from_vector(torch.tensor([self._last_values], dtype=torch.float64))

    # -- LRScheduler API -----------------------------------------------------------------------------------
    def step(self, epoch: int | None = None) -> None:
        if not self._is_initial and epoch is None:
            self._need_controller()
            with torch.no_grad():
                vec, step = self._collect_signals(), self.last_epoch
                if self.decision_lag == 0:
                    if self._held is not None:  # resumed from a checkpoint written with decision_lag=1
                        held, self._held = self._held, None
                        self._consume(*held)
                    self._consume(vec, step)
                else:  # apply the decision one step later: the copy started last step has long arrived
                    held, self._held = self._held, (vec, step)
                    if held is not None:
                        self._consume(*held)
        if epoch is not None or not self._set_lrs():
            super().step(epoch)

    def _set_lrs(self) -> bool:
        """What ``LRScheduler.step()`` does once its first-call checks are done and every LR is a float, without its
        context manager and helpers (a tenth of the time); ``False`` (nothing done) otherwise."""
        groups = self.optimizer.param_groups
        if self._step_count <= 1 or not all(type(group["lr"]) is float for group in groups):
            return False
        self._step_count += 1
        self.last_epoch += 1
        lrs = self.get_lr()
        for group, lr in zip(groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = lrs
        return True

    def skip_step(self) -> None:
        """The optimizer skipped this step (an fp16 overflow): a non-finite step for the learner and the back-off.
        The step counter does not move, as for the stock schedulers; the backed-off LR applies at once."""
        if self._held is not None:
            held, self._held = self._held, None
            with torch.no_grad():
                self._consume(*held)
        self._pending_loss, self._pending_count, self._pending_grad_norm = None, 0, None
        self._report(self.controller.update_values(*Signals.nonfinite().run_values(), step=self.last_epoch))
        self._set_group_lrs(self.get_lr())

    def _report(self, ok: bool) -> None:
        bad = not ok
        if bad and not self._in_incident:  # one warning per incident (a run of non-finite steps)
            message = (
                f"MetaLRScheduler: non-finite loss or gradient at step {self.last_epoch}; the learner skipped it "
                f"and the LR backs off (scale now {float(self.controller.backoff[0]):.3g})."
            )
            warnings.warn(message, stacklevel=3)
            logger.warning(message)
        self._in_incident = bad

    def get_lr(self) -> list[float]:
        if len(self.base_lrs) != len(self.optimizer.param_groups):
            self._adopt_new_groups()
        if self.controller is None:  # the horizon is not known yet: the LR is set when it is
            return list(self.base_lrs)
        scale = self.controller.scale_value(self.last_epoch)  # one run: the float path
        return [base * scale for base in self.base_lrs]

    def _set_group_lrs(self, lrs: list[float]) -> None:
        """Set every param group's LR (outside ``step``: a new horizon, a skipped step, a loaded state)."""
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _adopt_new_groups(self) -> None:
        """Param groups added since the last step (``optimizer.add_param_group``, as progressive unfreezing does)
        get the same rule: their ``lr`` when added is their base LR (as for the groups present at construction),
        and their parameters are read from their first gradient on. Removing a group is refused."""
        groups = self.optimizer.param_groups
        if len(groups) < len(self.base_lrs):
            raise RuntimeError(
                f"MetaLRScheduler: the optimizer has {len(groups)} param groups, fewer than the {len(self.base_lrs)} "
                "it was built with; removing param groups mid-run is not supported (freeze their parameters instead)."
            )
        _check_group_lrs(self.optimizer)
        scale = None if self.controller is None else self.controller.scale_value(self.last_epoch)
        for group in groups[len(self.base_lrs) :]:
            group.setdefault("initial_lr", group["lr"])
            self.base_lrs.append(group["initial_lr"])
            if scale is not None:  # its first step already takes this step's LR
                group["lr"] = group["initial_lr"] * scale
                self._last_lr.append(group["lr"])

    # -- copies --------------------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        """What ``copy.deepcopy``, ``pickle`` and ``torch.save`` copy: everything but the reader's plan and the
        signal buffers (NumPy views of the optimizer's tensors and of the reader's own), which the copy makes anew
        around its own optimizer."""
        state = self.__dict__.copy()
        state["_reader"], state["_buffers"], state["_hook"] = None, None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reader = SignalReader(self.optimizer)
        self._hook = _register_adopt_hook(self)  # an optimizer's copy has no hooks

    @property
    def last_scale(self) -> float:
        """``exp(δ)·b·γ`` of the current step: the factor the learner and the guards apply to the prior."""
        c = self.controller
        return math.exp(float(c.delta[0])) * float(c.backoff[0]) * float(c.guard_scale[0])

    def features_dict(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self.controller.features[0].tolist()))

    # -- persistence ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Tensors and plain Python values only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "_last_lr": [float(x) for x in self._last_lr],
            "num_training_steps": self.num_training_steps,
            "num_warmup_steps": self.num_warmup_steps,
            "options": dict(self.options),
            "schema_version": SCHEMA_VERSION,
            "learner_fingerprint": self.learner.fingerprint(),
            "learner_source": {k: v for k, v in self.learner.source.items() if v is not None},
            "controller": self.controller.state_dict(),
            "decision_lag": self.decision_lag,
            "held_signals": None if self._held is None else self._held[0].cpu().clone(),
            "held_step": None if self._held is None else self._held[1],
            "prior": self.controller.prior,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        _check_state(state_dict, len(self.optimizer.param_groups))
        schema = state_dict.get("schema_version")
        if schema != SCHEMA_VERSION:
            raise ValueError(
                f"This scheduler checkpoint was written for feature schema {schema}, this metalr-hf reads "
                f"schema {SCHEMA_VERSION}: it cannot be resumed with this version."
            )
        source = state_dict.get("learner_source")
        written_by = source.get("name_or_path") if isinstance(source, dict) else None
        if self.default_pair and written_by in (DEFAULT_LEARNER, FINETUNE):
            self._use_learner(written_by)  # the pair's learner the interrupted run used (an earlier release's too)
        mine, theirs = self.learner.fingerprint(), state_dict.get("learner_fingerprint")
        if theirs != mine:
            raise ValueError(
                f"This scheduler checkpoint was written by meta-learner {written_by or 'another learner'!r} "
                f"(fingerprint {theirs}), but this scheduler uses {self.learner.source.get('name_or_path')!r} "
                f"(fingerprint {mine}). Resume with the same `meta_learner` (and revision) as the interrupted run."
            )
        # The horizon: this scheduler's own where it was built with one (a Trainer resuming with another
        # max_steps builds it with the new one, as for stock schedulers), else the interrupted run's.
        horizon = self.num_training_steps
        self.num_training_steps = None
        self.controller = None
        self.set_num_training_steps(state_dict["num_training_steps"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self.base_lrs = list(state_dict["base_lrs"])
        self._last_lr = list(state_dict["_last_lr"])
        self.controller.load_state_dict(state_dict["controller"])
        if "prior" not in self.options:  # the interrupted run's (cosine was the default before "auto")
            self.opts.prior = state_dict.get("prior", "cosine")
            self.controller.set_prior(self.opts.prior)
        if "pretrained" in state_dict["controller"]["extractor"]:
            # decided by the interrupted run: the Trainer callback must not read it again from weights that have
            # been trained since (a run from scratch would now look pretrained)
            self.pretrained_given = True
        held = state_dict.get("held_signals")
        self._held = None if held is None else (held, int(state_dict["held_step"]))
        # The LRs this scheduler had set for the next step, whatever the optimizer's loaded state holds (PyTorch's
        # distributed `set_state_dict` leaves them at the 0 it initialises the state with).
        self._set_group_lrs(self._last_lr)
        if horizon is not None and horizon != self.num_training_steps:
            self._change_horizon(horizon)


_SIGNAL_NAMES = tuple(f.name for f in dataclasses.fields(Signals))
_NUM_SIGNALS = len(_SIGNAL_NAMES)


def _is_count(value) -> bool:
    """A whole number (an int, or a float/0-d tensor that is one), not a bool."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        return False
    try:
        f = float(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return math.isfinite(f) and f == int(f)


class _AdoptNewGroups:
    """An optimizer step pre-hook: a param group added since the scheduler's last step takes the rule's LR before
    its first optimizer step (:meth:`MetaLRScheduler._adopt_new_groups`)."""

    def __init__(self, scheduler: MetaLRScheduler):
        self.scheduler = weakref.ref(scheduler)  # the optimizer must not keep a dropped scheduler alive

    def __call__(self, optimizer, args, kwargs) -> None:
        scheduler = self.scheduler()
        if scheduler is not None and len(optimizer.param_groups) != len(scheduler.base_lrs):
            scheduler._adopt_new_groups()


def _register_adopt_hook(scheduler: MetaLRScheduler):
    """:class:`_AdoptNewGroups` on the torch optimizer inside any wrappers (accelerate's ``AcceleratedOptimizer``
    steps the one it wraps); ``None`` where there is none (then a new group takes the rule at the next step)."""
    target = next((o for o in optimizer_chain(scheduler.optimizer) if hasattr(o, "_optimizer_step_pre_hooks")), None)
    return None if target is None else target.register_step_pre_hook(_AdoptNewGroups(scheduler))


def _check_group_lrs(optimizer) -> None:
    """Every param group's ``lr`` is a finite number the scheduler can scale, or a ``TypeError`` naming the group."""
    for i, group in enumerate(optimizer.param_groups):
        lr = group.get("lr")
        if torch.is_tensor(lr) and lr.numel() == 1:
            lr = float(lr)
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr):
            continue
        if group.get("relative_step"):
            raise TypeError(
                f"MetaLRScheduler: {type(optimizer).__name__} with relative_step=True sets its own learning rate "
                f"(param group {i} has lr={lr!r}), so there is no base LR to schedule. Pass relative_step=False "
                "and an lr (e.g. Adafactor(params, lr=1e-3, relative_step=False, scale_parameter=False, "
                "warmup_init=False)), or keep transformers' AdafactorSchedule without metalr-hf."
            )
        raise TypeError(
            f"MetaLRScheduler: param group {i} of {type(optimizer).__name__} has lr={lr!r}; it needs a finite "
            "number as the base learning rate it scales."
        )


def _check_horizon(num_training_steps) -> None:
    if not _is_count(num_training_steps) or int(num_training_steps) <= 0:
        raise ValueError(
            f"MetaLRScheduler needs num_training_steps > 0 (a whole number), got {num_training_steps!r}: the "
            "learner reads progress relative to the run length (in a Trainer, leave it None: the callback "
            "takes it from the Trainer)."
        )


def scalar_f32(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached as a float32 0-d tensor; one that is already (the Trainer's loss and gradient norm) is kept
    as it is, without a cast or reshape."""
    t = t.detach()
    return t if t.dim() == 0 and t.dtype == torch.float32 else t.float().reshape(())


def _is_number_like(value, scalar: bool = False) -> bool:
    """A real number, or real numbers (``scalar``: exactly one), that ``torch.as_tensor`` takes."""
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return not t.is_complex() and t.dtype != torch.bool and (not scalar or t.numel() == 1)


_STATE_KEYS = {
    "last_epoch", "_step_count", "base_lrs", "_last_lr", "num_training_steps", "num_warmup_steps", "options",
    "schema_version", "learner_fingerprint", "learner_source", "controller",
}  # fmt: skip
_LATER_STATE_KEYS = {"decision_lag", "held_signals", "held_step", "prior"}  # states written before them load without
_CONTROLLER_KEYS = {"extractor", "learner_state", "delta", "backoff", "guard_scale", "best", "features", "step_count"}


def _check_state(state: dict, num_groups: int) -> None:
    """A scheduler state that is whole and fits this optimizer, or a ``ValueError`` that says what is wrong."""
    if not isinstance(state, dict):
        raise ValueError(f"A MetaLRScheduler state must be a dict, got {type(state).__name__}")
    missing, extra = sorted(_STATE_KEYS - set(state)), sorted(set(state) - _STATE_KEYS - _LATER_STATE_KEYS)
    if missing or extra:
        raise ValueError(
            f"Not a MetaLRScheduler state of this version: missing keys {missing}, unexpected keys {extra}. "
            "Was it written by another scheduler, or truncated?"
        )
    controller = state["controller"]
    if not isinstance(controller, dict) or _CONTROLLER_KEYS - set(controller):
        have = sorted(controller) if isinstance(controller, dict) else type(controller).__name__
        raise ValueError(f"The scheduler state's 'controller' lacks {sorted(_CONTROLLER_KEYS)} (it holds {have})")
    if "prior" in state:
        try:
            check_prior(state["prior"])
        except ValueError as e:
            raise ValueError(f"The scheduler state's 'prior' is damaged: {e}") from None
    for key in ("base_lrs", "_last_lr"):
        if len(state[key]) != num_groups:
            raise ValueError(
                f"The scheduler state holds {len(state[key])} {key} (one per param group) but this optimizer has "
                f"{num_groups} param groups: resume with the optimizer of the interrupted run."
            )


def _all_reduce_mean(vec: torch.Tensor) -> torch.Tensor:
    """Average a small signal vector over all ranks (no-op outside ``torch.distributed``)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        backend = dist.get_backend()
        work = vec.to(torch.float64)
        if backend == "nccl" and not work.is_cuda:
            work = work.cuda()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        vec = (work / dist.get_world_size()).to(vec.device)
    return vec


def get_scheduler(
    name,
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
    scheduler_specific_kwargs: dict | None = None,
):
    """``transformers.get_scheduler`` plus ``"meta"``.

    ``"meta"`` builds a :class:`MetaLRScheduler` with ``scheduler_specific_kwargs`` as its options
    (``meta_learner``, ``revision``, ``prior``, ...); every other name is passed to ``transformers.get_scheduler``
    unchanged, so it returns exactly what transformers returns.
    """
    if str(getattr(name, "value", name)) == "meta":
        kwargs = dict(scheduler_specific_kwargs or {})
        return MetaLRScheduler(
            optimizer,
            num_training_steps=num_training_steps,
            num_warmup_steps=num_warmup_steps or 0,
            **kwargs,
        )
    from transformers import get_scheduler as hf_get_scheduler

    return hf_get_scheduler(
        name,
        optimizer,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        scheduler_specific_kwargs=scheduler_specific_kwargs,
    )
