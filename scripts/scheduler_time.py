"""The scheduler's own time per step, timed alone with one thread (observe + step on a fixed gradient).

    python scripts/scheduler_time.py tiny|tiny-bert|bert|gpt2 [THREADS]

tiny: BERT 2 × 32 (0.05M parameters); tiny-bert: BERT 2 × 64 (0.18M, the overhead suite's); bert: BERT 4 × 256
(11.2M); gpt2: GPT-2 small (124M, from its config). Prints the median and p90 over 380 steps.
"""

import statistics
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

from metalr_hf import MetaLRScheduler

CONFIGS = {
    "tiny": dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64),
    "tiny-bert": dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=256, max_position_embeddings=128),  # the overhead suite's
    "bert": dict(vocab_size=30522, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                 intermediate_size=1024, max_position_embeddings=512),
}  # fmt: skip

kind = sys.argv[1] if len(sys.argv) > 1 else "tiny"
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
torch.manual_seed(0)
if kind == "gpt2":
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
    t0 = time.perf_counter()
    scheduler.observe(loss.detach())
    scheduler.step()
    times.append(time.perf_counter() - t0)
times = times[20:]
print(
    f"{kind}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, scheduler "
    f"{1e3 * statistics.median(times):.3f} ms median, {1e3 * statistics.quantiles(times, n=10)[8]:.3f} ms p90 per step"
)
