"""Does a shipped learner hold up on 1000-step runs (v1, v2 and scratch-v1 were meta-trained on runs of at most
400 steps, v3 also on 300-2000-step runs)? Held-out families,
Adam and SGD, base LR 1e-4/1e-3/1e-2, seeds 0 and 1; meta against cosine at the same base LR.

Run from the repository root:
    python lab/results/long-horizon/run.py                      (the default learner; writes result.json)
    python lab/results/long-horizon/run.py metalr-scratch-v1    (a bundled learner by name; writes result-NAME.json)
"""

import json
import sys

from metalr_hf.learner import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, format_horizon_table, horizon_check

name = sys.argv[1] if len(sys.argv) > 1 else None
cfg = EvalConfig(seeds=(0, 1), horizon=1000)
check = horizon_check(MetaLearner.from_pretrained(name), cfg, factors=(1.0,))
out = "lab/results/long-horizon/result.json" if name is None else f"lab/results/long-horizon/result-{name}.json"
json.dump({"config": {"horizon": 1000, "seeds": [0, 1], "learner": name or "default"}, "check": check}, open(out, "w"))
print(format_horizon_table(check))
