"""Scale-free features of a running training job: the meta-learner's only view of the world.

One :class:`FeatureExtractor` serves a single ``Trainer`` job (batch of 1) and a whole population during
meta-training (batch of ``B`` runs) with the same code. Its input is one :class:`Signals` per optimizer step;
its output is a ``[B, F]`` tensor whose columns are :data:`FEATURE_NAMES`.

Notation (per run, at optimizer step ``t`` of ``T``): ``ℓ_t`` the step loss, ``g_t`` the gradient, ``m_t`` the
optimizer's first moment (Adam ``exp_avg``; SGD ``(1-β)·momentum_buffer``), ``v_t`` Adam's second moment,
``u_t`` the update direction per unit learning rate (Adam ``m̂/(√v̂+ε)``, SGD the momentum buffer),
``Δw_t = -η_t u_t`` the update, ``w_t`` the weights. Every statistic comes from one pass over tensors the
optimizer already holds: no copy of a gradient or a weight is ever kept.

Time constants are fractions of the run length (``τ_fast = max(2, 0.02·T)``, ``τ_slow = max(4, 0.1·T)``), so
the same learner reads a 200-step toy and a 100k-step run alike; losses enter as logs relative to their start,
gradients as log-ratios, so any loss scale and optimizer give comparable numbers.

=====================  =============================================================================
feature                definition
=====================  =============================================================================
progress               t / T
prior                  the prior schedule's multiplier at t
log_loss_rel           EMA_fast(log ℓ) - log ℓ_0
loss_slope_fast        τ_fast · EMA_fast(Δ EMA_fast(log ℓ))      (log-loss change per fast time scale)
loss_slope_slow        τ_slow · EMA_slow(Δ EMA_fast(log ℓ))      (log-loss change per slow time scale)
loss_noise             sqrt(EMA_fast((log ℓ - EMA_fast(log ℓ))²))
grad_norm_ratio        log ‖g_t‖ - EMA_slow(log ‖g‖)
grad_norm_rel          EMA_fast(log ‖g‖) - log ‖g_0‖
grad_momentum_cos      EMA_fast(g·m / (‖g‖‖m‖))
update_ratio           log10(‖Δw‖ / ‖w‖) + 3
curvature_ratio        EMA_slow(ℓ_{t+1} - ℓ_t) / EMA_slow(g_t·Δw_t)   (1: first-order regime; < 0: overshoot)
grad_snr               log(‖m‖² / Σv)   (Adam; SGD uses EMA_fast(‖g‖²) for Σv)
adaptive               1 for Adam-family optimizers, 0 for SGD
prev_delta             the learner's previous correction δ_{t-1}
nonfinite_recent       EMA_fast(1[ℓ or ‖g‖ not finite])
loss_missing           1 when no loss was observed (gradient-only mode)
pretrained             1 when the run fine-tunes pretrained weights (the Trainer integration reads it from
                       the model; meta-training from the task), else 0
=====================  =============================================================================

Features are only ever appended: a learner records the names it was trained on (``feature_names``) and reads
that prefix of the vector, so learners trained before a feature existed run unchanged (``pretrained`` came last).
"""

from __future__ import annotations

import math

import torch

from .ops import ScalarOps, TensorOps
from .signals import _SIGNAL_FLOATS, Signals, finite_values

__all__ = [
    "FEATURE_CLIP",
    "FEATURE_GROUPS",
    "FEATURE_NAMES",
    "SCHEMA_VERSION",
    "FeatureExtractor",
    "feature_mask",
]

SCHEMA_VERSION = 1

FEATURE_NAMES: tuple[str, ...] = (
    "progress",
    "prior",
    "log_loss_rel",
    "loss_slope_fast",
    "loss_slope_slow",
    "loss_noise",
    "grad_norm_ratio",
    "grad_norm_rel",
    "grad_momentum_cos",
    "update_ratio",
    "curvature_ratio",
    "grad_snr",
    "adaptive",
    "prev_delta",
    "nonfinite_recent",
    "loss_missing",
    "pretrained",
)

# Groups switched off together in ablations.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "time": ("progress", "prior"),
    "loss": ("log_loss_rel", "loss_slope_fast", "loss_slope_slow", "loss_noise"),
    "grad": ("grad_norm_ratio", "grad_norm_rel"),
    "momentum": ("grad_momentum_cos",),
    "update": ("update_ratio",),
    "second_order": ("curvature_ratio", "grad_snr"),
    "context": ("adaptive", "prev_delta", "nonfinite_recent", "loss_missing", "pretrained"),
}

