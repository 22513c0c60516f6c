"""What ``MetaLRScheduler`` accepts: horizons, param-group LRs, signals, and the states it loads. Each check raises
an error that names the culprit; nothing is half-applied."""

from __future__ import annotations

import math

import torch

from .options import (
    TRUST_FLOOR,
    check_eval_cut,
    check_eval_gap,
    check_eval_overfit,
    check_eval_trust,
    check_prior,
    check_smoothing,
)


def is_count(value) -> bool:
    """A whole number (an int, or a float/0-d tensor that is one), not a bool."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        return False
    try:
        f = float(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return math.isfinite(f) and f == int(f)


def check_group_lrs(optimizer) -> None:
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


def check_horizon(num_training_steps) -> None:
    if not is_count(num_training_steps) or int(num_training_steps) <= 0:
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


def is_number_like(value, scalar: bool = False) -> bool:
    """A real number, or real numbers (``scalar``: exactly one), that ``torch.as_tensor`` takes."""
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return not t.is_complex() and t.dtype != torch.bool and (not scalar or t.numel() == 1)


_STATE_KEYS = {
    "last_epoch", "_step_count", "base_lrs", "_last_lr", "num_training_steps", "num_warmup_steps", "options",
    "schema_version", "learner_fingerprint", "learner_source", "controller", "decision_lag", "held_signals",
    "held_step", "prior",
}  # fmt: skip
# Keys absent from checkpoints written before they existed, with the value such a run ran with.
PRE_OPTION_STATE = {"smoothing": 0.0, "eval_cut": 1.0, "eval_overfit": None, "eval_gap": None, "eval_trust": None}
_CONTROLLER_KEYS = {"extractor", "learner_state", "delta", "backoff", "guard_scale", "best", "features", "step_count"}


def check_grad_norm(grad_norm) -> None:
    """``observe(grad_norm=...)``: one real number (a float or a one-element tensor), or a ``TypeError``."""
    if torch.is_tensor(grad_norm) and grad_norm.dim() == 0:
        return
    if isinstance(grad_norm, (str, bytes, bool)) or not is_number_like(grad_norm, scalar=True):
        raise TypeError(
            "MetaLRScheduler.observe(grad_norm=...) takes one real number (a float or a one-element "
            f"tensor: the norm of all gradients), got {grad_norm!r:.80}"
        )


def eval_value(value) -> float:
    """``observe_eval(value)``: one real number (a float or a one-element tensor) as a float, or a ``TypeError``
    naming it; NaN and inf are kept (they count as no improvement)."""
    if isinstance(value, (str, bytes, bool)) or value is None or not is_number_like(value, scalar=True):
        raise TypeError(f"MetaLRScheduler.observe_eval(value) takes one real number (a metric), got {value!r:.80}")
    if torch.is_tensor(value):
        return float(value.reshape(()))
    return float(torch.as_tensor(value, dtype=torch.float64).reshape(()))  # a Python float stays exact


def eval_hold_message(step: int, value: float, opts, controller) -> str:
    """What the scheduler logs when an evaluation starts ``eval_patience``'s hold (``controller``: one run)."""
    why = f"no new best evaluation in {opts.eval_patience} in a row (the last {value:.4g})"
    if float(controller.eval_locked[0]) and float(controller.eval_stale[0]) < controller.eval_hold_from:
        return (
            f"MetaLRScheduler, step {step}: the evaluation {value:.4g} brought no new best and lies over "
            f"{opts.eval_gap:g} (log) above the training loss: LR ≤ prior for the rest of the run"
        )
    if bool(controller.overfitting[0]):
        why = (
            f"the evaluation {value:.4g} lies over {opts.eval_overfit:g} (relative) above the best "
            f"({float(controller.eval_best[0]):.4g}) while the training loss fell since: overfitting"
        )
    return f"MetaLRScheduler, step {step}: {why}: LR ≤ prior / {opts.eval_cut:g} until a new best"


def eval_trust_message(step: int, value: float, loss, controller) -> str:
    """What the scheduler logs (INFO) when an evaluation engages ``eval_trust``: its ``loss`` (``value`` where
    none was given; ``controller``: one run)."""
    margin, loss = float(controller.eval_trust_margins()[0]), value if loss is None else loss
    return (
        f"MetaLRScheduler, step {step}: the eval loss {loss:.4g} improved on the best before it by more than "
        f"{margin:g} (log): no cut below {TRUST_FLOOR:g}× the prior until the next evaluation (eval_trust)"
    )


def loss_tensor(loss) -> torch.Tensor:
    """``observe(loss)``: the mean of a real number or tensor as a 0-d float32 tensor, or an error naming it."""
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
    return loss.mean()


def check_scheduler_state(state: dict, num_groups: int) -> None:
    """A scheduler state that is whole and fits this optimizer, or a ``ValueError`` that says what is wrong."""
    if not isinstance(state, dict):
        raise ValueError(f"A MetaLRScheduler state must be a dict, got {type(state).__name__}")
    missing, extra = sorted(_STATE_KEYS - set(state)), sorted(set(state) - _STATE_KEYS - set(PRE_OPTION_STATE))
    if missing or extra:
        raise ValueError(
            f"Not a MetaLRScheduler state of this version: missing keys {missing}, unexpected keys {extra}. "
            "Was it written by another scheduler, or truncated?"
        )
    controller = state["controller"]
    if not isinstance(controller, dict) or _CONTROLLER_KEYS - set(controller):
        have = sorted(controller) if isinstance(controller, dict) else type(controller).__name__
        raise ValueError(f"The scheduler state's 'controller' lacks {sorted(_CONTROLLER_KEYS)} (it holds {have})")
    checks = {"prior": check_prior, "smoothing": check_smoothing, "eval_cut": check_eval_cut,
              "eval_overfit": check_eval_overfit, "eval_gap": check_eval_gap,
              "eval_trust": check_eval_trust}  # fmt: skip
    for key, check in checks.items():
        try:
            check(state.get(key, PRE_OPTION_STATE.get(key)))
        except ValueError as e:
            raise ValueError(f"The scheduler state's {key!r} is damaged: {e}") from None
    for key in ("base_lrs", "_last_lr"):
        if len(state[key]) != num_groups:
            raise ValueError(
                f"The scheduler state holds {len(state[key])} {key} (one per param group) but this optimizer has "
                f"{num_groups} param groups: resume with the optimizer of the interrupted run."
            )
