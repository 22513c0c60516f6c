#!/usr/bin/env python
"""Time-series forecasting on M4 or a local CSV of series, with transformers' PatchTST or PatchTSMixer and any LR
scheduler; reports MAE and RMSE on the last window of every series (in the series' own units).

M4 monthly, the plan's setting (the Hub dataset holds one series a row in a ``target`` column):

    python recipes/run_time_series.py --dataset_name Monash-University/monash_tsf --dataset_config_name m4_monthly \
        --model_type patchtst --context_length 36 --prediction_length 18 --patch_length 6 \
        --per_device_train_batch_size 256 --learning_rate 1e-3 --max_steps 20000 --lr_scheduler_type meta \
        --do_train --do_eval --output_dir out/m4-patchtst-meta

Local data: ``--train_file series.csv`` in long format, columns ``series_id`` and ``value`` in time order. The model
is built from a config (``--model_type``, sizes below) or loaded with ``--model_name_or_path`` (a PatchTST or
PatchTSMixer prediction checkpoint whose context and prediction lengths match); it is saved with ``save_pretrained``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from recipe_utils import (  # noqa: E402
    last_checkpoint,
    load_metric,
    parse_args,
    require_columns,
    setup_logging,
    train_evaluate_save,
)
from transformers import (  # noqa: E402
    AutoConfig,
    PatchTSMixerConfig,
    PatchTSMixerForPrediction,
    PatchTSTConfig,
    PatchTSTForPrediction,
    set_seed,
)

from metalr_hf import MetaTrainer, MetaTrainingArguments  # noqa: E402

MODELS = {
    "patchtst": (PatchTSTConfig, PatchTSTForPrediction),
    "patchtsmixer": (PatchTSMixerConfig, PatchTSMixerForPrediction),
}

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_type: str = field(default="patchtst", metadata={"help": f"One of {list(MODELS)} (built from a config)."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "A checkpoint instead of a config."})
    hidden_size: int = field(default=64, metadata={"help": "d_model of the forecaster."})
    num_layers: int = field(default=2, metadata={"help": "Layers of the forecaster."})
    patch_length: int = field(default=8, metadata={"help": "Values per patch (the patch stride too)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache models from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Model version: a branch, tag or commit id."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the one `hf auth login` saved)."})

    def __post_init__(self):
        if self.model_type not in MODELS:
            raise ValueError(f"Unknown model_type {self.model_type!r}; valid: {list(MODELS)}")


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset with a `target` column."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "e.g. m4_monthly"})
    train_file: str | None = field(default=None, metadata={"help": "Local CSV: series_id, value (time order)."})
    context_length: int = field(default=32, metadata={"help": "Past values the model reads."})
    prediction_length: int = field(default=8, metadata={"help": "Future values it predicts."})
    windows_per_series: int = field(default=8, metadata={"help": "Training windows drawn from each series."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_file is None:
            raise ValueError("Pass --dataset_name or --train_file.")


def load_series(data_args) -> list[np.ndarray]:
    if data_args.dataset_name is not None:
        ds = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name, split="train")
        require_columns(ds, ["target"], data_args.dataset_name)
        series = [np.asarray(t, dtype=np.float32) for t in ds["target"]]
    else:
        ds = datasets.load_dataset("csv", data_files=data_args.train_file, split="train")
        require_columns(ds, ["series_id", "value"], data_args.train_file)
        by: dict = {}
        for sid, v in zip(ds["series_id"], ds["value"]):
            by.setdefault(sid, []).append(v)
        series = [np.asarray(v, dtype=np.float32) for v in by.values()]
    need = data_args.context_length + 2 * data_args.prediction_length
    kept = [s for s in series if len(s) >= need and np.isfinite(s).all()]
    if not kept:
        raise ValueError(f"No series has {need} finite values (context_length + 2 × prediction_length)")
    return kept


def windows(series, data_args, seed: int):
    """Training windows end before each series' last ``prediction_length`` values, which are the evaluation."""
    C, H = data_args.context_length, data_args.prediction_length
    rng = np.random.default_rng(seed)
    train, evals = {"past_values": [], "future_values": []}, {"past_values": [], "future_values": []}
    for s in series:
        head = s[:-H]
        for _ in range(data_args.windows_per_series):
            t = int(rng.integers(C, len(head) - H + 1))
            train["past_values"].append(head[t - C : t].tolist())
            train["future_values"].append(head[t : t + H].tolist())
        evals["past_values"].append(s[-H - C : -H].tolist())
        evals["future_values"].append(s[-H:].tolist())
    return datasets.Dataset.from_dict(train), datasets.Dataset.from_dict(evals)


def build_model(model_args, data_args):
    """A PatchTST / PatchTSMixer prediction model from a config, or the checkpoint ``--model_name_or_path``; its
    context and prediction lengths must be the data's."""
    if model_args.model_name_or_path:
        hub = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token}
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, **hub)
        if config.model_type not in MODELS:
            raise ValueError(f"{model_args.model_name_or_path} is a {config.model_type}; valid: {list(MODELS)}")
        for name in ("context_length", "prediction_length"):  # before the weights are read
            if getattr(config, name, None) != getattr(data_args, name):
                raise ValueError(
                    f"{model_args.model_name_or_path} has {name}={getattr(config, name, None)}, but "
                    f"--{name} is {getattr(data_args, name)}: pass the checkpoint's."
                )
        return MODELS[config.model_type][1].from_pretrained(model_args.model_name_or_path, config=config, **hub)
    config_class, model_class = MODELS[model_args.model_type]
    sizes = {"num_layers": model_args.num_layers}
    if model_args.model_type == "patchtst":
        width = model_args.hidden_size
        sizes = {"num_hidden_layers": model_args.num_layers, "num_attention_heads": 4, "ffn_dim": 2 * width}
    config = config_class(
        num_input_channels=1,
        context_length=data_args.context_length,
        prediction_length=data_args.prediction_length,
        patch_length=model_args.patch_length,
        patch_stride=model_args.patch_length,
        d_model=model_args.hidden_size,
        scaling="mean",
        loss="mse",
        **sizes,
    )
    return model_class(config)


def main():
    model_args, data_args, training_args = parse_args(ModelArguments, DataTrainingArguments, MetaTrainingArguments)
    setup_logging(training_args)
    checkpoint = last_checkpoint(training_args)
    set_seed(training_args.seed)
    train, evals = windows(load_series(data_args), data_args, training_args.seed)
    model = build_model(model_args, data_args)
    training_args.label_names = ["future_values"]
    metric = load_metric("regression")  # MAE, MSE, RMSE in the series' units (evaluate, local module)

    def compute_metrics(p):
        pred = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions  # prediction_outputs
        pred, target = np.asarray(pred), np.asarray(p.label_ids)
        return metric.compute(predictions=pred.reshape(len(pred), -1), references=target.reshape(len(target), -1))

    def collate(examples):  # [batch, time, 1 channel], as PatchTST and PatchTSMixer read them
        return {k: torch.tensor([e[k] for e in examples], dtype=torch.float32)[..., None] for k in examples[0]}

    trainer = MetaTrainer(
        model=model,
        args=training_args,
        train_dataset=train if training_args.do_train else None,
        eval_dataset=evals if training_args.do_eval else None,
        data_collator=collate,
        compute_metrics=compute_metrics,
    )
    train_evaluate_save(
        trainer,
        training_args,
        checkpoint,
        {"tasks": "time-series-forecasting", "dataset": data_args.dataset_name or data_args.train_file},
    )


if __name__ == "__main__":
    main()
