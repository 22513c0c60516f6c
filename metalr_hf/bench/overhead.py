"""Per-step cost of ``meta`` against ``cosine``, on models of three sizes, measured in one process.

For each model (a tiny BERT, an 11M BERT, a GPT-2-small-sized model built from a config), both schedulers drive
the same training step (forward, backward, clipping, AdamW step, scheduler step) on the same fixed batch,
alternating step by step in the order cosine, meta, meta, cosine, … so that drifts of the machine hit both alike.
Reported per model:

- ``scheduler_ms_median`` / ``scheduler_ms_p90``: the time spent inside ``observe`` + ``step`` of the meta
  scheduler, measured directly (the scheduler's own cost, free of the noise of the whole step);
- ``step_ratio``: median step time of meta over that of cosine, from neighbouring pairs (1 + the median paired
  difference over the median cosine step), and ``step_ratio_ci95``, its 95 % bootstrap interval;
- ``state_bytes``: the size of the scheduler's state (it does not grow with the model).

``trainer_wall`` times whole ``Trainer`` runs (a tiny GPT-2, ``trainer_steps`` steps each), cosine and meta
alternating (cosine, meta, meta, cosine, …; four of each): the ratio of the summed wall times, what a user notices,
and the range of the ratios of neighbouring pairs (how far one pair of runs can stray on a shared machine).
"""

from __future__ import annotations

import statistics
import time

import torch

__all__ = ["MODELS", "measure_overhead", "overhead_table"]

# name: (builder kind, config kwargs, batch size, sequence length, pairs of steps measured)
MODELS = {
    "tiny-bert": ("bert", dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=256, max_position_embeddings=128), 8, 32, 200),
    "bert-11m": ("bert", dict(vocab_size=30522, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                              intermediate_size=1024, max_position_embeddings=512), 16, 128, 40),
    "gpt2-124m": ("gpt2", dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12), 1, 64, 6),
}  # fmt: skip
# the GPT-2 of `trainer_wall`'s whole Trainer runs (2 layers, width 32)
TRAINER_GPT2 = dict(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2)


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


def _build(name: str, seed: int):
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    kind, config, batch_size, seq_len, pairs = MODELS[name]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if kind == "bert":
        model = BertForSequenceClassification(BertConfig(**config))
        batch = {
            "input_ids": torch.randint(0, config["vocab_size"], (batch_size, seq_len), generator=gen),
            "labels": torch.randint(0, 2, (batch_size,), generator=gen),
        }
    else:
        model = GPT2LMHeadModel(GPT2Config(**config))
        ids = torch.randint(0, config["vocab_size"], (batch_size, seq_len), generator=gen)
        batch = {"input_ids": ids, "labels": ids}
    return model, batch, pairs


def _measure_model(name: str, seed: int, pairs: int | None, bar) -> dict:
    from transformers import get_scheduler as hf_get_scheduler

    from ..scheduler import MetaLRScheduler

    model, batch, default_pairs = _build(name, seed)
    pairs = pairs or default_pairs
    total = 2 * pairs + 10
    times = {"cosine": [], "meta": []}
    sched_time = []
    optimizers, schedulers = {}, {}
    for kind in ("cosine", "meta"):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        optimizers[kind] = opt
        schedulers[kind] = (
            MetaLRScheduler(opt, num_training_steps=total)
            if kind == "meta"
            else hf_get_scheduler("cosine", opt, num_warmup_steps=0, num_training_steps=total)
        )

    def one_step(kind: str, record: bool):
        opt, sched = optimizers[kind], schedulers[kind]
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t1 = time.perf_counter()
        if kind == "meta":
            sched.observe(loss.detach())
        sched.step()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if record:
            times[kind].append(t3 - t0)
            if kind == "meta":
                sched_time.append(t2 - t1)

    for kind in ("cosine", "meta"):  # warm-up
        for _ in range(2):
            one_step(kind, record=False)
    for pair in range(pairs):
        for kind in ("cosine", "meta") if pair % 2 == 0 else ("meta", "cosine"):
            one_step(kind, record=True)
        bar.update(1)
    diffs = [m - c for m, c in zip(times["meta"], times["cosine"])]
    med_cos = statistics.median(times["cosine"])
    low, high = _bootstrap_median_ci(diffs, seed)
    p90 = statistics.quantiles(sched_time, n=10)[8] if len(sched_time) >= 10 else max(sched_time)
    return {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps_measured_each": len(times["meta"]),
        "median_step_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        "scheduler_ms_median": 1e3 * statistics.median(sched_time),
        "scheduler_ms_p90": 1e3 * p90,
        "step_ratio": 1.0 + statistics.median(diffs) / med_cos,
        "step_ratio_ci95": [1.0 + low / med_cos, 1.0 + high / med_cos],
        "state_bytes": _state_bytes(schedulers["meta"].state_dict()),
    }


