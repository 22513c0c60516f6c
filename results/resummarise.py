"""Recompute the aggregates of committed evaluations from their per-run results (no re-run), rewrite each
``eval.md`` and the results section of the cards of the shipped learners evaluated there.

    python results/resummarise.py

Added when the seed-replicate aggregates (``tuned_*`` in ``metalr_hf.metatrain.evaluate``) were; the per-run results
in ``eval.json`` are unchanged, so every figure already published stays as it was.
"""

import json
from pathlib import Path

from metalr_hf import MetaLearner
from metalr_hf.hub import CARD_CONTEXT_FILE, learner_card
from metalr_hf.metatrain.evaluate import EvalConfig, results_text, tuned_summary

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT.parent / "metalr_hf" / "pretrained"
# shipped learner -> the folder holding its held-out evaluation (the one its card cites)
CARDS = {
    "metalr-default-v2": "meta-train-default-v2",
    "metalr-default-v3": "meta-train-default-v3",
    "metalr-scratch-v1": "meta-train-scratch",
}

texts = {}
for path in sorted(ROOT.glob("**/eval.json")):
    result = json.loads(path.read_text())
    raw = result["config"]
    lists = {k: tuple(raw[k]) for k in ("families", "optimizers", "eval_lrs", "seeds")}
    cfg = EvalConfig(**{**raw, **lists, "lr_grid": {k: tuple(v) for k, v in raw["lr_grid"].items()}})
    result["summary"].update(tuned_summary(result["runs"], cfg))
    texts[path.parent.name] = text = results_text(cfg, result["summary"], result.get("horizon_check"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(path)
    (path.parent / "eval.md").write_text(text + "\n")
    s = result["summary"]
    print(
        f"{path.parent.name}: per seed {s['win_rate_vs_cosine']:.0%} <= cosine, worst {s['worst_regret']:+.1%}; "
        f"seed means {s['tuned_win_rate_vs_cosine']:.0%}, worst / median to tuned once "
        f"{s['tuned_worst_regret']:+.1%} / {s['tuned_median_regret']:+.1%}, within 10 %: "
        f"{s['tuned_within_10pct']}/{s['tuned_cells']}"
    )

for name, folder in CARDS.items():
    learner_dir = PACKAGE / name
    context_path = learner_dir / CARD_CONTEXT_FILE
    context = json.loads(context_path.read_text())
    context["results_table"] = texts[folder]
    context_path.write_text(json.dumps(context, indent=2, ensure_ascii=False) + "\n")
    learner = MetaLearner.from_pretrained(str(learner_dir))
    learner_card(learner, folder=learner_dir).save(learner_dir / "README.md")
