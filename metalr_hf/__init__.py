"""metalr-hf: a meta-learned learning-rate scheduler for Hugging Face ``transformers.Trainer``."""

__version__ = "0.1.0"

from .learner import MetaLearner
from .scheduler import MetaLRScheduler, get_scheduler
from .trainer import MetaLRCallback, MetaTrainer, MetaTrainingArguments

__all__ = [
    "MetaLRCallback",
    "MetaLRScheduler",
    "MetaLearner",
    "MetaTrainer",
    "MetaTrainingArguments",
    "__version__",
    "get_scheduler",
]
