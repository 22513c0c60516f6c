"""Past runs as a dataset: record zoo runs under many schedules into a ``datasets.Dataset`` (Parquet).

One row per run. Per run: family, model width, optimizer, base LR, horizon, warmup, batch size, schedule,
final validation loss and metric, diverged. Per step (list columns, one entry per optimizer step): the loss,
the gradient norm, the learning rate and the feature vector (``FEATURE_NAMES``, computed by the same
``FeatureExtractor`` as everywhere else; the ``prior`` and ``prev_delta`` columns describe the cosine prior
and ``δ = 0`` since these runs follow a fixed schedule).

Schedules: the four priors and random piecewise-linear schedules in log-LR space (``random``), which give
behaviour cloning and analysis schedules the priors never visit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..features import FEATURE_NAMES, SCHEMA_VERSION
from ..learner import MetaLearner
from .simulate import PriorPolicy, meta_policy, simulate
from .zoo import FAMILIES, make_population, sample_specs

__all__ = ["COLLECT_PRESETS", "collect"]

SCHEDULES = ("cosine", "linear", "wsd", "constant", "random")


@dataclass
class CollectPreset:
    runs_per_schedule: int
    horizon: tuple[int, int]
    populations: int = 1


COLLECT_PRESETS = {
    "smoke": CollectPreset(runs_per_schedule=4, horizon=(20, 40)),
    "default": CollectPreset(runs_per_schedule=64, horizon=(100, 400), populations=4),
}


class RandomPiecewisePolicy(PriorPolicy):
    """A random piecewise-linear schedule in log space (4 knots, multiplier in [1e-2, 3]) per run."""

    def __init__(self, pop, rng: np.random.Generator):
        super().__init__("constant", pop)
        knots = 4
        self.x = torch.tensor(np.sort(rng.uniform(0, 1, (pop.size, knots)), axis=1))
        self.y = torch.tensor(rng.uniform(np.log(1e-2), np.log(3.0), (pop.size, knots)))

    def scale(self, step):
        warm = super().scale(step)
        p = (torch.as_tensor(step, dtype=torch.float64) / self.pop.horizon).clamp(0, 1)
        out = torch.empty(self.pop.size, dtype=torch.float64)
        for b in range(self.pop.size):
            out[b] = float(np.interp(float(p[b]), self.x[b].numpy(), self.y[b].numpy()))
        return warm * torch.exp(out)


class _Recorder:
    """Wraps a policy; keeps the per-step signals, features and LR multipliers of every run."""

    def __init__(self, policy, pop):
        self.policy = policy
        self.features = meta_policy(MetaLearner(), pop)  # δ ≡ 0: only its feature extractor matters
        self.rows = []

    def scale(self, step):
        s = self.policy.scale(step)
        self.rows.append({"scale": s.clone()})
        return s

    def update(self, signals, step=None):
        self.features.update(signals, step=step)
        self.rows[-1].update(
            loss=signals.loss.clone(), grad_norm=signals.grad_norm.clone(), feats=self.features.features
        )
        return self.policy.update(signals, step)


def collect(
    preset: str = "smoke", output_dir: str | Path = "runs/collect", seed: int = 0, progress: bool = True
) -> Path:
    """Record runs of every family under every schedule; writes ``runs.parquet`` and a dataset card."""
    from datasets import Dataset
    from tqdm.auto import tqdm

    if preset not in COLLECT_PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; valid presets: {sorted(COLLECT_PRESETS)}")
    cfg = COLLECT_PRESETS[preset]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {}
    bar = tqdm(total=cfg.populations * len(SCHEDULES), desc=f"collect[{preset}]", disable=not progress)
    for _ in range(cfg.populations):
        specs = sample_specs(cfg.runs_per_schedule, rng, families=FAMILIES, horizon=cfg.horizon)
        pop = make_population(specs)
        for name in SCHEDULES:
            policy = RandomPiecewisePolicy(pop, rng) if name == "random" else PriorPolicy(name, pop)
            rec = _Recorder(policy, pop)
            res = simulate(pop, rec, seed=int(rng.integers(0, 2**31 - 1)))
            for b, spec in enumerate(specs):
                T = spec.horizon
                row = {
                    **spec.to_dict(),
                    "architecture": f"mlp-{spec.hidden}",
                    "schedule": name,
                    "final_val_loss": float(res.final_val_loss[b]),
                    "final_val_metric": float(res.final_val_metric[b]),
                    "diverged": bool(res.diverged[b]),
                    "lr": [float(r["scale"][b]) * spec.base_lr for r in rec.rows[:T]],
                    "loss": [float(r["loss"][b]) for r in rec.rows[:T]],
                    "grad_norm": [float(r["grad_norm"][b]) for r in rec.rows[:T]],
                    "features": [r["feats"][b].tolist() for r in rec.rows[:T]],
                }
                for k, v in row.items():
                    columns.setdefault(k, []).append(v)
            bar.update(1)
    bar.close()
    ds = Dataset.from_dict(columns)
    tmp = out / "runs.parquet.tmp"
    ds.to_parquet(str(tmp))
    tmp.replace(out / "runs.parquet")
    meta = {"schema_version": SCHEMA_VERSION, "feature_names": list(FEATURE_NAMES), "preset": preset, "seed": seed}
    (out / "collection.json").write_text(json.dumps(meta, indent=2))
    (out / "README.md").write_text(_card(ds, preset, seed))
    return out / "runs.parquet"


def _card(ds, preset: str, seed: int) -> str:
    from ..hub import render_card

    return render_card(
        "runs",
        name=f"metalr-hf-runs-{preset}",
        num_runs=len(ds),
        schedules=list(SCHEDULES),
        families=sorted(set(ds["family"])),
        schema_version=SCHEMA_VERSION,
        feature_names=list(FEATURE_NAMES),
        command=f"metalr-hf collect --preset {preset} --seed {seed} --output-dir DIR",
    )
