"""The declared table of a prior schedule alone (the zero learner: δ ≡ 0) on the held-out zoo: what a learner that
leaves every run to its prior would score, the ceiling of a "hold" design at the right LR.

    python lab/scripts/prior_alone_declared.py OUT [PRIOR ...]

writes ``OUT.md`` and ``OUT.json`` (the declared summary and tasks per prior; default prior: wsd). About 4 minutes
per prior on one core (the baselines are simulated once).
"""

import json
import sys
import time

import torch

from metalr_hf import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate
from metalr_hf.metatrain.validation import format_declared_table

out, priors = sys.argv[1], sys.argv[2:] or ["wsd"]
zero = MetaLearner(**MetaLearner.from_pretrained(None).config)
with torch.no_grad():
    for p in zero.parameters():
        p.zero_()
tables, text = {}, []
for prior in priors:
    t0 = time.time()
    declared = evaluate(zero, EvalConfig(prior=prior))["summary"]["declared"]
    tables[prior] = declared
    text.append(
        format_declared_table(declared, title=f"The prior `{prior}` alone (δ ≡ 0) against the best stock schedule")
    )
    text.append(f"\n`{' '.join(sys.argv)}`: {time.time() - t0:.0f} s for `{prior}`\n")
with open(out + ".md", "w") as f:
    f.write("\n".join(text))
with open(out + ".json", "w") as f:
    json.dump(tables, f, indent=1, default=str)
