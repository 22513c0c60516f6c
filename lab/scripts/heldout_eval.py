"""The held-out zoo evaluation of a learner (the table of its card), summary only.

    python lab/scripts/heldout_eval.py [NAME_OR_FOLDER] [MAX_BOOST] > summary.json

NAME_OR_FOLDER defaults to the bundled default; MAX_BOOST is ``none`` (what the committed evaluations used, the
default), ``auto`` or a number. About 5 minutes on one core.
"""

import json
import sys
import time

import torch

from metalr_hf import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate

torch.set_num_threads(1)
name = sys.argv[1] if len(sys.argv) > 1 else None
boost = sys.argv[2] if len(sys.argv) > 2 else "none"
boost = None if boost == "none" else boost if boost == "auto" else float(boost)
t0 = time.time()
result = evaluate(MetaLearner.from_pretrained(name), EvalConfig(max_boost=boost))
summary = {k: v for k, v in result["summary"].items() if not isinstance(v, (dict, list))}
summary["seconds"] = round(time.time() - t0, 1)
print(json.dumps(summary, indent=1))
