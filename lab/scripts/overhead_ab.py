"""The 1000-step tiny GPT-2 Trainer wall-time ratio (meta / cosine) of this checkout against another one, in
alternating subprocesses (old, new, new, old, …), each one cosine-meta-meta-cosine pair of runs of
``metalr_hf.bench.overhead._trainer_wall``:

    git worktree add /tmp/old <commit>
    python lab/scripts/overhead_ab.py /tmp/old [ROUNDS]

Prints each subprocess's ratio; run it with nothing else on the machine.
"""

import json
import subprocess
import sys

CODE = """
import sys
root = sys.argv[1]
if root != "installed":  # the other checkout, ahead of the editable install's finder
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, root)
from transformers import logging
logging.set_verbosity_error()
import json, metalr_hf
from metalr_hf.bench.overhead import _trainer_wall
r = _trainer_wall(1000, 0, repeats=2)
print(json.dumps({"package": metalr_hf.__file__, "ratio": r["ratio"], "seconds": r["seconds"]}))
"""

other, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
ratios = {"other": [], "installed": []}
for i in range(rounds):
    for which in ("other", "installed") if i % 2 == 0 else ("installed", "other"):
        root = other if which == "other" else "installed"
        out = subprocess.run([sys.executable, "-c", CODE, root], capture_output=True, text=True, cwd="/")
        lines = [line for line in out.stdout.splitlines() if line.startswith('{"package"')]
        if not lines:
            sys.exit(f"{which} failed:\n{out.stderr[-2000:]}")
        r = json.loads(lines[-1])
        ratios[which].append(r["ratio"])
        print(f"{which:9s} {r['ratio']:.3f}  {r['package']}", flush=True)
for which, values in ratios.items():
    print(f"{which}: ratios {', '.join(f'{x:.3f}' for x in values)}; mean {sum(values) / len(values):.3f}")
