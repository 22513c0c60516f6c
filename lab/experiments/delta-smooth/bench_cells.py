"""Meta's seed-mean final eval loss per (task, base LR) in two bench folders side by side, beside the best stock
schedule's at that LR (from the first): where a variant's meta runs gain or lose against another's.

    python lab/experiments/delta-smooth/bench_cells.py DIR_A DIR_B
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def load(folder: str) -> dict:
    by = defaultdict(list)
    for r in json.loads((Path(folder) / "results.json").read_text()):
        by[(r["task"], r["scheduler"], r["base_lr"])].append(r["final_eval_loss"])
    return by


def main(a_dir: str, b_dir: str) -> None:
    a, b = load(a_dir), load(b_dir)
    for key in sorted(k for k in a if k[1] == "meta"):
        stock = [np.mean(v) for k, v in a.items() if k[0] == key[0] and k[2] == key[2] and k[1] != "meta"]
        ma, mb = np.mean(a[key]), np.mean(b[key])
        print(f"{key[0]:14s} {key[2]:.0e}  best stock {min(stock):.4g}  A {ma:.4g}  B {mb:.4g}  B/A {mb / ma:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
