"""How far the declared table moves when nothing that matters changes: the default's bench folder beside *null*
variants (the same rule with a change far below anything meant to matter, e.g. ``smoothing`` 0.9 → 0.899), and
candidates placed against that band.

    python lab/experiments/chaos/band.py DEFAULT NULL... -- CANDIDATE...

Each argument is a bench folder (its ``results.json``) or a declared table's JSON (``smooth.py``'s
``OUT-VARIANT.json``, ``finetune_zoo.py --json``); ``NAME=PATH`` names the row. A run's LR depends on every
earlier decision, so a perturbation of 1e-3 in the averaging weight sends some runs elsewhere: the seeds' bootstrap
of the declared table does not see that spread, this band does. Prints one row per folder — the declared summary
and the right-LR ratio of each task — then, for each candidate, which measures leave the band (null rows and the
default together), and in which direction.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from metalr_hf.bench.report import declared

MEASURES = (  # (key, label, lower is better)
    ("right_lr_ratio_max", "(a) worst", True),
    ("median_regret", "(b) median", True),
    ("p90_regret", "(b) p90", True),
    ("le_best_stock", "(c)", False),
    ("rescue_min", "(d) worst", False),
)
LABELS = {key: label for key, label, _ in MEASURES}  # a task's right-LR ratio is labelled by its key
LOWER_IS_BETTER = {key: lower for key, _, lower in MEASURES}  # and lower is better there


def declared_row(arg: str) -> tuple[str, dict]:
    """``(name, row)`` of a ``[NAME=]PATH`` argument: the declared summary and each task's right-LR ratio."""
    name, _, path = arg.rpartition("=")
    if path.endswith(".json"):  # a declared table already made (``smooth.py``'s OUT-VARIANT.json)
        table = json.loads(Path(path).read_text())
    else:
        table = declared(json.loads((Path(path) / "results.json").read_text()))
    row = dict(table["summary"])
    row.update({f"{t['task']}/{t['optimizer']}": t["right_lr_ratio"] for t in table["tasks"]})
    return name or Path(path).name, row


def main(argv: list[str]) -> None:
    split = argv.index("--") if "--" in argv else len(argv)
    band = [declared_row(a) for a in argv[:split]]
    candidates = [declared_row(a) for a in argv[split + 1 :]]
    keys = list(LABELS) + sorted(k for k in band[0][1] if "/" in k)
    print("| folder | " + " | ".join(LABELS.get(k, k) for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, row in band + candidates:
        print(f"| {name} | " + " | ".join(f"{row.get(k, float('nan')):.3f}" for k in keys) + " |")
    spans = {k: (min(r[k] for _, r in band), max(r[k] for _, r in band)) for k in keys}
    for name, row in candidates:
        outside = []
        for key, (lo, hi) in spans.items():
            if row[key] < lo or row[key] > hi:
                better = (row[key] < lo) == LOWER_IS_BETTER.get(key, True)
                outside.append(f"{key} {row[key]:.3f} ({'better' if better else 'worse'}; band {lo:.3f}–{hi:.3f})")
        print(f"\n{name}: " + ("; ".join(outside) if outside else "inside the band on every measure"))


if __name__ == "__main__":
    main(sys.argv[1:])