FEATURE_CLIP = 5.0
_EPS = 1e-12


def feature_mask(disabled: list[str] | tuple[str, ...] = ()) -> torch.Tensor:
    """A ``[F]`` mask of ones, with zeros at the disabled features or feature groups.

    Raises:
        ValueError: a name that is neither a feature nor a group (the message lists both).
    """
    mask = torch.ones(len(FEATURE_NAMES))
    for name in disabled:
        names = FEATURE_GROUPS.get(name, (name,) if name in FEATURE_NAMES else None)
        if names is None:
            raise ValueError(
                f"Unknown feature or feature group {name!r}; groups: {sorted(FEATURE_GROUPS)}, "
                f"features: {list(FEATURE_NAMES)}"
            )
        for n in names:
            mask[FEATURE_NAMES.index(n)] = 0.0
    return mask


# The running statistics of one run (see `_step`): counters, loss EMAs and slopes, the second-order pair, gradient
# EMAs, the divergence guard's reference, and the last features (kept where a step is not finite).
_STATE_KEYS = (
    "t", "n_loss", "log_l0", "ema_f", "ema_s", "ema_f_prev", "slope_f", "slope_s", "noise",
    "n_grad", "log_g0", "g_f", "g_s", "cos",
    "loss_change", "predicted_change", "prev_loss", "prev_pred", "gg_f",
    "nonfinite", "negative_loss", "guard_prev1", "guard_prev2", "guard_ema", "last_features",
)  # fmt: skip


