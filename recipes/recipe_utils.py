"""What every recipe shares: argument parsing (CLI or one JSON file), checkpoint detection, local `evaluate` metrics.

Kept beside the scripts (not in the package) so that each recipe still reads like a Hugging Face example.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser
from transformers.trainer_utils import get_last_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class HubArguments:
    """Where a recipe's model comes from, as the transformers examples' ``ModelArguments`` say it (a recipe's own
    ``ModelArguments`` subclasses this and names the model)."""

    model_name_or_path: str = field(metadata={"help": "Model id on the Hub or a local folder."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache models from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Model version: a branch, tag or commit id."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the one `hf auth login` saved)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code from the model's Hub repository."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Replace a checkpoint's head whose size differs (another label set)."}
    )

    def hub_kwargs(self) -> dict:
        """The keyword arguments of every ``from_pretrained`` call of the recipe."""
        return {
            "cache_dir": self.cache_dir,
            "revision": self.model_revision,
            "token": self.token,
            "trust_remote_code": self.trust_remote_code,
        }


def parse_args(*dataclass_types):
    """``HfArgumentParser`` over the dataclasses, from the command line or from a single ``.json`` file."""
    parser = HfArgumentParser(dataclass_types)
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
    return parser.parse_args_into_dataclasses()


def setup_logging(training_args) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    logging.getLogger("__main__").setLevel(level)  # the recipe's own logger, as each HF example sets it
    import transformers

    transformers.utils.logging.set_verbosity(level)


def last_checkpoint(training_args):
    """The checkpoint to resume from, as in the HF examples; refuses a non-empty output dir without one."""
    if not (os.path.isdir(training_args.output_dir) and training_args.do_train):
        return None
    found = get_last_checkpoint(training_args.output_dir)
    if (
        found is None
        and os.listdir(training_args.output_dir)
        and not getattr(training_args, "overwrite_output_dir", False)
    ):
        raise ValueError(
            f"Output directory ({training_args.output_dir}) already exists and is not empty, and holds no checkpoint "
            "to resume from. Pass another --output_dir."
        )
    return found


def require_columns(dataset, columns, source: str) -> None:
    """A clear error naming the missing field and the file it should be in (before anything is written)."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{source} lacks the column(s) {missing}; it has {dataset.column_names}")


METRICS_DIR = Path(__file__).parent / "metrics"


def load_metric(name: str, config_name: str | None = None):
    """The ``evaluate`` module ``recipes/metrics/<name>`` (``config_name``: a GLUE task, for instance), loaded once
    per run by the recipe. ``evaluate.load`` reads it from that folder: no network, no fallback (see its README)."""
    import evaluate

    return evaluate.load(str(METRICS_DIR / name), config_name=config_name)


def train_evaluate_save(trainer, training_args, checkpoint, model_card_kwargs: dict, extra_metrics=None) -> dict:
    """Train (resuming from ``checkpoint``), evaluate, save and write the card as the HF examples do; the last call of
    a recipe (it ends the process group of a distributed launch).

    ``extra_metrics(metrics) -> dict`` adds derived evaluation metrics (perplexity, for instance)."""
    result = None
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or checkpoint)
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    if metrics and extra_metrics is not None:
        metrics.update(extra_metrics(metrics))
    finish(trainer, training_args, result, metrics, model_card_kwargs)
    end_process_group()
    return metrics


def end_process_group() -> None:
    """Destroy the ``torchrun``/``accelerate launch`` process group at the end of a recipe. A gloo rank that exits
    with it alive can abort at interpreter teardown (SIGABRT, "terminate called without an active exception",
    pytorch/pytorch#190489): the launcher then reports a failed job although everything was written."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no rank tears down while another still saves
        dist.destroy_process_group()


def finish(trainer, training_args, train_result, metrics: dict, model_card_kwargs: dict) -> None:
    """Save model, metrics and state, and write the model card / push, as the HF examples do."""
    if train_result is not None:
        trainer.save_model()
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
    if metrics:
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if training_args.push_to_hub:
        trainer.push_to_hub(**model_card_kwargs)
    elif hasattr(trainer.model, "config"):  # transformers' card needs a config; plain nn.Modules get none
        trainer.create_model_card(**model_card_kwargs)
    with open(os.path.join(training_args.output_dir, "metalr_hf_learner.json"), "w") as f:
        json.dump(trainer.meta_learner_info(), f, indent=2)
