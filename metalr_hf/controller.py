"""The rule: the learning rate of a step, from the prior, the learner's correction and the guards.

    lr_g(t) = base_lr_g · prior(t) · exp(δ_t) · b_t · γ_t

- ``prior`` is a schedule from `schedules.py`, with warmup (by default WSD on every run; ``prior="auto"``, with
  which the lab's learners were meta-trained: WSD on a run marked ``pretrained``, cosine otherwise);
- ``δ_t ∈ [-δ_max, δ_max]`` is the learner's correction, computed from the features of steps ``≤ t-1`` and
  averaged over steps by ``smoothing`` (0.9 from scratch by default), and at most ``log(max_boost)``: by default 0
  (it may only lower the LR) on a run marked ``pretrained`` when the learner was not meta-trained for such runs
  (`options.knows_pretrained_runs`), and at most ``-log(eval_cut)`` from the ``eval_patience``-th evaluation in a
  row without a new best, or one that reads as overfitting (``eval_overfit``), until one brings it, and at most 0
  for good once a stale one lies far above the training loss (``eval_gap``; `observe_eval`); and at least
  log(TRUST_FLOOR) (within those caps) while the last eval loss improved on the best before it (``eval_trust``);
- ``b_t`` is the non-finite back-off: halved at each step whose loss or gradient is not finite (the learner
  never sees such a step), then recovering by ``×2`` over ``recovery`` good steps, up to 1;
- ``γ_t`` is the divergence guard: while the smoothed log-loss (an EMA of the median of the last three, so that no
  single step moves it) sits more than ``log(guard_ratio)`` above its best value, it shrinks by ``×0.7`` a step,
  whatever the learner says; it recovers like ``b_t``.

The loss is read on a log scale: a loss of exactly 0 is skipped; from the first negative loss on, the run reads the
gradient and optimizer statistics only (warned once). A non-finite δ (whatever its cause) is replaced by 0: that
step follows the prior (warned once, naming the learner).

:class:`MetaController` holds this logic for ``B`` runs at once; :class:`~metalr_hf.scheduler.MetaLRScheduler` is
a controller with ``B = 1`` and meta-training drives a controller over a whole population, so both use the same
code.
"""

from __future__ import annotations

import logging
import math

import torch

from .eval_hold import EvalHolds
from .features import _SCALAR, _TENSOR, FEATURE_NAMES, FeatureExtractor
from .learner import MetaLearner
from .options import (
    BoostPolicy,
    MetaSchedulerOptions,
    check_controller_options,
    check_prior,
    knows_pretrained_runs,
    resolve_prior,
    resolve_smoothing,
)
from .schedules import prior_multiplier
from .signals import Signals, finite_values

__all__ = ["MetaController", "knows_pretrained_runs"]

logger = logging.getLogger(__name__)
_DEFAULTS = MetaSchedulerOptions()  # the options' one declaration of each default


