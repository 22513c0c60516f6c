"""``MetaLRCallback``: what feeds a :class:`~metalr_hf.scheduler.MetaLRScheduler` inside a ``Trainer`` — the horizon,
whether the run is pretrained, the loss and pre-clipping gradient norm of every optimizer step — and logs what it
decides. :func:`feed_from_trainer` wires it into a Trainer (``MetaTrainer`` and ``enable()`` both use it)."""

from __future__ import annotations

import logging
import math
import os

import torch
from transformers import Trainer, TrainerCallback

from ._log import package_logger, warn
from .layouts import zero_optimizer
from .pretrained_weights import infer_pretrained
from .scheduler import MetaLRScheduler, scalar_f32
from .scheduler_checks import eval_value

__all__ = ["MetaLRCallback", "feed_from_trainer"]

logger = logging.getLogger(__name__)


def _follow_log_level(args) -> None:
    """The ``metalr_hf`` loggers at ``--log_level`` (main process) or ``--log_level_replica`` (the others), as the
    Trainer sets transformers' own; ``passive`` (the main process's default) leaves them as they are."""
    from transformers.training_args import trainer_log_levels

    level = trainer_log_levels.get(args.log_level if args.should_log else args.log_level_replica, -1)
    if level != -1:
        package_logger().setLevel(level)


