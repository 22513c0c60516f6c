"""Is a right LR at the top of the quick suite's grid the tuned one? The suite again with one base LR a decade
above its top (1e-1 × each task's LR scale), beside the runs of a folder that holds the suite's:

    cp runs/bench-quick-cut2s/results.json OUT/   # or any quick folder of the same definition
    python lab/experiments/grid-edge/wider.py OUT [SEED ...] [--meta-kwargs JSON]

Only meta and the four stock schedules of the declared table run at the new LR (the LR-free optimizers stand apart);
the runs already in OUT are reused. Prints the declared table with and without the new LR and writes OUT/report.md.
Since 2026-12-06 the quick suite itself runs GPT-2 and the forecaster a decade above its top (`Suite.above`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

from metalr_hf.bench.report import declared, write_report
from metalr_hf.bench.runner import STOCK, SUITES, run_suite
from metalr_hf.metatrain.validation import format_declared_table


def main(out: str, *args: str) -> None:
    meta_kwargs = None
    if "--meta-kwargs" in args:
        i = args.index("--meta-kwargs")
        meta_kwargs, args = json.loads(args[i + 1]), args[:i] + args[i + 2 :]
    suite = SUITES["quick"]
    wider = replace(suite, lrs=(*suite.lrs, suite.lrs[-1] * 10), above=())  # every task a decade up
    seeds = [int(s) for s in args] or None
    results = run_suite(wider, out, schedulers=("meta", *STOCK), meta_kwargs=meta_kwargs, seeds=seeds, progress=False)
    top = wider.lrs[-1]
    # the new LR of a task is its scale times `top`: drop a run whose base LR is above every LR of the suite's grid
    narrow = [r for r in results if r["base_lr"] < 0.99 * top * _scale(r)]
    for name, rows in (("the suite's grid", narrow), (f"with {top:g} × scale", results)):
        print(f"## {name}\n\n{format_declared_table(declared(rows))}\n", flush=True)
    write_report(results, out, title="metalr-hf bench — quick, one LR a decade wider",
                 command=f"python {' '.join(sys.argv)}")  # fmt: skip


def _scale(run: dict) -> float:
    from metalr_hf.bench.tasks import TASKS

    return TASKS[run["task"]].scale(run["optimizer"]) or 1.0


if __name__ == "__main__":
    main(*sys.argv[1:])