class MetaController(EvalHolds):
    """The learning-rate controller of ``B`` runs: features → learner → guarded scale on the prior.

    Args:
        learner (`MetaLearner`): the policy.
        num_training_steps (`int` or `Tensor[B]`), num_warmup_steps (`int` or `Tensor[B]`): horizons, warmups.
        batch_size (`int`, defaults to 1).
        prior, min_lr_ratio, decay_fraction: the prior schedule (see `schedules.py`); ``"auto"``: per run, `wsd` on
            the runs marked ``pretrained``, `cosine` on the others (:data:`options.AUTO_PRIORS`).
        guard, guard_ratio, recovery: see module docstring. Every option's default is `MetaSchedulerOptions`'s.
        pretrained (`bool` or `Tensor[B]`, defaults to `False`): the runs fine-tune pretrained weights (a feature).
        max_boost (`float`, `"auto"`, `"peak"` or `None`), warmup_boost (`bool`): the most the learner may raise
            the LR above the prior, in the warmup too or not (:class:`~metalr_hf.options.BoostPolicy`; ``"peak"``:
            ``prior · exp(δ) · b · γ`` at most the warmup's ramp, then 1).
        eval_patience (`int` or `None`), eval_cut (`float`): from ``eval_patience`` evaluations in a row without a
            new best (handed to :meth:`observe_eval`), δ ≤ -log(eval_cut) until one brings a new best; ``None``:
            evaluations are ignored. ``eval_overfit`` (`float` or `None`): an evaluation more than this fraction above
            the best while the training loss (smoothed) fell since that best starts the hold at once; `None`: off.
            ``eval_gap`` (`float` or `None`): δ ≤ 0 for good from an evaluation without a new best whose log lies
            more than this above the smoothed training log-loss; `None`: off. ``eval_trust`` (`float`, `"auto"` or
            `None`): δ ≥ log(TRUST_FLOOR) (within the caps) while the last eval loss (``observe_eval``'s ``loss``,
            or its value) improved on the best before it by more than this (logs); `"auto"`: 0.3 on the runs marked
            pretrained, off on the others.
        smoothing (`float` in [0, 1) or `"auto"`): δ ← s·δ + (1 - s)·the decision (`options.resolve_smoothing`).
    """

    def __init__(
        self,
        learner: MetaLearner,
        num_training_steps,
        num_warmup_steps=0,
        batch_size: int = 1,
        prior: str = _DEFAULTS.prior,
        min_lr_ratio: float = _DEFAULTS.min_lr_ratio,
        decay_fraction: float = _DEFAULTS.decay_fraction,
        guard: bool = _DEFAULTS.guard,
        guard_ratio: float = _DEFAULTS.guard_ratio,
        recovery: int = _DEFAULTS.recovery,
        pretrained=False,
        max_boost=_DEFAULTS.max_boost,
        warmup_boost: bool = _DEFAULTS.warmup_boost,
        eval_patience: int | None = _DEFAULTS.eval_patience,
        eval_cut: float = _DEFAULTS.eval_cut,
        smoothing=_DEFAULTS.smoothing,
        eval_overfit: float | None = _DEFAULTS.eval_overfit,
        eval_gap: float | None = _DEFAULTS.eval_gap,
        eval_trust=_DEFAULTS.eval_trust,
    ):
        check_controller_options(
            prior=prior,
            min_lr_ratio=min_lr_ratio,
            decay_fraction=decay_fraction,
            guard_ratio=guard_ratio,
            recovery=recovery,
            max_boost=max_boost,
            warmup_boost=warmup_boost,
            eval_patience=eval_patience,
            eval_cut=eval_cut,
            smoothing=smoothing,
            eval_overfit=eval_overfit,
            eval_gap=eval_gap,
            eval_trust=eval_trust,
        )
        self.boost = BoostPolicy(max_boost, knows_pretrained_runs(learner), warmup_boost)
        self.eval_patience, self.eval_cut = eval_patience, float(eval_cut)
        self.eval_hold_from = math.inf if eval_patience is None else eval_patience  # stale evaluations that hold
        self.smoothing = smoothing if smoothing == "auto" else float(smoothing)
        self.eval_overfit = None if eval_overfit is None else float(eval_overfit)
        self.eval_gap = None if eval_gap is None else float(eval_gap)
        self.eval_trust = eval_trust if eval_trust in (None, "auto") else float(eval_trust)
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
        self.eval_best = torch.full((B,), float("inf"), dtype=torch.float64)  # the best evaluation seen
        self.eval_stale = torch.zeros(B)  # evaluations in a row without a new best
        self.eval_train_best = torch.full((B,), -math.inf, dtype=torch.float64)  # smoothed log-loss at the best
        self.overfitting = torch.zeros(B, dtype=torch.bool)  # the last evaluation read as overfitting
        self.eval_locked = torch.zeros(B)  # 1 once a stale evaluation lay ``eval_gap`` above the training loss
        self.eval_loss_best = torch.full((B,), float("inf"), dtype=torch.float64)  # the best eval loss seen
        self.eval_trusted = torch.zeros(B)  # 1 while the last eval loss improved by more than ``eval_trust``
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
    eval_best = _control_property("eval_best", torch.float64)
    eval_stale = _control_property("eval_stale", torch.float32)
    eval_train_best = _control_property("eval_train_best", torch.float64)
    eval_locked = _control_property("eval_locked", torch.float32)
    eval_loss_best = _control_property("eval_loss_best", torch.float64)
    eval_trusted = _control_property("eval_trusted", torch.float32)
    del _control_property

    @property
    def features(self) -> torch.Tensor:
        f = self._control["features"]
        return torch.tensor([f], dtype=torch.float32) if self.scalar else f

    @features.setter
    def features(self, value) -> None:
        self._control["features"] = [float(v) for v in value.reshape(-1)] if self.scalar else value

    def boost_cap(self, step: int = 0) -> torch.Tensor:
        """The ``[B]`` upper bound on δ that ``max_boost``, ``warmup_boost`` and the evaluations (``eval_patience``)
        set at ``step`` (``inf``: none)."""
        pretrained = self.extractor.pretrained > 0.5
        warm = self.warmup > step
        caps = [[self.boost.delta_cap(p, w) for w in (False, True)] for p in (False, True)]
        scratch = torch.where(warm, caps[0][1], caps[0][0])
        finetune = torch.where(warm, caps[1][1], caps[1][0])
        return torch.minimum(torch.where(pretrained, finetune, scratch).float(), self.eval_cap)

    def smoothing_of_runs(self):
        """The weight of the previous δ in each run's new δ (a float for one run driven in Python floats, else [B])."""
        x = self.extractor
        return resolve_smoothing(self.smoothing, x._pretrained_value > 0.5 if self.scalar else x.pretrained > 0.5)

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
        if self.boost.peak:  # at most the warmup's ramp (the constant prior), then 1
            return torch.minimum(scale, prior_multiplier("constant", step, self.T, self.warmup))
        return scale

    def scale_value(self, step: int) -> float:
        """:meth:`scale` of a scalar controller, as a float."""
        c = self._control
        scale = self._prior_value(step) * math.exp(c["delta"]) * c["backoff"] * c["guard_scale"]
        if self.boost.peak:  # at most the warmup's ramp (the constant prior), then 1
            return min(scale, prior_multiplier("constant", int(step), self._T, self._warmup))
        return scale

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
        cap = self.boost.delta_cap(self.extractor._pretrained_value > 0.5, step < self._warmup)
        if c["eval_stale"] >= self.eval_hold_from:  # the scalar form of `eval_cap`
            cap = min(cap, self.eval_hold_cap)
        elif c["eval_locked"]:
            cap = min(cap, 0.0)
        delta = min(delta, cap) if delta == delta else delta
        # A non-finite decision never reaches the LR, whatever its cause: that run falls back to the prior.
        sane = math.isfinite(delta) and state_finite
        if ok and not sane:
            self.nonfinite_decisions += 1
        if ok and sane:
            self.learner_state = state
        v = self.extractor.values
        c.update(_rule(c, delta, cap, sane, ok, v["n_loss"] > 0, v["guard_ema"], self, _SCALAR))
        c["features"] = feats
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
        cap = self.boost_cap(step)
        delta, state = torch.minimum(delta.float().cpu(), cap), state.cpu()
        # A non-finite decision never reaches the LR, whatever its cause: that run falls back to the prior.
        sane = torch.isfinite(delta) & torch.isfinite(state).all(-1)
        self.nonfinite_decisions += int((ok & ~sane).sum())
        self.learner_state = torch.where((ok & sane)[:, None], state, self.learner_state)
        s = self.extractor.state
        seen = s["n_loss"] > 0
        self._control.update(_rule(self._control, delta, cap, sane, ok, seen, s["guard_ema"], self, _TENSOR))
        self.features = feats
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
            "eval_best": self.eval_best.clone(),
            "eval_stale": self.eval_stale.clone(),
            "eval_train_best": self.eval_train_best.clone(),
            "eval_locked": self.eval_locked.clone(),
            "eval_loss_best": self.eval_loss_best.clone(),
            "eval_trusted": self.eval_trusted.clone(),
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
        for key in ("eval_best", "eval_stale", "eval_train_best", "eval_locked", "eval_loss_best", "eval_trusted"):
            if key in state:  # absent from older checkpoints
                setattr(self, key, state[key].clone())
        self.step_count = int(state["step_count"])


