"""Summarise ``results/minilm/lr_sweep.sh``: pretrained all-MiniLM-L6-v2 at base LRs 5e-6 / 5e-5 / 5e-4, the
bundled default learner (meta) against cosine, seeds 0 and 1. The 5e-5 rows are the committed runs of ``run.sh``
(``eval_meta_v3.json``, ``eval_cosine.json`` and ``seed1/``). Usage:
``python results/minilm/lr_sweep.py runs/minilm > results/minilm/lr_sweep.md``."""

import json
import sys
from pathlib import Path

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/minilm")
here = Path(__file__).resolve().parent
rows = []  # (lr, sched, seed, eval dict, max lr scale or None)
for lr in ("5e-6", "5e-4"):
    for sched in ("meta", "cosine"):
        for seed in (0, 1):
            out = runs / f"sweep-{sched}-lr{lr}-seed{seed}"
            if not (out / "eval_results.json").is_file():
                sys.exit(f"missing {out}/eval_results.json: run results/minilm/lr_sweep.sh first")
            state = json.loads((out / "trainer_state.json").read_text())
            scales = [h["meta/lr_scale"] for h in state["log_history"] if "meta/lr_scale" in h]
            rows.append((lr, sched, seed, json.loads((out / "eval_results.json").read_text()), scales))
for sched, name in (("meta", "eval_meta_v3.json"), ("cosine", "eval_cosine.json")):
    for seed, folder in ((0, here), (1, here / "seed1")):
        rows.append(("5e-5", sched, seed, json.loads((folder / name).read_text()), None))

order = {"5e-6": 0, "5e-5": 1, "5e-4": 2}
rows.sort(key=lambda r: (order[r[0]], r[1] != "meta", r[2]))
print("| base LR | scheduler | seed | eval accuracy | eval loss | meta's LR scale over the run (min–max of logged) |")
print("|---|---|---|---|---|---|")
for lr, sched, seed, ev, scales in rows:
    scale = f"{min(scales):.2f}–{max(scales):.2f}" if scales else ""
    print(f"| {lr} | {sched} | {seed} | {ev['eval_accuracy']:.3f} | {ev['eval_loss']:.3f} | {scale} |")
print()
for lr in ("5e-6", "5e-5", "5e-4"):
    loss = {s: [r[3]["eval_loss"] for r in rows if r[0] == lr and r[1] == s] for s in ("meta", "cosine")}
    m, c = (sum(v) / len(v) for v in (loss["meta"], loss["cosine"]))
    print(f"- base LR {lr}: mean eval loss over 2 seeds, meta {m:.3f}, cosine {c:.3f} ({100 * (m / c - 1):+.1f} %)")
