"""Run an unshipped meta-training experiment: its presets are registered, then meta-trained as a shipped one.

    python lab/experiments/run.py PRESET --output-dir DIR [--no-resume] [--no-eval]

PRESET is one of ``lab/experiments/presets.py`` (a stage that continues a shipped preset runs that one first, in
``DIR/stage-<name>``). Needs ``pip install -e ".[metatrain]"``.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from presets import EXPERIMENTS, ZERO_SKIP  # noqa: E402

from metalr_hf.metatrain.es import meta_train  # noqa: E402
from metalr_hf.metatrain.presets import register  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(EXPERIMENTS))
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--no-eval", action="store_true")
    args = parser.parse_args()
    register(EXPERIMENTS)
    if args.preset in ZERO_SKIP:  # the warmup's LR-0 step hidden from the learner, in training and evaluation
        sys.path.insert(0, str(Path(__file__).resolve().parent / "delta-smooth"))
        from smooth import ZeroSkip

        from metalr_hf.metatrain import simulate

        simulate.MetaController = ZeroSkip
    meta_train(args.preset, args.output_dir, resume=not args.no_resume, evaluate_at_end=not args.no_eval)


if __name__ == "__main__":
    main()