class FeatureExtractor:
    """Running, scale-free statistics of ``B`` training runs.

    Args:
        num_training_steps (`int` or `torch.Tensor` of shape `[B]`):
            Horizon ``T`` of each run; time constants are fractions of it.
        batch_size (`int`, *optional*, defaults to 1):
            Number of runs ``B`` updated together.
        fast (`float`, defaults to 0.02) / slow (`float`, defaults to 0.1):
            Time constants as fractions of ``T`` (at least 2 and 4 steps).
        pretrained (`bool` or `torch.Tensor` of shape `[B]`, defaults to `False`):
            Whether each run fine-tunes pretrained weights (the ``pretrained`` feature; settable later through
            the ``pretrained`` attribute).

    ``update(signals, prior, prev_delta)`` returns the ``[B, F]`` features of this step; runs whose signals are
    not finite keep their statistics (the caller must not feed their features to a learner).
    """

    def __init__(
        self,
        num_training_steps,
        batch_size: int = 1,
        fast: float = 0.02,
        slow: float = 0.1,
        pretrained=False,
        scalar: bool | None = None,
    ):
        T = torch.as_tensor(num_training_steps, dtype=torch.float64).reshape(-1)
        if T.numel() == 1 and batch_size > 1:
            T = T.expand(batch_size).clone()
        if (T <= 0).any() or not torch.isfinite(T).all():
            raise ValueError(f"num_training_steps must be a positive integer, got {num_training_steps!r}")
        self.T = T
        self.batch_size = T.numel()
        self.tau_f = torch.clamp(fast * T, min=2.0)
        self.tau_s = torch.clamp(slow * T, min=4.0)
        # One run is kept in Python floats (the scheduler's case: `update_values`), several in [B] tensors.
        self.scalar = self.batch_size == 1 if scalar is None else bool(scalar)
        if self.scalar and self.batch_size != 1:
            raise ValueError("a scalar FeatureExtractor holds one run")
        self._T, self._tau_f, self._tau_s = (float(v[0]) for v in (self.T, self.tau_f, self.tau_s))
        state = {k: torch.zeros(self.batch_size, dtype=torch.float64) for k in _STATE_KEYS}
        state["last_features"] = torch.zeros(self.batch_size, len(FEATURE_NAMES), dtype=torch.float64)
        self.state = state  # one assignment: a scalar extractor converts it to floats here
        self.pretrained = pretrained

    @property
    def state(self) -> dict[str, torch.Tensor]:
        """The statistics as ``[B]`` float64 tensors (``last``: ``[B, F]``)."""
        if not self.scalar:
            return self._state
        values = {k: torch.tensor([v], dtype=torch.float64) for k, v in self._values.items() if k != "last_features"}
        values["last_features"] = torch.tensor([self._values["last_features"]], dtype=torch.float64)
        return values

    @state.setter
    def state(self, state: dict) -> None:
        if not self.scalar:
            self._state = state
            return
        self._values = {k: float(v.reshape(-1)[0]) for k, v in state.items() if k != "last_features"}
        self._values["last_features"] = [float(v) for v in state["last_features"].reshape(-1)]

    @property
    def values(self) -> dict:
        """The statistics of a scalar extractor, as Python floats (read-only view for the controller)."""
        return self._values

    @property
    def pretrained(self) -> torch.Tensor:
        return self._pretrained

    @pretrained.setter
    def pretrained(self, value) -> None:
        self._pretrained = torch.as_tensor(value, dtype=torch.float64).reshape(-1).expand(self.batch_size).clone()
        self._pretrained_value = float(self._pretrained[0])

    # -- persistence ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{k: v.clone() for k, v in self.state.items()}, "pretrained": self._pretrained.clone()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(_STATE_KEYS) - set(state_dict) | {"pretrained"} - set(state_dict))
        if missing:
            raise KeyError(f"FeatureExtractor state is missing {missing}")
        state = {k: torch.as_tensor(state_dict[k], dtype=torch.float64).clone() for k in _STATE_KEYS}
        for k, v in state.items():
            want = self.state[k].shape
            if tuple(v.shape) != tuple(want):
                raise ValueError(f"FeatureExtractor state {k!r} has shape {tuple(v.shape)}, expected {tuple(want)}")
        self.state = state
        self.pretrained = state_dict["pretrained"]  # a resumed run keeps the feature its first part decided

    # -- update --------------------------------------------------------------------------------------------
    def update_values(self, x: dict, ok: bool, has_loss: bool, prior: float, prev_delta: float) -> list[float]:
        """One run in Python floats: ``x`` maps :data:`_SIGNAL_FLOATS` to floats; returns the ``F`` features."""
        new, feats = _step(self._values, x, ok, has_loss, prior, prev_delta, self._T, self._tau_f, self._tau_s,
                           self._pretrained_value, _SCALAR)  # fmt: skip
        self._values = new
        return feats

    @torch.no_grad()
    def update(self, signals: Signals, prior, prev_delta) -> torch.Tensor:
        """The ``[B, F]`` float32 features of this step (see :meth:`update_values` for one run, in floats)."""
        if self.scalar:
            x, has_loss = signals.run_values()
            ok = finite_values(x, has_loss)
            prior = float(torch.as_tensor(prior).reshape(-1)[0])
            prev_delta = float(torch.as_tensor(prev_delta).reshape(-1)[0])
            return torch.tensor([self.update_values(x, ok, has_loss, prior, prev_delta)], dtype=torch.float32)
        o = _TENSOR
        x = {k: torch.as_tensor(getattr(signals, k), dtype=torch.float64).reshape(-1) for k in _SIGNAL_FLOATS}
        has_loss = torch.as_tensor(signals.has_loss).reshape(-1).bool()
        ok = signals.finite().reshape(-1)
        prior = torch.as_tensor(prior, dtype=torch.float64).reshape(-1).expand(self.batch_size)
        prev_delta = torch.as_tensor(prev_delta, dtype=torch.float64).reshape(-1).expand(self.batch_size)
        new, feats = _step(self.state, x, ok, has_loss, prior, prev_delta, self.T, self.tau_f, self.tau_s,
                           self._pretrained, o)  # fmt: skip
        self.state = new
        return feats.float()


