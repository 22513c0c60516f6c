"""Re-render the card of every bundled learner (``metalr_hf/pretrained/*``) from its own files (``config.json``,
``model.safetensors``, ``card.json``): the one writer into that folder besides the learners' ``save_pretrained``.

    python lab/scripts/build_pretrained.py

The learners themselves are written by ``metalr-hf meta-train --output-dir DIR`` and copied there when they ship.
"""

from pathlib import Path

from metalr_hf import MetaLearner

HERE = Path(__file__).resolve().parents[2] / "metalr_hf" / "pretrained"

for folder in sorted(p for p in HERE.iterdir() if (p / "config.json").is_file()):
    learner = MetaLearner.from_pretrained(folder.name)  # by its bundled name: the card's usage lines name it
    learner.generate_model_card().save(folder / "README.md")
    print(f"{folder.name}: card written from {', '.join(sorted(f.name for f in folder.glob('*.json')))}")
