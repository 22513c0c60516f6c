"""metalr-hf: a meta-learned learning-rate scheduler for Hugging Face ``transformers.Trainer``.

The public names load on first use (PEP 562), as transformers' own ``_LazyModule`` does: ``import metalr_hf`` and
``metalr-hf --help`` do not import torch's optimizers or ``transformers.Trainer`` until a name that needs them is read.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"

# public name -> the module that defines it
_NAMES = {
    "MetaLRCallback": "callback",
    "MetaLRScheduler": "scheduler",
    "MetaLearner": "learner",
    "MetaSchedulerOptions": "options",
    "MetaTrainer": "trainer",
    "MetaTrainingArguments": "trainer",
    "disable": "integration",
    "enable": "integration",
    "get_scheduler": "integration",
}

__all__ = [
    "MetaLRCallback",
    "MetaLRScheduler",
    "MetaLearner",
    "MetaSchedulerOptions",
    "MetaTrainer",
    "MetaTrainingArguments",
    "__version__",
    "disable",
    "enable",
    "get_scheduler",
]

if TYPE_CHECKING:
    from .callback import MetaLRCallback
    from .integration import disable, enable, get_scheduler
    from .learner import MetaLearner
    from .options import MetaSchedulerOptions
    from .scheduler import MetaLRScheduler
    from .trainer import MetaTrainer, MetaTrainingArguments


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'metalr_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next read is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
