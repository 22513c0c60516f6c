"""``smoothing`` on the zoo's fine-tuning families (a pretrained hidden layer, a new head, 32-128 examples; runs of
the zoo's 300 steps, not the finetune suite's 40-60): the declared table for the learner a user gets on such runs
(``metalr-finetune-v1``), around WSD, ``eval_patience`` 2, 10 evaluations a run. Is ``"auto"``'s 0 on pretrained
runs about fine-tuning, or about short runs?

    python lab/experiments/delta-smooth/finetune_zoo.py [LEARNER] [SMOOTHING[:CUT[:OVERFIT]][+PROTOTYPE][@PRIOR] ...]

``@PRIOR``: the prior the learner corrects (``wsd`` unless given). ``+PROTOTYPE``, one of ``smooth.py``'s: ``+vetoS``
(no cut while the training loss falls faster than S per tenth of the run), ``+ratchetK`` (a cut not relaxed while it
is flat), ``+gapG`` (no boost while the evaluation's log-loss is G above the training loss's).
"""

from __future__ import annotations

import functools
import json
import sys

from metalr_hf import MetaLearner
from metalr_hf.metatrain import simulate as sim
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate
from metalr_hf.metatrain.families import FINETUNE


def main(name: str = "metalr-finetune-v1", *values: str) -> None:
    learner = MetaLearner.from_pretrained(name)
    original = sim.MetaController
    for value in values or ("0", "0.5", "0.9"):
        value, _, prior = value.partition("@")
        value, _, gap = value.partition("+gap")
        value, _, ratchet = value.partition("+ratchet")
        value, _, veto = value.partition("+veto")
        from smooth import FallVeto, GapHold, PlateauRatchet  # this folder's prototypes

        if veto:
            sim.MetaController = functools.partial(FallVeto, fall=float(veto))
        if gap:
            sim.MetaController = functools.partial(GapHold, gap=float(gap))
        if ratchet:
            sim.MetaController = functools.partial(PlateauRatchet, flat=float(ratchet))
        smoothing, cut, overfit = (value.split(":") + ["1", "none"][value.count(":") :])[:3]
        overfit = None if overfit == "none" else float(overfit)
        cfg = EvalConfig(families=FINETUNE, prior=prior or "wsd", eval_patience=2, evals=10,
                         smoothing=float(smoothing), eval_cut=float(cut), eval_overfit=overfit)  # fmt: skip
        summary = evaluate(learner, cfg)["summary"]["declared"]["summary"]
        sim.MetaController = original
        print(f"smoothing={smoothing} eval_cut={cut} eval_overfit={overfit} veto={veto or None} "
              f"ratchet={ratchet or None} gap={gap or None} prior={prior or 'wsd'}",
              json.dumps(summary), flush=True)  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
