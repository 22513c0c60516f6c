"""Boost early, not late: the learner's boost capped at the base LR (``peak``) from a point of the run on.

The rescue of a base LR far too small happens early; the right-LR loss is a boost held through the run. A wrapper
around the learner caps δ at ``-log(prior)`` (the LR at most the base LR) once ``progress ≥ after``; before that the
learner is free. Declared table on the held-out zoo, around WSD, one row per ``after``:

    python lab/experiments/late-cap/late_cap.py OUT metalr-default-v3 0.3 0.8
"""

import sys
import time

import torch

from metalr_hf import MetaLearner
from metalr_hf.features import FEATURE_NAMES
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate


class LateCap(MetaLearner):
    def __init__(self, inner: MetaLearner, after: float):
        torch.nn.Module.__init__(self)
        self.inner, self.config, self.after = inner, inner.config, after

    @property
    def device(self):
        return self.inner.device

    @property
    def state_size(self):
        return self.inner.state_size

    def init_state(self, batch_size: int = 1):
        return self.inner.init_state(batch_size)

    def one_run_step(self):
        return None

    def forward(self, features, state):
        delta, state = self.inner(features, state)
        progress = features[:, FEATURE_NAMES.index("progress")].float()
        prior = features[:, FEATURE_NAMES.index("prior")].float().clamp_min(1e-6)
        late = progress >= self.after
        return torch.where(late, torch.minimum(delta, -torch.log(prior)), delta), state


out, name, afters = sys.argv[1], sys.argv[2], [float(a) for a in sys.argv[3:]]
rows = ["| cap from progress | (a) right-LR worst / ≤ 1.02 (+ ties) | (b) median / p90 regret | (c) ≤ best stock "
        "| (d) rescue, worst |", "|---|---|---|---|---|"]  # fmt: skip
for after in afters:
    t0 = time.time()
    d = evaluate(LateCap(MetaLearner.from_pretrained(name), after), EvalConfig(prior="wsd"))["summary"]["declared"]
    s = d["summary"]
    rows.append(
        f"| {after:g} | {s['right_lr_ratio_max']:.3f} / {s['right_lr_pass']} (+{s['right_lr_tie']}) of {s['tasks']} | "
        f"{s['median_regret']:+.1%} / {s['p90_regret']:+.1%} | {s['le_best_stock']:.0%} | {s['rescue_min']:+.0%} |"
    )
    print(rows[-1], f"{time.time() - t0:.0f} s", flush=True)
with open(out + ".md", "w") as f:
    f.write("\n".join(rows) + f"\n\n`python {' '.join(sys.argv)}`\n")
