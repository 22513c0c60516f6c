"""Held-out evaluation of a learner against tuned prior schedules, on the simulated zoo.

For every held-out family, optimizer and seed, every schedule (``meta`` and the priors ``cosine``, ``linear``,
``wsd``, ``constant``) runs over a base-LR grid. Reported:

- ``win_rate_vs_cosine``: fraction of cells (family, optimizer, seed, base LR ∈ ``eval_lrs``) where meta's final
  validation loss ≤ cosine's at the same base LR;
- ``regret``: per cell, meta's final validation loss over the best tuned baseline (best over the four priors and
  the whole LR grid) minus 1; the worst and the median cell;
- ``steps_ratio``: at cosine's best LR, the fraction of the horizon meta needs to reach cosine's final validation
  loss (1.0 or more = never faster; ``inf`` = never reached).
- ``tuned_*``: the same comparisons on the cells of the issue's targets, (family, optimizer, base LR) with the seeds
  as replicates (mean final validation loss over the seeds), against the baseline a user tunes once per family and
  optimizer: the prior and grid LR with the best seed-mean loss (the per-seed ``regret`` above picks the best
  schedule for each seed in hindsight, which also rewards seed noise).
"""

from __future__ import annotations

import copy
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .cache import load_baselines, save_baselines
from .families import HELD_OUT, TaskSpec
from .simulate import PriorPolicy, meta_policy, simulate
from .validation import Run, declared_table, format_declared_table
from .zoo import Population, make_populations

__all__ = [
    "EvalConfig",
    "evaluate",
    "format_eval_table",
    "format_horizon_table",
    "horizon_check",
    "log_ratio",
    "loss_ratio",
    "results_text",
    "summarise",
    "tuned_summary",
]

BASELINES = ("cosine", "linear", "wsd", "constant")
LR_GRID = {
    "adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    "sgd": (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
}


@dataclass
class EvalConfig:
    families: tuple[str, ...] = HELD_OUT
    optimizers: tuple[str, ...] = ("adam", "sgd")
    eval_lrs: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    seeds: tuple[int, ...] = (0, 1, 2)
    horizon: int = 300
    batch_size: int = 64
    hidden: int = 32
    lr_grid: dict = field(default_factory=lambda: dict(LR_GRID))
    # The horizon the schedules are told, as a multiple of the true one (1.0: right; 0.5: the run goes on past
    # the end of the schedule; 2.0: it stops half-way through).
    horizon_factor: float = 1.0
    # The scheduler's ``max_boost`` (see ``MetaController``): "auto" is what a user gets; it only matters on the
    # fine-tuning families (runs marked pretrained).
    max_boost: object = "auto"
    # The prior schedule the meta scheduler corrects (``MetaController``'s ``prior``); the baselines are each their
    # own schedule whatever it is.
    prior: str = "cosine"
    # The scheduler's ``warmup_boost``: whether the learner may raise the LR above the prior during the warmup.
    warmup_boost: bool = True
    # The scheduler's ``eval_patience`` (None here: off, as every learner was evaluated before it existed),
    # ``eval_cut``, ``eval_overfit``, ``eval_gap`` and ``eval_trust``, and the evaluations per run it reads, as a
    # Trainer evaluating every ``horizon // evals`` steps.
    eval_patience: int | None = None
    eval_cut: float = 1.0
    eval_overfit: float | None = None
    eval_gap: float | None = None
    eval_trust: object = None
    evals: int = 10
    # The scheduler's ``smoothing`` of the learner's correction over steps (0 here: off, as every learner was
    # evaluated before it existed; the product's default is "auto").
    smoothing: object = 0.0

    @property
    def schedule_horizon(self) -> float:
        return self.horizon * self.horizon_factor


# The fields of ``EvalConfig`` that are the meta scheduler's options (the baselines do not depend on them).
_META_OPTIONS = ("max_boost", "prior", "warmup_boost", "eval_patience", "eval_cut", "eval_overfit", "eval_gap",
                 "eval_trust", "smoothing")  # fmt: skip


def _policy(name: str, learner, pop: Population, told: float, cfg: EvalConfig | None = None):
    """``meta`` (with ``cfg``'s scheduler options) or a prior schedule for ``pop``, told that the runs last ``told``
    steps."""
    if name == "meta":
        cfg = cfg or EvalConfig()
        return meta_policy(learner, pop, horizon=told, **{k: getattr(cfg, k) for k in _META_OPTIONS})
    return PriorPolicy(name, replace(pop, horizon=torch.full_like(pop.horizon, float(told))))


# A final loss of exactly 0 (a cross-entropy whose probabilities round to 1) counts as this in ratios: a tuned run
# that reaches 0 makes every other run's regret huge, not a division by zero that loses the whole evaluation.
LOSS_FLOOR = 1e-12


