"""Aggregates, tables and plots from ``results.json``.

- win rate of meta against each baseline at equal task, optimizer, base LR and seed (final eval loss, ties
  count as wins, a diverged run loses to one that did not);
- regret: meta's final eval loss at each base LR over the best tuned baseline (best over every other scheduler
  and every base LR, and the LR-free optimizers) of the same task, optimizer and seed, minus 1;
- an AlgoPerf-style performance profile: a *workload* is (task, optimizer, seed); its target is the tuned
  cosine's final eval loss; each scheduler, at its best base LR, needs some steps to reach the target; ρ(τ) is
  the fraction of workloads it solves within τ× the fastest scheduler's steps, and the score is the mean of ρ
  over τ ∈ [1, 4];
- seed means: per task, optimizer and base LR, meta's and cosine's final eval loss averaged over seeds, and the
  fraction of the gap from cosine to the best tuned run (the best seed mean of any other scheduler at any base
  LR) that meta closes (negative: meta is further from it than cosine);
- overhead: meta's median wall time per step over cosine's, measured in the same process.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from ..metatrain.evaluate import loss_ratio
from ..metatrain.validation import Run, declared_table, format_declared_table

__all__ = ["aggregate", "declared", "declared_runs", "seed_means", "write_report"]

TAU_MAX = 4.0


def _loss(r) -> float:
    x = r["final_eval_loss"]
    return float("inf") if r["diverged"] or not math.isfinite(x) else x


def _steps_to(r, target) -> float:
    for s, v in zip(r["eval_steps"] + [r["steps"]], r["eval_loss"] + [r["final_eval_loss"]]):
        if math.isfinite(v) and v <= target * (1 + 1e-9):
            return float(s)
    return float("inf")


TIE = 0.005  # final eval losses within 0.5 % of each other are a tie, not a win


def verdict(results: list[dict]) -> list[str]:
    """Meta against cosine at the same task, optimizer, base LR and seed, one line each, then the count: better,
    worse or tied (within :data:`TIE`) — ties are not wins."""
    cells = {(r["task"], r["optimizer"], r["base_lr"], r["seed"], r["scheduler"]): r for r in results}
    lines, counts = [], {"better": 0, "worse": 0, "tied": 0}
    for (task, opt, lr, seed, sched), meta in sorted(cells.items()):
        cos = cells.get((task, opt, lr, seed, "cosine"))
        if sched != "meta" or cos is None:
            continue
        a, b = _loss(meta), _loss(cos)
        if math.isfinite(b) and abs(a - b) <= TIE * b:
            word = "tied"
        else:
            word = "better" if a < b else "worse"
        counts[word] += 1
        metric = meta.get("primary_metric", "metric")
        lines.append(
            f"{task:<12} {opt:<5} base LR {lr:<7g} seed {seed}: eval loss cosine {_fmt(b)}, meta {_fmt(a)} "
            f"({metric} {_fmt(cos.get('primary', float('nan')))} vs {_fmt(meta.get('primary', float('nan')))}): "
            f"meta {word}"
        )
    n = sum(counts.values())
    lines.append(
        f"meta vs cosine at the same base LR: better in {counts['better']} of {n}, worse in {counts['worse']}, "
        f"tied in {counts['tied']} (within {TIE:.1%} of the final eval loss)"
    )
    return lines


def _with_optimizers(results: list[dict]):
    """Each run with the optimizers whose comparisons it enters: its own, or every optimizer of the results for
    an LR-free run (optimizer ``"-"``), which competes in each."""
    every = sorted({r["optimizer"] for r in results} - {"-"})
    for r in results:
        yield r, ([r["optimizer"]] if r["optimizer"] != "-" else every)


def aggregate(results: list[dict]) -> dict:
    by_workload = defaultdict(list)
    for r, opts in _with_optimizers(results):
        for opt in opts:
            by_workload[(r["task"], opt, r["seed"])].append(r)
    schedulers = sorted({r["scheduler"] for r in results})
    wins = defaultdict(lambda: [0, 0])
    regrets, profile_steps = [], defaultdict(dict)
    for (task, opt, seed), runs in sorted(by_workload.items()):
        cell = {(r["scheduler"], r["base_lr"]): r for r in runs}
        for (s, lr), r in cell.items():
            if s == "meta" or ("meta", lr) not in cell:
                continue
            w = wins[s]
            w[0] += _loss(cell[("meta", lr)]) <= _loss(r)
            w[1] += 1
        others = [_loss(r) for (s, _lr), r in cell.items() if s != "meta"]
        best = min(others, default=float("inf"))
        for (s, lr), r in cell.items():
            if s == "meta":
                regret = loss_ratio(_loss(r), best) - 1
                regrets.append({"task": task, "optimizer": opt, "seed": seed, "base_lr": lr, "regret": regret})
        cos = [_loss(r) for (s, _lr), r in cell.items() if s == "cosine"]
        if not cos or not math.isfinite(min(cos)):
            continue
        target = min(cos)
        for s in schedulers:
            tuned = [r for (name, _lr), r in cell.items() if name == s]
            if tuned:
                best_run = min(tuned, key=_loss)
                profile_steps[(task, opt, seed)][s] = _steps_to(best_run, target)
    profile = {}
    taus = [1.0 + 0.05 * i for i in range(int((TAU_MAX - 1) / 0.05) + 1)]
    for s in schedulers:
        ratios = []
        for steps in profile_steps.values():
            fastest = min(steps.values())
            ratios.append(steps.get(s, float("inf")) / fastest if math.isfinite(fastest) else float("inf"))
        rho = [sum(r <= t for r in ratios) / max(len(ratios), 1) for t in taus]
        profile[s] = {"tau": taus, "rho": rho, "score": statistics.mean(rho) if rho else 0.0}
    wall = defaultdict(list)
    for r in results:
        wall[r["scheduler"]].append(r["wall_per_step"])
    overhead = (
        statistics.median(wall["meta"]) / statistics.median(wall["cosine"]) - 1
        if wall.get("meta") and wall.get("cosine")
        else None
    )
    finite = [x["regret"] for x in regrets if math.isfinite(x["regret"])]
    return {
        "runs": len(results),
        "diverged": sum(r["diverged"] for r in results),
        "win_rate_vs": {s: w[0] / w[1] for s, w in sorted(wins.items()) if w[1]},
        "comparisons_vs": {s: w[1] for s, w in sorted(wins.items()) if w[1]},
        "regret": regrets,
        "median_regret": statistics.median(finite) if finite else None,
        "worst_regret": max((x["regret"] for x in regrets), default=None),
        "profile": profile,
        "overhead_wall_per_step": overhead,
    }


def seed_means(results: list[dict]) -> list[dict]:
    """Per (task, optimizer, base LR): meta's and cosine's final eval loss averaged over the seeds both ran, their
    ratio, and the fraction of the gap from cosine to the best tuned run that meta closes. The best tuned run is
    the lowest seed mean of any scheduler other than meta, at any base LR (LR-free optimizers included), over the
    same seeds; a diverged run makes its mean infinite."""
    runs = defaultdict(dict)
    for r, opts in _with_optimizers(results):
        for opt in opts:
            runs[(r["task"], opt)][(r["scheduler"], r["base_lr"], r["seed"])] = _loss(r)
    rows = []
    for (task, opt), cell in sorted(runs.items()):
        for lr in sorted({lr for (s, lr, _seed) in cell if s == "meta"}):
            seeds = sorted(seed for (s, x, seed) in cell if s == "meta" and x == lr and ("cosine", lr, seed) in cell)
            if not seeds:
                continue
            meta = statistics.fmean(cell[("meta", lr, seed)] for seed in seeds)
            cos = statistics.fmean(cell[("cosine", lr, seed)] for seed in seeds)
            tuned = [
                statistics.fmean(cell[(s, x, seed)] for seed in seeds)
                for s, x in {(s, x) for (s, x, _seed) in cell if s != "meta"}
                if all((s, x, seed) in cell for seed in seeds)
            ]
            best = min(tuned, default=float("inf"))
            gap = cos - best
            closed = (cos - meta) / gap if math.isfinite(cos) and math.isfinite(meta) and gap > 0 else None
            rows.append({"task": task, "optimizer": opt, "base_lr": lr, "seeds": len(seeds), "meta": meta,
                         "cosine": cos, "best_tuned": best, "ratio": meta / cos if cos > 0 else None,
                         "gap_closed": closed})  # fmt: skip
    return rows


def declared_runs(results: list[dict]) -> list[Run]:
    """Bench results as the declared table's runs (a diverged run's loss infinite)."""
    return [Run(r["task"], r["optimizer"], r["base_lr"], r["seed"], r["scheduler"], _loss(r)) for r in results]


def declared(results: list[dict]) -> dict:
    """The declared validation table of bench results (the LR-free optimizers' runs stand apart: no meta)."""
    return declared_table(declared_runs(results))


def _fmt(x, pct=False) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return "diverged" if x > 0 else "-inf"
    return f"{x:+.1%}" if pct else f"{x:.4g}"


def write_report(results: list[dict], output_dir, title: str = "metalr-hf bench", command: str = "") -> dict:
    out = Path(output_dir)
    agg = aggregate(results)
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        f"{agg['runs']} runs, {agg['diverged']} diverged (recorded, not dropped). The scheduler's overhead is "
        "measured by `metalr-hf bench --suite overhead` (runs of a few milliseconds per step cannot show it).",
        "",
        "## The declared table (meta against the best stock schedule; `metalr_hf/metatrain/validation.py`)",
        "",
        format_declared_table(declared(results)),
        "",
        "## Meta against cosine, run by run",
        "",
        "```",
        *verdict(results),
        "```",
        "",
        "## Meta against each baseline at the same base LR",
        "",
        "| baseline | meta ≤ baseline (final eval loss; ties count) | comparisons |",
        "|---|---|---|",
    ]
    for s, rate in agg["win_rate_vs"].items():
        lines.append(f"| {s} | {rate:.0%} | {agg['comparisons_vs'][s]} |")
    rows = seed_means(results)
    if rows:
        at_most = sum(r["meta"] <= r["cosine"] for r in rows)
        lines += [
            "",
            f"## Seed means: meta ≤ cosine in {at_most} of {len(rows)} cells",
            "",
            "| task | optimizer | base LR | seeds | meta | cosine | meta / cosine | best tuned | gap to it closed |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            closed = "n/a" if r["gap_closed"] is None else f"{r['gap_closed']:.0%}"
            ratio = "n/a" if r["ratio"] is None or not math.isfinite(r["ratio"]) else f"{r['ratio']:.3f}"
            lines.append(
                f"| {r['task']} | {r['optimizer']} | {r['base_lr']:g} | {r['seeds']} | {_fmt(r['meta'])} | "
                f"{_fmt(r['cosine'])} | {ratio} | {_fmt(r['best_tuned'])} | {closed} |"
            )
    lines += [
        "",
        f"## Regret to the best tuned baseline (median {_fmt(agg['median_regret'], True)}, "
        f"worst {_fmt(agg['worst_regret'], True)})",
        "",
        "| task | optimizer | base LR | median regret over seeds |",
        "|---|---|---|---|",
    ]
    cells = defaultdict(list)
    for x in agg["regret"]:
        cells[(x["task"], x["optimizer"], x["base_lr"])].append(x["regret"])
    for (task, opt, lr), vals in sorted(cells.items()):
        lines.append(f"| {task} | {opt} | {lr:g} | {_fmt(statistics.median(vals), True)} |")
    lines += ["", "## Performance profile (steps to the tuned cosine's final eval loss)", ""]
    lines += ["| scheduler | score (mean ρ over τ∈[1,4]) | ρ(1) | ρ(2) |", "|---|---|---|---|"]
    for s, p in sorted(agg["profile"].items(), key=lambda kv: -kv[1]["score"]):
        lines.append(f"| {s} | {p['score']:.3f} | {p['rho'][0]:.2f} | {p['rho'][20]:.2f} |")
    lines += ["", "## Final metric per run (median over seeds)", ""]
    lines += ["| task | scheduler | optimizer | base LR | final eval loss | metric |", "|---|---|---|---|---|---|"]
    groups = defaultdict(list)
    for r in results:
        groups[(r["task"], r["scheduler"], r["optimizer"], r["base_lr"])].append(r)
    for (task, s, opt, lr), rs in sorted(groups.items()):
        loss = statistics.median(_loss(r) for r in rs)
        metric = statistics.median(r["primary"] for r in rs)
        lines.append(f"| {task} | {s} | {opt} | {lr:g} | {_fmt(loss)} | {rs[0]['primary_metric']} {_fmt(metric)} |")
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in _plots(results, agg, out))]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return agg


