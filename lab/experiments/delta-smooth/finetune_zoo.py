"""``smoothing`` on the zoo's fine-tuning families (a pretrained hidden layer, a new head, 32-128 examples; runs of
the zoo's 300 steps, not the finetune suite's 40-60): the declared table for the learner a user gets on such runs
(``metalr-finetune-v1``), around WSD, ``eval_patience`` 2, 10 evaluations a run. Is ``"auto"``'s 0 on pretrained
runs about fine-tuning, or about short runs?

    python lab/experiments/delta-smooth/finetune_zoo.py [LEARNER] [SMOOTHING[:EVAL_CUT[:EVAL_OVERFIT]] ...]
"""

from __future__ import annotations

import json
import sys

from metalr_hf import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate
from metalr_hf.metatrain.families import FINETUNE


def main(name: str = "metalr-finetune-v1", *values: str) -> None:
    learner = MetaLearner.from_pretrained(name)
    for value in values or ("0", "0.5", "0.9"):
        smoothing, cut, overfit = (value.split(":") + ["1", "none"][value.count(":") :])[:3]
        overfit = None if overfit == "none" else float(overfit)
        cfg = EvalConfig(families=FINETUNE, prior="wsd", eval_patience=2, evals=10, smoothing=float(smoothing),
                         eval_cut=float(cut), eval_overfit=overfit)  # fmt: skip
        summary = evaluate(learner, cfg)["summary"]["declared"]["summary"]
        print(f"smoothing={smoothing} eval_cut={cut} eval_overfit={overfit}", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
