"""Keep the warmup: the declared table on the held-out zoo with ``warmup_boost=False`` (the learner may not raise
the LR above the prior while the warmup lasts), around WSD, for a learner (default ``metalr-default-v3``):

    python lab/experiments/warmup-hold/hold.py runs/warmup-hold-zoo [LEARNER]

The Trainer suites run through the CLI (see README.md here).
"""

from __future__ import annotations

import sys
import time

from metalr_hf import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate, results_text


def main(out: str, name: str = "metalr-default-v3") -> None:
    cfg = EvalConfig(prior="wsd", warmup_boost=False)
    t0 = time.time()
    result = evaluate(MetaLearner.from_pretrained(name), cfg)
    with open(out + ".md", "w") as f:
        f.write(results_text(cfg, result["summary"], None) + f"\n\n`python {' '.join(sys.argv)}`: "
                f"{time.time() - t0:.0f} s\n")  # fmt: skip
    print(result["summary"]["declared"]["summary"], flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
