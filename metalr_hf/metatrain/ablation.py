"""Ablations: the same short meta-training with one thing changed (a feature group off, another core, another
width), each scored on the held-out families against cosine at the same base LR.

Score per variant: the fraction of held-out cells (family × optimizer × base LR ∈ {1e-4, 1e-3, 1e-2}) where
meta's final validation loss ≤ cosine's, and the median log-ratio ``log(L_meta / L_cosine)`` (negative = better).
The budget is far below the shipped learner's: the table ranks variants; it does not reproduce the main result.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np

from .es import PRESETS, meta_train
from .evaluate import EvalConfig, _specs, log_ratio
from .families import HELD_OUT
from .simulate import PriorPolicy, meta_policy, simulate
from .zoo import make_populations

__all__ = ["VARIANTS", "format_ablation_table", "run_ablations"]

VARIANTS = {
    "full": {},
    "no time features": {"disabled_features": ("time",)},
    "no loss features": {"disabled_features": ("loss",)},
    "no gradient-norm features": {"disabled_features": ("grad",)},
    "no momentum alignment": {"disabled_features": ("momentum",)},
    "no update ratio": {"disabled_features": ("update",)},
    "no second-order features": {"disabled_features": ("second_order",)},
    "no context features": {"disabled_features": ("context",)},
    "core rnn": {"core": "rnn"},
    "core lstm": {"core": "lstm"},
    "core transformer": {"core": "transformer", "hidden_size": 32},
    "hidden 64": {"hidden_size": 64},
}
# Short runs of the MLP stage (`default` now starts from that stage's learner, which would defeat an ablation).
ABLATION_BASE = replace(PRESETS["default-mlp"], name="ablation", iterations=25, pairs=4, tasks=6, horizon=(80, 250))


def _score(learner, seeds=(0,), horizon=200) -> dict:
    specs = _specs(EvalConfig(seeds=tuple(seeds), horizon=horizon), with_grid=False)
    meta, cos = [], []
    for _, pop in make_populations(specs):
        meta += simulate(pop, meta_policy(learner, pop, prior="auto", smoothing=0.0)).final_val_loss.tolist()
        cos += simulate(pop, PriorPolicy("cosine", pop)).final_val_loss.tolist()
    ratios = [log_ratio(a, b) for a, b in zip(meta, cos)]
    return {
        "win_rate_vs_cosine": float(np.mean([r <= 1e-12 for r in ratios])),
        "median_log_ratio": statistics.median(ratios),
        "cells": len(ratios),
    }


def format_ablation_table(rows: dict, base=ABLATION_BASE, iterations: int | None = None, score_horizon=200) -> str:
    """Markdown table of ablation scores (``rows``: variant → score, as in ``ablation.json``)."""
    lines = [
        f"Each variant: {iterations or base.iterations} ES iterations × {base.pairs} pairs × {base.tasks} tasks, "
        f"horizons {base.horizon[0]}–{base.horizon[1]}; scored on {list(HELD_OUT)} × Adam/SGD × base LR "
        f"1e-4/1e-3/1e-2, horizon {score_horizon}, one seed, against cosine at the same base LR.",
        "",
        "| variant | meta ≤ cosine | median log(L_meta / L_cosine) |",
        "|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['win_rate_vs_cosine']:.0%} | {r['median_log_ratio']:+.3f} |")
    return "\n".join(lines)


def run_ablations(
    output_dir: str | Path,
    variants=None,
    iterations: int | None = None,
    progress: bool = True,
    base=ABLATION_BASE,
    score_horizon: int = 200,
) -> str:
    """Meta-train every variant (resumable: each has its own folder and checkpoint) and write ``ablation.md``."""
    from ..learner import MetaLearner

    out = Path(output_dir)
    names = list(variants or VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"Unknown ablation variant(s) {unknown}; valid: {list(VARIANTS)}")
    rows = {}
    for name in names:
        folder = out / name.replace(" ", "_")
        preset = replace(base, eval=EvalConfig(), **VARIANTS[name])
        if iterations:
            preset = replace(preset, iterations=iterations)
        meta_train(preset, folder, progress=progress, evaluate_at_end=False)
        rows[name] = _score(MetaLearner.from_pretrained(folder / "learner"), horizon=score_horizon)
        (out / "ablation.json").write_text(json.dumps(rows, indent=2))
    table = format_ablation_table(rows, base, iterations or base.iterations, score_horizon)
    (out / "ablation.md").write_text(table + "\n")
    return table
