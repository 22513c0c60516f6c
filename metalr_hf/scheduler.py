"""``MetaLRScheduler``: the learning rate set by a meta-learner, step by step.

    lr_g(t) = base_lr_g · prior(t) · exp(δ_t) · b_t · γ_t

- ``prior`` is a schedule from `schedules.py` (cosine by default, with warmup);
- ``δ_t ∈ [-δ_max, δ_max]`` is the learner's correction, computed from the features of steps ``≤ t-1``, and at
  most ``log(max_boost)``: by default 0 (it may only lower the LR) on a run marked ``pretrained`` when the learner
  does not read that feature;
- ``b_t`` is the non-finite back-off: halved at each step whose loss or gradient is not finite (the learner
  never sees such a step), then recovering by ``×2`` over ``recovery`` good steps, up to 1;
- ``γ_t`` is the divergence guard: while the smoothed log-loss sits more than ``log(guard_ratio)`` above its best
  value, it shrinks by ``×0.7`` a step, whatever the learner says; it recovers like ``b_t``.

:class:`MetaController` holds this logic for ``B`` runs at once; the scheduler is a controller with ``B = 1``
and meta-training drives a controller over a whole population, so both use the same code.
"""

from __future__ import annotations

import logging
import math
import warnings

import torch
from torch.optim.lr_scheduler import LRScheduler

from .features import FEATURE_NAMES, SCHEMA_VERSION, FeatureExtractor, SignalReader, Signals
from .learner import MetaLearner
from .schedules import PRIORS, prior_multiplier

__all__ = ["MetaController", "MetaLRScheduler", "get_scheduler", "load_learner"]

logger = logging.getLogger(__name__)