def _plots(results, agg, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks = sorted({r["task"] for r in results})
    for task in tasks:
        runs = [r for r in results if r["task"] == task and r["seed"] == min(x["seed"] for x in results)]
        lrs = sorted({r["base_lr"] for r in runs if r["base_lr"] > 0})
        lr_pick = 1e-3 if 1e-3 in lrs else (lrs[len(lrs) // 2] if lrs else 0.0)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for r in runs:
            if r["base_lr"] not in (lr_pick, 0.0) or r["optimizer"] not in ("adam", "-"):
                continue
            style = dict(lw=2.2, color="black") if r["scheduler"] == "meta" else dict(lw=1, alpha=0.8)
            ax1.plot(r["train_loss"], label=r["scheduler"], **style)
            ax2.plot(r["lr"], label=r["scheduler"], **style)
        ax1.set(title=f"{task}: training loss (adam, base LR {lr_pick:g})", xlabel="step", yscale="log")
        ax2.set(title="learning rate", xlabel="step", yscale="log")
        ax2.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(out / f"curves_{task}.png", dpi=110)
        plt.close(fig)
        written.append(f"curves_{task}.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for s, p in sorted(agg["profile"].items()):
        style = dict(lw=2.5, color="black") if s == "meta" else dict(lw=1)
        ax.step(p["tau"], p["rho"], where="post", label=f"{s} ({p['score']:.2f})", **style)
    ax.set(xlabel="τ (steps / fastest)", ylabel="fraction of workloads", title="performance profile", ylim=(0, 1.02))
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "performance_profile.png", dpi=110)
    plt.close(fig)
    written.append("performance_profile.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    by = defaultdict(list)
    for x in agg["regret"]:
        if math.isfinite(x["regret"]):
            by[(x["optimizer"], x["base_lr"])].append(x["regret"])
    for opt in sorted({k[0] for k in by}):
        pts = sorted((lr, statistics.median(v)) for (o, lr), v in by.items() if o == opt)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=opt)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xscale="log", xlabel="base LR", ylabel="regret to best tuned (median)", title="meta: regret vs base LR")
    if by:  # results without meta runs (`--schedulers cosine`) draw an empty plot, without a legend
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "regret_vs_lr.png", dpi=110)
    plt.close(fig)
    written.append("regret_vs_lr.png")
    return written
