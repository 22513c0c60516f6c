"""Meta-training presets: the shipped learners' recipes, as data (a ``Preset`` each).

A preset names the zoo families and optimizers it samples, the ES sizes, the objective and, for a later stage,
the preset it continues (``init_from``). Unshipped experiments define theirs in ``lab/experiments/presets.py`` and add
them with :func:`register`.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, field, fields

from ..features import FEATURE_NAMES
from ..schedules import PRIORS
from .evaluate import EvalConfig
from .families import META_TRAIN, OPTIMIZERS

__all__ = ["BASE_FEATURES", "PRESETS", "Preset", "get_preset", "register", "same_settings"]

# every feature before `pretrained` (added with the fine-tuning families): what the shipped learners read
BASE_FEATURES = FEATURE_NAMES[: FEATURE_NAMES.index("pretrained")]


# The options of the rule a preset's ``eval_rule`` may set during meta-training (the ones that read evaluations).
EVAL_RULE = ("eval_patience", "eval_cut", "eval_overfit", "eval_gap", "eval_trust")


@dataclass
class Preset:
    name: str
    iterations: int
    pairs: int  # N antithetic pairs
    tasks: int  # K tasks per iteration
    horizon: tuple[int, int]
    sigma: float = 0.05
    lr: float = 0.02
    auc_weight: float = 0.25
    core: str = "gru"
    hidden_size: int = 32
    max_delta: float = 2.0
    disabled_features: tuple[str, ...] = ()
    # The features the learner reads (a prefix of FEATURE_NAMES): the first 16 unless a preset asks for more,
    # so that the presets of the learners shipped before a feature was added still reproduce them.
    features: tuple[str, ...] = BASE_FEATURES
    batch_size: int = 32
    families: tuple[str, ...] = META_TRAIN
    optimizers: tuple[str, ...] = OPTIMIZERS
    lr_ranges: dict | None = None  # base-LR ranges (default: families.LR_RANGES)
    # Per-task scores worse than the prior count this many times (1: symmetric): "never worse than cosine".
    loss_aversion: float = 1.0
    # What a task's score is relative to: "prior" (the learner's prior schedule, cosine) or "best_prior" (the better
    # of it and a constant LR after warmup on the same task, as a user comparing schedules would keep).
    reference: str = "prior"
    # With ``reference="best_stock"``: every sampled task runs at each of these multiples of its base LR (the same
    # data, start and order), and each run is scored against the best stock schedule (cosine, linear, WSD, constant
    # after warmup) at its own base LR; the task's right LR (the factor whose best stock run is lowest) counts
    # ``right_lr_weight`` times: a user who tuned must not pay for the rescue of one who did not.
    lr_factors: tuple[float, ...] = ()
    right_lr_weight: float = 1.0
    # The prior schedule the learner's corrections apply to during meta-training (``MetaController``'s ``prior``;
    # every shipped learner: cosine). Another prior keeps the scores relative to cosine on the same task, the
    # schedule users compare with, not to the learner's own prior.
    prior: str = "cosine"
    # The controller's ``smoothing`` during meta-training: 0 (off), the rule every committed learner was trained
    # under; not the scheduler's ``"auto"``, so that a preset reproduces its learner whatever the product's default.
    smoothing: float = 0.0
    # The evaluations the controller reads during meta-training, as a Trainer evaluating every ``horizon // evals``
    # steps (0: none, the rule every committed learner was trained under), and the options of the rule that read
    # them, as ``(name, value)`` pairs (``eval_patience``, ``eval_cut``, ``eval_overfit``, ``eval_gap``,
    # ``eval_trust``). With evaluations the runs of a population share one horizon, so that they evaluate together.
    evals: int = 0
    eval_rule: tuple = ()
    # Start from the learner of another preset (run first, in `<output_dir>/stage-<name>`), not from scratch.
    init_from: str | None = None
    # Or start from a learner already made: a name or folder for `MetaLearner.from_pretrained` (a shipped one).
    init_learner: str | None = None
    # Behaviour cloning of the best-in-hindsight schedules of a run collection (`metalr-hf collect`) first.
    warm_start: str | None = None
    warm_start_epochs: int = 30
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0

    def __post_init__(self):
        if self.prior not in PRIORS:
            raise ValueError(f"Preset {self.name!r}: unknown prior {self.prior!r}; valid priors: {sorted(PRIORS)}")
        if self.reference not in ("prior", "best_prior", "best_stock"):
            raise ValueError(
                f"Preset {self.name!r}: reference must be 'prior', 'best_prior' or 'best_stock', got "
                f"{self.reference!r}"
            )
        if (self.reference == "best_stock") != bool(self.lr_factors):
            raise ValueError(f"Preset {self.name!r}: lr_factors go with reference='best_stock' (and it needs them)")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"Preset {self.name!r}: smoothing must be in [0, 1), got {self.smoothing!r}")
        unknown = sorted({name for name, _ in self.eval_rule} - set(EVAL_RULE))
        if unknown or isinstance(self.evals, bool) or not isinstance(self.evals, int) or self.evals < 0:
            raise ValueError(f"Preset {self.name!r}: evals must be a count >= 0 and eval_rule name {EVAL_RULE}")
        if any(not (f > 0 and math.isfinite(f)) for f in self.lr_factors) or self.right_lr_weight < 1:
            raise ValueError(f"Preset {self.name!r}: lr_factors must be positive, right_lr_weight at least 1")


PRESETS = {
    "smoke": Preset(
        "smoke",
        iterations=3,
        pairs=2,
        tasks=3,
        horizon=(30, 50),
        eval=EvalConfig(
            families=("wine",),
            optimizers=("adam",),
            eval_lrs=(1e-3,),
            seeds=(0,),
            horizon=40,
            lr_grid={"adam": (1e-3, 1e-2), "sgd": (1e-2,)},
        ),
    ),
    # Stage 1: MLP families, Adam and SGD (the first shipped learner, ~25 min of compute).
    "default-mlp": Preset(
        "default-mlp",
        iterations=120,
        pairs=8,
        tasks=8,
        horizon=(100, 400),
        families=("teacher_cls", "blobs_cls", "teacher_reg", "friedman_reg"),
        optimizers=("adam", "sgd"),
    ),
    # Stage 2, from stage 1: every meta-training family and optimizer, losses to the prior weighted double
    # (the learner shipped as metalr-default-v2).
    "default-all": Preset(
        "default-all",
        iterations=80,
        pairs=6,
        tasks=6,
        horizon=(100, 300),
        lr=0.01,
        loss_aversion=2.0,
        init_from="default-mlp",
    ),
    # Stage 3, from stage 2 (the shipped default learner, metalr-default-v3): long runs, 300-2000 steps, every
    # family and optimizer, same bound and objective as stage 2.
    "default": Preset(
        "default",
        iterations=20,
        pairs=6,
        tasks=6,
        horizon=(300, 2000),
        lr=0.01,
        loss_aversion=2.0,
        init_from="default-all",
    ),
    # Another stage 3, from `default-all` (the opt-in learner metalr-scratch-v1, for training from scratch): the
    # correction bound widened from ×7.4 to ×148 (max_delta 2 → 5) so that a base LR 100× too small can be
    # repaired, SGD base LRs down to 1e-4, losses still weighted double. Not the default: it also boosts a small
    # LR that is right (fine-tuning a pretrained model), see its model card.
    "scratch": Preset(
        "scratch",
        iterations=60,
        pairs=6,
        tasks=8,
        horizon=(100, 300),
        lr=0.01,
        max_delta=5.0,
        loss_aversion=2.0,
        lr_ranges={"adam": (1e-5, 1e-1), "sgd": (1e-4, 1.0)},
        init_from="default-all",
    ),
    # The fine-tuning learner of the default pair (metalr-finetune-v1), in two stages from metalr-default-v3.
    # Stage 1: half of the MLP and of the transformer runs fine-tune pretrained weights (`finetune_cls`;
    # `grammar_finetune`, a pretrained tiny transformer), the learner reading only the run's own signals (not
    # `pretrained`), meta-trained uncapped.
    "hf-finetune": Preset(
        "hf-finetune",
        iterations=30,
        pairs=6,
        tasks=8,
        horizon=(100, 600),
        lr=0.01,
        loss_aversion=2.0,
        families=META_TRAIN + ("grammar_finetune",) * 3 + ("finetune_cls",) * 4,
        init_learner="metalr-default-v3",
    ),
    # Stage 2: fine-tuning runs only, at base LRs around the right ones (Adam 1e-4…1e-2, SGD 1e-3…1e-1: 0.1×–10×
    # of the families' best), losses to the prior weighted triple: leave a right LR alone on a pretrained model,
    # raise one that is too small. It forgets training from scratch: the scheduler uses it for pretrained runs only.
    "hf-finetune-judge": Preset(
        "hf-finetune-judge",
        iterations=30,
        pairs=6,
        tasks=8,
        horizon=(100, 600),
        lr=0.01,
        loss_aversion=3.0,
        families=("grammar_finetune", "finetune_cls"),
        lr_ranges={"adam": (1e-4, 1e-2), "sgd": (1e-3, 1e-1)},
        init_from="hf-finetune",
    ),
}


def register(presets: dict[str, Preset]) -> None:
    """Add presets (experiments) to :data:`PRESETS`; a shipped name cannot be replaced."""
    clash = sorted(set(presets) & set(PRESETS))
    if clash:
        raise ValueError(f"Presets {clash} exist already")
    PRESETS.update(presets)


def get_preset(preset: Preset | str) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; valid presets: {sorted(PRESETS)}")
    return PRESETS[preset]


def same_settings(saved: dict, current: dict) -> bool:
    """A checkpoint's preset against the current one; a field added to `Preset` after the checkpoint was written
    counts as its default value (so older checkpoints stay resumable)."""
    saved = _with_defaults(Preset, saved)
    if isinstance(saved.get("eval"), dict):  # the same for a field added to its EvalConfig
        saved["eval"] = _with_defaults(EvalConfig, saved["eval"])
    return saved == current


def _with_defaults(cls, saved: dict) -> dict:
    """``saved`` (a dataclass written as JSON) with the fields of ``cls`` it lacks set to their defaults."""
    added = {f.name: f.default for f in fields(cls) if f.default is not MISSING and f.name not in saved}
    return {**json.loads(json.dumps(added, default=list)), **saved}
