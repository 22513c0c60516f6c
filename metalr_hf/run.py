"""Run an unmodified transformers training script with ``--lr_scheduler_type meta`` available.

    metalr-hf run train.py --lr_scheduler_type meta [script args]
    python -m metalr_hf.run train.py --lr_scheduler_type meta [script args]
    python -m metalr_hf.run -m my_package.train [script args]
    torchrun --nproc_per_node 2 -m metalr_hf.run train.py --lr_scheduler_type meta --ddp_backend gloo [...]
    accelerate launch -m metalr_hf.run train.py --lr_scheduler_type meta [...]

It calls :func:`metalr_hf.enable` and then runs the script as ``__main__`` with ``sys.argv`` set to the script and
its arguments, exactly as ``python train.py ...`` would (same ``sys.path[0]``, same exit code).
"""

from __future__ import annotations

import os
import runpy
import sys

__all__ = ["main"]

USAGE = "usage: metalr-hf run SCRIPT.py [script args]  |  python -m metalr_hf.run [-m MODULE | SCRIPT.py] [args]"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__.strip().split("\n\n")[-1], file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    if argv[0] == "-m" and len(argv) < 2:
        print(f"metalr-hf run: error: -m needs a module name\n{USAGE}", file=sys.stderr)
        return 2
    if argv[0] == "-m" and not _module_exists(argv[1]):
        print(f"metalr-hf run: error: no module named {argv[1]!r}\n{USAGE}", file=sys.stderr)
        return 2
    if argv[0] != "-m" and not os.path.isfile(argv[0]):
        print(f"metalr-hf run: error: no script {argv[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    from .integration import enable

    enable()
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        script = argv[0]
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")
    return 0


def _module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that does not exist, an empty or relative name
        return False


if __name__ == "__main__":
    sys.exit(main())
