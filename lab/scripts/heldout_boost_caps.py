"""The held-out zoo's declared table of a learner around WSD under boost caps (``max_boost``): how much of the
right-LR loss and of the rescue comes from raising the LR above the base LR.

    python lab/scripts/heldout_boost_caps.py OUT LEARNER CAP [CAP ...]

CAP is ``peak`` (the LR never above the base LR), a number ≥ 1 (``exp(δ) ≤ CAP``) or ``none`` (the default for runs
from scratch). Writes ``OUT.md`` (one summary row per cap) and ``OUT.json``. About 3 minutes per cap on one core, plus
the baselines once.
"""

import json
import sys
import time

from metalr_hf import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate

out, name, caps = sys.argv[1], sys.argv[2], sys.argv[3:]
learner = MetaLearner.from_pretrained(name)
rows = [
    "| max_boost | (a) right-LR ratio, worst / tasks ≤ 1.02 (+ ties) | (b) median / p90 regret | (c) ≤ best stock "
    "| (d) gap closed at 0.1×, worst | seconds |",
    "|---|---|---|---|---|---|",
]
tables = {}
for cap in caps:
    value = {"peak": "peak", "none": None}.get(cap, None if cap == "none" else cap)
    value = value if value in ("peak", None) else float(cap)
    t0 = time.time()
    declared = evaluate(learner, EvalConfig(prior="wsd", max_boost=value))["summary"]["declared"]
    tables[cap] = declared
    s = declared["summary"]
    rows.append(
        f"| `{cap}` | {s['right_lr_ratio_max']:.3f} / {s['right_lr_pass']} (+{s['right_lr_tie']}) of {s['tasks']} "
        f"| {s['median_regret']:+.1%} / {s['p90_regret']:+.1%} | {s['le_best_stock']:.0%} | {s['rescue_min']:+.0%} "
        f"| {time.time() - t0:.0f} |"
    )
    print(rows[-1], flush=True)
with open(out + ".md", "w") as f:
    f.write(f"{name} around WSD on the held-out zoo (declared table, `validation.py`):\n\n" + "\n".join(rows))
    f.write(f"\n\n`python {' '.join(sys.argv)}`\n")
with open(out + ".json", "w") as f:
    json.dump(tables, f, indent=1, default=str)
