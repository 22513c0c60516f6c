"""The held-out zoo evaluation (`EvalConfig`: 7 families, Adam and SGD, base LRs 1e-4, 1e-3, 1e-2, 300 steps) on
other seeds than the shipped learners' tables use (0, 1, 2): how much of a gap between two learners is the seeds?

    python experiments/heldout_seeds.py OUT.json [SEED ...] [--learners NAME_OR_DIR ...]

Default: seeds 3 4 5; learners metalr-default-v3, metalr-scratch-v1 and, where their folders exist, the
experiments' runs/scratch-judge5/learner and runs/scratch-short/learner. The baselines are simulated once.
"""

import argparse
import json
import os

from metalr_hf.learner import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate

DEFAULT = ["metalr-default-v3", "metalr-scratch-v1", "runs/scratch-judge5/learner", "runs/scratch-short/learner"]
KEYS = ("win_rate_vs_cosine", "median_regret", "worst_regret", "median_steps_ratio_at_best_lr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("seeds", nargs="*", type=int, default=[3, 4, 5])
    parser.add_argument("--learners", nargs="+", default=DEFAULT)
    args = parser.parse_args()
    cfg = EvalConfig(seeds=tuple(args.seeds))
    rows = {}
    for name in args.learners:
        if name.startswith("runs/") and not os.path.isdir(name):
            continue
        summary = evaluate(MetaLearner.from_pretrained(name), cfg)["summary"]
        rows[name] = {k: summary.get(k) for k in KEYS}
        print(name, {k: rows[name][k] for k in KEYS}, flush=True)
        with open(args.out, "w") as f:
            json.dump({"seeds": args.seeds, "learners": rows}, f, indent=1)


if __name__ == "__main__":
    main()
