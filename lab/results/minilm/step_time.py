"""Seconds per training step of all-MiniLM-L6-v2 on this machine, read from the runs of ``lab/results/minilm/run.sh``
(batch 16, sequence 32; ``train_runtime`` of each run's ``train_results.json``, which includes the
Trainer's start-up). Usage:
``python lab/results/minilm/step_time.py runs/minilm > lab/results/minilm/step_time.md``."""

import json
import statistics
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/minilm")
rows = []
for f in sorted(root.glob("*/train_results.json")):
    r = json.loads(f.read_text())
    steps = json.loads((f.parent / "trainer_state.json").read_text())["global_step"]
    rows.append((f.parent.name, r["train_runtime"], steps, r["train_runtime"] / steps))
if not rows:
    sys.exit(f"no */train_results.json under {root}: run lab/results/minilm/run.sh first")
print("| run | train_runtime (s) | steps | s per step |\n|---|---|---|---|")
for name, t, steps, s in rows:
    print(f"| {name} | {t:.1f} | {steps} | {s:.3f} |")
per_step = [s for *_, s in rows]
print(
    f"\n{len(rows)} runs on 2 CPU cores: median {statistics.median(per_step):.3f} s per step, "
    f"range {min(per_step):.3f}–{max(per_step):.3f}."
)
