"""A training script written the way the transformers examples are (HfArgumentParser over dataclasses, plain
TrainingArguments, plain Trainer). It knows nothing of metalr-hf: the tests run it unmodified.

    metalr-hf run tests/scripts/train_like_examples.py --output_dir out --lr_scheduler_type meta --max_steps 8
    torchrun --nproc_per_node 2 -m metalr_hf.run tests/scripts/train_like_examples.py --ddp_backend gloo [...]
"""

import json
import os
from dataclasses import dataclass, field

import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, HfArgumentParser, Trainer, TrainingArguments


@dataclass
class DataArguments:
    num_examples: int = field(default=256, metadata={"help": "Examples of the generated classification task."})


def toy_classification(n: int, seq_len: int = 16, seed: int = 0) -> Dataset:
    """Label = which half of the vocabulary the tokens come from."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=gen)
    ids = torch.randint(8, 36, (n, seq_len), generator=gen) + 28 * labels[:, None]
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})


def main():
    parser = HfArgumentParser((DataArguments, TrainingArguments))
    data_args, training_args = parser.parse_args_into_dataclasses()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = BertForSequenceClassification(config)
    trainer = Trainer(model=model, args=training_args, train_dataset=toy_classification(data_args.num_examples))
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    path = os.path.join(training_args.output_dir, f"log_history-{training_args.process_index}.json")
    with open(path, "w") as f:
        json.dump(trainer.state.log_history, f)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
