"""The quick suite through the Trainer with 10 evaluations a run instead of 5: does ``eval_patience`` act when a
user evaluates that often? The stock runs once into ``OUT-none``; the meta runs once without the rule (``OUT-none``)
and once with the default (``OUT-patience2``, which copies the stock runs first). Writes each folder's report.

    python lab/experiments/eval-hold/quick_evals.py OUT      # about 10 minutes on 2 cores
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from metalr_hf.bench.report import write_report
from metalr_hf.bench.runner import SUITES, run_suite


def main(out: str) -> None:
    suite = dataclasses.replace(SUITES["quick"], evals=10)
    none, patience = Path(f"{out}-none"), Path(f"{out}-patience2")
    results = run_suite(suite, none, meta_kwargs={"eval_patience": None}, progress=False)
    write_report(results, none, command=f"python {' '.join(sys.argv)} (eval_patience None)")
    patience.mkdir(parents=True, exist_ok=True)
    stock = [r for r in results if r["scheduler"] != "meta"]
    (patience / "results.json").write_text(json.dumps(stock))
    results = run_suite(suite, patience, progress=False)
    write_report(results, patience, command=f"python {' '.join(sys.argv)} (eval_patience 2, the default)")


if __name__ == "__main__":
    main(*sys.argv[1:])
