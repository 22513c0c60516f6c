"""``metalr-hf bench``: every scheduler side by side, through the real Trainer; ``--suite overhead`` measures
the per-step cost of meta against cosine on three model sizes and through the Trainer."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import date
from pathlib import Path


def _cmd_bench(args) -> None:
    from .runner import SUITES

    out = Path(args.output_dir)
    command = "metalr-hf " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    if args.suite in ("overhead", "overhead-smoke"):
        from .overhead import measure_overhead, overhead_table

        out.mkdir(parents=True, exist_ok=True)
        if args.suite == "overhead":
            result = measure_overhead(progress=not args.no_progress)
        else:  # a seconds-long check of the harness
            result = measure_overhead(models=("tiny-bert",), pairs=10, trainer_steps=20, progress=False)
        result["command"], result["date"] = command, date.today().isoformat()
        (out / "overhead.json").write_text(json.dumps(result, indent=2))
        table = overhead_table(result)
        (out / "overhead.md").write_text(f"# Scheduler overhead\n\n`{command}`\n\n{table}\n")
        print(table)
        return
    if args.suite not in SUITES:
        raise ValueError(f"unknown suite {args.suite!r}; valid suites: {list(SUITES) + ['overhead']}")
    from .report import write_report
    from .runner import run_suite

    results = run_suite(
        args.suite,
        out,
        tasks=args.tasks,
        schedulers=args.schedulers,
        meta_learner=args.meta_learner,
        progress=not args.no_progress,
        meta_kwargs=args.meta_kwargs,
        seeds=args.seeds,
    )
    from .report import verdict

    write_report(results, out, title=f"metalr-hf bench — suite `{args.suite}` ({date.today()})", command=command)
    print("\n".join(verdict(results)))
    print(f"report, with every scheduler and plots: {out / 'report.md'}")


def _json_object(text: str) -> dict:
    import argparse

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object is needed, got {text!r}")
    return value


def register(sub) -> None:
    b = sub.add_parser("bench", help="Compare meta with every standard scheduler; writes results, report, plots.")
    b.add_argument(
        "--suite",
        default="smoke",
        help="smoke (<1 min) | quick (<15 min) | full | overhead (minutes) | overhead-smoke",
    )
    b.add_argument("--output-dir", required=True)
    b.add_argument("--tasks", nargs="*", default=None, help="restrict to these tasks")
    b.add_argument("--schedulers", nargs="*", default=None, help="restrict to these schedulers")
    b.add_argument(
        "--seeds", nargs="*", type=int, default=None, help="these seeds instead of the suite's (e.g. 0 1 2 3)"
    )
    b.add_argument("--meta-learner", default=None, help="folder or Hub repo id (default: the bundled learner)")
    b.add_argument(
        "--meta-kwargs",
        type=_json_object,
        default=None,
        help="options of the meta runs, as lr_scheduler_kwargs (JSON), e.g. '{\"max_boost\": null}'",
    )
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_cmd_bench)