def loss_ratio(a: float, b: float) -> float:
    """``a / b`` of two final losses (``inf`` for a diverged run), each at least :data:`LOSS_FLOOR`."""
    return max(a, LOSS_FLOOR) / max(b, LOSS_FLOOR)


def log_ratio(a: float, b: float) -> float:
    """``log(a / b)`` of two final losses; a diverged run (non-finite loss) scores ±5, two diverged runs tie."""
    if math.isfinite(a) and math.isfinite(b):
        return math.log(loss_ratio(a, b))
    return 0.0 if not (math.isfinite(a) or math.isfinite(b)) else (-5.0 if math.isfinite(a) else 5.0)


def _specs(cfg: EvalConfig, with_grid: bool = True) -> list[TaskSpec]:
    """Every (family, optimizer, seed, base LR) run: base LRs from ``eval_lrs`` and, ``with_grid``, the LR grid."""
    specs = []
    for family in cfg.families:
        for opt in cfg.optimizers:
            for seed in cfg.seeds:
                lrs = sorted(set(cfg.lr_grid[opt]) | set(cfg.eval_lrs)) if with_grid else cfg.eval_lrs
                for lr in lrs:
                    specs.append(
                        TaskSpec(
                            family, 1000 + seed, cfg.hidden, opt, lr, cfg.horizon, cfg.horizon // 20, cfg.batch_size
                        )
                    )
    return specs


def _baseline_key(cfg: EvalConfig) -> str:
    fields_ = {k: v for k, v in cfg.__dict__.items() if k not in (*_META_OPTIONS, "evals")}  # baselines read none
    return json.dumps(fields_, sort_keys=True, default=list)