def _trainer_wall(steps: int, seed: int, repeats: int = 4, kinds: tuple[str, ...] = ("cosine", "meta")) -> dict:
    """Whole Trainer runs of a tiny GPT-2, cosine and meta alternating: summed wall time of each. ``kinds`` may
    add a second stock cosine run (``"cosine-again"``: an A/A check of the machine's run-to-run noise)."""
    import tempfile

    from datasets import Dataset
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from ..trainer import MetaTrainer, MetaTrainingArguments

    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 64, (512, 1), generator=gen)
    ids = ((start + torch.arange(16)) % 64).tolist()
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    walls = {kind: [] for kind in kinds}
    order = [k for i in range(repeats) for k in (kinds if i % 2 == 0 else kinds[::-1])]
    for kind in order:
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(GPT2Config(**TRAINER_GPT2))
        with tempfile.TemporaryDirectory() as tmp:
            common = dict(output_dir=tmp, max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3,
                          logging_steps=50, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                          seed=seed)  # fmt: skip
            if kind == "meta":
                trainer = MetaTrainer(model=model, args=MetaTrainingArguments(lr_scheduler_type="meta", **common),
                                      train_dataset=data)  # fmt: skip
            else:
                trainer = Trainer(model=model, args=TrainingArguments(lr_scheduler_type="cosine", **common),
                                  train_dataset=data)  # fmt: skip
            t0 = time.perf_counter()
            trainer.train()
            walls[kind].append(time.perf_counter() - t0)
    return {
        "model": "tiny GPT-2 (2 layers, width 32), Trainer",
        "steps": steps,
        "seconds": walls,
        "ratio": sum(walls["meta"]) / sum(walls["cosine"]),
        "ratios": {kind: sum(w) / sum(walls["cosine"]) for kind, w in walls.items()},
        "pair_ratios": [m / c for m, c in zip(walls["meta"], walls["cosine"])],
    }


def measure_overhead(
    models: tuple[str, ...] = tuple(MODELS),
    pairs: int | None = None,
    trainer_steps: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    from tqdm.auto import tqdm

    bad = [m for m in models if m not in MODELS]
    if bad:
        raise ValueError(f"Unknown model(s) {bad}; valid: {list(MODELS)}")
    bar = tqdm(total=sum(pairs or MODELS[m][4] for m in models), desc="overhead", disable=not progress)
    rows = [_measure_model(name, seed, pairs, bar) for name in models]
    bar.close()
    out = {"threads": torch.get_num_threads(), "models": rows}
    if trainer_steps:
        out["trainer_wall"] = _trainer_wall(trainer_steps, seed)
    return out


def overhead_table(result: dict) -> str:
    """The README's table of a :func:`measure_overhead` result."""
    lines = [
        "| model | parameters | scheduler ms/step (median / p90) | step time meta / cosine (95 % CI) |",
        "|---|---|---|---|",
    ]
    for r in result["models"]:
        low, high = r["step_ratio_ci95"]
        lines.append(
            f"| {r['model']} | {r['parameters'] / 1e6:.2f}M | {r['scheduler_ms_median']:.2f} / "
            f"{r['scheduler_ms_p90']:.2f} | {r['step_ratio']:.3f} ({low:.3f}–{high:.3f}) |"
        )
    wall = result.get("trainer_wall")
    if wall:
        lines.append(
            f"\n{wall['model']}, {wall['steps']} steps, wall time meta / cosine: **{wall['ratio']:.3f}** "
            f"(cosine {', '.join(f'{s:.1f}' for s in wall['seconds']['cosine'])} s; "
            f"meta {', '.join(f'{s:.1f}' for s in wall['seconds']['meta'])} s"
            + (
                f"; pairs of runs {min(wall['pair_ratios']):.3f}–{max(wall['pair_ratios']):.3f}"
                if wall.get("pair_ratios")
                else ""
            )
            + ")."
        )
    return "\n".join(lines)
