"""What the run collection says about schedules: per task (the same model, data order and base LR under every
schedule), which schedule ends with the lowest validation loss, by optimizer and base-LR decade, and how far the
others are from cosine. Reads ``runs.parquet`` (or, while the collection runs, its finished ``parts/``).

    metalr-hf collect --preset default --output-dir runs/collect-default   # ~1 h on 2 cores
    python lab/results/collect-default/analyse.py runs/collect-default lab/results/collect-default
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
COLUMNS = ["family", "seed", "hidden", "optimizer", "base_lr", "horizon", "warmup", "batch_size", "schedule",
           "final_val_loss", "diverged"]  # fmt: skip
files = [src / "runs.parquet"] if (src / "runs.parquet").exists() else sorted((src / "parts").glob("*.parquet"))
df = pd.concat([pq.read_table(f, columns=COLUMNS).to_pandas() for f in files], ignore_index=True)
task = ["family", "seed", "hidden", "optimizer", "base_lr", "horizon", "warmup", "batch_size"]
df["task"] = df.groupby(task, sort=False).ngroup()
df["decade"] = np.floor(np.log10(df["base_lr"])).astype(int)
df["kind"] = np.where(df["family"].str.startswith("trainer:"), "Trainer (tiny HF)", "zoo")
loss = df.pivot_table(index="task", columns="schedule", values="final_val_loss", aggfunc="first")
info = df.drop_duplicates("task").set_index("task")[["family", "optimizer", "decade", "kind"]]
finite = loss.replace([np.inf, -np.inf], np.nan)
failed = finite.index[finite.isna().all(axis=1)]  # no schedule ended with a finite validation loss
finite = finite.drop(failed)
info = info.drop(failed)
best = finite.idxmin(axis=1)
with np.errstate(divide="ignore"):  # a zero loss (a regression fitted exactly) gives -inf, left as is
    log_ratio = np.log(finite.div(finite["cosine"], axis=0))


def fmt(x: float) -> str:
    return f"{x:+.2f}" if np.isfinite(x) else "—"  # — : no run of that schedule (the Trainer runs have no random)


lines = [
    f"Collection `{src}`: {len(df)} runs, {len(loss)} tasks × {loss.shape[1]} schedules "
    f"({df['family'].nunique()} families; diverged runs: {int(df['diverged'].sum())}; tasks where no schedule ended "
    f"finite, left out: {len(failed)}"
    + (f", {sorted(set(df.loc[df['task'].isin(failed), 'family']))}" if len(failed) else "")
    + ").",
    "",
    "Which schedule ends lowest (share of tasks), and the median log(L / L_cosine) of each schedule, by optimizer "
    "family and base-LR decade (base LR `1e-k`: from 1e-k up to 10× that):",
    "",
    "| kind | optimizer | base LR | tasks | "
    + " | ".join(f"best: {s}" for s in loss.columns)
    + " | "
    + " | ".join(f"median log-ratio {s}" for s in loss.columns if s != "cosine")
    + " |",
    "|---|---|---|---|" + "---|" * (2 * loss.shape[1] - 1),
]
groups = info.assign(opt=info["optimizer"].replace({"adamw": "adam"})).groupby(["kind", "opt", "decade"])
for (kind, opt, decade), g in groups:
    idx = g.index
    shares = best[idx].value_counts(normalize=True)
    lines.append(
        f"| {kind} | {opt}{'/adamw' if opt == 'adam' else ''} | 1e{decade} | {len(idx)} | "
        + " | ".join(f"{shares.get(s, 0.0):.0%}" for s in loss.columns)
        + " | "
        + " | ".join(fmt(log_ratio.loc[idx, s].median()) for s in loss.columns if s != "cosine")
        + " |"
    )
random_best = (best == "random").mean()
lines += [
    "",
    f"A random piecewise schedule (4 knots, multiplier 0.01–3 of the base LR) beats all four priors on "
    f"{random_best:.0%} of tasks.",
]
dst.mkdir(parents=True, exist_ok=True)
(dst / "analysis.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

zoo = info[info["kind"] == "zoo"].assign(opt=lambda d: d["optimizer"].replace({"adamw": "adam"}))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, opt in zip(axes, ("adam", "sgd")):
    sub = zoo[zoo["opt"] == opt]
    decades = sorted(sub["decade"].unique())
    for s in loss.columns:
        if s == "cosine":
            continue
        ax.plot(decades, [log_ratio.loc[sub.index[sub["decade"] == d], s].median() for d in decades], "o-", label=s)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_title(f"zoo, {opt}{'/adamw' if opt == 'adam' else ''}")
    ax.set_xlabel("base LR decade (log10)")
axes[0].set_ylabel("median log(L / L_cosine), final val loss")
axes[1].legend(fontsize=8)
fig.tight_layout()
fig.savefig(dst / "schedules_vs_cosine.png", dpi=110)
