"""The meta-training cache folder and the held-out evaluation's baseline runs kept in it.

The folder is ``METALR_HF_CACHE`` (default ``~/.cache/metalr-hf``). The zoo's stock baselines (``cosine``,
``linear``, ``wsd``, ``constant`` over the LR grid) do not depend on the learner, and the simulation is
deterministic, so an evaluation config's baseline runs are simulated once — per process in memory, across processes
in ``zoo-baselines/<key>.json`` — and every learner is compared with the same runs. The file's name hashes the
config's baseline fields and the code that simulates them (every module of the package, torch's and numpy's
versions): a change to any of them simulates the baselines again instead of reading stale ones. A damaged file is
named in a warning and simulated again; files are written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .._files import loads_bounded, write_text_atomic

__all__ = ["baseline_path", "cache_dir", "code_fingerprint", "load_baselines", "save_baselines"]

_PACKAGE = Path(__file__).resolve().parent.parent
_BASELINE_RUNS: dict[str, list[dict]] = {}  # per process: path -> runs


def cache_dir(name: str) -> Path:
    """The sub-folder ``name`` of the cache folder (not created)."""
    return Path(os.environ.get("METALR_HF_CACHE") or Path.home() / ".cache" / "metalr-hf") / name


@functools.cache
def code_fingerprint() -> str:
    """A hash of the package's sources and of the torch and numpy versions (computed once per process)."""
    h = hashlib.sha256(f"torch {torch.__version__} numpy {np.__version__}".encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def baseline_path(key: str) -> Path:
    """The file of the baseline runs of an evaluation config whose baseline fields are ``key`` (JSON)."""
    digest = hashlib.sha256(f"{key}\0{code_fingerprint()}".encode()).hexdigest()[:20]
    return cache_dir("zoo-baselines") / f"{digest}.json"


def load_baselines(key: str, expected: int) -> list[dict] | None:
    """The cached baseline runs of ``key`` (``expected`` of them), from memory or the cache folder; None if absent
    or damaged (a warning names the file)."""
    path = baseline_path(key)
    if str(path) in _BASELINE_RUNS:
        return _BASELINE_RUNS[str(path)]
    if not path.is_file():
        return None
    try:
        data = loads_bounded(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("runs"), list):
            raise ValueError(f"it does not hold the baseline runs of {key}")
        runs = data["runs"]
        if len(runs) != expected or not all(isinstance(r, dict) and "final_val_loss" in r for r in runs):
            raise ValueError(f"it holds {len(runs)} runs, not the {expected} of this config")
    except (OSError, ValueError) as e:
        warnings.warn(f"metalr-hf: damaged cached baseline runs {path} ({e}); simulating them again", stacklevel=3)
        return None
    _BASELINE_RUNS[str(path)] = runs
    return runs


def save_baselines(key: str, runs: list[dict]) -> None:
    """Write ``runs`` to the cache folder (atomically) and keep in memory what a later process would read there."""
    path, text = baseline_path(key), json.dumps({"key": key, "runs": runs})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    _BASELINE_RUNS[str(path)] = json.loads(text)["runs"]
