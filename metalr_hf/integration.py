"""``metalr_hf.enable()``: ``lr_scheduler_type="meta"`` in every transformers script of this process.

transformers has no registry of schedulers. ``enable()`` makes the smallest change that lets it accept one more
name, and ``disable()`` takes it back:

1. ``transformers.trainer_utils.SchedulerType`` gains the member ``META = "meta"``, so ``TrainingArguments``,
   ``HfArgumentParser`` (its ``--lr_scheduler_type`` choices and ``--help``) and ``transformers.get_scheduler`` accept
   the name;
2. ``transformers.optimization.TYPE_TO_SCHEDULER_FUNCTION`` maps it to :class:`~metalr_hf.MetaLRScheduler`, built
   with ``lr_scheduler_kwargs`` as its options (checked first: an unknown key or a Hub token is refused);
3. ``Trainer.create_scheduler`` attaches a :class:`~metalr_hf.MetaLRCallback` to a Trainer whose scheduler is a
   ``MetaLRScheduler`` (built from the name, or passed in ``optimizers``) and feeds it as ``MetaTrainer`` does
   (:func:`~metalr_hf.callback.feed_from_trainer`: the loss of ``training_step``, the gradient norm before clipping,
   the ``meta/*`` values in the logs that ``log_history``, TensorBoard, W&B and MLflow receive). It applies to every
   subclass that keeps ``Trainer.create_scheduler`` (trl's ``SFTTrainer``).

Every stock scheduler name behaves exactly as before. On a transformers version outside the tested range, or one
whose internals differ from what this relies on, ``enable()`` raises instead of misbehaving.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["disable", "enable", "get_scheduler", "is_enabled"]

# The transformers releases this integration was written against (the lower bound is the package's own).
TESTED_TRANSFORMERS = ("4.56", "6.0")  # CI: 4.56.2 (with accelerate 1.10.1) and 5.25
_UNTESTED_ENV = "METALR_HF_ALLOW_UNTESTED_TRANSFORMERS"
_saved: dict = {}


def is_enabled() -> bool:
    return bool(_saved)


def _meta_schedule(optimizer, num_warmup_steps=None, num_training_steps=None, **kwargs):
    """``TYPE_TO_SCHEDULER_FUNCTION["meta"]``: what ``transformers.get_scheduler`` calls for the name."""
    from .scheduler import MetaLRScheduler
    from .trainer import check_meta_kwargs

    check_meta_kwargs(kwargs)
    return MetaLRScheduler(
        optimizer, num_training_steps=num_training_steps, num_warmup_steps=num_warmup_steps or 0, **kwargs
    )


def meta_scheduler_type():
    """What a pickled ``SchedulerType.META`` (``lr_scheduler_type`` in the ``training_args.bin`` of a run under
    :func:`enable`) loads as: that member where ``enable()`` is on, else ``MetaSchedulerType.META`` (the enum of
    :class:`~metalr_hf.MetaTrainingArguments`, value ``"meta"``), so that an evaluation or export script that never
    called ``enable()`` can read the file."""
    if _saved:
        return _saved["member"]
    from .trainer import MetaSchedulerType

    return MetaSchedulerType.META


def _reduce_meta(protocol):
    return meta_scheduler_type, ()


def _check_transformers():
    import inspect

    import transformers
    from packaging.version import Version
    from transformers import optimization, trainer_utils

    version = Version(transformers.__version__)
    low, high = TESTED_TRANSFORMERS
    if not Version(low) <= version < Version(high) and os.environ.get(_UNTESTED_ENV) != "1":
        raise RuntimeError(
            f"metalr_hf.enable() was tested with transformers >={low},<{high}; this is {transformers.__version__}. "
            "Use MetaTrainingArguments + MetaTrainer (they need no patch), or set "
            f"{_UNTESTED_ENV}=1 to try anyway."
        )
    problems = []
    if not isinstance(getattr(optimization, "TYPE_TO_SCHEDULER_FUNCTION", None), dict):
        problems.append("transformers.optimization.TYPE_TO_SCHEDULER_FUNCTION is not a dict")
    elif "TYPE_TO_SCHEDULER_FUNCTION[name]" not in inspect.getsource(optimization.get_scheduler):
        problems.append("transformers.get_scheduler no longer looks names up in TYPE_TO_SCHEDULER_FUNCTION")
    enum = trainer_utils.SchedulerType
    if not all(hasattr(enum, a) for a in ("_member_map_", "_value2member_map_", "_member_names_")):
        problems.append("SchedulerType is not a plain Enum")
    if not hasattr(transformers.Trainer, "create_scheduler"):
        problems.append("Trainer.create_scheduler is gone")
    if problems:
        raise RuntimeError(
            f"metalr_hf.enable() cannot hook into transformers {transformers.__version__}: {'; '.join(problems)}. "
            "Use MetaTrainingArguments + MetaTrainer instead."
        )


def enable() -> None:
    """Let this process's transformers accept ``lr_scheduler_type="meta"`` (idempotent; see the module docstring).

    ```python
    import metalr_hf

    metalr_hf.enable()
    args = TrainingArguments("out", lr_scheduler_type="meta", lr_scheduler_kwargs={"prior": "linear"})
    Trainer(model, args, train_dataset=ds).train()
    ```
    """
    if _saved:
        return
    _check_transformers()
    from transformers import Trainer, optimization, trainer_utils

    from .callback import feed_from_trainer
    from .scheduler import MetaLRScheduler

    enum = trainer_utils.SchedulerType
    if "meta" in enum._value2member_map_:
        raise RuntimeError("transformers' SchedulerType already has a 'meta' member that metalr-hf did not add")
    member = str.__new__(enum, "meta")
    member._name_, member._value_ = "META", "meta"
    member.__reduce_ex__ = _reduce_meta  # a pickled training_args.bin loads where enable() was not called
    type.__setattr__(enum, "META", member)
    enum._member_map_["META"] = member
    enum._value2member_map_["meta"] = member
    enum._member_names_.append("META")
    optimization.TYPE_TO_SCHEDULER_FUNCTION[member] = _meta_schedule
    original = Trainer.create_scheduler

    def create_scheduler(self, num_training_steps, optimizer=None):
        scheduler = original(self, num_training_steps, optimizer)
        if isinstance(scheduler, MetaLRScheduler):
            feed_from_trainer(self)  # its MetaLRCallback first, fed as MetaTrainer feeds it
        return scheduler

    create_scheduler.__wrapped__ = original
    create_scheduler.__doc__ = original.__doc__
    Trainer.create_scheduler = create_scheduler
    _saved.update(enum=enum, member=member, trainer=Trainer, create_scheduler=original, table=optimization)


def disable() -> None:
    """Undo :func:`enable`: transformers is as it was (``"meta"`` is an unknown name again)."""
    if not _saved:
        return
    enum, member = _saved["enum"], _saved["member"]
    _saved["table"].TYPE_TO_SCHEDULER_FUNCTION.pop(member, None)
    enum._member_names_.remove("META")
    del enum._member_map_["META"]
    del enum._value2member_map_["meta"]
    type.__delattr__(enum, "META")
    _saved["trainer"].create_scheduler = _saved["create_scheduler"]
    _saved.clear()


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
        from .scheduler import MetaLRScheduler

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
