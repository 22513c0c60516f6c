"""Prior schedules: pure functions ``multiplier(step, total, warmup) -> float in [0, 1]``.

The meta-learner never sets the learning rate from scratch: it outputs a bounded log-scale correction
``δ`` around one of these priors,

    lr(t) = base_lr · prior(t) · exp(δ_t),

so a learner that outputs ``δ = 0`` is exactly the prior. Every function here accepts Python numbers (and then
returns a float) or tensors (for a whole population at once, one horizon per run) and follows the conventions of
``transformers.get_scheduler``: linear warmup from 0 at step 0 to 1 at ``warmup``, then the decay.
"""

from __future__ import annotations

import math

import torch

__all__ = ["DECAY_FRACTION", "PRIORS", "constant", "cosine", "linear", "prior_multiplier", "wsd"]

DECAY_FRACTION = 0.2  # the share of a WSD run spent decaying, by default (transformers' examples: 0.1-0.2)


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def _numbers(*xs) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)


def _warmup_and_progress(step, total, warmup):
    """Return (warmup factor, decay progress in [0, 1]) for each run.

    1. During warmup the factor rises linearly from 0 at step 0 to 1 at ``warmup``.
    2. After it, progress runs from 0 (end of warmup) to 1 (the last step, ``total``).

    Python numbers in, Python floats out (one run, no tensor work); tensors otherwise.
    """
    if _numbers(step, total, warmup):
        warm = min(step / max(warmup, 1.0), 1.0) if warmup > 0 else 1.0
        return warm, min(max((step - warmup) / max(total - warmup, 1.0), 0.0), 1.0)
    step, total, warmup = _as_tensor(step), _as_tensor(total), _as_tensor(warmup)
    warm = torch.where(warmup > 0, torch.clamp(step / warmup.clamp(min=1.0), max=1.0), torch.ones_like(step))
    progress = ((step - warmup) / (total - warmup).clamp(min=1.0)).clamp(0.0, 1.0)
    return warm, progress


def constant(step, total, warmup=0, **_) -> torch.Tensor:
    """Constant after a linear warmup (``constant_with_warmup`` in transformers)."""
    warm, _progress = _warmup_and_progress(step, total, warmup)
    return warm


def linear(step, total, warmup=0, min_lr_ratio: float = 0.0, **_) -> torch.Tensor:
    """Linear decay to ``min_lr_ratio`` at the last step (``linear`` in transformers for ``min_lr_ratio=0``)."""
    warm, progress = _warmup_and_progress(step, total, warmup)
    return warm * (min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress))


def cosine(step, total, warmup=0, min_lr_ratio: float = 0.0, **_) -> torch.Tensor:
    """Half-cosine decay to ``min_lr_ratio`` (``cosine`` in transformers for ``min_lr_ratio=0``)."""
    warm, progress = _warmup_and_progress(step, total, warmup)
    cos = math.cos(math.pi * progress) if isinstance(progress, float) else torch.cos(math.pi * progress)
    return warm * (min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + cos))


def wsd(step, total, warmup=0, min_lr_ratio: float = 0.0, decay_fraction: float = DECAY_FRACTION, **_) -> torch.Tensor:
    """Warmup-stable-decay: constant, then a linear decay to ``min_lr_ratio`` over the last ``decay_fraction``."""
    warm, progress = _warmup_and_progress(step, total, warmup)
    start = 1.0 - decay_fraction
    decay = (progress - start) / max(decay_fraction, 1e-12)
    decay = min(max(decay, 0.0), 1.0) if isinstance(decay, float) else decay.clamp(0.0, 1.0)
    return warm * (1.0 - (1.0 - min_lr_ratio) * decay)


PRIORS = {"constant": constant, "cosine": cosine, "linear": linear, "wsd": wsd}


def prior_multiplier(name: str, step, total, warmup=0, **kwargs) -> torch.Tensor:
    """The multiplier of prior ``name`` at ``step``; raises ``ValueError`` naming the valid priors."""
    if name not in PRIORS:
        raise ValueError(f"Unknown prior schedule {name!r}; valid priors: {sorted(PRIORS)}")
    return PRIORS[name](step, total, warmup, **kwargs)
