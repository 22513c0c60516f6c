"""Warm start from the run collection: behaviour cloning of the best-in-hindsight schedule of every task.

The collection (``metalr-hf collect``) runs each task (same data, initialisation, data order and base LR)
under several schedules. For every task the run with the lowest final validation loss is the teacher; its LR
trajectory, read as the learner's correction ``δ*_t = log(η_t / (η_0 · prior_t))`` clipped to ``±max_delta``,
is the target at every step where the prior is not ~0. The learner reads the features recorded along that
run (the same ``FeatureExtractor`` as in meta-training and in the Trainer), with the ``prev_delta`` column set
to the teacher's previous correction (teacher forcing), and is fitted by backpropagation through time on the
mean squared error. Evolution strategies then start from the cloned learner.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..features import FEATURE_NAMES
from ..learner import MetaLearner
from ..schedules import prior_multiplier

__all__ = ["behaviour_cloning", "cloning_targets"]

_PRIOR = FEATURE_NAMES.index("prior")
_PREV = FEATURE_NAMES.index("prev_delta")


def _load(path: str | Path):
    from datasets import Dataset

    path = Path(path)
    if path.is_dir():
        path = path / "runs.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"No run collection at {path} (write one with `metalr-hf collect --output-dir DIR`)")
    return Dataset.from_parquet(str(path))


def cloning_targets(path: str | Path, max_delta: float = 2.0, families=None):
    """``(features [N, T, F], targets [N, T], mask [N, T], tasks)`` from the best run of each of the ``N`` tasks
    of a collection (a ``runs.parquet`` file or the folder holding it). ``families``: only the tasks of these
    families (a collection records every family, the held-out ones too: meta-training must not see those)."""
    ds = _load(path)
    if families is not None:
        families = set(families)
        ds = ds.filter(lambda fam: fam in families, input_columns="family")
        if len(ds) == 0:
            raise ValueError(f"The run collection at {path} has no run of the families {sorted(families)}")
    best: dict[tuple, dict] = {}
    for row in ds:
        if row["diverged"] or not math.isfinite(row["final_val_loss"]):
            continue
        key = (row["family"], row["seed"], row["optimizer"], row["base_lr"], row["horizon"], row["hidden"])
        if key not in best or row["final_val_loss"] < best[key]["final_val_loss"]:
            best[key] = row
    if not best:
        raise ValueError(f"The run collection at {path} has no finite run to clone")
    T = max(r["horizon"] for r in best.values())
    N, F = len(best), len(FEATURE_NAMES)
    feats, targets, mask = torch.zeros(N, T, F), torch.zeros(N, T), torch.zeros(N, T, dtype=torch.bool)
    for n, row in enumerate(best.values()):
        t = row["horizon"]
        steps = torch.arange(t, dtype=torch.float64)
        prior = prior_multiplier("cosine", steps, float(t), float(row["warmup"]))
        lr = torch.tensor(row["lr"], dtype=torch.float64)
        ok = prior > 1e-3
        delta = torch.log(lr.clamp(min=1e-30) / (row["base_lr"] * prior.clamp(min=1e-30)))
        delta = torch.where(ok, delta, torch.zeros_like(delta)).clamp(-max_delta, max_delta).float()
        x = torch.tensor(row["features"], dtype=torch.float32)
        x[:, _PREV] = torch.cat([torch.zeros(1), delta[:-1]])  # teacher forcing
        feats[n, :t], targets[n, :t], mask[n, :t] = x, delta, ok
    return feats, targets, mask, list(best)


def behaviour_cloning(
    learner: MetaLearner, path: str | Path, epochs: int = 30, lr: float = 3e-3, progress: bool = False, families=None
) -> dict:
    """Fit ``learner`` in place to the best-in-hindsight schedules of a run collection (the tasks of
    ``families`` only, if given); returns the masked mean squared error before and after, and the number of
    tasks."""
    from tqdm.auto import tqdm

    feats, targets, mask = cloning_targets(path, learner.max_delta, families)[:3]
    opt = torch.optim.Adam(learner.parameters(), lr=lr)

    def mse() -> torch.Tensor:
        state = learner.init_state(feats.shape[0])
        err = torch.zeros(())
        for t in range(feats.shape[1]):
            delta, state = learner(feats[:, t], state)
            err = err + ((delta - targets[:, t]) ** 2 * mask[:, t]).sum()
        return err / mask.sum().clamp(min=1)

    with torch.no_grad():
        before = float(mse())
    for _ in tqdm(range(epochs), desc="behaviour cloning", disable=not progress):
        opt.zero_grad()
        loss = mse()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(learner.parameters(), 1.0)
        opt.step()
    with torch.no_grad():
        after = float(mse())
    return {"tasks": int(feats.shape[0]), "mse_before": before, "mse_after": after, "epochs": epochs}
