"""``eval_patience`` on the zoo's fine-tuning families (a pretrained hidden layer, a new head, 32-128 examples):
the declared table with and without it, for the learner a user gets on such runs (``metalr-finetune-v1``), around
WSD, 10 evaluations a run.

    python lab/experiments/eval-hold/finetune_zoo.py [LEARNER]
"""

from __future__ import annotations

import json
import sys

from metalr_hf import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate
from metalr_hf.metatrain.families import DECLARED_FINETUNE


def main(name: str = "metalr-finetune-v1") -> None:
    learner = MetaLearner.from_pretrained(name)
    for patience in (None, 2):
        cfg = EvalConfig(families=DECLARED_FINETUNE, prior="wsd", eval_patience=patience, evals=10)
        summary = evaluate(learner, cfg)["summary"]["declared"]["summary"]
        print(f"eval_patience={patience}", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
