"""Past runs as a dataset: record zoo runs under many schedules into a ``datasets.Dataset`` (Parquet).

One row per run. Per run: family, model width, optimizer, base LR, horizon, warmup, batch size, schedule,
final validation loss and metric, diverged. Per step (list columns, one entry per optimizer step): the loss,
the gradient norm, the learning rate and the feature vector (``FEATURE_NAMES``, computed by the same
``FeatureExtractor`` as everywhere else; the ``prior`` and ``prev_delta`` columns describe the cosine prior
and ``δ = 0`` since these runs follow a fixed schedule).

Schedules: the four priors and random piecewise-linear schedules in log-LR space (``random``), which give
behaviour cloning and analysis schedules the priors never visit.

Besides the batched zoo, tiny Hugging Face models built from configs (the benchmark's BERT, GPT-2, ViT and
Wav2Vec2 tasks) are trained through the real ``Trainer`` under each prior (``family`` ``trainer:<task>``): the meta
scheduler with a zero learner (``δ ≡ 0``, so the LR *is* the prior) records the same features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_write, folder_lock, read_json
from ..features import FEATURE_NAMES, SCHEMA_VERSION
from ..learner import MetaLearner
from .families import HELD_OUT, META_TRAIN, sample_specs
from .simulate import PriorPolicy, meta_policy, simulate
from .zoo import make_population

__all__ = ["COLLECT_PRESETS", "collect"]

SCHEDULES = ("cosine", "linear", "wsd", "constant", "random")


@dataclass
class CollectPreset:
    runs_per_schedule: int
    horizon: tuple[int, int]
    populations: int = 1
    # runs through the real Trainer: tasks × priors × optimizers × base LRs, each `trainer_steps` long
    trainer_tasks: tuple[str, ...] = ()
    trainer_priors: tuple[str, ...] = ("cosine", "linear", "wsd", "constant")
    trainer_optimizers: tuple[str, ...] = ("adam", "sgd")
    trainer_lrs: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    trainer_steps: int = 60


COLLECT_PRESETS = {
    "smoke": CollectPreset(
        runs_per_schedule=4,
        horizon=(20, 40),
        trainer_tasks=("bert_cls",),
        trainer_priors=("cosine", "constant"),
        trainer_optimizers=("adam",),
        trainer_lrs=(1e-3,),
        trainer_steps=12,
    ),
    "default": CollectPreset(
        runs_per_schedule=64,
        horizon=(100, 400),
        populations=8,
        trainer_tasks=("bert_cls", "gpt2_lm", "vit_digits", "wav2vec2_kws"),
    ),
}


def _trainer_rows(cfg: CollectPreset, task: str, tmp: Path, bar, run_one) -> list[dict]:
    """Runs of one tiny HF model through the real Trainer, one per prior × optimizer × base LR; ``run_one`` is the
    benchmark's runner (`metalr_hf.bench.runner.run_one`), handed in by the caller: meta-training does not import
    the benchmark."""
    from transformers import TrainerCallback

    zero = tmp / "zero-learner"
    MetaLearner().save_pretrained(zero)  # δ ≡ 0: the LR is the prior

    class Features(TrainerCallback):
        def __init__(self):
            self.features, self.grad_norm = [], []

        def on_step_end(self, args, state, control, lr_scheduler=None, **kw):
            self.features.append(lr_scheduler.controller.features[0].tolist())
            sig = lr_scheduler.last_signals
            self.grad_norm.append(float(sig.grad_norm[0]) if sig is not None else float("nan"))

    rows = []
    for opt in cfg.trainer_optimizers:
        for lr in cfg.trainer_lrs:
            for prior in cfg.trainer_priors:
                rec = Features()
                r = run_one(task, "meta", opt, lr, 0, steps=cfg.trainer_steps, evals=2, meta_learner=str(zero),
                            meta_kwargs={"prior": prior}, callbacks=[rec])  # fmt: skip
                T = len(rec.features)
                rows.append(
                    {
                        "family": f"trainer:{task}",
                        "seed": 0,
                        "hidden": 32,
                        "optimizer": opt,
                        "base_lr": lr,
                        "horizon": T,
                        "warmup": r["warmup"],
                        "batch_size": 0,
                        "architecture": f"hf-{task}",
                        "schedule": prior,
                        "final_val_loss": r["final_eval_loss"],
                        "final_val_metric": r["primary"],
                        "diverged": r["diverged"],
                        "lr": r["lr"][:T],
                        "loss": r["train_loss"][:T],
                        "grad_norm": rec.grad_norm,
                        "features": rec.features,
                    }
                )
                bar.update(1)
    return rows


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
        self.features = meta_policy(MetaLearner(), pop, prior="auto")  # δ ≡ 0: only its feature extractor matters
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


# The families a collection samples: the zoo's as they were when the presets were written (families added since,
# the pretrained transformers and grammar_lm, would change every draw and so the collections the warm-start
# experiments reproduce).
COLLECT_FAMILIES = META_TRAIN + HELD_OUT + ("finetune_cls", "digits_finetune")


def _zoo_rows(cfg: CollectPreset, rng: np.random.Generator, bar) -> list[dict]:
    """One population of zoo runs, each task under every schedule (one data order per task, shared)."""
    specs = sample_specs(cfg.runs_per_schedule, rng, families=COLLECT_FAMILIES, horizon=cfg.horizon)
    pop = make_population(specs)
    data_seed = int(rng.integers(0, 2**31 - 1))
    rows = []
    for name in SCHEDULES:
        policy = RandomPiecewisePolicy(pop, rng) if name == "random" else PriorPolicy(name, pop)
        rec = _Recorder(policy, pop)
        res = simulate(pop, rec, seed=data_seed)
        for b, spec in enumerate(specs):
            T = spec.horizon
            rows.append(
                {
                    **spec.to_dict(),
                    "architecture": f"{pop.kind}-{spec.hidden}",
                    "schedule": name,
                    "final_val_loss": float(res.final_val_loss[b]),
                    "final_val_metric": float(res.final_val_metric[b]),
                    "diverged": bool(res.diverged[b]),
                    "lr": [float(r["scale"][b]) * spec.base_lr for r in rec.rows[:T]],
                    "loss": [float(r["loss"][b]) for r in rec.rows[:T]],
                    "grad_norm": [float(r["grad_norm"][b]) for r in rec.rows[:T]],
                    "features": [r["feats"][b].tolist() for r in rec.rows[:T]],
                }
            )
        bar.update(1)
    return rows


def collect(
    preset: str = "smoke",
    output_dir: str | Path = "runs/collect",
    seed: int = 0,
    progress: bool = True,
    trainer_runner=None,
) -> Path:
    """Record runs of every family under every schedule; writes ``runs.parquet`` and a dataset card.

    A preset with Trainer tasks runs them with ``trainer_runner`` (``metalr_hf.bench.runner.run_one``; the
    ``metalr-hf collect`` command passes it, with the ``bench`` extra installed).

    The work is done in parts (one per zoo population, one per Trainer task), each written to
    ``output_dir/parts/`` as soon as it is done; run again with the same preset and seed, it skips the parts
    already there (a killed collection resumes), and only the finished whole becomes ``runs.parquet``. Each
    population draws from its own generator (seeded by ``seed`` and its index), so a part does not depend on
    which parts ran before it."""
    if preset not in COLLECT_PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; valid presets: {sorted(COLLECT_PRESETS)}")
    if COLLECT_PRESETS[preset].trainer_tasks and trainer_runner is None:
        raise ValueError(
            f"Preset {preset!r} records Trainer runs: pass trainer_runner=metalr_hf.bench.runner.run_one (the "
            "`metalr-hf collect` command does, with the bench extra installed)"
        )
    out = Path(output_dir)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        return _collect(preset, out, seed, progress, trainer_runner)


def _collect(preset: str, out: Path, seed: int, progress: bool, trainer_runner) -> Path:
    import pyarrow.parquet as pq
    from datasets import Dataset
    from tqdm.auto import tqdm

    cfg = COLLECT_PRESETS[preset]
    parts = out / "parts"
    meta = {"schema_version": SCHEMA_VERSION, "feature_names": list(FEATURE_NAMES), "preset": preset, "seed": seed}
    stamp = parts / "collection.json"
    if stamp.exists() and read_json(stamp, "collection stamp") != meta:
        raise ValueError(
            f"{parts} holds parts of another collection ({stamp.read_text().strip()}); pass another --output-dir"
        )
    stamp.write_text(json.dumps(meta, indent=2))
    jobs = [(f"zoo-{i:03d}", len(SCHEDULES), i) for i in range(cfg.populations)]
    n_trainer = len(cfg.trainer_priors) * len(cfg.trainer_optimizers) * len(cfg.trainer_lrs)
    jobs += [(f"trainer-{task}", n_trainer, task) for task in cfg.trainer_tasks]
    bar = tqdm(total=sum(n for _, n, _ in jobs), desc=f"collect[{preset}]", disable=not progress)
    columns: dict[str, list] = {}
    for name, n, what in jobs:
        path = parts / f"{name}.parquet"
        if not path.exists():
            if name.startswith("zoo-"):
                rows = _zoo_rows(cfg, np.random.default_rng([seed, what]), bar)
            else:
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    rows = _trainer_rows(cfg, what, Path(tmp), bar, trainer_runner)
            atomic_write(path, lambda tmp, rows=rows: Dataset.from_list(rows).to_parquet(tmp))  # never half-written
        else:
            bar.update(n)
        for k, v in pq.read_table(path).to_pydict().items():
            columns.setdefault(k, []).extend(v)
    bar.close()
    ds = Dataset.from_dict(columns)
    atomic_write(out / "runs.parquet", lambda tmp: ds.to_parquet(tmp))
    (out / "collection.json").write_text(json.dumps(meta, indent=2))
    _card(ds, preset, seed).save(out / "README.md")
    return out / "runs.parquet"


def _card(ds, preset: str, seed: int) -> str:
    """The collection's dataset card, with the ``dataset_info`` (features, split sizes) and ``configs`` (the data
    file) that ``Dataset.push_to_hub`` writes, by the same ``datasets`` code: the Hub's viewer and
    ``load_dataset(repo_id)`` read ``runs.parquet`` as the ``train`` split with its features."""
    from datasets.info import DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    card_data = DatasetCardData(
        license="apache-2.0",
        tags=["metalr-hf", "meta-lr", "learning-rate-schedules", "training-runs"],
        pretty_name=f"metalr-hf runs ({preset})",
        size_categories=["1K<n<10K"] if len(ds) >= 1000 else ["n<1K"],
    )
    info = ds.info.copy()
    info.splits = SplitDict({"train": SplitInfo("train", num_bytes=ds.data.nbytes, num_examples=len(ds))})
    info.dataset_size = ds.data.nbytes
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs({"default": {"data_files": [{"split": "train", "path": "runs.parquet"}]}}).to_dataset_card_data(
        card_data
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(Path(__file__).parent / "runs_card.md.j2"),
        name=f"metalr-hf-runs-{preset}",
        num_runs=len(ds),
        schedules=list(SCHEDULES),
        families=sorted(set(ds["family"])),
        schema_version=SCHEMA_VERSION,
        feature_names=list(FEATURE_NAMES),
        command=f"metalr-hf collect --preset {preset} --seed {seed} --output-dir DIR",
    )
