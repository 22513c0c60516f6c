"""The declared validation table: what decides whether a learner ships (written before it was measured).

One table for every suite (the zoo's held-out families, ``bench --suite quick``, ``bench --suite finetune``). The
input is runs ``(task, optimizer, base LR, seed, schedule, final loss)``; ``meta`` is the learner, every other
schedule is a *stock* schedule (cosine, linear, constant with warmup, WSD, ...). A *cell* is (task, optimizer,
base LR); seeds are replicates, paired across schedules (the same data, start and order), and a diverged run's loss
is infinite.

- **Best stock schedule at an LR**: the stock schedule with the lowest seed-mean loss at that base LR.
- **Tuned run** of a (task, optimizer): the best stock seed mean over the base LRs; its base LR is the **right LR**.
- (a) **right-LR ratio**: meta's seed mean over the best stock seed mean at the right LR. Target ≤ 1.02 on every
  (task, optimizer).
- (b) **regret**: meta's seed mean over the tuned run, minus 1, in every cell whose base LR is within ×10 of the
  right LR (what a user plausibly picks); the median and the 90th percentile over the cells (the upper of two
  middle cells, no interpolation). Targets +5 %, +50 %.
- (c) **≤ best stock at the same LR**: per cell, a 95 % bootstrap interval over the seeds (resampled jointly for
  meta and the stock schedule) of log(meta / best stock); a *win* if it lies below 0, a *loss* if above, a *tie*
  otherwise. The share of cells that are wins or ties. Target ≥ 80 %.
- (d) **rescue**: at the base LR nearest to 0.1× the right LR (within ×2 of it), the share of the gap from the best
  stock schedule at that LR to the tuned run that meta closes. Target ≥ 60 % on every (task, optimizer).
- A right LR at the top or the bottom of the grid is marked: it is not bracketed, the tuned run may lie beyond.

The intervals of (a) and (d) come from the same bootstrap; a ratio whose interval holds 1.02 is reported as a tie
with the target, not as a pass or a failure.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

__all__ = ["Run", "TARGETS", "declared_table", "format_declared_table"]

TARGETS = {"right_lr_ratio": 1.02, "median_regret": 0.05, "p90_regret": 0.50, "le_best_stock": 0.80, "rescue": 0.60}
FLOOR = 1e-12  # a loss of exactly 0 counts as this in ratios


@dataclass(frozen=True)
class Run:
    task: str
    optimizer: str
    base_lr: float
    seed: int
    schedule: str
    loss: float


def _loss(x) -> float:
    x = float(x)
    return max(x, FLOOR) if math.isfinite(x) else math.inf


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(a / b) elementwise; two infinite losses tie (0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.log(a / b)
    return np.where(np.isnan(r), 0.0, r)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    # no interpolation: an infinite sample must not turn the end of an interval into nan
    return float(np.percentile(samples, 2.5, method="lower")), float(np.percentile(samples, 97.5, method="higher"))


def declared_table(runs: list[Run], n_boot: int = 2000, seed: int = 0) -> dict:
    """The declared table of ``runs``: per (task, optimizer) and per cell, then the summary against
    :data:`TARGETS`. Deterministic (the bootstrap draws from ``seed``)."""
    by = defaultdict(lambda: defaultdict(dict))  # (task, opt) -> (schedule, lr) -> {seed: loss}
    for r in runs:
        by[(r.task, r.optimizer)][(r.schedule, float(r.base_lr))][r.seed] = _loss(r.loss)
    rng = np.random.default_rng(seed)
    tasks, cells = [], []
    for (task, opt), table in sorted(by.items()):
        stock = sorted({s for s, _ in table if s != "meta"})
        lrs = sorted({lr for s, lr in table if s == "meta"} & {lr for s, lr in table if s != "meta"})
        if not stock or not lrs:
            continue
        seeds = sorted(set.intersection(*(set(v) for v in table.values())))
        if not seeds:
            continue
        arr = {key: np.array([v[s] for s in seeds]) for key, v in table.items()}
        idx = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
        boot = {key: a[idx].mean(1) for key, a in arr.items()}  # the same resamples for every schedule: paired
        best_at = {
            lr: min((s for s in stock if (s, lr) in arr), key=lambda s, lr=lr: arr[(s, lr)].mean()) for lr in lrs
        }
        right = min(lrs, key=lambda lr: arr[(best_at[lr], lr)].mean())
        tuned_key = (best_at[right], right)
        tuned = float(arr[tuned_key].mean())
        for lr in lrs:
            meta, ref = float(arr[("meta", lr)].mean()), float(arr[(best_at[lr], lr)].mean())
            lo, hi = _interval(_log_ratio(boot[("meta", lr)], boot[(best_at[lr], lr)]))
            cells.append({
                "task": task, "optimizer": opt, "base_lr": lr, "meta": meta, "best_stock": ref,
                "best_stock_schedule": best_at[lr], "tuned": tuned, "regret": meta / tuned - 1,
                "near_right_lr": abs(math.log10(lr / right)) <= 1 + 1e-9,
                "verdict": "win" if hi < 0 else "loss" if lo > 0 else "tie",
            })  # fmt: skip
        ratio = float(arr[("meta", right)].mean()) / tuned
        ratio_interval = tuple(math.exp(x) for x in _interval(_log_ratio(boot[("meta", right)], boot[tuned_key])))
        small = min(lrs, key=lambda lr: abs(math.log(lr / (0.1 * right))))
        rescue = rescue_interval = None
        if abs(math.log(small / (0.1 * right))) <= math.log(2) and small < right:
            gap = boot[(best_at[small], small)] - boot[tuned_key]
            with np.errstate(invalid="ignore", divide="ignore"):
                closed = (boot[(best_at[small], small)] - boot[("meta", small)]) / gap
            point_gap = float(arr[(best_at[small], small)].mean()) - tuned
            if point_gap > 0:
                rescue = (float(arr[(best_at[small], small)].mean()) - float(arr[("meta", small)].mean())) / point_gap
                rescue_interval = _interval(np.nan_to_num(closed, nan=0.0, posinf=0.0, neginf=-1e9))
        tasks.append({
            "task": task, "optimizer": opt, "right_lr": right, "tuned": tuned, "tuned_schedule": best_at[right],
            "right_lr_ratio": ratio, "right_lr_interval": ratio_interval,
            "rescue_lr": small if rescue is not None else None, "rescue": rescue,
            "rescue_interval": rescue_interval, "seeds": len(seeds),
            "right_lr_edge": "top" if right == lrs[-1] else "bottom" if right == lrs[0] else None,
        })  # fmt: skip
    near = np.array([c["regret"] for c in cells if c["near_right_lr"]])
    rescues = [t["rescue"] for t in tasks if t["rescue"] is not None]

    def pct(q):  # the upper of two middle cells: no interpolation with an infinite (diverged) one
        return float(np.percentile(near, q, method="higher")) if len(near) else math.nan

    summary = {
        "tasks": len(tasks),
        "cells": len(cells),
        "right_lr_ratio_max": max((t["right_lr_ratio"] for t in tasks), default=math.nan),
        "right_lr_pass": sum(t["right_lr_ratio"] <= TARGETS["right_lr_ratio"] for t in tasks),
        "right_lr_tie": sum(
            t["right_lr_ratio"] > TARGETS["right_lr_ratio"] and t["right_lr_interval"][0] <= TARGETS["right_lr_ratio"]
            for t in tasks
        ),
        "le_best_stock": sum(c["verdict"] != "loss" for c in cells) / max(len(cells), 1),
        "wins": sum(c["verdict"] == "win" for c in cells),
        "ties": sum(c["verdict"] == "tie" for c in cells),
        "losses": sum(c["verdict"] == "loss" for c in cells),
        "median_regret": pct(50),
        "p90_regret": pct(90),
        "rescue_min": min(rescues) if rescues else math.nan,
        "rescue_tasks": len(rescues),
    }
    summary["meets_targets"] = bool(
        tasks
        and summary["right_lr_pass"] == len(tasks)
        and summary["le_best_stock"] >= TARGETS["le_best_stock"]
        and summary["median_regret"] <= TARGETS["median_regret"]
        and summary["p90_regret"] <= TARGETS["p90_regret"]
        and (not rescues or summary["rescue_min"] >= TARGETS["rescue"])
    )
    return {"summary": summary, "tasks": tasks, "cells": cells}


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.1%}"


def format_declared_table(table: dict, title: str = "") -> str:
    """Markdown: the summary against the targets, then one row per (task, optimizer)."""
    s = table["summary"]
    n = s["tasks"]
    rows = [
        f"| measure{f' ({title})' if title else ''} | value | target |",
        "|---|---|---|",
        f"| (a) right-LR ratio meta / best stock, worst task | {s['right_lr_ratio_max']:.3f} "
        f"({s['right_lr_pass']} of {n} ≤ {TARGETS['right_lr_ratio']}, {s['right_lr_tie']} more tie it) "
        f"| ≤ {TARGETS['right_lr_ratio']} on every task |",
        f"| (b) regret to the tuned run, median / 90th percentile (cells within ×10 of the right LR) | "
        f"{_pct(s['median_regret'])} / {_pct(s['p90_regret'])} | ≤ {TARGETS['median_regret']:+.0%} / "
        f"≤ {TARGETS['p90_regret']:+.0%} |",
        f"| (c) meta ≤ best stock at the same LR (wins + ties by bootstrap interval) | {s['le_best_stock']:.0%} "
        f"({s['wins']} won, {s['ties']} tied, {s['losses']} lost of {s['cells']}) "
        f"| ≥ {TARGETS['le_best_stock']:.0%} |",
        f"| (d) gap closed at 0.1× the right LR, worst task | {_pct(s['rescue_min'])} ({s['rescue_tasks']} tasks) "
        f"| ≥ {TARGETS['rescue']:.0%} on every task |",
        f"| meets every target | {'yes' if s['meets_targets'] else 'no'} | |",
        "",
        "| task | optimizer | right LR | tuned (schedule) | (a) meta / best stock at it [95 % interval] | (d) gap "
        "closed at LR |",
        "|---|---|---|---|---|---|",
    ]
    for t in table["tasks"]:
        lo, hi = t["right_lr_interval"]
        rescue = "–" if t["rescue"] is None else f"{t['rescue']:.0%} at {t['rescue_lr']:g}"
        edge = f" (the grid's {t['right_lr_edge']})" if t.get("right_lr_edge") else ""
        rows.append(
            f"| {t['task']} | {t['optimizer']} | {t['right_lr']:g}{edge} | {t['tuned']:.4g} ({t['tuned_schedule']}) | "
            f"{t['right_lr_ratio']:.3f} [{lo:.3f}, {hi:.3f}] | {rescue} |"
        )
    if any(t.get("right_lr_edge") for t in table["tasks"]):
        rows += ["", "A right LR at the grid's edge is not bracketed: the tuned run may lie beyond the grid, and a "
                 "ratio there compares with a stock schedule that was not tuned to its best."]  # fmt: skip
    return "\n".join(rows)
