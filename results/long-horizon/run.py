"""Does the shipped learner (meta-trained on 100-400-step runs) hold up on 1000-step runs? Held-out families,
Adam and SGD, base LR 1e-4/1e-3/1e-2, seeds 0 and 1; meta against cosine at the same base LR.

Run from the repository root: python results/long-horizon/run.py   (writes results/long-horizon/result.json)
"""

import json

from metalr_hf.learner import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, format_horizon_table, horizon_check

cfg = EvalConfig(seeds=(0, 1), horizon=1000)
check = horizon_check(MetaLearner.from_pretrained(None), cfg, factors=(1.0,))
json.dump({"config": {"horizon": 1000, "seeds": [0, 1]}, "check": check}, open("results/long-horizon/result.json", "w"))
print(format_horizon_table(check))
