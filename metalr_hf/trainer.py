"""``transformers.Trainer`` integration: ``MetaTrainingArguments`` and ``MetaTrainer`` (the callback that feeds the
scheduler is in :mod:`metalr_hf.callback`)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import SchedulerType
from transformers.utils.generic import ExplicitEnum

from .callback import (
    MetaLRCallback,
    _add_meta_logs,
    _check_grad_norm_hook,
    _report_grad_norm,
    _report_loss,
)
from .integration import get_scheduler
from .options import MetaSchedulerOptions
from .scheduler import META_SCHEDULER_KWARGS, MetaLRScheduler

__all__ = ["MetaSchedulerType", "MetaTrainer", "MetaTrainingArguments", "VALID_SCHEDULER_NAMES"]

logger = logging.getLogger(__name__)


class MetaSchedulerType(ExplicitEnum):
    """``"meta"`` as an enum member, so that code reading ``args.lr_scheduler_type.value`` (model cards, logs,
    ``to_dict``) works as for every stock scheduler."""

    META = "meta"


VALID_SCHEDULER_NAMES = tuple(sorted([s.value for s in SchedulerType] + [MetaSchedulerType.META.value]))


def _scheduler_name(value) -> str:
    return str(getattr(value, "value", value))


@dataclass
class MetaTrainingArguments(TrainingArguments):
    """``TrainingArguments`` that also accept ``lr_scheduler_type="meta"``.

    Everything else is unchanged. With ``"meta"``, ``lr_scheduler_kwargs`` takes the options of
    :class:`MetaLRScheduler`: ``meta_learner`` (folder or Hub repo id; unset = the bundled default), ``revision``,
    ``prior``, ``min_lr_ratio``, ``guard``, ... (unknown keys are rejected here, before training starts).

    ```bash
    python train.py --lr_scheduler_type meta --lr_scheduler_kwargs '{"meta_learner": "org/learner", "revision": "v1"}'
    ```
    """

    lr_scheduler_type: str = field(
        default="linear",
        metadata={
            "help": "The learning rate scheduler: 'meta' (the meta-learned scheduler of metalr-hf) or any "
            f"transformers scheduler. Valid: {', '.join(VALID_SCHEDULER_NAMES)}."
        },
    )

    def __post_init__(self):
        name = _scheduler_name(self.lr_scheduler_type)
        if name not in VALID_SCHEDULER_NAMES:
            raise ValueError(f"Unknown lr_scheduler_type {name!r}; valid names: {list(VALID_SCHEDULER_NAMES)}")
        is_meta = name == MetaSchedulerType.META.value
        if is_meta:
            self.lr_scheduler_type = SchedulerType.LINEAR  # let the parent validate everything else
        super().__post_init__()
        if is_meta:
            self.lr_scheduler_type = MetaSchedulerType.META
            self._validate_meta_kwargs()

    def _validate_meta_kwargs(self):
        kwargs = self.lr_scheduler_kwargs
        if kwargs is None or kwargs == {}:
            self.lr_scheduler_kwargs = {}
            return
        if isinstance(kwargs, str):  # a JSON file path, as transformers allows for dict fields
            if not os.path.isfile(kwargs):
                raise ValueError(f"lr_scheduler_kwargs {kwargs!r} is neither a JSON object nor a JSON file")
            with open(kwargs) as f:
                kwargs = self.lr_scheduler_kwargs = json.load(f)
        check_meta_kwargs(kwargs)

    def set_lr_scheduler(self, name="linear", **kwargs):
        """As in ``TrainingArguments``, with ``"meta"`` accepted."""
        if _scheduler_name(name) == MetaSchedulerType.META.value:
            super().set_lr_scheduler("linear", **kwargs)
            self.lr_scheduler_type = MetaSchedulerType.META
            return self
        return super().set_lr_scheduler(name, **kwargs)


def check_meta_kwargs(kwargs) -> MetaSchedulerOptions:
    """``lr_scheduler_kwargs`` of a ``Trainer`` with ``lr_scheduler_type="meta"``, checked before training starts:
    ``ValueError`` for an unknown key, a bad value or a Hub token (training arguments are logged and pickled)."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"lr_scheduler_kwargs must be a dict for lr_scheduler_type='meta', got {kwargs!r}")
    if "token" in kwargs:
        raise ValueError(
            "lr_scheduler_kwargs must not hold a Hub 'token': training arguments are logged by every tracker "
            "and pickled into each checkpoint's training_args.bin. Log in with `hf auth login` or set HF_TOKEN; "
            "the learner is downloaded with that login."
        )
    unknown = sorted(set(kwargs) - set(META_SCHEDULER_KWARGS))
    if unknown:
        raise ValueError(
            f"Unknown key(s) {unknown} in lr_scheduler_kwargs for lr_scheduler_type='meta'; "
            f"valid keys: {sorted(META_SCHEDULER_KWARGS)}"
        )
    try:
        return MetaSchedulerOptions(**kwargs)
    except ValueError as e:
        raise ValueError(f"lr_scheduler_kwargs for lr_scheduler_type='meta': {e}") from None


