"""Per-step overhead of ``meta`` against ``cosine`` on a BERT-sized model, measured in one process.

Both schedulers drive the same training step (forward, backward, clipping, AdamW step, scheduler step) on
the same fixed batch, alternating step by step in the order cosine, meta, meta, cosine, … so that drifts of the
machine hit both alike. Reported:

- ``step_overhead``: the median over neighbouring pairs of (meta step − cosine step), over the median cosine
  step (pairing cancels the machine's slow drifts, which on a shared 2-core machine exceed the effect);
- ``step_overhead_ci95``: its 95 % bootstrap interval;
- ``scheduler_share``: the time spent inside ``observe`` + ``step`` of the meta scheduler over the median step
  time (the direct cost, free of the noise of the whole step);
- ``state_bytes``: the size of the scheduler's state (it does not grow with the model: no copy of gradients
  or weights is kept).
"""

from __future__ import annotations

import statistics
import time

import torch

__all__ = ["measure_overhead"]


def _state_bytes(obj) -> int:
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_state_bytes(v) for v in obj)
    return 0


def _bootstrap_median_ci(values: list[float], seed: int, draws: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of the median of ``values``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor(values, dtype=torch.float64)
    idx = torch.randint(len(values), (draws, len(values)), generator=gen)
    meds = x[idx].median(dim=1).values
    return float(meds.quantile(0.025)), float(meds.quantile(0.975))


def measure_overhead(
    layers: int = 4,
    hidden: int = 256,
    seq_len: int = 128,
    batch_size: int = 16,
    pairs: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    from tqdm.auto import tqdm
    from transformers import BertConfig, BertForSequenceClassification
    from transformers import get_scheduler as hf_get_scheduler

    from ..scheduler import MetaLRScheduler

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=max(512, seq_len),
    )
    model = BertForSequenceClassification(config)
    batch = {
        "input_ids": torch.randint(0, config.vocab_size, (batch_size, seq_len)),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch_size,)),
    }
    total = 2 * pairs + 10
    times = {"cosine": [], "meta": []}
    sched_time = []
    optimizers = {}
    schedulers = {}
    for name in ("cosine", "meta"):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        optimizers[name] = opt
        schedulers[name] = (
            MetaLRScheduler(opt, num_training_steps=total)
            if name == "meta"
            else hf_get_scheduler("cosine", opt, num_warmup_steps=0, num_training_steps=total)
        )

    def one_step(name: str, record: bool):
        opt, sched = optimizers[name], schedulers[name]
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t1 = time.perf_counter()
        if name == "meta":
            sched.observe(loss.detach())
        sched.step()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if record:
            times[name].append(t3 - t0)
            if name == "meta":
                sched_time.append(t2 - t1)

    bar = tqdm(total=2 * pairs + 4, desc="overhead", disable=not progress)
    for name in ("cosine", "meta"):  # warm-up
        for _ in range(2):
            one_step(name, record=False)
            bar.update(1)
    for pair in range(pairs):
        for name in ("cosine", "meta") if pair % 2 == 0 else ("meta", "cosine"):
            one_step(name, record=True)
            bar.update(1)
    bar.close()
    diffs = [m - c for m, c in zip(times["meta"], times["cosine"])]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": f"BERT {layers} layers, hidden {hidden}, sequence {seq_len}, batch {batch_size}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps_measured_each": len(times["meta"]),
        "median_step_seconds": med,
        "step_overhead": statistics.median(diffs) / med["cosine"],
        "step_overhead_ci95": [x / med["cosine"] for x in _bootstrap_median_ci(diffs, seed)],
        "scheduler_seconds_median": statistics.median(sched_time),
        "scheduler_share": statistics.median(sched_time) / med["meta"],
        "state_bytes": _state_bytes(schedulers["meta"].state_dict()),
        "threads": torch.get_num_threads(),
    }
