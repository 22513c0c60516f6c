"""Fine-tuning: the held-out table for the fine-tuning families (``families.DECLARED_FINETUNE``): a hidden layer
pretrained on a source task, a new head, then 32-128 labelled examples of the target task. ``digits_finetune`` is held
out from every learner; ``finetune_cls`` is a meta-training family of the `scratch-ft` stage only (fresh seeds here).
Adam and SGD, base LR 1e-4/1e-3/1e-2, seeds 0-2, 300 steps; baselines tuned over the evaluation's LR grid.

Run from the repository root:
    python lab/results/finetune/run.py NAME_OR_FOLDER [LABEL] [MAX_BOOST] [PRIOR]
(writes lab/results/finetune/result-LABEL.json)
MAX_BOOST is the scheduler's ``max_boost``: ``auto`` (the default, what a user gets), ``none`` (cap lifted),
``peak`` or a number; PRIOR the schedule the meta runs correct (``cosine``, the evaluation's default, or ``wsd``:
what ``prior="auto"`` gives these runs, all marked pretrained).
"""

import json
import sys
from pathlib import Path

from metalr_hf.learner import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate, format_eval_table
from metalr_hf.metatrain.families import DECLARED_FINETUNE

if len(sys.argv) < 2:
    sys.exit(
        "usage: python lab/results/finetune/run.py NAME_OR_FOLDER [LABEL] [MAX_BOOST: auto | none | a number] [PRIOR]"
    )
name = sys.argv[1]
label = sys.argv[2] if len(sys.argv) > 2 else Path(name).name
boost = sys.argv[3] if len(sys.argv) > 3 else "auto"
boost = None if boost == "none" else boost if boost in ("auto", "peak") else float(boost)
prior = sys.argv[4] if len(sys.argv) > 4 else "cosine"
cfg = EvalConfig(families=DECLARED_FINETUNE, max_boost=boost, prior=prior)
result = evaluate(MetaLearner.from_pretrained(name), cfg)
result["config"]["learner"] = name
out = Path(f"lab/results/finetune/result-{label}.json")
out.write_text(json.dumps({"config": result["config"], "summary": result["summary"]}, indent=1, default=str))
print(format_eval_table(result["summary"]))