class MetaLRCallback(TrainerCallback):
    """Feeds a :class:`MetaLRScheduler` the signals of each optimizer step and logs what it decides.

    At every optimizer step ``t`` it hands the scheduler

    - ``ℓ_t``, the loss of the step: the mean over its gradient-accumulation micro-batches, exactly the loss the
      Trainer logs (a ``MetaTrainer`` reports it from ``training_step``; in a stock ``Trainer`` a forward hook on
      the model reads ``outputs.loss``, summed when the model normalises by ``num_items_in_batch``, else averaged);
    - ``‖g_t‖``, the gradient norm before clipping (``MetaTrainer``; a stock ``Trainer`` gives the scheduler only
      the clipped gradients, from which it reads the norm itself).

    The scheduler reduces these over all ranks before its learner sees them, so every rank sets the same LR. After
    each evaluation during training it hands the scheduler ``eval_loss`` (or ``metric_for_best_model``, negated
    where ``greater_is_better``: the same on every rank) for its ``eval_patience`` option.
    It adds ``meta/lr_scale`` (``exp(δ)·b·γ``, the factor on the prior) and ``meta/delta`` (``δ``) to every training
    log, before the trackers (TensorBoard, W&B, MLflow, ``log_history``) receive it; with ``log_features`` also
    ``meta/backoff``, ``meta/guard`` and one ``meta/feature/<name>`` per feature. A scheduler built with
    ``num_training_steps=None`` gets its horizon from the Trainer (``max_steps``, or epochs × steps per epoch).

    Args:
        log_features (`bool`, *optional*): also log the features, the back-off and the guard. Unset: the
            scheduler's ``log_features`` option (default False).

    Example:

    ```python
    scheduler = MetaLRScheduler(optimizer)  # the horizon comes from the Trainer
    trainer = Trainer(model, args, train_dataset=ds, optimizers=(optimizer, scheduler), callbacks=[MetaLRCallback()])
    ```
    """

    def __init__(self, log_features: bool | None = None):
        if log_features is not None and not isinstance(log_features, bool):
            raise ValueError(f"log_features must be true, false or None, got {log_features!r}")
        self.log_features = log_features
        self.fed_by_trainer = False  # set by MetaTrainer, which reports losses and grad norms itself
        self._losses: list[torch.Tensor] = []
        self._scaled: list[bool] = []
        self._grad_norm = None
        self._hook = None
        self._epoch_at_observe = None
        self._scheduler: MetaLRScheduler | None = None
        self._step_meta: dict[str, float] | None = None
        self._training = False

    # -- signal sources ------------------------------------------------------------------------------------
    def add_loss(self, loss: torch.Tensor, scaled_for_accumulation: bool = True) -> None:
        """Record the loss of one micro-batch (``scaled_for_accumulation``: micro-batch losses sum to the step's)."""
        self._losses.append(scalar_f32(loss))
        self._scaled.append(scaled_for_accumulation)

    def set_grad_norm(self, grad_norm) -> None:
        self._grad_norm = grad_norm

    def _forward_hook(self, module, args, kwargs, output):
        if not module.training or not torch.is_grad_enabled():
            return
        if isinstance(output, dict):
            loss = output.get("loss")
        elif isinstance(output, (tuple, list)) and output:  # as the Trainer reads a tuple: the loss first
            loss = output[0] if torch.is_tensor(output[0]) and output[0].dim() == 0 else None
        else:
            loss = getattr(output, "loss", None)
        if torch.is_tensor(loss) and loss.is_floating_point():
            self.add_loss(loss, scaled_for_accumulation=kwargs.get("num_items_in_batch") is not None)

    def step_loss(self) -> torch.Tensor | None:
        if not self._losses:
            return None
        if len(self._losses) == 1:
            return self._losses[0]
        stacked = torch.stack(self._losses)
        return stacked.sum() if all(self._scaled) else stacked.mean()

    # -- events --------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
        _follow_log_level(args)
        self._scheduler = lr_scheduler if isinstance(lr_scheduler, MetaLRScheduler) else None
        self._training = True
        if self._scheduler is None:
            logger.info("MetaLRCallback: the scheduler is not a MetaLRScheduler; the callback does nothing.")
            return
        zero = zero_optimizer(kwargs.get("optimizer"))
        if zero is not None:  # --deepspeed: the scheduler was built on the torch optimizer ZeRO wrapped since
            self._scheduler.attach_zero(zero)
        resumed_elsewhere = state.global_step > 0 and self._scheduler.num_training_steps != state.max_steps
        if self._scheduler.controller is None or (state.max_steps > 0 and resumed_elsewhere):
            # built with num_training_steps=None, or resumed with another horizon: the Trainer's is the run's
            self._scheduler.set_num_training_steps(state.max_steps)
        if not self.fed_by_trainer and model is not None and self._hook is None:
            self._hook = model.register_forward_hook(self._forward_hook, with_kwargs=True)
            self._scheduler.no_loss_hint = (
                "MetaLRCallback reads the loss from the model's outputs (`outputs.loss`, or the first element of a "
                "tuple), and this model's carry none: it returns no loss, or the Trainer computes the loss outside "
                "the model (label_smoothing_factor, compute_loss_func). Use MetaTrainer, which reads the loss the "
                "Trainer computes."
            )
        if not self.fed_by_trainer and [r for r in (args.report_to or []) if r != "none"]:
            warn(
                logger,
                "MetaLRCallback in a stock Trainer: the meta/* values reach log_history, not the trackers "
                f"({', '.join(args.report_to)}), which the Trainer calls before a user's callbacks. Call "
                "metalr_hf.enable() before building the Trainer, or use MetaTrainer, to log them everywhere.",
            )
        if state.global_step > 0 and self._scheduler.last_epoch == 0:
            # transformers restores scheduler.pt (and optimizer.pt) only when both exist, silently otherwise
            checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            raise ValueError(
                f"Resuming at step {state.global_step}, but the MetaLRScheduler state was not restored: the "
                f"checkpoint ({checkpoint}?) lacks scheduler.pt or optimizer.pt, and the meta schedule would restart "
                "from step 0 with a fresh optimizer. Resume from a complete checkpoint, or start a new run."
            )
        if not self._scheduler.pretrained_given and model is not None:  # lr_scheduler_kwargs did not say
            self._scheduler.set_pretrained(infer_pretrained(model))  # with the default learner: picks one of the pair
        source = self._scheduler.learner.source
        warn(
            logger,
            f"metalr-hf: meta-learner {source.get('name_or_path')} (revision {source.get('revision') or 'local'}, "
            f"fingerprint {self._scheduler.learner.fingerprint()}), prior {self._scheduler.controller.run_prior()}, "
            f"{'fine-tuning' if self._scheduler.opts.pretrained else 'from-scratch'} run",
        )

    def on_step_begin(self, args, state, control, **kwargs):
        self._losses, self._scaled, self._grad_norm = [], [], None

    def on_optimizer_step(self, args, state, control, lr_scheduler=None, **kwargs):
        if self._scheduler is None:
            return
        loss = self.step_loss()
        if loss is not None:
            self._scheduler.observe(loss, grad_norm=self._grad_norm)
        self._epoch_at_observe = self._scheduler.last_epoch
        # the factor of the LR this step took (the Trainer logs this step's `learning_rate`, read before the
        # scheduler's step): logged beside it, not the next step's
        self._step_meta = self.meta_logs()

    def on_step_end(self, args, state, control, **kwargs):
        # An optimizer step skipped by the Trainer (fp16 overflow) never calls scheduler.step(): count it as a
        # non-finite step so that the learner never sees it and the LR backs off.
        if self._scheduler is not None and self._scheduler.last_epoch == self._epoch_at_observe:
            self._scheduler.skip_step()
        self._losses, self._scaled, self._grad_norm = [], [], None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # The Trainer's evaluation, for ``eval_patience``: its ``metric_for_best_model`` when set (negated where
        # greater is better), else ``eval_loss``. Every rank gets the same metrics (the Trainer gathers them).
        if self._scheduler is None or not metrics or not self._training:
            return  # no meta scheduler, or an evaluation after (outside) training
        name = args.metric_for_best_model or "loss"
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            return  # another eval dataset's metrics (``eval_<name>_loss``), or none: nothing to compare
        sign = -1 if args.metric_for_best_model and args.greater_is_better else 1
        # ``eval_gap`` compares the eval *loss* with the training loss: never another metric (NaN: no reading)
        loss = None if key == "eval_loss" else eval_value(metrics.get("eval_loss", math.nan))
        self._scheduler.observe_eval(sign * eval_value(metrics[key]), loss=loss)

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def step_meta_logs(self) -> dict[str, float]:
        """:meth:`meta_logs` of the last optimizer step, the one whose ``learning_rate`` the Trainer logs."""
        return self._step_meta if self._step_meta is not None else self.meta_logs()

    def meta_logs(self) -> dict[str, float]:
        if self._scheduler is None:
            return {}
        c = self._scheduler.controller
        logs = {"meta/lr_scale": self._scheduler.last_scale, "meta/delta": float(c.delta[0])}
        log_features = self._scheduler.opts.log_features if self.log_features is None else self.log_features
        if log_features:
            logs.update({"meta/backoff": float(c.backoff[0]), "meta/guard": float(c.guard_scale[0])})
            logs.update({f"meta/feature/{k}": v for k, v in self._scheduler.features_dict().items()})
        return logs

    def on_log(self, args, state, control, logs=None, **kwargs):
        # A stock Trainer has appended a copy of `logs` to `log_history` already, and calls the callbacks with the
        # `logs` dict itself: this callback runs first (see `_run_before_the_trackers`), so the trackers get the
        # values through it, and the copy in `log_history` is completed here. MetaTrainer adds them in `log`.
        if logs is not None and "loss" in logs and not self.fed_by_trainer:
            meta = self.step_meta_logs()
            logs.update(meta)
            last = state.log_history[-1] if state.log_history else None
            if last is not None and last.get("step") == state.global_step and last.get("loss") == logs["loss"]:
                last.update(meta)


