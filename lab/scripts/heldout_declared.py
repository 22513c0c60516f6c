"""The held-out zoo evaluation of a learner with the declared validation table (``metatrain/validation.py``).

    python lab/scripts/heldout_declared.py NAME_OR_FOLDER PRIOR OUT

writes ``OUT.md`` (the card's tables, then the declared table) and ``OUT.json`` (the declared table's summary and
tasks). PRIOR is the prior meta corrects (``wsd``: the default). About 5 minutes on one core.
"""

import json
import sys
import time

from metalr_hf import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate, results_text

name, prior, out = sys.argv[1:4]
cfg = EvalConfig(prior=prior)
t0 = time.time()
result = evaluate(MetaLearner.from_pretrained(name), cfg)
seconds = time.time() - t0
with open(out + ".md", "w") as f:
    f.write(results_text(cfg, result["summary"], None) + f"\n\n`{' '.join(sys.argv)}`: {seconds:.0f} s\n")
with open(out + ".json", "w") as f:
    json.dump(result["summary"]["declared"], f, indent=1, default=str)
