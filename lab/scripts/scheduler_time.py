"""The scheduler's own time per step, timed alone with one thread (observe + step on a fixed gradient).

    python lab/scripts/scheduler_time.py tiny|tiny-bert|tiny-gpt2|bert|gpt2 [THREADS] [--train]

tiny: BERT 2 × 32 (0.05M parameters); tiny-bert: BERT 2 × 64 (0.18M, the overhead suite's); bert: BERT 4 × 256
(11.2M); tiny-gpt2: GPT-2 2 × 32 (0.03M, read whole; the overhead suite's 1000-step Trainer run); gpt2: GPT-2
small (124M, from its config). Prints the median and p90 over 380 steps. With ``--train`` a forward, backward and
optimizer step of the model run between the scheduler's steps, as in training: the scheduler's code and data then
start cold each step (on this machine its time doubles for the tiny models).
"""

import statistics
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

from metalr_hf import MetaLRScheduler
from metalr_hf.bench.overhead import MODELS, TRAINER_GPT2

CONFIGS = {
    "tiny": dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64),
    "tiny-bert": MODELS["tiny-bert"][1],  # the overhead suite's
    "bert": dict(vocab_size=30522, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                 intermediate_size=1024, max_position_embeddings=512),
}  # fmt: skip

args = [a for a in sys.argv[1:] if a != "--train"]
train = "--train" in sys.argv[1:]
kind = args[0] if args else "tiny"
torch.set_num_threads(int(args[1]) if len(args) > 1 else 1)
torch.manual_seed(0)
if kind == "tiny-gpt2":
    model = GPT2LMHeadModel(GPT2Config(**TRAINER_GPT2))
    ids = torch.randint(0, 64, (8, 16))  # the Trainer run's batch: 8 sequences of 16 tokens
    batch = dict(input_ids=ids, labels=ids)
elif kind == "gpt2":
    model = GPT2LMHeadModel(GPT2Config())
    ids = torch.randint(0, 1000, (1, 32))
    batch = dict(input_ids=ids, labels=ids)
else:
    model = BertForSequenceClassification(BertConfig(**CONFIGS[kind]))
    batch = dict(input_ids=torch.randint(0, 1000, (4, 16)), labels=torch.zeros(4, dtype=torch.long))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
steps = 400
scheduler = MetaLRScheduler(optimizer, num_training_steps=steps + 10)
loss = model(**batch).loss
loss.backward()
optimizer.step()
times = []
for _ in range(steps):
    if train:
        optimizer.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
    t0 = time.perf_counter()
    scheduler.observe(loss.detach())
    scheduler.step()
    times.append(time.perf_counter() - t0)
times = times[20:]
where = " (in a training loop)" if train else ""
print(
    f"{kind}{where}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, scheduler "
    f"{1e3 * statistics.median(times):.3f} ms median, {1e3 * statistics.quantiles(times, n=10)[8]:.3f} ms p90 per step"
)
