"""Per-cell regrets of the zoo's fine-tuning families (the declared table's cells, ``finetune_zoo.py``'s setting)
for the fine-tuning learner with several VARIANTs side by side: where a prototype gains and where it loses.

    python lab/experiments/delta-smooth/ft_cells.py [LEARNER] VARIANT [VARIANT ...]   (~2 minutes a VARIANT)
"""

from __future__ import annotations

import sys

from smooth import controller_for, variant_parts

from metalr_hf import MetaLearner
from metalr_hf.metatrain import simulate as sim
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate
from metalr_hf.metatrain.families import DECLARED_FINETUNE
from metalr_hf.metatrain.validation import Run, declared_table


def main(name: str, *variants: str) -> None:
    learner, original, cells = MetaLearner.from_pretrained(name), sim.MetaController, {}
    for variant in variants:
        proto = controller_for(variant)
        sim.MetaController = proto or original
        cfg = EvalConfig(families=DECLARED_FINETUNE, prior="wsd", eval_patience=2, evals=10, smoothing=0.0,
                         eval_cut=4.0, eval_overfit=0.1, eval_gap=variant_parts(variant).get("lga"),
                         eval_trust=variant_parts(variant).get("ltr"))  # fmt: skip
        runs = evaluate(learner, cfg)["runs"]  # the summary keeps the declared table's tasks, not its cells
        keys = ("family", "optimizer", "base_lr", "seed", "schedule", "final_val_loss")
        cells[variant] = declared_table([Run(*(r[k] for k in keys)) for r in runs])["cells"]
        sim.MetaController = original
    print("task optimizer base_lr near " + " ".join(f"{v[:22]:>22}" for v in variants))
    for row in zip(*cells.values(), strict=True):
        c = row[0]
        print(f"{c['task']} {c['optimizer']} {c['base_lr']:.0e} {int(c['near_right_lr'])} "
              + " ".join(f"{r['regret']:+22.3f}" for r in row))  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
