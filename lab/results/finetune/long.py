"""The fine-tuning families (``families.DECLARED_FINETUNE``) on longer runs: ``metalr-finetune-v1`` around cosine and
around WSD (what ``prior="auto"`` gives a fine-tuning run), the baselines simulated once for both. Run from the
repository root:

    python lab/results/finetune/long.py [HORIZON] [SEEDS]   (default 1000 steps, seeds 0,1; ~7 minutes on 2 cores)

Writes ``lab/results/finetune/result-ft4-long-PRIOR-HORIZON.json`` and prints both tables.
"""

import json
import sys
from pathlib import Path

from metalr_hf.learner import MetaLearner
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate, format_eval_table
from metalr_hf.metatrain.families import DECLARED_FINETUNE

horizon = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
seeds = tuple(int(s) for s in sys.argv[2].split(",")) if len(sys.argv) > 2 else (0, 1)
learner = MetaLearner.from_pretrained("metalr-finetune-v1")
for prior in ("cosine", "wsd"):
    result = evaluate(learner, EvalConfig(families=DECLARED_FINETUNE, prior=prior, horizon=horizon, seeds=seeds))
    result["config"]["learner"] = "metalr-finetune-v1"
    out = Path(f"lab/results/finetune/result-ft4-long-{prior}-{horizon}.json")
    out.write_text(json.dumps({"config": result["config"], "summary": result["summary"]}, indent=1, default=str))
    print(f"## around {prior}\n\n{format_eval_table(result['summary'])}\n", flush=True)
