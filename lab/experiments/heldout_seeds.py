"""The held-out zoo evaluation (`EvalConfig`: 7 families, Adam and SGD, base LRs 1e-4, 1e-3, 1e-2, 300 steps) on
other seeds than the shipped learners' tables use (0, 1, 2): how much of a gap between two learners is the seeds?

    python lab/experiments/heldout_seeds.py OUT.json [SEED ...] [--learners NAME_OR_DIR ...] [--prior P]
        [--decay-fraction F] [--horizon T] [--table OUT.md] [--controller-kwargs JSON]

Default: seeds 3 4 5; learners metalr-default-v3, metalr-scratch-v1 and, where their folders exist, the
experiments' runs/scratch-judge5/learner and runs/scratch-short/learner. The baselines are simulated once.
``--prior`` (and ``--decay-fraction``, the WSD prior's decay) set the schedule the meta runs correct; ``--table``
writes the last learner's held-out table; ``--horizon`` sets the runs' length (300).
"""

import argparse
import functools
import json
import os

import metalr_hf.metatrain.evaluate as ev
from metalr_hf.learner import MetaLearner

DEFAULT = ["metalr-default-v3", "metalr-scratch-v1", "runs/scratch-judge5/learner", "runs/scratch-short/learner"]
KEYS = ("win_rate_vs_cosine", "median_regret", "worst_regret", "median_steps_ratio_at_best_lr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("seeds", nargs="*", type=int, default=[3, 4, 5])
    parser.add_argument("--learners", nargs="+", default=DEFAULT)
    parser.add_argument("--prior", default="cosine")
    parser.add_argument("--decay-fraction", type=float, default=None)
    parser.add_argument("--horizon", type=int, default=300)
    parser.add_argument("--table", default=None)
    parser.add_argument("--controller-kwargs", type=json.loads, default={}, help="more options of the meta runs")
    args = parser.parse_args()
    cfg = ev.EvalConfig(seeds=tuple(args.seeds), prior=args.prior, horizon=args.horizon)
    # options of the meta runs' controller that EvalConfig does not carry
    options = {} if args.decay_fraction is None else {"decay_fraction": args.decay_fraction}
    options |= args.controller_kwargs
    if options:
        ev.meta_policy = functools.partial(ev.meta_policy, **options)
    rows = {}
    for name in args.learners:
        if name.startswith("runs/") and not os.path.isdir(name):
            continue
        summary = ev.evaluate(MetaLearner.from_pretrained(name), cfg)["summary"]
        rows[name] = {k: summary.get(k) for k in KEYS}
        print(name, {k: rows[name][k] for k in KEYS}, flush=True)
        with open(args.out, "w") as f:
            record = {"seeds": args.seeds, "prior": args.prior, "horizon": args.horizon, "options": options,
                      "learners": rows}  # fmt: skip
            json.dump(record, f, indent=1)
        if args.table:
            with open(args.table, "w") as f:
                f.write(ev.format_eval_table(summary) + "\n")


if __name__ == "__main__":
    main()