def evaluate(learner, cfg: EvalConfig | None = None, progress=None) -> dict:
    """Run the held-out comparison; returns a JSON-serialisable dict (per-run results and the aggregates). The
    baselines of an evaluation config are simulated once and reused for every learner, in this process and in
    the cache folder (:mod:`.cache`)."""
    cfg = cfg or EvalConfig()
    specs = _specs(cfg)
    eval_every = max(1, cfg.horizon // 30)
    key = _baseline_key(cfg)
    cached = load_baselines(key, len(specs) * len(BASELINES))
    names = ("meta",) if cached is not None else ("meta",) + BASELINES
    per_spec: list[dict] = [{} for _ in specs]  # schedule -> (result, column)
    eval_steps: list[int] = []
    for idx, pop in make_populations(specs):  # one batched population per model kind
        for name in names:
            policy = _policy(name, learner, pop, cfg.schedule_horizon, cfg)
            res = simulate(pop, policy, seed=0, eval_every=eval_every, observe_every=cfg.horizon // cfg.evals)
            eval_steps = res.eval_steps
            for col, i in enumerate(idx):
                per_spec[i][name] = (res, col)
            if progress is not None:
                progress.update(1 if cached is None else 1 + len(BASELINES))
    runs = []
    for spec, results in zip(specs, per_spec):
        for name, (res, b) in results.items():
            curve = res.val_curve[:, b].tolist()
            runs.append(
                {
                    **spec.to_dict(),
                    "schedule": name,
                    "final_val_loss": _num(res.final_val_loss[b]),
                    "final_val_metric": _num(res.final_val_metric[b]),
                    "mean_train_loss": _num(res.mean_train_loss[b]),
                    "diverged": bool(res.diverged[b]),
                    "val_curve": [_num(x) for x in curve],
                }
            )
    if cached is None:
        save_baselines(key, [r for r in runs if r["schedule"] != "meta"])
    else:
        runs += copy.deepcopy(cached)
    summary = summarise(runs, cfg, eval_steps)
    return {"config": {**cfg.__dict__}, "summary": summary, "runs": runs}


def _num(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else float("inf")


def summarise(runs: list[dict], cfg: EvalConfig, eval_steps: list[int]) -> dict:
    by = defaultdict(dict)  # (family, opt, seed) -> {(schedule, lr): run}
    for r in runs:
        by[(r["family"], r["optimizer"], r["seed"])][(r["schedule"], r["base_lr"])] = r
    wins, cells, regrets, steps_ratios, per_cell = 0, 0, [], [], []
    for (family, opt, seed), table in sorted(by.items()):
        best = min(
            (r["final_val_loss"], s, lr) for (s, lr), r in table.items() if s in BASELINES and lr in cfg.lr_grid[opt]
        )
        for lr in cfg.eval_lrs:
            meta, cos = table[("meta", lr)]["final_val_loss"], table[("cosine", lr)]["final_val_loss"]
            win = meta <= cos * (1 + 1e-9)
            wins += win
            cells += 1
            regret = loss_ratio(meta, best[0]) - 1 if math.isfinite(meta) else float("inf")
            regrets.append(regret)
            per_cell.append(
                {
                    "family": family,
                    "optimizer": opt,
                    "seed": seed,
                    "base_lr": lr,
                    "meta": meta,
                    "cosine": cos,
                    "best_tuned": best[0],
                    "best_tuned_schedule": f"{best[1]}@{best[2]:g}",
                    "regret": regret,
                }
            )
        # speed at cosine's best LR
        cos_best_lr = min(
            (table[("cosine", lr)]["final_val_loss"], lr) for lr in cfg.lr_grid[opt] if ("cosine", lr) in table
        )[1]
        target = table[("cosine", cos_best_lr)]["final_val_loss"]
        curve = table[("meta", cos_best_lr)]["val_curve"]
        hit = next((eval_steps[i] for i, v in enumerate(curve) if v <= target), None)
        steps_ratios.append(hit / cfg.horizon if hit is not None else float("inf"))
    finite = [r for r in regrets if math.isfinite(r)]
    return {
        "cells": cells,
        "win_rate_vs_cosine": wins / max(cells, 1),
        "worst_regret": max(regrets) if regrets else float("nan"),
        "median_regret": float(np.median(finite)) if finite else float("nan"),
        "median_steps_ratio_at_best_lr": float(np.median(steps_ratios)) if steps_ratios else float("nan"),
        **tuned_summary(runs, cfg),
        "declared": _declared(runs),
        "cells_detail": per_cell,
    }


def _declared(runs: list[dict]) -> dict:
    """The declared validation table (``validation.py``) of the held-out runs: meta against the best stock schedule
    at each grid LR, seeds as replicates."""
    table = declared_table(
        [Run(r["family"], r["optimizer"], r["base_lr"], r["seed"], r["schedule"], r["final_val_loss"]) for r in runs]
    )
    return {"summary": table["summary"], "tasks": table["tasks"]}


def tuned_summary(runs: list[dict], cfg: EvalConfig) -> dict:
    """Cells (family, optimizer, base LR), seeds as replicates: meta's mean final validation loss over the seeds
    against cosine's at the same base LR and against the baseline tuned once per family and optimizer (the prior
    and grid LR with the lowest seed-mean loss). A diverged seed makes its cell's mean infinite."""
    by = defaultdict(lambda: defaultdict(list))  # (family, opt) -> (schedule, lr) -> losses over the seeds
    for r in runs:
        by[(r["family"], r["optimizer"])][(r["schedule"], r["base_lr"])].append(float(r["final_val_loss"]))
    wins, regrets, detail = 0, [], []
    for (family, opt), table in sorted(by.items()):
        mean = {key: float(np.mean(v)) for key, v in table.items()}
        tuned = min((loss, s, lr) for (s, lr), loss in mean.items() if s in BASELINES and lr in cfg.lr_grid[opt])
        for lr in cfg.eval_lrs:
            meta, cos = mean[("meta", lr)], mean[("cosine", lr)]
            wins += meta <= cos * (1 + 1e-9)
            regret = loss_ratio(meta, tuned[0]) - 1 if math.isfinite(meta) else float("inf")
            regrets.append(regret)
            detail.append(
                {"family": family, "optimizer": opt, "base_lr": lr, "meta": meta, "cosine": cos, "tuned": tuned[0],
                 "tuned_schedule": f"{tuned[1]}@{tuned[2]:g}", "regret": regret}
            )  # fmt: skip
    finite = [r for r in regrets if math.isfinite(r)]
    return {
        "tuned_cells": len(regrets),
        "tuned_win_rate_vs_cosine": wins / max(len(regrets), 1),
        "tuned_worst_regret": max(regrets) if regrets else float("nan"),
        "tuned_median_regret": float(np.median(finite)) if finite else float("nan"),
        "tuned_within_10pct": sum(r <= 0.10 for r in regrets),
        "tuned_detail": detail,
    }


def format_eval_table(summary: dict) -> str:
    """Markdown: the aggregates, then meta vs cosine vs the best tuned baseline per family/optimizer/base LR."""
    lines = [
        "| metric | value |",
        "|---|---|",
        f"| cells (family × optimizer × seed × base LR) | {summary['cells']} |",
        f"| meta ≤ cosine at the same base LR | {summary['win_rate_vs_cosine']:.0%} |",
        f"| worst-cell regret to the best tuned baseline | {summary['worst_regret']:+.1%} |",
        f"| median-cell regret to the best tuned baseline | {summary['median_regret']:+.1%} |",
        f"| steps to cosine's final loss at its best LR (median, fraction of horizon) | "
        f"{summary['median_steps_ratio_at_best_lr']:.2f} |",
    ]
    if "tuned_cells" in summary:  # summaries written before these fields were added lack them
        n = summary["tuned_cells"]
        lines += [
            f"| cells with the seeds as replicates (family × optimizer × base LR, mean over the seeds) | {n} |",
            f"| meta ≤ cosine at the same base LR, seed means | {summary['tuned_win_rate_vs_cosine']:.0%} |",
            f"| worst / median cell regret to the baseline tuned once per family and optimizer | "
            f"{summary['tuned_worst_regret']:+.1%} / {summary['tuned_median_regret']:+.1%} |",
            f"| cells within 10 % of that tuned baseline | {summary['tuned_within_10pct']}/{n} |",
        ]
    tuned = {(c["family"], c["optimizer"], c["base_lr"]): c for c in summary.get("tuned_detail", [])}
    extra = " meta (seed mean) / tuned once | regret |" if tuned else ""
    lines += [
        "",
        "| family | optimizer | base LR | meta | cosine | best tuned | meta ≤ cosine (seeds) |" + extra,
        "|---|---|---|---|---|---|---|" + "---|---|" * bool(tuned),
    ]
    groups = defaultdict(list)
    for c in summary["cells_detail"]:
        groups[(c["family"], c["optimizer"], c["base_lr"])].append(c)
    for key, cs in sorted(groups.items()):
        family, opt, lr = key
        med = lambda k, cs=cs: float(np.median([c[k] for c in cs]))  # noqa: E731
        won = sum(c["meta"] <= c["cosine"] * (1 + 1e-9) for c in cs)
        row = (
            f"| {family} | {opt} | {lr:g} | {med('meta'):.4f} | {med('cosine'):.4f} | {med('best_tuned'):.4f} "
            f"| {won}/{len(cs)} |"
        )
        if key in tuned:
            t = tuned[key]
            row += f" {t['meta']:.4f} / {t['tuned']:.4f} ({t['tuned_schedule']}) | {t['regret']:+.0%} |"
        lines.append(row)
    return "\n".join(lines)


def results_text(cfg: EvalConfig, summary: dict, check: dict | None) -> str:
    """The results section of a learner's card (and of ``eval.md``): what was evaluated, the tables."""
    around = f"; meta corrects the `{cfg.prior}` prior" if cfg.prior != "cosine" else ""
    text = (
        f"Held-out families {list(cfg.families)}, horizon {cfg.horizon}, seeds {list(cfg.seeds)}; baselines tuned "
        f"over the LR grid {cfg.lr_grid}{around}.\n\n{format_eval_table(summary)}"
    )
    if "declared" in summary:  # summaries written before the declared table lack it
        text += "\n\nThe declared validation table (meta against the best stock schedule):\n\n"
        text += format_declared_table(summary["declared"])
    if check:
        text += (
            f"\n\nMis-specified horizons (both schedules told a wrong run length, base LRs {list(cfg.eval_lrs)}):"
            f"\n\n{format_horizon_table(check)}"
        )
    return text


def horizon_check(learner, cfg: EvalConfig | None = None, factors=(0.5, 1.0, 2.0)) -> dict:
    """Mis-specified horizons: meta and cosine are both told ``factor ×`` the true run length (0.5: the run
    goes on past the end of the schedule; 2: it stops half-way through its schedule). Per factor: the fraction
    of cells where meta's final validation loss ≤ cosine's, and the median log-ratio."""
    cfg = cfg or EvalConfig()
    specs = _specs(cfg, with_grid=False)
    out = {}
    for factor in factors:
        told = cfg.horizon * factor
        meta, cos = [0.0] * len(specs), [0.0] * len(specs)
        for idx, pop in make_populations(specs):
            policy = _policy("meta", learner, pop, told, cfg)
            m = simulate(pop, policy, seed=0).final_val_loss.tolist()
            c = simulate(pop, _policy("cosine", learner, pop, told), seed=0).final_val_loss.tolist()
            for j, i in enumerate(idx):
                meta[i], cos[i] = m[j], c[j]
        ratios = [log_ratio(a, b) for a, b in zip(meta, cos)]
        out[str(factor)] = {
            "cells": len(specs),
            "win_rate_vs_cosine": float(np.mean([a <= b * (1 + 1e-9) for a, b in zip(meta, cos)])),
            "median_log_ratio": float(np.median(ratios)),
        }
    return out


def format_horizon_table(check: dict) -> str:
    lines = [
        "| horizon told / true | cells | meta ≤ cosine | median log(L_meta / L_cosine) |",
        "|---|---|---|---|",
    ]
    for factor, r in check.items():
        lines.append(
            f"| {float(factor):g} | {r['cells']} | {r['win_rate_vs_cosine']:.0%} | {r['median_log_ratio']:+.3f} |"
        )
    return "\n".join(lines)
