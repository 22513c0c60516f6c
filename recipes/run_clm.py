#!/usr/bin/env python
"""Causal language modelling (GPT-2 and friends) on a Hub dataset or a local text file, with any LR scheduler.

GPT-2 small on WikiText-103, the plan's setting:

    python recipes/run_clm.py --model_name_or_path openai-community/gpt2 --dataset_name Salesforce/wikitext \
        --dataset_config_name wikitext-103-raw-v1 --block_size 1024 --per_device_train_batch_size 8 \
        --learning_rate 6e-4 --max_steps 20000 --warmup_steps 500 --lr_scheduler_type meta \
        --do_train --do_eval --output_dir out/gpt2-meta

Local text, one document per line: ``--train_file train.txt --validation_file valid.txt``. Reports the
evaluation loss and perplexity. Multi-GPU: ``torchrun --nproc_per_node 8 recipes/run_clm.py ...``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field
from itertools import chain

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datasets  # noqa: E402
from recipe_utils import (  # noqa: E402
    HubArguments,
    last_checkpoint,
    parse_args,
    require_columns,
    setup_logging,
    train_evaluate_save,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, default_data_collator, set_seed  # noqa: E402

from metalr_hf import MetaTrainer, MetaTrainingArguments  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments(HubArguments):
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's."})


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration."})
    train_file: str | None = field(default=None, metadata={"help": "A local .txt (one document a line)."})
    validation_file: str | None = field(default=None, metadata={"help": "A local .txt for evaluation."})
    text_column: str = field(default="text", metadata={"help": "The column holding the text."})
    block_size: int = field(default=128, metadata={"help": "Training sequences are cut to this many tokens."})
    validation_split_percentage: int = field(default=5, metadata={"help": "Held out when no validation set."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_file is None:
            raise ValueError("Pass --dataset_name or --train_file.")
        for f in (self.train_file, self.validation_file):
            if f is not None and f.rsplit(".", 1)[-1] not in ("txt", "csv", "json", "jsonl"):
                raise ValueError(f"{f}: data files must be .txt, .csv, .json or .jsonl")


def load_data(data_args, cache_dir):
    if data_args.dataset_name is not None:
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir)
    else:
        files = {k: v for k, v in (("train", data_args.train_file), ("validation", data_args.validation_file)) if v}
        ext = data_args.train_file.rsplit(".", 1)[-1].replace("txt", "text").replace("jsonl", "json")
        raw = datasets.load_dataset(ext, data_files=files, cache_dir=cache_dir)
        for split, source in files.items():
            require_columns(raw[split], [data_args.text_column], source)
    if "validation" not in raw:
        split = raw["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=0)
        raw = datasets.DatasetDict(train=split["train"], validation=split["test"])
    return raw


def main():
    model_args, data_args, training_args = parse_args(ModelArguments, DataTrainingArguments, MetaTrainingArguments)
    setup_logging(training_args)
    checkpoint = last_checkpoint(training_args)
    set_seed(training_args.seed)
    raw = load_data(data_args, model_args.cache_dir)
    hub = model_args.hub_kwargs()
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path, **hub)
    model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **hub)
    block = min(data_args.block_size, getattr(tokenizer, "model_max_length", data_args.block_size))

    def tokenize(batch):
        return tokenizer(batch[data_args.text_column])

    def group(batch):  # concatenate, then cut into blocks (the HF example's grouping)
        joined = {k: list(chain(*batch[k])) for k in batch}
        total = (len(joined["input_ids"]) // block) * block
        out = {k: [v[i : i + block] for i in range(0, total, block)] for k, v in joined.items()}
        out["labels"] = [x[:] for x in out["input_ids"]]
        return out

    with training_args.main_process_first(desc="tokenization"):
        tokenized = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names)
        lm = tokenized.map(group, batched=True)
    trainer = MetaTrainer(
        model=model,
        args=training_args,
        train_dataset=lm["train"] if training_args.do_train else None,
        eval_dataset=lm["validation"] if training_args.do_eval else None,
        processing_class=tokenizer,
        data_collator=default_data_collator,
    )
    train_evaluate_save(
        trainer,
        training_args,
        checkpoint,
        {
            "finetuned_from": model_args.model_name_or_path,
            "tasks": "text-generation",
            "dataset": data_args.dataset_name or data_args.train_file,
        },  # fmt: skip
        extra_metrics=lambda m: {"perplexity": math.exp(min(m["eval_loss"], 50.0))},
    )


if __name__ == "__main__":
    main()
