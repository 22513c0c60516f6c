"""More seeds (2-5) for two tail cells of `metalr-hf bench --suite finetune`: MiniLM at 10x its usual LR (5e-4)
and the zoo head at 4x (4e-3, its best), for cosine, the shipped pair (metalr-finetune-v1 here) and the
`hf-finetune-wide-short` learner (uncapped; skipped unless runs/hf-wide-short/learner exists).

    python lab/experiments/tail_seeds.py runs/tail-seeds.json
"""

import json
import os
import sys

from metalr_hf.bench.runner import SUITES, run_one

suite = SUITES["finetune"]
out = sys.argv[1]
rows = []
for task, lr in [("minilm_sst", 5e-4), ("zoo_text_cls", 4e-3)]:
    for seed in (2, 3, 4, 5):
        for label, sched, learner, kw in [
            ("cosine", "cosine", None, None),
            ("v1", "meta", None, None),
            ("wide-short", "meta", "runs/hf-wide-short/learner", {"max_boost": None}),
        ]:
            if learner is not None and not os.path.isdir(learner):
                continue
            r = run_one(task, sched, "adam", lr, seed, suite.steps, suite.evals, learner, kw)
            rows.append(
                {
                    "label": label,
                    "task": task,
                    "lr": lr,
                    "seed": seed,
                    "loss": r["final_eval_loss"],
                    "primary": r["primary"],
                }
            )
            print(rows[-1], flush=True)
            json.dump(rows, open(out, "w"), indent=1)
