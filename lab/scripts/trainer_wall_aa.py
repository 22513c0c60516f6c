"""The 1000-step tiny GPT-2 Trainer wall-time ratio (meta / cosine) beside an A/A reference: a second stock cosine
run alternated with the first, whose ratio shows how far this machine's run-to-run noise alone moves the figure.

    python lab/scripts/trainer_wall_aa.py [STEPS] [ROUNDS]

Each round runs cosine, meta and cosine again (reversed every other round) in one process. Run it with nothing
else on the machine.
"""

import sys

from transformers import logging

from metalr_hf.bench.overhead import _trainer_wall

logging.set_verbosity_error()
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
r = _trainer_wall(steps, 0, repeats=rounds, kinds=("cosine", "meta", "cosine-again"))
for kind, seconds in r["seconds"].items():
    print(f"{kind:13s} {' '.join(f'{s:.2f}' for s in seconds)} s; ratio to cosine {r['ratios'][kind]:.3f}")
