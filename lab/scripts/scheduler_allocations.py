"""Storage allocations the scheduler makes per step after warm-up (torch profiler, CPU).

python lab/scripts/scheduler_allocations.py
"""

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import BertConfig, BertForSequenceClassification

from metalr_hf import MetaLRScheduler

torch.set_num_threads(1)
torch.manual_seed(0)
config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64)  # fmt: skip
model = BertForSequenceClassification(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
loss = model(input_ids=torch.randint(0, 1000, (4, 16)), labels=torch.zeros(4, dtype=torch.long)).loss
loss.backward()
optimizer.step()
scheduler = MetaLRScheduler(optimizer, num_training_steps=100)
for _ in range(5):
    scheduler.observe(loss.detach())
    scheduler.step()
steps = 10
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    for _ in range(steps):
        scheduler.observe(loss.detach())
        scheduler.step()
allocs = [e for e in prof.events() if e.name == "[memory]" and e.cpu_memory_usage > 0]
print(f"{len(allocs) / steps:.1f} allocations, {sum(e.cpu_memory_usage for e in allocs) / steps:.0f} bytes per step")
