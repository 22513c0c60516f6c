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

from dataclasses import dataclass, fields

import torch

from .reader import SignalReader, optimizer_signals  # re-exported: the reader lived here

__all__ = [
    "FEATURE_CLIP",
    "FEATURE_GROUPS",
    "FEATURE_NAMES",
    "SCHEMA_VERSION",
    "FeatureExtractor",
    "Signals",
    "feature_mask",
    "SignalReader",
    "optimizer_signals",
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


@dataclass
class Signals:
    """Raw per-step signals of ``B`` runs, each a float tensor of shape ``[B]``.

    ``loss`` is ``nan`` where no loss was observed and ``has_loss`` is False there. The sums are over all
    parameters (and, under data parallelism, already reduced across ranks).
    """

    loss: torch.Tensor
    has_loss: torch.Tensor
    grad_norm: torch.Tensor  # ‖g‖ before clipping
    gg: torch.Tensor  # Σ g²            (after clipping: same direction as g·m)
    gm: torch.Tensor  # Σ g·m
    mm: torch.Tensor  # Σ m²
    g_upd: torch.Tensor  # Σ g·Δw   (≤ 0 for a descent step)
    upd_sq: torch.Tensor  # Σ Δw²
    ww: torch.Tensor  # Σ w²
    vv: torch.Tensor  # Σ v  (0 when the optimizer keeps no second moment)
    adaptive: torch.Tensor  # 1 for Adam-family

    def to_vector(self) -> torch.Tensor:
        """``[B, S]`` float tensor (for one all-reduce across ranks)."""
        return torch.stack([getattr(self, f.name).to(torch.float64) for f in fields(self)], dim=-1)

    @classmethod
    def from_vector(cls, vec: torch.Tensor) -> Signals:
        cols = vec.unbind(-1)
        values = {f.name: c for f, c in zip(fields(cls), cols)}
        values["has_loss"] = values["has_loss"] > 0.5
        return cls(**values)

    @classmethod
    def nonfinite(cls, batch_size: int = 1) -> Signals:
        """Signals of a step that produced nothing usable (e.g. an optimizer step skipped on fp16 overflow)."""
        nan = torch.full((batch_size,), float("nan"), dtype=torch.float64)
        return cls(has_loss=torch.ones(batch_size, dtype=torch.bool), **{k: nan for k in _SIGNAL_FLOATS})

    def finite(self) -> torch.Tensor:
        """``[B]`` bool: the loss (where observed) and every gradient and optimizer statistic are finite."""
        ok = torch.isfinite(self.loss) | ~self.has_loss
        rest = torch.stack([torch.as_tensor(getattr(self, n), dtype=torch.float64) for n in _SIGNAL_FLOATS[1:]], -1)
        ok = ok & torch.isfinite(rest).all(-1)
        return ok


_STATE_KEYS = (
    "t",
    "n_loss",
    "log_l0",
    "ema_f",
    "ema_s",
    "ema_f_prev",
    "slope_f",
    "slope_s",
    "noise",
    "n_grad",
    "log_g0",
    "g_f",
    "g_s",
    "cos",
    "obs",
    "pred",
    "prev_loss",
    "prev_pred",
    "gg_f",
    "bad",
    "last",
)
# Added after the first release: a state written before them lacks them and starts them at 0.
_LATER_STATE_KEYS = ("negative_loss", "guard_prev1", "guard_prev2", "guard_ema")


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
        self, num_training_steps, batch_size: int = 1, fast: float = 0.02, slow: float = 0.1, pretrained=False
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
        self.state = {k: torch.zeros(self.batch_size, dtype=torch.float64) for k in _STATE_KEYS + _LATER_STATE_KEYS}
        self.state["last"] = torch.zeros(self.batch_size, len(FEATURE_NAMES), dtype=torch.float64)
        self.pretrained = pretrained

    @property
    def pretrained(self) -> torch.Tensor:
        return self._pretrained

    @pretrained.setter
    def pretrained(self, value) -> None:
        self._pretrained = torch.as_tensor(value, dtype=torch.float64).reshape(-1).expand(self.batch_size).clone()

    # -- persistence ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{k: v.clone() for k, v in self.state.items()}, "pretrained": self._pretrained.clone()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        missing = set(_STATE_KEYS) - set(state_dict)
        if missing:
            raise KeyError(f"FeatureExtractor state is missing {sorted(missing)}")
        state = {k: torch.as_tensor(state_dict[k], dtype=torch.float64).clone() for k in _STATE_KEYS}
        for k in _LATER_STATE_KEYS:
            state[k] = torch.as_tensor(state_dict.get(k, self.state[k]), dtype=torch.float64).clone()
        for k, v in state.items():
            want = self.state[k].shape
            if tuple(v.shape) != tuple(want) and not (k == "last" and v.shape[:-1] == want[:-1]):
                raise ValueError(f"FeatureExtractor state {k!r} has shape {tuple(v.shape)}, expected {tuple(want)}")
        last = state["last"]
        if last.shape[-1] < len(FEATURE_NAMES):  # written before the newest features existed
            pad = last.new_zeros(*last.shape[:-1], len(FEATURE_NAMES) - last.shape[-1])
            state["last"] = torch.cat([last, pad], -1)
        self.state = state
        if "pretrained" in state_dict:  # a resumed run keeps its feature (states written before it existed lack it)
            self.pretrained = state_dict["pretrained"]

    # -- update --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, signals: Signals, prior: torch.Tensor, prev_delta: torch.Tensor) -> torch.Tensor:
        s = self.state
        f64 = {k: torch.as_tensor(getattr(signals, k), dtype=torch.float64).reshape(-1) for k in _SIGNAL_FLOATS}
        has_loss = torch.as_tensor(signals.has_loss).reshape(-1).bool()
        ok = signals.finite().reshape(-1)
        prior = torch.as_tensor(prior, dtype=torch.float64).reshape(-1).expand(self.batch_size)
        prev_delta = torch.as_tensor(prev_delta, dtype=torch.float64).reshape(-1).expand(self.batch_size)
        a_f, a_s = 1.0 / self.tau_f, 1.0 / self.tau_s

        def keep(new, old, where=ok):
            return torch.where(where, new, old)

        new = dict(s)
        new["t"] = s["t"] + 1.0
        new["bad"] = s["bad"] + a_f * ((~ok).double() - s["bad"])

        # 0. The loss is read on a log scale. A loss of exactly 0 says nothing there: that step's loss is skipped.
        # A negative loss (a log-likelihood, a contrastive objective) has no log: from its first one the run reads
        # the gradient and optimizer statistics only, as a run without a loss does.
        negative = s["negative_loss"].bool() | (ok & has_loss & (f64["loss"] < 0))
        new["negative_loss"] = negative.double()
        has_loss = has_loss & ~negative
        positive = f64["loss"] > 0

        # 1. Loss statistics, in log units relative to the first loss.
        use_loss = ok & has_loss & positive
        log_l = torch.log(f64["loss"].abs().clamp(min=_EPS)).nan_to_num(0.0)
        # The divergence guard reads EMA_fast of the median of the last three log-losses: no single step (a loss of
        # 1e-30, one spike) moves its reference.
        n = s["n_loss"]
        lo, hi = torch.minimum(s["guard_prev1"], s["guard_prev2"]), torch.maximum(s["guard_prev1"], s["guard_prev2"])
        med = torch.where(
            n >= 2, log_l.clamp(min=lo, max=hi), torch.where(n >= 1, torch.maximum(log_l, s["guard_prev1"]), log_l)
        )
        guard_ema = torch.where(n == 0, med, s["guard_ema"] + a_f * (med - s["guard_ema"]))
        new["guard_ema"] = keep(guard_ema, s["guard_ema"], use_loss)
        new["guard_prev2"] = keep(s["guard_prev1"], s["guard_prev2"], use_loss)
        new["guard_prev1"] = keep(log_l, s["guard_prev1"], use_loss)
        first = s["n_loss"] == 0
        ema_f = torch.where(first, log_l, s["ema_f"] + a_f * (log_l - s["ema_f"]))
        ema_s = torch.where(first, log_l, s["ema_s"] + a_s * (log_l - s["ema_s"]))
        d = torch.where(first, torch.zeros_like(log_l), ema_f - s["ema_f"])
        new["log_l0"] = keep(torch.where(first, log_l, s["log_l0"]), s["log_l0"], use_loss)
        new["ema_f_prev"] = keep(s["ema_f"], s["ema_f_prev"], use_loss)
        new["ema_f"] = keep(ema_f, s["ema_f"], use_loss)
        new["ema_s"] = keep(ema_s, s["ema_s"], use_loss)
        new["slope_f"] = keep(s["slope_f"] + a_f * (d - s["slope_f"]), s["slope_f"], use_loss)
        new["slope_s"] = keep(s["slope_s"] + a_s * (d - s["slope_s"]), s["slope_s"], use_loss)
        new["noise"] = keep(s["noise"] + a_f * ((log_l - ema_f) ** 2 - s["noise"]), s["noise"], use_loss)
        # 2. Second order: observed loss change against the first-order prediction made one step earlier.
        have_prev = use_loss & (s["n_loss"] > 0)
        obs = f64["loss"].nan_to_num(0.0) - s["prev_loss"]
        new["obs"] = keep(s["obs"] + a_s * (obs - s["obs"]), s["obs"], have_prev)
        new["pred"] = keep(s["pred"] + a_s * (s["prev_pred"] - s["pred"]), s["pred"], have_prev)
        new["prev_loss"] = keep(f64["loss"].nan_to_num(0.0), s["prev_loss"], use_loss)
        new["prev_pred"] = keep(f64["g_upd"], s["prev_pred"], ok)
        new["n_loss"] = s["n_loss"] + use_loss.double()

        # 3. Gradient statistics.
        log_g = torch.log(f64["grad_norm"].clamp(min=_EPS)).nan_to_num(0.0)
        first_g = s["n_grad"] == 0
        new["log_g0"] = keep(torch.where(first_g, log_g, s["log_g0"]), s["log_g0"])
        new["g_f"] = keep(torch.where(first_g, log_g, s["g_f"] + a_f * (log_g - s["g_f"])), s["g_f"])
        new["g_s"] = keep(torch.where(first_g, log_g, s["g_s"] + a_s * (log_g - s["g_s"])), s["g_s"])
        cos = f64["gm"] / torch.sqrt(f64["gg"] * f64["mm"]).clamp(min=_EPS)
        new["cos"] = keep(torch.where(first_g, cos, s["cos"] + a_f * (cos - s["cos"])), s["cos"])
        new["gg_f"] = keep(torch.where(first_g, f64["gg"], s["gg_f"] + a_f * (f64["gg"] - s["gg_f"])), s["gg_f"])
        new["n_grad"] = s["n_grad"] + ok.double()

        # 4. The feature vector.
        v_ref = torch.where(f64["vv"] > 0, f64["vv"], new["gg_f"])
        feats = torch.stack(
            [
                new["t"] / self.T,
                prior,
                new["ema_f"] - new["log_l0"],
                self.tau_f * new["slope_f"],
                self.tau_s * new["slope_s"],
                new["noise"].clamp(min=0).sqrt(),
                log_g - new["g_s"],
                new["g_f"] - new["log_g0"],
                new["cos"],
                torch.log10(torch.sqrt(f64["upd_sq"] / f64["ww"].clamp(min=_EPS)).clamp(min=_EPS)) + 3.0,
                new["obs"] / torch.where(new["pred"].abs() > _EPS, new["pred"], torch.full_like(new["pred"], -_EPS)),
                torch.log(f64["mm"].clamp(min=_EPS) / v_ref.clamp(min=_EPS)),
                f64["adaptive"],
                prev_delta,
                new["bad"],
                (~has_loss).double(),
                self.pretrained,
            ],
            dim=-1,
        )
        feats = feats.nan_to_num(0.0, posinf=FEATURE_CLIP, neginf=-FEATURE_CLIP).clamp(-FEATURE_CLIP, FEATURE_CLIP)
        # Without a loss, the loss features are neutral rather than stale.
        loss_cols = [FEATURE_NAMES.index(n) for n in FEATURE_GROUPS["loss"] + ("curvature_ratio",)]
        feats[:, loss_cols] = torch.where(
            has_loss[:, None], feats[:, loss_cols], torch.zeros_like(feats[:, loss_cols])
        )
        # Without visible gradients (a sharded backend that keeps them out of ``param.grad``), the features read
        # from the gradient and the optimizer state are switched off: 0, the value the ablations use.
        no_grad = f64["gg"] == 0
        feats[:, _OPTIMIZER_COLS] = torch.where(
            no_grad[:, None], torch.zeros_like(feats[:, _OPTIMIZER_COLS]), feats[:, _OPTIMIZER_COLS]
        )
        # Non-finite runs kept their statistics above; they also keep their previous features.
        feats = torch.where(ok[:, None], feats, s["last"])
        new["last"] = feats
        self.state = new
        return feats.float()


_OPTIMIZER_COLS = [
    FEATURE_NAMES.index(n) for n in ("grad_momentum_cos", "update_ratio", "curvature_ratio", "grad_snr")
]
_SIGNAL_FLOATS = ("loss", "grad_norm", "gg", "gm", "mm", "g_upd", "upd_sq", "ww", "vv", "adaptive")
