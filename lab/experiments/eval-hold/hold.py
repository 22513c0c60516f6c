"""The boost withdrawn once the evaluations stop improving (``eval_patience``), on the held-out zoo around WSD.

    python lab/experiments/eval-hold/hold.py OUT [LEARNER] [VARIANT ...]

VARIANT is ``evals:patience[:factor]``: the scheduler reads ``evals`` evaluations per 300-step run (every ``300 //
evals`` steps, as a Trainer's ``eval_steps``). Without ``factor``, the product's rule (``eval_patience``): from the
``patience``-th evaluation in a row without a new best eval loss, δ ≤ 0 until a new best. With a ``factor`` (a
prototype, not in the package) each such stale stretch lowers the cap on the boost to the current boost /
``factor``, never below 1, for good, and the count starts again; ``inf``: no boost for the rest of the run (the
first version of the rule); ``cutN``: the product's rule with ``eval_cut`` N (while stale, the LR at most the prior
/ N). Default variants: 30:1 10:1 30:2 10:2. Writes ``OUT-VARIANT.md`` and prints the declared summary of each; the
baselines are simulated once per process.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time

import torch

from metalr_hf import MetaLearner
from metalr_hf.controller import MetaController
from metalr_hf.metatrain import simulate as sim
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate, results_text


class FactorHold(MetaController):
    """The prototype with a graded withdrawal: each stale stretch divides the allowed boost by ``factor``, for good
    (``inf``: the boost is gone for the rest of the run)."""

    def __init__(self, *args, patience=1, factor=2.0, **kwargs):
        super().__init__(*args, **{**kwargs, "eval_patience": None})
        B = self.extractor.batch_size
        self.patience, self.log_factor = patience, math.log(factor)
        self.cap = torch.full((B,), float("inf"))
        self.best_seen = torch.full((B,), float("inf"), dtype=torch.float64)
        self.stale = torch.zeros(B)

    def observe_eval(self, loss):
        loss = torch.nan_to_num(torch.as_tensor(loss, dtype=torch.float64), nan=float("inf"))
        improved = loss < self.best_seen
        self.best_seen = torch.minimum(self.best_seen, loss)
        self.stale = torch.where(improved, torch.zeros_like(self.stale), self.stale + 1)
        stale = self.stale >= self.patience
        lowered = (torch.minimum(self.cap, self.delta) - self.log_factor).clamp(min=0.0)
        self.cap = torch.where(stale, lowered, self.cap)
        self.stale = torch.where(stale, torch.zeros_like(self.stale), self.stale)
        self.delta = torch.minimum(self.delta, self.cap)
        return stale

    def boost_cap(self, step=0):
        return torch.minimum(super().boost_cap(step), self.cap)


def main(out: str, name: str = "metalr-default-v3", *variants: str) -> None:
    learner = MetaLearner.from_pretrained(name)
    original = sim.MetaController
    for variant in variants or ("30:1", "10:1", "30:2", "10:2"):
        evals, patience, *factor = variant.split(":")
        cut = float(factor[0][3:]) if factor and factor[0].startswith("cut") else 1.0
        factor = factor if cut == 1.0 else []
        cfg = EvalConfig(prior="wsd", evals=int(evals), eval_patience=None if factor else int(patience), eval_cut=cut)
        if factor:
            sim.MetaController = functools.partial(FactorHold, patience=int(patience), factor=float(factor[0]))
        t0 = time.time()
        result = evaluate(learner, cfg)
        sim.MetaController = original
        with open(f"{out}-{variant.replace(':', '-')}.md", "w") as f:
            f.write(results_text(cfg, result["summary"], None) + f"\n\n`python {' '.join(sys.argv)}` ({variant}): "
                    f"{time.time() - t0:.0f} s\n")  # fmt: skip
        print(variant, json.dumps(result["summary"]["declared"]["summary"], default=str), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