def _step(s: dict, x: dict, ok, has_loss, prior, prev_delta, T, tau_f, tau_s, pretrained, o):
    """One step of the running statistics: ``(new state, features)``. The one implementation, for ``B`` runs as
    ``[B]`` tensors (``o`` = :data:`_TENSOR`) or one run as Python floats (``o`` = :data:`_SCALAR`, what the
    scheduler uses: a few microseconds instead of a hundred tensor operations)."""
    a_f, a_s = 1.0 / tau_f, 1.0 / tau_s
    where = o.where

    def keep(value, old, cond=ok):
        return where(cond, value, old)

    new = dict(s)
    new["t"] = s["t"] + 1.0
    new["nonfinite"] = s["nonfinite"] + a_f * (o.f(o.not_(ok)) - s["nonfinite"])
    # 0. The loss is read on a log scale. A loss of exactly 0 says nothing there: that step's loss is skipped.
    # A negative loss (a log-likelihood, a contrastive objective) has no log: from its first one the run reads the
    # gradient and optimizer statistics only, as a run without a loss does.
    loss = x["loss"]
    negative = o.or_(s["negative_loss"] > 0.5, o.and_(o.and_(ok, has_loss), loss < 0))
    new["negative_loss"] = o.f(negative)
    has_loss = o.and_(has_loss, o.not_(negative))
    use_loss = o.and_(o.and_(ok, has_loss), loss > 0)

    # 1. Loss statistics, in log units relative to the first loss.
    log_l = o.nan_to_num(o.log(o.clamp(o.abs(loss), _EPS, None)))
    # The divergence guard reads EMA_fast of the median of the last three log-losses: no single step (a loss of
    # 1e-30, one spike) moves its reference.
    n, p1, p2 = s["n_loss"], s["guard_prev1"], s["guard_prev2"]
    med = where(
        n >= 2, o.clamp(log_l, o.minimum(p1, p2), o.maximum(p1, p2)), where(n >= 1, o.maximum(log_l, p1), log_l)
    )
    new["guard_ema"] = keep(
        where(n == 0, med, s["guard_ema"] + a_f * (med - s["guard_ema"])), s["guard_ema"], use_loss
    )
    new["guard_prev2"] = keep(p1, p2, use_loss)
    new["guard_prev1"] = keep(log_l, p1, use_loss)
    # One outlier batch must not read as a trend (a ×1e6 loss raised the next LR ×5 before): from the fourth loss on,
    # the log-loss the learner's statistics read is clipped at the fast EMA plus the larger of four running standard
    # deviations and log 2, so a spike enters as at most that rise; the guard above still reads the raw loss.
    cap = s["ema_f"] + o.clamp(4.0 * o.sqrt(o.clamp(s["noise"], 0.0, None)), _SPIKE_FLOOR, None)
    spike = o.and_(n >= 3, log_l > cap)
    log_l = where(spike, cap, log_l)
    first = n == 0
    ema_f = where(first, log_l, s["ema_f"] + a_f * (log_l - s["ema_f"]))
    ema_s = where(first, log_l, s["ema_s"] + a_s * (log_l - s["ema_s"]))
    d = where(first, 0.0 * log_l, ema_f - s["ema_f"])
    new["log_l0"] = keep(where(first, log_l, s["log_l0"]), s["log_l0"], use_loss)
    new["ema_f_prev"] = keep(s["ema_f"], s["ema_f_prev"], use_loss)
    new["ema_f"] = keep(ema_f, s["ema_f"], use_loss)
    new["ema_s"] = keep(ema_s, s["ema_s"], use_loss)
    new["slope_f"] = keep(s["slope_f"] + a_f * (d - s["slope_f"]), s["slope_f"], use_loss)
    new["slope_s"] = keep(s["slope_s"] + a_s * (d - s["slope_s"]), s["slope_s"], use_loss)
    dev = log_l - ema_f
    new["noise"] = keep(s["noise"] + a_f * (dev * dev - s["noise"]), s["noise"], use_loss)
    # 2. Second order: observed loss change against the first-order prediction made one step earlier.
    have_prev = o.and_(use_loss, n > 0)
    clean_loss = where(spike, o.exp(cap), o.nan_to_num(loss))
    new["loss_change"] = keep(
        s["loss_change"] + a_s * ((clean_loss - s["prev_loss"]) - s["loss_change"]), s["loss_change"], have_prev
    )
    new["predicted_change"] = keep(
        s["predicted_change"] + a_s * (s["prev_pred"] - s["predicted_change"]), s["predicted_change"], have_prev
    )
    new["prev_loss"] = keep(clean_loss, s["prev_loss"], use_loss)
    new["prev_pred"] = keep(x["g_upd"], s["prev_pred"])
    new["n_loss"] = n + o.f(use_loss)

    # 3. Gradient statistics.
    log_g = o.nan_to_num(o.log(o.clamp(x["grad_norm"], _EPS, None)))
    first_g = s["n_grad"] == 0
    new["log_g0"] = keep(where(first_g, log_g, s["log_g0"]), s["log_g0"])
    new["g_f"] = keep(where(first_g, log_g, s["g_f"] + a_f * (log_g - s["g_f"])), s["g_f"])
    new["g_s"] = keep(where(first_g, log_g, s["g_s"] + a_s * (log_g - s["g_s"])), s["g_s"])
    cos = x["gm"] / o.clamp(o.sqrt(x["gg"] * x["mm"]), _EPS, None)
    new["cos"] = keep(where(first_g, cos, s["cos"] + a_f * (cos - s["cos"])), s["cos"])
    new["gg_f"] = keep(where(first_g, x["gg"], s["gg_f"] + a_f * (x["gg"] - s["gg_f"])), s["gg_f"])
    new["n_grad"] = s["n_grad"] + o.f(ok)

    # 4. The feature vector.
    v_ref = where(x["vv"] > 0, x["vv"], new["gg_f"])
    pred = new["predicted_change"]
    feats = [
        new["t"] / T,
        prior,
        new["ema_f"] - new["log_l0"],
        tau_f * new["slope_f"],
        tau_s * new["slope_s"],
        o.sqrt(o.clamp(new["noise"], 0.0, None)),
        log_g - new["g_s"],
        new["g_f"] - new["log_g0"],
        new["cos"],
        o.log10(o.clamp(o.sqrt(x["upd_sq"] / o.clamp(x["ww"], _EPS, None)), _EPS, None)) + 3.0,
        new["loss_change"] / where(o.abs(pred) > _EPS, pred, 0.0 * pred - _EPS),
        o.log(o.clamp(x["mm"], _EPS, None) / o.clamp(v_ref, _EPS, None)),
        x["adaptive"],
        prev_delta,
        new["nonfinite"],
        o.f(o.not_(has_loss)),
        pretrained,
    ]
    # clipped; without a loss the loss features are neutral rather than stale; without visible gradients (a sharded
    # backend that keeps them out of ``param.grad``) the features read from them are off (0, as in the ablations);
    # runs whose signals are not finite keep their previous features.
    feats = o.finish(feats, has_loss, x["gg"] == 0, ok, s["last_features"])
    new["last_features"] = feats
    return new, feats


