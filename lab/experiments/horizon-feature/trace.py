"""One quick-bench run through the Trainer with the meta scheduler, its controller's state printed step by step.

    python lab/experiments/horizon-feature/trace.py gpt2_lm adam 0.01 [--kwargs '{"max_boost": 1.0}'] [--learner DIR]

Prints, per optimizer step: the step, the loss, the learner's correction δ, the guard's and back-off's scales, the
LR multiplier set for the next step and the features from ``log_loss_rel`` to ``grad_snr``.
"""

from __future__ import annotations

import argparse
import json

import metalr_hf.scheduler as scheduler
from metalr_hf.bench.runner import run_one
from metalr_hf.features import FEATURE_NAMES

SHOWN = slice(FEATURE_NAMES.index("log_loss_rel"), FEATURE_NAMES.index("grad_snr") + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task")
    parser.add_argument("optimizer")
    parser.add_argument("lr", type=float)
    parser.add_argument("--kwargs", type=json.loads, default=None, help="the meta scheduler's options (JSON)")
    parser.add_argument("--learner", default=None, help="folder or name (default: the bundled default)")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    rows = []
    update = scheduler.MetaController._update_values

    def traced(self, x, has_loss, step):
        ok = update(self, x, has_loss, step)
        c = self._control
        feats = " ".join(f"{v:+.2f}" for v in c["features"][SHOWN])
        rows.append(f"{step:4d} {x['loss']:8.4f} {c['delta']:+6.2f} {c['guard_scale']:5.3f} {c['backoff']:5.3f} "
                    f"{self.scale_value(step + 1):6.3f}  {feats}")  # fmt: skip
        return ok

    scheduler.MetaController._update_values = traced
    record = run_one(args.task, "meta", args.optimizer, args.lr, 0, steps=args.steps, evals=4,
                     meta_learner=args.learner, meta_kwargs=args.kwargs)  # fmt: skip
    print(f"features: {' '.join(FEATURE_NAMES[SHOWN])}")
    print("step     loss      δ guard backoff  scale  features")
    print("\n".join(rows))
    print(f"final eval loss {record['final_eval_loss']:.4f}")


if __name__ == "__main__":
    main()
