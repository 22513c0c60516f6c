"""Summarise ``lab/results/minilm/lr_sweep.sh``: pretrained all-MiniLM-L6-v2 at base LRs 5e-6 / 2e-5 / 5e-5 / 5e-4;
cosine, the default learner under the default ``max_boost="auto"`` (on a pretrained model it may only lower the
LR), and the same learner with the cap lifted; the seeds each base LR was run with. Usage:
``python lab/results/minilm/lr_sweep.py runs/minilm [VARIANT,VARIANT] > lab/results/minilm/lr_sweep.md``."""

import json
import statistics
import sys
from pathlib import Path

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/minilm")
SEEDS = {"5e-6": (0, 1), "2e-5": (0, 1), "5e-5": (0, 1, 2, 3), "5e-4": (0, 1)}  # as in lr_sweep.sh
VARIANTS = {
    "cosine": "cosine",
    "meta": 'meta, default (`max_boost` "auto")',
    "metanocap": "meta, cap lifted (`max_boost` null)",
    "metapeak": 'meta, capped at the peak LR (`max_boost` "peak")',
    "metahf": "meta, experiment `hf-finetune`'s learner, uncapped (`max_boost` null)",
    "metajudge": "meta, experiment `hf-finetune-judge`'s learner, uncapped",
    "metabest": "meta, experiment `hf-best-prior`'s learner, uncapped",
    "metaauto": 'meta, default since 2026-11-30 (`metalr-finetune-v1`, prior "auto": WSD here)',
}
ONLY = sys.argv[2].split(",") if len(sys.argv) > 2 else list(VARIANTS)  # e.g. cosine,metapeak
VARIANTS = {k: v for k, v in VARIANTS.items() if k in ONLY}
rows = {}
for lr, seeds in SEEDS.items():
    for variant in VARIANTS:
        for seed in seeds:
            out = runs / f"sweep-{variant}-lr{lr}-seed{seed}"
            if not (out / "eval_results.json").is_file():
                sys.exit(f"missing {out}/eval_results.json: run lab/results/minilm/lr_sweep.sh first")
            state = json.loads((out / "trainer_state.json").read_text())
            scales = [h["meta/lr_scale"] for h in state["log_history"] if "meta/lr_scale" in h]
            rows[lr, variant, seed] = (json.loads((out / "eval_results.json").read_text()), scales)

print("| base LR | scheduler | eval accuracy per seed | eval loss per seed | mean eval loss | "
      "LR scale on the prior, logged every 10 steps (min–max) |")  # fmt: skip
print("|---|---|---|---|---|---|")
for lr, seeds in SEEDS.items():
    for variant, label in VARIANTS.items():
        evs = [rows[lr, variant, s][0] for s in seeds]
        scales = [x for s in seeds for x in rows[lr, variant, s][1]]
        acc = " / ".join(f"{e['eval_accuracy']:.3f}" for e in evs)
        loss = " / ".join(f"{e['eval_loss']:.3f}" for e in evs)
        mean = statistics.mean(e["eval_loss"] for e in evs)
        scale = f"{min(scales):.3f}–{max(scales):.2f}" if scales else ""
        print(f"| {lr} (seeds {', '.join(map(str, seeds))}) | {label} | {acc} | {loss} | {mean:.3f} | {scale} |")
