"""How far a perfect "hold" decision would take the default: the declared table with meta's runs replaced by the
prior's (WSD) where a gate would hold (issue 29, item 2's learned hold, bounded from above).

    python lab/experiments/oracle-gate/bound.py zoo RUNS.json        # simulate the held-out zoo once (4 minutes)
    python lab/experiments/oracle-gate/bound.py table OUT.md RUNS.json|BENCH-DIR[@SCHEDULE] ...

A gate reads the distance d = log10(base LR / right LR) of a run and holds (the prior alone, δ = 0) where it reads
|d| < 0.5, letting the learner act elsewhere. Rows: the default (no gate); the *oracle* gate (reads d exactly: it
holds at the right LR only); gates that read d with a Gaussian error of σ decades (the lr-gate estimator's
held-out RMSE is 0.83, `../lr-gate/`), each measure averaged over 200 draws, with the share of draws that meet
(a) on every task. The stand-in for "the prior alone" is the stock WSD run of the same cell and seed (the zoo's
``wsd`` is the prior exactly; the bench's ``warmup_stable_decay`` is transformers' WSD, the prior's shape);
``@SCHEDULE`` holds another stock schedule's run instead (a gate around another prior).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from metalr_hf.bench.report import declared_runs
from metalr_hf.metatrain.validation import TARGETS, Run, declared_table

PRIOR = {"zoo": "wsd", "bench": "warmup_stable_decay"}


def zoo(out: str) -> None:
    from metalr_hf import MetaLearner
    from metalr_hf.metatrain.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(prior="wsd", evals=10, eval_patience=2, smoothing=0.9, eval_cut=4.0, eval_overfit=0.1)
    runs = evaluate(MetaLearner.from_pretrained("metalr-default-v3"), cfg)["runs"]
    rows = [[r["family"], r["optimizer"], r["base_lr"], r["seed"], r["schedule"], r["final_val_loss"]] for r in runs]
    Path(out).write_text(json.dumps({"kind": "zoo", "runs": rows}))


def load(path: str) -> tuple[str, list[Run]]:
    p = Path(path)
    if p.is_dir():  # the LR-free optimizers' runs stand apart (optimizer "-", no meta), as in the bench's table
        return "bench", declared_runs(json.loads((p / "results.json").read_text()))
    data = json.loads(p.read_text())
    return data["kind"], [Run(*r) for r in data["runs"]]


def gated(runs: list[Run], prior: str, hold) -> list[Run]:
    """``runs`` with meta's run replaced by the prior's where ``hold(task, optimizer, base LR)``."""
    by = {(r.task, r.optimizer, r.base_lr, r.seed): r for r in runs if r.schedule == prior}
    return [
        Run(r.task, r.optimizer, r.base_lr, r.seed, "meta", by[(r.task, r.optimizer, r.base_lr, r.seed)].loss)
        if r.schedule == "meta" and hold(r.task, r.optimizer, r.base_lr) else r
        for r in runs
    ]  # fmt: skip


def measures(summary: dict) -> dict:
    return {
        "a_worst": summary["right_lr_ratio_max"],
        "a_ok": summary["right_lr_pass"] + summary["right_lr_tie"],
        "b_median": summary["median_regret"],
        "b_p90": summary["p90_regret"],
        "c": summary["le_best_stock"],
        "d_worst": summary["rescue_min"],
        "a_all": float(summary["right_lr_pass"] + summary["right_lr_tie"] == summary["tasks"]),
        "all": float(summary["meets_targets"]),
    }


def rows_for(path: str, sigmas=(0.0, 0.3, 0.5, 0.83), draws: int = 200) -> tuple[int, list[tuple[str, dict]]]:
    path, _, prior = path.partition("@")
    kind, runs = load(path)
    prior = prior or PRIOR[kind]
    base = declared_table(runs, n_boot=400)
    right = {(t["task"], t["optimizer"]): t["right_lr"] for t in base["tasks"]}
    always = declared_table(gated(runs, prior, lambda *c: True), n_boot=400)
    out = [
        ("default (no gate)", measures(base["summary"])),
        (f"{prior} alone (always hold)", measures(always["summary"])),
    ]
    cells = sorted({(r.task, r.optimizer, r.base_lr) for r in runs if r.schedule == "meta"})
    dist = {c: math.log10(c[2] / right[c[:2]]) for c in cells if c[:2] in right}
    for sigma in sigmas:
        rng = np.random.default_rng(0)
        got = []
        for _ in range(1 if sigma == 0 else draws):
            read = {c: d + sigma * rng.standard_normal() for c, d in dist.items()}
            held = {c for c, d in read.items() if abs(d) < 0.5}
            table = declared_table(gated(runs, prior, lambda *c, held=held: c in held), n_boot=400)
            got.append(measures(table["summary"]))
        mean = {k: float(np.mean([g[k] for g in got])) for k in got[0]}
        out.append(("oracle gate" if sigma == 0 else f"gate, error σ = {sigma} decades", mean))
    return base["summary"]["tasks"], out


def table(out: str, *paths: str) -> None:
    lines = [
        f"Targets: (a) ≤ {TARGETS['right_lr_ratio']} on every task; (b) median ≤ +{TARGETS['median_regret']:.0%}, "
        f"p90 ≤ +{TARGETS['p90_regret']:.0%}; (c) ≥ {TARGETS['le_best_stock']:.0%}; (d) ≥ {TARGETS['rescue']:.0%}. "
        "Gate rows with an error: means over 200 draws; 'P(a)' / 'P(all)': the share of draws meeting (a) on every "
        "task / every target.",
        "",
    ]
    for path in paths:
        n, rows = rows_for(path)
        lines += [
            f"**{path}** ({n} tasks; the prior held: {path.partition('@')[2] or 'WSD'})",
            "",
            "| configuration | (a) worst | (a) ≤ 1.02 + ties | (b) median / p90 | (c) | (d) worst | P(a) | P(all) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, m in rows:
            lines.append(
                f"| {name} | {m['a_worst']:.3f} | {m['a_ok']:.1f} of {n} | {m['b_median']:+.1%} / {m['b_p90']:+.1%} "
                f"| {m['c']:.0%} | {m['d_worst']:.0%} | {m['a_all']:.2f} | {m['all']:.2f} |"
            )
        lines.append("")
    lines.append(f"`python {' '.join(sys.argv)}`")
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    {"zoo": zoo, "table": table}[sys.argv[1]](*sys.argv[2:])