def _finish_tensor(feats, has_loss, no_grad, ok, last):
    B = ok.shape[0]
    f = torch.stack([torch.as_tensor(v, dtype=torch.float64).expand(B) for v in feats], dim=-1)
    f = f.nan_to_num(0.0, posinf=FEATURE_CLIP, neginf=-FEATURE_CLIP).clamp(-FEATURE_CLIP, FEATURE_CLIP)
    f[:, _LOSS_COLS] = torch.where(has_loss[:, None], f[:, _LOSS_COLS], torch.zeros_like(f[:, _LOSS_COLS]))
    f[:, _OPTIMIZER_COLS] = torch.where(
        no_grad[:, None], torch.zeros_like(f[:, _OPTIMIZER_COLS]), f[:, _OPTIMIZER_COLS]
    )
    return torch.where(ok[:, None], f, last)


def _finish_scalar(feats, has_loss, no_grad, ok, last):
    if not ok:
        return list(last)
    out = []
    for i, v in enumerate(feats):
        v = 0.0 if v != v else (FEATURE_CLIP if v > FEATURE_CLIP else -FEATURE_CLIP if v < -FEATURE_CLIP else v)
        if (not has_loss and i in _LOSS_COL_SET) or (no_grad and i in _OPTIMIZER_COL_SET):
            v = 0.0
        out.append(v)
    return out


class _TensorOps(TensorOps):
    """``_step`` on ``[B]`` float64 tensors."""

    finish = staticmethod(_finish_tensor)


class _ScalarOps(ScalarOps):
    """``_step`` on one run's Python floats."""

    finish = staticmethod(_finish_scalar)


_TENSOR, _SCALAR = _TensorOps(), _ScalarOps()


_OPTIMIZER_COLS = [
    FEATURE_NAMES.index(n) for n in ("grad_momentum_cos", "update_ratio", "curvature_ratio", "grad_snr")
]
_SPIKE_FLOOR = math.log(2.0)  # the least rise over the fast EMA that the loss statistics read as a spike
_LOSS_COLS = [FEATURE_NAMES.index(n) for n in FEATURE_GROUPS["loss"] + ("curvature_ratio",)]
_LOSS_COL_SET, _OPTIMIZER_COL_SET = frozenset(_LOSS_COLS), frozenset(_OPTIMIZER_COLS)