def _rule(c: dict, delta, cap, sane, ok, seen, guard_ema, opts: MetaController, o) -> dict:
    """The control values after one step, from the old ones ``c`` (``delta``, ``backoff``, ``guard_scale``,
    ``best``): the one implementation, for ``B`` runs as ``[B]`` tensors (``o`` = ``features._TENSOR``) or one run
    as Python floats (``o`` = ``features._SCALAR``, the scheduler's path), as ``features._step``.

    - δ: the learner's decision (capped at ``cap``), averaged with the previous δ by ``opts.smoothing`` and capped
      again (for a resumed run that named tighter caps), where the step's signals were finite (``ok``) and the
      decision is sane; 0 (the prior) where it is not; unchanged on a non-finite step, which the learner never sees;
      at least ``log_trust_floor`` (at most ``cap``) while ``eval_trusted``;
    - the non-finite back-off: halved at a non-finite step (down to 2⁻¹⁰), else recovering by ``recover``, up to 1;
    - the divergence guard (``opts.guard``): ``best`` is the lowest smoothed log-loss seen; while the smoothed
      log-loss sits more than ``log(guard_ratio)`` above it the guard shrinks ×0.7 a step (down to 2⁻¹⁰), else it
      recovers as the back-off on finite steps.

    The scales and δ are kept in float32 (``o.f32``), as the batched controller holds them."""
    where, f32, clamp, recover, keep = o.where, o.f32, o.clamp, opts.recover, opts.smoothing_of_runs()
    delta = o.minimum(keep * c["delta"] + (1.0 - keep) * delta, cap)
    delta = where(ok, where(sane, f32(delta), 0.0), c["delta"])
    floor = f32(clamp(cap, None, opts.log_trust_floor))
    new = {
        "delta": where(c["eval_trusted"] > 0, o.maximum(delta, floor), delta),
        "backoff": where(
            ok, f32(clamp(c["backoff"] * recover, None, 1.0)), f32(clamp(c["backoff"] * 0.5, 2**-10, None))
        ),
    }
    if opts.guard:
        best = where(seen, o.minimum(c["best"], guard_ema), c["best"])
        blown = o.and_(seen, guard_ema - best > opts.log_guard_ratio)
        shrink = f32(clamp(c["guard_scale"] * 0.7, 2**-10, None))
        grow = f32(clamp(c["guard_scale"] * recover, None, 1.0))
        new["best"], new["guard_scale"] = best, where(blown, shrink, where(ok, grow, c["guard_scale"]))
    return new