# Keys accepted in `lr_scheduler_kwargs` for the "meta" scheduler.
META_SCHEDULER_KWARGS = (
    "meta_learner",
    "revision",
    "cache_dir",
    "token",
    "local_files_only",
    "prior",
    "min_lr_ratio",
    "decay_fraction",
    "guard",
    "guard_ratio",
    "recovery",
    "decision_lag",
    "pretrained",
    "max_boost",
)


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
        prior (`str`, defaults to `"cosine"`), min_lr_ratio (`float`, 0.0), decay_fraction (`float`, 0.2):
            the prior schedule (see `schedules.py`).
        guard (`bool`, defaults to `True`), guard_ratio (`float`, 3.0), recovery (`int`, 10): see module docstring.
        pretrained (`bool` or `Tensor[B]`, defaults to `False`): the runs fine-tune pretrained weights (a feature).
        max_boost (`float`, `"auto"` or `None`, defaults to `"auto"`): the most the learner may raise the LR above
            the prior, ``exp(δ) ≤ max_boost`` (≥ 1). ``"auto"``: 1 on the runs marked ``pretrained`` when the learner
            does not read that feature (it was never shown a pretrained model: it may only lower their LR), no
            cap otherwise. ``None``: no cap but the learner's own bound.
    """

    def __init__(
        self,
        learner: MetaLearner,
        num_training_steps,
        num_warmup_steps=0,
        batch_size: int = 1,
        prior: str = "cosine",
        min_lr_ratio: float = 0.0,
        decay_fraction: float = 0.2,
        guard: bool = True,
        guard_ratio: float = 3.0,
        recovery: int = 10,
        pretrained=False,
        max_boost="auto",
    ):
        if prior not in PRIORS:
            raise ValueError(f"Unknown prior {prior!r}; valid priors: {sorted(PRIORS)}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
        if not guard_ratio > 1.0:
            raise ValueError(f"guard_ratio must be > 1, got {guard_ratio!r}")
        if int(recovery) < 1:
            raise ValueError(f"recovery must be a positive number of steps, got {recovery!r}")
        if max_boost is not None and max_boost != "auto":
            if isinstance(max_boost, bool) or not isinstance(max_boost, (int, float)) or not max_boost >= 1.0:
                raise ValueError(f'max_boost must be a number >= 1, "auto" or None, got {max_boost!r}')
        # δ ≤ _log_boost for every run; under "auto", δ ≤ 0 too on the pretrained runs of a learner blind to them
        self._log_boost = math.inf if max_boost in (None, "auto") else math.log(max_boost)
        reads_pretrained = "pretrained" in getattr(learner, "config", {}).get("feature_names", FEATURE_NAMES)
        self._cap_pretrained = max_boost == "auto" and not reads_pretrained
        self.learner = learner
        self.extractor = FeatureExtractor(num_training_steps, batch_size=batch_size, pretrained=pretrained)
        B = self.extractor.batch_size
        self.T = self.extractor.T
        self.warmup = torch.as_tensor(num_warmup_steps, dtype=torch.float64).reshape(-1).expand(B).clone()
        self.prior, self.prior_kwargs = prior, {"min_lr_ratio": min_lr_ratio, "decay_fraction": decay_fraction}
        self.guard, self.log_guard_ratio, self.recover = guard, math.log(guard_ratio), 2.0 ** (1.0 / int(recovery))
        with torch.no_grad():
            self.learner_state = learner.init_state(B).cpu()
        self.delta = torch.zeros(B)
        self.backoff = torch.ones(B)
        self.guard_scale = torch.ones(B)
        self.best = torch.full((B,), float("inf"), dtype=torch.float64)
        self.features = torch.zeros(B, len(FEATURE_NAMES))
        self.step_count = 0  # optimizer steps whose signals were consumed

    def boost_cap(self) -> torch.Tensor:
        """The ``[B]`` upper bound on δ that ``max_boost`` sets (``inf``: none)."""
        cap = torch.full((self.extractor.batch_size,), self._log_boost)
        return torch.where(self.extractor.pretrained > 0.5, 0.0, cap) if self._cap_pretrained else cap

    def prior_at(self, step) -> torch.Tensor:
        return prior_multiplier(self.prior, step, self.T, self.warmup, **self.prior_kwargs)

    def scale(self, step) -> torch.Tensor:
        """``prior(step) · exp(δ) · b · γ`` for every run (float64, ``[B]``)."""
        corr = torch.exp(self.delta.double()) * self.backoff.double() * self.guard_scale.double()
        return self.prior_at(step) * corr

    @torch.no_grad()
    def update(self, signals: Signals, step=None) -> torch.Tensor:
        """Consume the signals of optimizer step ``step`` (default: the count of steps consumed so far); returns
        the ``[B]`` mask of runs whose signals were finite (the others are skipped by the learner)."""
        ok = signals.finite().reshape(-1)
        step = self.step_count if step is None else step
        feats = self.extractor.update(signals, prior=self.prior_at(step), prev_delta=self.delta)
        device = self.learner.device
        delta, state = self.learner(feats.to(device), self.learner_state.to(device))
        delta, state = torch.minimum(delta.float().cpu(), self.boost_cap()), state.cpu()
        self.delta = torch.where(ok, delta, self.delta)
        self.learner_state = torch.where(ok[:, None], state, self.learner_state)
        self.features = feats
        # Non-finite back-off.
        self.backoff = torch.where(
            ok, (self.backoff * self.recover).clamp(max=1.0), (self.backoff * 0.5).clamp(min=2**-10)
        )
        # Divergence guard on the smoothed log-loss.
        if self.guard:
            s = self.extractor.state
            seen = s["n_loss"] > 0
            self.best = torch.where(seen, torch.minimum(self.best, s["ema_f"]), self.best)
            blown = seen & (s["ema_f"] - self.best > self.log_guard_ratio)
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


class MetaLRScheduler(LRScheduler):
    """Learning-rate scheduler driven by a meta-learned recurrent policy (see the module docstring for the rule).

    Args:
        optimizer (`torch.optim.Optimizer`): its param groups' ``lr`` at construction are the base LRs.
        num_training_steps (`int`): number of optimizer steps ``T`` of the run (required, > 0).
        num_warmup_steps (`int`, *optional*, defaults to 0): linear warmup of the prior.
        meta_learner (`MetaLearner`, `str` or `None`, *optional*): a learner, a local folder, a Hub repo id, or
            ``None`` for the default learner bundled in the package (works offline).
        revision, cache_dir, token, local_files_only: where a Hub learner comes from (`revision` pins a commit).
        prior (`str`, defaults to `"cosine"`): one of `constant`, `cosine`, `linear`, `wsd`.
        min_lr_ratio, decay_fraction, guard, guard_ratio, recovery, max_boost: see `MetaController`.
        pretrained (`bool` or `None`, defaults to `None`): whether the model was loaded from pretrained weights
            (the learner's ``pretrained`` feature). ``None``: a ``Trainer`` with :class:`MetaLRCallback` reads it
            from the model (``config._name_or_path`` set by ``from_pretrained``); a bare scheduler assumes False.
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
        if num_training_steps is None or isinstance(num_training_steps, bool) or int(num_training_steps) <= 0:
            raise ValueError(
                f"MetaLRScheduler needs num_training_steps > 0, got {num_training_steps!r}: the learner reads "
                "progress relative to the run length (in a Trainer, set max_steps or a sized train dataset)."
            )
        if num_warmup_steps is None or int(num_warmup_steps) < 0:
            raise ValueError(f"num_warmup_steps must be >= 0, got {num_warmup_steps!r}")
        hub = {k: options.pop(k, None) for k in ("revision", "cache_dir", "token", "local_files_only")}
        pretrained = options.pop("pretrained", None)
        if pretrained is not None and not isinstance(pretrained, bool):
            raise ValueError(f"pretrained must be true, false or unset (read from the model), got {pretrained!r}")
        self.pretrained_given = pretrained is not None
        lag = options.pop("decision_lag", None)
        if lag is None:  # auto: lag on accelerators (no host-device sync per step), none on the CPU
            on_cpu = all(p.device.type == "cpu" for g in optimizer.param_groups for p in g["params"])
            lag = 0 if on_cpu else 1
        if lag not in (0, 1):
            raise ValueError(f"decision_lag must be 0, 1 or None (auto), got {lag!r}")
        self.decision_lag = int(lag)
        self._held: tuple[torch.Tensor, int] | None = None
        # Building the learner's layers draws from the global generator (their random init, then overwritten by
        # the saved weights): done in a fork, so that the training's dropout masks and data order are the ones a
        # run without metalr-hf would draw, and meta and a baseline of the same seed stay paired.
        with torch.random.fork_rng(devices=[]):
            self.learner = load_learner(meta_learner, **hub)
        self.num_training_steps, self.num_warmup_steps = int(num_training_steps), int(num_warmup_steps)
        self.controller = MetaController(
            self.learner, self.num_training_steps, self.num_warmup_steps, pretrained=bool(pretrained), **options
        )
        self.options = dict(options)
        self._pending_loss = None
        self._pending_count = 0
        self._pending_grad_norm = None
        self._warned: set[str] = set()
        self._in_incident = False
        self.last_signals: Signals | None = None
        self._reader = SignalReader(optimizer)
        super().__init__(optimizer, last_epoch)

    # -- signals -------------------------------------------------------------------------------------------
    def observe(self, loss, grad_norm=None) -> None:
        """Hand over the loss of the optimizer step about to be taken (and, optionally, the gradient norm before
        clipping). Several calls before one ``step()`` are averaged (gradient accumulation)."""
        loss = torch.as_tensor(loss).detach().float().reshape(-1).mean()
        self._pending_loss = loss if self._pending_loss is None else self._pending_loss + loss.to(self._pending_loss)
        self._pending_count += 1
        if grad_norm is not None:
            self._pending_grad_norm = torch.as_tensor(grad_norm).detach().float().reshape(())

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)
            logger.warning(message)

    def _collect_signals(self) -> torch.Tensor:
        """The ``[1, S]`` signal vector of this step, reduced over ranks, still on the parameters' device.

        On an accelerator a non-blocking copy to host memory starts here; it is read one step later
        (``decision_lag=1``), so the scheduler never makes the host wait for the device."""
        stats = self._reader.read(offset=max(self.last_epoch, 0))
        device = stats["gg"].device
        if self._pending_loss is None:
            self._warn_once(
                "no_loss",
                "MetaLRScheduler received no loss: call `scheduler.observe(loss)` before `scheduler.step()`, or "
                "add `MetaLRCallback()` to the Trainer. Running on gradient and optimizer statistics only.",
            )
            loss, has_loss = torch.tensor(float("nan"), device=device), torch.tensor(0.0, device=device)
        else:
            loss = (self._pending_loss / self._pending_count).to(device)
            has_loss = torch.tensor(1.0, device=device)
        grad_norm = self._pending_grad_norm
        grad_norm = stats["gg"].sqrt() if grad_norm is None else grad_norm.to(device)
        values = {"loss": loss, "has_loss": has_loss, "grad_norm": grad_norm, **stats}
        vec = Signals(**{k: v.reshape(1).to(device) for k, v in values.items()}).to_vector()
        vec = _all_reduce_mean(vec)
        self._pending_loss, self._pending_count, self._pending_grad_norm = None, 0, None
        if vec.device.type == "cpu":
            return vec
        host = torch.empty(vec.shape, dtype=vec.dtype, pin_memory=vec.device.type == "cuda")
        return host.copy_(vec, non_blocking=True)

    def _consume(self, vec: torch.Tensor, step: int) -> None:
        """Feed one step's signals to the controller (the learner sees only finite ones)."""
        signals = Signals.from_vector(vec.cpu())
        if float(signals.gg[0]) == 0.0:
            self._warn_once(
                "no_grad",
                "MetaLRScheduler found no gradients at `step()` (zero_grad before step, or a sharded backend); "
                "the gradient features use the gradient norm the Trainer reports, the others stay neutral.",
            )
        self.last_signals = signals
        self._report(self.controller.update(signals, step=step))

    # -- LRScheduler API -----------------------------------------------------------------------------------
    def step(self, epoch: int | None = None) -> None:
        if not self._is_initial and epoch is None:
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
        super().step(epoch)

    def skip_step(self) -> None:
        """The optimizer skipped this step (an fp16 overflow): a non-finite step for the learner and the back-off.
        The step counter does not move, as for the stock schedulers; the backed-off LR applies at once."""
        if self._held is not None:
            held, self._held = self._held, None
            self._consume(*held)
        self._pending_loss, self._pending_count, self._pending_grad_norm = None, 0, None
        self._report(self.controller.update(Signals.nonfinite(), step=self.last_epoch))
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _report(self, ok: torch.Tensor) -> None:
        bad = not bool(ok.all())
        if bad and not self._in_incident:  # one warning per incident (a run of non-finite steps)
            message = (
                f"MetaLRScheduler: non-finite loss or gradient at step {self.last_epoch}; the learner skipped it "
                f"and the LR backs off (scale now {float(self.controller.backoff[0]):.3g})."
            )
            warnings.warn(message, stacklevel=3)
            logger.warning(message)
        self._in_incident = bad

    def get_lr(self) -> list[float]:
        scale = float(self.controller.scale(self.last_epoch)[0])
        return [base * scale for base in self.base_lrs]

    @property
    def last_scale(self) -> float:
        """``exp(δ)·b·γ`` of the current step: the factor the learner and the guards apply to the prior."""
        c = self.controller
        return float(torch.exp(c.delta[0]) * c.backoff[0] * c.guard_scale[0])

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
        }

    def load_state_dict(self, state_dict: dict) -> None:
        schema = state_dict.get("schema_version")
        if schema != SCHEMA_VERSION:
            raise ValueError(
                f"This scheduler checkpoint was written for feature schema {schema}, this metalr-hf reads "
                f"schema {SCHEMA_VERSION}: it cannot be resumed with this version."
            )
        mine, theirs = self.learner.fingerprint(), state_dict.get("learner_fingerprint")
        if theirs != mine:
            src = state_dict.get("learner_source", {}).get("name_or_path", "another learner")
            raise ValueError(
                f"This scheduler checkpoint was written by meta-learner {src!r} (fingerprint {theirs}), but this "
                f"scheduler uses {self.learner.source.get('name_or_path')!r} (fingerprint {mine}). Resume with the "
                "same `meta_learner` (and revision) as the interrupted run."
            )
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self.base_lrs = list(state_dict["base_lrs"])
        self._last_lr = list(state_dict["_last_lr"])
        self.controller.load_state_dict(state_dict["controller"])
        if "pretrained" in state_dict["controller"]["extractor"]:
            # decided by the interrupted run: the Trainer callback must not read it again from a model that may
            # have been reloaded another way (from the checkpoint folder, which sets `config._name_or_path`)
            self.pretrained_given = True
        held = state_dict.get("held_signals")
        self._held = None if held is None else (held, int(state_dict["held_step"]))


def _all_reduce_mean(vec: torch.Tensor) -> torch.Tensor:
    """Average a small signal vector over all ranks (no-op outside ``torch.distributed``)."""
    import torch.distributed as dist

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
