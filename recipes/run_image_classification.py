#!/usr/bin/env python
"""Image classification on CIFAR-10/100 or a local image folder, with ViT, ResNet-50 or EfficientNet-B0 and any
LR scheduler; reports accuracy and top-5 accuracy.

The plan's settings (one GPU each; prefix ``torchrun --nproc_per_node 8`` for more):

    python recipes/run_image_classification.py --model_name_or_path google/vit-base-patch16-224-in21k \
        --dataset_name uoft-cs/cifar10 --image_size 224 --per_device_train_batch_size 64 \
        --learning_rate 1e-4 \
        --num_train_epochs 10 --lr_scheduler_type meta --do_train --do_eval --output_dir out/vit-cifar10-meta
    # ResNet-50:       --model_name_or_path microsoft/resnet-50
    # EfficientNet-B0: --model_name_or_path google/efficientnet-b0
    # CIFAR-100: --dataset_name uoft-cs/cifar100 --label_column_name fine_label

Local data: ``--train_dir DIR --validation_dir DIR`` with one sub-folder per class (``DIR/cat/1.png``). Any model
folder with an image-classification config works, including one built from a config alone.
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
from PIL import Image  # noqa: E402
from recipe_utils import (
    last_checkpoint,
    load_metric,
    parse_args,
    require_columns,
    setup_logging,
    train_evaluate_save,
)  # noqa: E402
from transformers import AutoConfig, AutoModelForImageClassification, set_seed  # noqa: E402

from metalr_hf import MetaTrainer, MetaTrainingArguments  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "ViT / ResNet / EfficientNet checkpoint or local folder."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache models from the Hub."})


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "e.g. uoft-cs/cifar10 or uoft-cs/cifar100"})
    train_dir: str | None = field(default=None, metadata={"help": "Local folder, one sub-folder per class."})
    validation_dir: str | None = field(default=None, metadata={"help": "Local folder for evaluation."})
    image_column_name: str = field(default="img", metadata={"help": "Image column of the Hub dataset."})
    label_column_name: str = field(default="label", metadata={"help": "Label column of the Hub dataset."})
    image_size: int = field(default=32, metadata={"help": "Images are resized to image_size × image_size."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_dir is None:
            raise ValueError("Pass --dataset_name or --train_dir.")


def check_images(split, source: str) -> None:
    """Open every image once before training, so that a damaged file is named now rather than mid-run."""
    for path in split.cast_column("image", datasets.Image(decode=False))["image"]:
        try:
            with Image.open(path["path"]) as im:
                im.verify()
        except Exception as e:  # PIL raises many types for a broken file
            raise ValueError(f"Cannot decode image file {path['path']} (in {source}): {e}") from None


def load_data(data_args):
    if data_args.dataset_name is not None:
        raw = datasets.load_dataset(data_args.dataset_name)
        for split in raw:
            require_columns(raw[split], [data_args.image_column_name, data_args.label_column_name], split)
        raw = raw.rename_columns({data_args.image_column_name: "image", data_args.label_column_name: "label"})
        names = raw["train"].features["label"].names
        return datasets.DatasetDict(train=raw["train"], validation=raw["test"]), names
    dirs = {"train": data_args.train_dir, "validation": data_args.validation_dir}
    for folder in filter(None, dirs.values()):
        if not os.path.isdir(folder):
            raise ValueError(f"Image folder {folder} does not exist")
    # the `imagefolder` builder: one sub-folder per class, labels from the folder names
    files = {k: os.path.join(v, "**") for k, v in dirs.items() if v}
    raw = datasets.load_dataset("imagefolder", data_files=files)
    names = raw["train"].features["label"].names
    for split, folder in dirs.items():
        if folder:
            check_images(raw[split], folder)
    return raw, names


def main():
    model_args, data_args, training_args = parse_args(ModelArguments, DataTrainingArguments, MetaTrainingArguments)
    setup_logging(training_args)
    checkpoint = last_checkpoint(training_args)
    set_seed(training_args.seed)
    raw, names = load_data(data_args)
    metric = load_metric("classification")  # accuracy, macro F1, top-5 accuracy (evaluate, local module)
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        cache_dir=model_args.cache_dir,
    )
    model = AutoModelForImageClassification.from_pretrained(
        model_args.model_name_or_path, config=config, ignore_mismatched_sizes=True, cache_dir=model_args.cache_dir
    )
    channels = getattr(config, "num_channels", 3)
    size = data_args.image_size
    mean, std = np.full(channels, 0.5, np.float32), np.full(channels, 0.5, np.float32)

    def transform(batch):  # resize + normalise, on the fly (as the HF example's set_transform)
        pixels = []
        for img in batch["image"]:
            img = img.convert("RGB" if channels == 3 else "L").resize((size, size))
            arr = np.asarray(img, dtype=np.float32).reshape(size, size, channels) / 255.0
            pixels.append(torch.from_numpy(((arr - mean) / std).transpose(2, 0, 1).copy()))
        return {"pixel_values": pixels, "labels": batch["label"]}

    for split in raw:
        raw[split].set_transform(transform)

    def collate(examples):
        return {
            "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
            "labels": torch.tensor([e["labels"] for e in examples]),
        }

    training_args.remove_unused_columns = False  # the transform reads the `image` column
    trainer = MetaTrainer(
        model=model,
        args=training_args,
        train_dataset=raw["train"] if training_args.do_train else None,
        eval_dataset=raw["validation"] if training_args.do_eval and "validation" in raw else None,
        data_collator=collate,
        compute_metrics=lambda p: metric.compute(predictions=p.predictions, references=p.label_ids),
    )
    train_evaluate_save(
        trainer,
        training_args,
        checkpoint,
        {
            "finetuned_from": model_args.model_name_or_path,
            "tasks": "image-classification",
            "dataset": data_args.dataset_name or data_args.train_dir,
        },  # fmt: skip
    )


if __name__ == "__main__":
    main()
