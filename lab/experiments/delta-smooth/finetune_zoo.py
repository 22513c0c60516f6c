"""``smoothing`` on the zoo's fine-tuning families (a pretrained hidden layer, a new head, 32-128 examples; runs of
the zoo's 300 steps, not the finetune suite's 40-60): the declared table for the learner a user gets on such runs
(``metalr-finetune-v1``), around WSD, ``eval_patience`` 2, 10 evaluations a run. Is ``"auto"``'s 0 on pretrained
runs about fine-tuning, or about short runs?

    python lab/experiments/delta-smooth/finetune_zoo.py [LEARNER] [SMOOTHING[:CUT[:OVERFIT]][+PROTOTYPE][@PRIOR] ...]

``@PRIOR``: the prior the learner corrects (``wsd`` unless given). ``+PROTOTYPE``: any of ``smooth.py``'s VARIANT
prototypes, e.g. ``+veto0.3`` (no cut while the training loss falls faster than S per tenth of the run),
``+ratchet0.05`` (a cut not relaxed while it is flat), ``+gap0.15`` (no boost while the evaluation's log-loss is G
above the training loss's); the package's options ``+lgapG`` (``eval_gap``), ``+ltrustM`` (``eval_trust``) with
``+tfloorF`` (its floor at F × the prior).
"""

from __future__ import annotations

import json
import math
import sys

from metalr_hf import MetaLearner
from metalr_hf.metatrain import simulate as sim
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate
from metalr_hf.metatrain.families import DECLARED_FINETUNE
from metalr_hf.options import TRUST_FLOOR


def main(name: str = "metalr-finetune-v1", *values: str) -> None:
    learner = MetaLearner.from_pretrained(name)
    original = sim.MetaController
    for value in values or ("0", "0.5", "0.9"):
        value, _, prior = value.partition("@")
        value, _, tail = value.partition("+")
        from smooth import controller_for, variant_parts  # this folder's prototypes

        prototype = controller_for(tail) if tail else None
        gap = variant_parts(tail).get("lga") if tail else None  # ``+lgapG``: the package's ``eval_gap``
        trust = variant_parts(tail).get("ltr") if tail else None  # ``+ltrustM``: the package's ``eval_trust``
        floor = variant_parts(tail).get("tfl") if tail else None  # ``+tfloorF``: its floor at F × the prior
        from metalr_hf.eval_hold import EvalHolds

        EvalHolds.log_trust_floor = math.log(floor or TRUST_FLOOR)
        if prototype is not None:
            sim.MetaController = prototype
        smoothing, cut, overfit = (value.split(":") + ["1", "none"][value.count(":") :])[:3]
        overfit = None if overfit == "none" else float(overfit)
        cfg = EvalConfig(families=DECLARED_FINETUNE, prior=prior or "wsd", eval_patience=2, evals=10,
                         smoothing=float(smoothing), eval_cut=float(cut), eval_overfit=overfit,
                         eval_gap=gap, eval_trust=trust)  # fmt: skip
        summary = evaluate(learner, cfg)["summary"]["declared"]["summary"]
        sim.MetaController = original
        print(f"smoothing={smoothing} eval_cut={cut} eval_overfit={overfit} prototype={tail or None} "
              f"prior={prior or 'wsd'}", json.dumps(summary), flush=True)  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
