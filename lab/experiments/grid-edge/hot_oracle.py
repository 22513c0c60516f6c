"""How much of a run 10× too hot can a cut still save? GPT-2 of the quick suite with Adam at 0.3 (its right LR is
0.03), 150 steps, 5 evaluations: the default meta run, and the same run forced to 0.1× the prior from step K on
(K = 0: the tuned LR from the start; 8: right after the 7-step warmup; 26: where the learner's own cut is deepest):

    python lab/experiments/grid-edge/hot_oracle.py [K ...]     # default: -1 (no forcing) 0 8 26
"""

from __future__ import annotations

import math
import sys

from metalr_hf.bench.runner import run_one
from metalr_hf.controller import MetaController

ORIGINAL = MetaController._update_values


def forced_from(k: int):
    def _update_values(self, x, has_loss, step):
        ok = ORIGINAL(self, x, has_loss, step)
        step = self.step_count - 1 if step is None else step
        if step + 1 >= k:  # the LR of step + 1 on
            self._control["delta"] = math.log(0.1)
        return ok

    return _update_values


def main(ks: list[int]) -> None:
    for k in ks:
        MetaController._update_values = ORIGINAL if k < 0 else forced_from(k)
        for seed in (0, 1):
            r = run_one("gpt2_lm", "meta", "adam", 0.3, seed, steps=150, evals=5)
            evals = ", ".join(f"{v:.3f}" for v in r["eval_loss"])
            print(f"K {k:3d} seed {seed}: final eval loss {r['final_eval_loss']:.4f} (evaluations {evals})")
    MetaController._update_values = ORIGINAL


if __name__ == "__main__":
    main([int(k) for k in sys.argv[1:]] or [-1, 0, 8, 26])
