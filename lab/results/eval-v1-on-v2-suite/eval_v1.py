"""Evaluate the first shipped learner on the current held-out evaluation (all kinds), for comparison."""

import json
import os

from metalr_hf.learner import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate, format_eval_table, format_horizon_table, horizon_check

os.makedirs("runs/eval-v1", exist_ok=True)
learner = MetaLearner.from_pretrained("metalr-default-v1")
cfg = EvalConfig()
result = evaluate(learner, cfg)
result["horizon_check"] = horizon_check(learner, cfg)
json.dump(result, open("runs/eval-v1/eval.json", "w"), indent=1, default=str)
open("runs/eval-v1/eval.md", "w").write(
    format_eval_table(result["summary"])
    + "\n\nMis-specified horizons:\n\n"
    + format_horizon_table(result["horizon_check"])
    + "\n"
)
print(open("runs/eval-v1/eval.md").read()[:1500])
