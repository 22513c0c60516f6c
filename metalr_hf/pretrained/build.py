"""Re-render the card of every bundled learner from its own files (``config.json``, ``model.safetensors``,
``card.json``): the one writer into this folder besides the learners' own ``save_pretrained``.

    python metalr_hf/pretrained/build.py

Not part of the installed package (this folder holds no Python package); the learners themselves are written by
``metalr-hf meta-train --output-dir DIR`` and copied here when they ship.
"""

from pathlib import Path

from metalr_hf import MetaLearner

HERE = Path(__file__).resolve().parent

for folder in sorted(p for p in HERE.iterdir() if (p / "config.json").is_file()):
    learner = MetaLearner.from_pretrained(str(folder))
    learner.generate_model_card().save(folder / "README.md")
    print(f"{folder.name}: card written from {', '.join(sorted(f.name for f in folder.glob('*.json')))}")
