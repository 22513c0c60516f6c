"""metalr-hf: a meta-learned learning-rate scheduler for Hugging Face ``transformers.Trainer``."""

__version__ = "0.1.0"

from .integration import disable, enable
from .learner import MetaLearner
from .options import MetaSchedulerOptions
from .scheduler import MetaLRScheduler, get_scheduler
from .trainer import MetaLRCallback, MetaTrainer, MetaTrainingArguments

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
