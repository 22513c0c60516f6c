"""At each task's right LR (the base LR of its best stock run, seed means), how much of meta's loss to the best stock
schedule is the prior's shape and how much the learner: meta / best stock, meta / WSD (the prior), WSD / best stock.

    python lab/experiments/delta-smooth/right_lr_shape.py DIR [DIR ...]
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

STOCK = ("cosine", "linear", "constant_with_warmup", "warmup_stable_decay")


def main(*folders: str) -> None:
    for folder in folders:
        runs = defaultdict(list)
        for r in json.loads((Path(folder) / "results.json").read_text()):
            v = r["final_eval_loss"]
            runs[(r["task"], r["optimizer"], r["base_lr"], r["scheduler"])].append(v if v == v else math.inf)
        mean = {k: sum(v) / len(v) for k, v in runs.items()}
        print(folder)
        for task, opt in sorted({(k[0], k[1]) for k in mean if k[3] in STOCK}):
            lrs = [k[2] for k in mean if k[:2] == (task, opt) and k[3] == "meta"]
            lrs = [lr for lr in lrs if all((task, opt, lr, s) in mean for s in STOCK)]
            best, lr = min((min(mean[(task, opt, lr, s)] for s in STOCK), lr) for lr in lrs)
            at = {s: mean[(task, opt, lr, s)] for s in (*STOCK, "meta")}
            print(f"  {task:14s} {opt:5s} right LR {lr:g}: meta/best {at['meta'] / best:.3f}  meta/WSD "
                  f"{at['meta'] / at['warmup_stable_decay']:.3f}  WSD/best {at['warmup_stable_decay'] / best:.3f}  "
                  f"(best: {min(STOCK, key=at.get)})")  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
