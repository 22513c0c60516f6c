#!/usr/bin/env python
"""Image classification on CIFAR-10/100 or a local image folder, with ViT, ResNet-50 or EfficientNet-B0 and any
LR scheduler; reports accuracy and top-5 accuracy.

The plan's settings (one GPU each; prefix ``torchrun --nproc_per_node 8`` for more):

    python recipes/run_image_classification.py --model_name_or_path google/vit-base-patch16-224-in21k \
        --dataset_name uoft-cs/cifar10 --per_device_train_batch_size 64 --learning_rate 1e-4 \
        --ignore_mismatched_sizes \
        --num_train_epochs 10 --lr_scheduler_type meta --do_train --do_eval --output_dir out/vit-cifar10-meta
    # ResNet-50:       --model_name_or_path microsoft/resnet-50
    # EfficientNet-B0: --model_name_or_path google/efficientnet-b0
    # CIFAR-100: --dataset_name uoft-cs/cifar100 --label_column_name fine_label

Local data: ``--train_dir DIR --validation_dir DIR`` with one sub-folder per class (``DIR/cat/1.png``). Any model
folder with an image-classification config and an image processor works, including one built from a config alone.
The images go through the model's ``AutoImageProcessor`` (its size, crop and normalisation), after a random resized
crop and flip for training; the processor is saved with the model. ``--ignore_mismatched_sizes`` replaces a
checkpoint's head trained on another label set (ImageNet's 1000 classes).
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datasets  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from recipe_utils import (
    HubArguments,
    last_checkpoint,
    load_metric,
    parse_args,
    require_columns,
    setup_logging,
    train_evaluate_save,
)  # noqa: E402
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, set_seed  # noqa: E402

from metalr_hf import MetaTrainer, MetaTrainingArguments  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments(HubArguments):
    model_name_or_path: str = field(metadata={"help": "ViT / ResNet / EfficientNet checkpoint or local folder."})
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor name or folder, if not the model's."}
    )


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "e.g. uoft-cs/cifar10 or uoft-cs/cifar100"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration."})
    train_dir: str | None = field(default=None, metadata={"help": "Local folder, one sub-folder per class."})
    validation_dir: str | None = field(default=None, metadata={"help": "Local folder for evaluation."})
    image_column_name: str = field(default="img", metadata={"help": "Image column of the Hub dataset."})
    label_column_name: str = field(default="label", metadata={"help": "Label column of the Hub dataset."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N evaluation examples."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_dir is None:
            raise ValueError("Pass --dataset_name or --train_dir.")


def output_size(image_processor) -> tuple[int, int]:
    """(height, width) of the processor's output: its crop, else its size (``shortest_edge`` is square)."""
    size = getattr(image_processor, "crop_size", None) if getattr(image_processor, "do_center_crop", False) else None
    size = size or image_processor.size
    if "height" in size:
        return size["height"], size["width"]
    return size["shortest_edge"], size["shortest_edge"]


def random_resized_crop(img, size: tuple[int, int], rng: random.Random, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's ``RandomResizedCrop`` then ``RandomHorizontalFlip``, in PIL (the recipe needs no torchvision)."""
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:  # the whole image
        x, y, cw, ch = 0, 0, w, h
    img = img.resize((size[1], size[0]), Image.BILINEAR, box=(x, y, x + cw, y + ch))
    return img.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


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
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
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
    for split, n in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if n is not None and split in raw:
            raw[split] = raw[split].select(range(min(n, len(raw[split]))))
    metric = load_metric("classification")  # accuracy, macro F1, top-5 accuracy (evaluate, local module)
    hub = model_args.hub_kwargs()
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        **hub,
    )
    model = AutoModelForImageClassification.from_pretrained(
        model_args.model_name_or_path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **hub
    )
    processor_source = model_args.image_processor_name or model_args.model_name_or_path
    try:  # the model's own resize, crop and normalisation (ImageNet statistics for ResNet-50 and EfficientNet)
        image_processor = AutoImageProcessor.from_pretrained(processor_source, **hub)
    except OSError as e:
        raise ValueError(
            f"No image processor in {processor_source} ({e.__class__.__name__}); pass --image_processor_name, or "
            "save one beside a model built from a config (e.g. ViTImageProcessor(size=...).save_pretrained(DIR))."
        ) from None
    size = output_size(image_processor)
    channels = getattr(config, "num_channels", 3)
    augment = random.Random(training_args.seed)

    def pixels(images, train: bool):
        images = [img.convert("RGB" if channels == 3 else "L") for img in images]
        if train:  # random crop and flip at the output size, then the processor's own steps
            images = [random_resized_crop(img, size, augment) for img in images]
        return image_processor(images, return_tensors="pt")["pixel_values"]

    def train_transform(batch):  # on the fly, as the HF example's set_transform
        return {"pixel_values": pixels(batch["image"], True), "labels": batch["label"]}

    def eval_transform(batch):
        return {"pixel_values": pixels(batch["image"], False), "labels": batch["label"]}

    for split in raw:
        raw[split].set_transform(train_transform if split == "train" else eval_transform)

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
        processing_class=image_processor,  # saved with the model, as the HF example does
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