class MetaTrainer(Trainer):
    """A ``transformers.Trainer`` that understands ``lr_scheduler_type="meta"``.

    It builds a :class:`MetaLRScheduler` in ``create_scheduler`` (every stock scheduler name still works), adds a
    :class:`MetaLRCallback` itself, reports the exact step loss and pre-clipping gradient norm to it, puts the
    scheduler's decisions in the training logs, and tags the model card with the learner it used.

    ```python
    args = MetaTrainingArguments("out", lr_scheduler_type="meta", max_steps=1000)
    trainer = MetaTrainer(model=model, args=args, train_dataset=train_ds)
    trainer.train()
    ```
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        callbacks = [cb for cb in self.callback_handler.callbacks if isinstance(cb, MetaLRCallback)]
        if not callbacks:
            self.add_callback(MetaLRCallback())
            callbacks = [cb for cb in self.callback_handler.callbacks if isinstance(cb, MetaLRCallback)]
        self._meta_callback = callbacks[0]
        self._meta_callback.fed_by_trainer = True
        _check_grad_norm_hook()

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None and _scheduler_name(self.args.lr_scheduler_type) == MetaSchedulerType.META.value:
            self.lr_scheduler = get_scheduler(
                "meta",
                optimizer=optimizer if optimizer is not None else self.optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
            )
            self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        _report_loss(self, self._meta_callback, loss)
        return loss

    def _get_grad_norm(self, *args, **kwargs):
        grad_norm = super()._get_grad_norm(*args, **kwargs)
        _report_grad_norm(self._meta_callback, grad_norm)
        return grad_norm

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        _add_meta_logs(self, self._meta_callback, logs)
        super().log(logs, *args, **kwargs)

    def meta_learner_info(self) -> dict | None:
        """Which learner (name, revision, fingerprint) drove this run, or ``None``."""
        if not isinstance(self.lr_scheduler, MetaLRScheduler):
            return None
        learner = self.lr_scheduler.learner
        return {**learner.source, "fingerprint": learner.fingerprint()}

    def create_model_card(self, *args, **kwargs):
        info = self.meta_learner_info()
        if info is None:
            return super().create_model_card(*args, **kwargs)
        tags = kwargs.get("tags") or []
        tags = [tags] if isinstance(tags, str) else list(tags)
        kwargs["tags"] = tags + [t for t in ("metalr-hf", "meta-lr") if t not in tags]
        super().create_model_card(*args, **kwargs)
        path = os.path.join(self.args.output_dir, "README.md")
        if self.is_world_process_zero() and os.path.isfile(path):
            with open(path, "a", encoding="utf-8") as f:
                f.write(
                    "\n## Learning-rate schedule\n\nTrained with the meta-learned scheduler of "
                    "[metalr-hf](https://github.com/metalr-hf/metalr-hf) (`--lr_scheduler_type meta`): "
                    f"meta-learner `{info.get('name_or_path')}`, revision `{info.get('revision') or 'local'}`, "
                    f"fingerprint `{info['fingerprint']}`.\n"
                )