def _report_loss(trainer, callback: MetaLRCallback, loss) -> None:
    if isinstance(trainer.lr_scheduler, MetaLRScheduler):
        callback.add_loss(loss)  # scaled by the Trainer: micro-batch losses sum to the step loss


def _report_grad_norm(callback: MetaLRCallback, grad_norm) -> None:
    if grad_norm is not None:
        callback.set_grad_norm(grad_norm)


def _add_meta_logs(trainer, callback: MetaLRCallback, logs: dict) -> None:
    if "loss" in logs and isinstance(trainer.lr_scheduler, MetaLRScheduler):
        logs.update(callback.step_meta_logs())


def _check_grad_norm_hook() -> None:
    """transformers before 5 has no ``Trainer._get_grad_norm``: the norm before clipping cannot be read."""
    if not hasattr(Trainer, "_get_grad_norm"):
        import transformers

        warn(
            logger,
            f"transformers {transformers.__version__} has no Trainer._get_grad_norm: the meta scheduler reads the "
            "gradient norm after clipping (max_grad_norm), not before. transformers >= 5 gives it the norm before.",
        )


def feed_from_trainer(trainer: Trainer) -> MetaLRCallback:
    """For a Trainer that is not a :class:`MetaTrainer` (a stock one, trl's ``SFTTrainer``) whose scheduler is a
    :class:`MetaLRScheduler` (``metalr_hf.enable()`` calls this from ``create_scheduler``): what ``MetaTrainer`` does
    by subclassing, on this instance. Its :class:`MetaLRCallback` (the one given, or a new one) goes first in the
    callback list, and it gets the loss ``training_step`` returns (on every loss path: label smoothing,
    ``compute_loss_func``, a model returning a tuple), the gradient norm before clipping, and adds the meta values
    to the logs before the trackers receive them."""
    callbacks = trainer.callback_handler.callbacks
    callback = next((cb for cb in callbacks if isinstance(cb, MetaLRCallback)), None) or MetaLRCallback()
    if callback in callbacks:
        callbacks.remove(callback)
    callbacks.insert(0, callback)
    from .trainer import MetaTrainer  # imports this module: imported here

    if isinstance(trainer, MetaTrainer) or callback.fed_by_trainer:
        return callback
    callback.fed_by_trainer = True
    training_step, log, get_grad_norm = trainer.training_step, trainer.log, getattr(trainer, "_get_grad_norm", None)

    def fed_training_step(*args, **kwargs):
        loss = training_step(*args, **kwargs)
        _report_loss(trainer, callback, loss)
        return loss

    def fed_log(logs, *args, **kwargs):
        _add_meta_logs(trainer, callback, logs)
        return log(logs, *args, **kwargs)

    def fed_get_grad_norm(*args, **kwargs):
        grad_norm = get_grad_norm(*args, **kwargs)
        _report_grad_norm(callback, grad_norm)
        return grad_norm

    trainer.training_step, trainer.log = fed_training_step, fed_log
    if get_grad_norm is not None:
        trainer._get_grad_norm = fed_get_grad_norm
    else:
        _check_grad_norm_hook()
    return callback
