"""The options of the meta scheduler, in one typed place: defaults, validation and help.

Every entry point reads :class:`MetaSchedulerOptions`: ``MetaLRScheduler(**options)``, ``get_scheduler("meta", ...,
scheduler_specific_kwargs=options)``, ``--lr_scheduler_kwargs '{...}'`` of a ``Trainer`` (``MetaTrainer``, or any
script under ``metalr-hf run``), and ``metalr_hf.enable()``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any

from .features import FEATURE_NAMES
from .schedules import DECAY_FRACTION, PRIORS

__all__ = [
    "AUTO_PRIORS",
    "AUTO_SMOOTHING",
    "AUTO_EVAL_TRUST",
    "DEFAULT_PRIOR",
    "HUB_OPTIONS",
    "BoostPolicy",
    "MetaSchedulerOptions",
    "check_controller_options",
    "check_prior",
    "check_eval_cut",
    "check_eval_gap",
    "check_eval_overfit",
    "check_eval_trust",
    "check_smoothing",
    "knows_pretrained_runs",
    "resolve_prior",
    "resolve_eval_trust",
    "resolve_smoothing",
]

# Where the learner comes from (handed to `MetaLearner.from_pretrained`, not to the controller).
HUB_OPTIONS = ("meta_learner", "revision", "cache_dir", "token", "local_files_only")
# The product's prior is WSD on every run (the owner's decision of 2026-12, from seven tasks no suite tuned on:
# median regret to the best tuned run 0.12 around WSD against 0.25 with cosine from scratch). ``prior="auto"``, the
# default until then, with which the shipped learners were meta-trained and collected (the lab names it), picks by
# whether the run fine-tunes pretrained weights: WSD there, cosine from scratch (lab/NOTEBOOK.md, "2026-11-30").
DEFAULT_PRIOR = "wsd"
AUTO_PRIORS = {False: "cosine", True: "wsd"}
# ``smoothing="auto"``: the weight of the previous δ, by whether the run fine-tunes pretrained weights. From scratch
# the average over about ten steps won every measure of the quick suite and the held-out zoo's right-LR ratio and
# regret; on the finetune suite's 40-60-step runs it cost the fine-tuning learner its rescue
# (lab/results/delta-smooth/).
AUTO_SMOOTHING = {False: 0.9, True: 0.0}
# ``eval_trust="auto"``: the margin by whether the run fine-tunes pretrained weights (None: off). On both
# fine-tuning suites a run that kept improving on held-out data was cut to a sixth of the prior by the fine-tuning
# learner (the clean MiniLM at its right LR: 120× the best stock loss); a floor at 0.7× the prior there left no cell
# worse (0.5 and 0.85 won less). From scratch it cost a little (lab/results/eval-trust/).
AUTO_EVAL_TRUST = {False: None, True: 0.3}
# While ``eval_trust`` holds, δ ≥ log(TRUST_FLOOR): the LR at least this share of the prior (eval holds still act).
TRUST_FLOOR = 0.7


def resolve_smoothing(smoothing, pretrained):
    """The weight of the previous δ in a run's new δ: ``smoothing``, or for ``"auto"`` :data:`AUTO_SMOOTHING` by
    ``pretrained`` (a bool; a ``[B]`` bool tensor gives a ``[B]`` float tensor)."""
    if smoothing != "auto":
        return smoothing
    if isinstance(pretrained, bool):
        return AUTO_SMOOTHING[pretrained]
    return AUTO_SMOOTHING[False] + (AUTO_SMOOTHING[True] - AUTO_SMOOTHING[False]) * pretrained.float()


def resolve_eval_trust(eval_trust, pretrained: bool):
    """The margin of ``eval_trust`` for a run: the option, or for ``"auto"`` :data:`AUTO_EVAL_TRUST` by
    ``pretrained`` (None: off)."""
    return AUTO_EVAL_TRUST[bool(pretrained)] if eval_trust == "auto" else eval_trust


def resolve_prior(prior: str, pretrained: bool) -> str:
    """The prior schedule a run uses: ``prior`` itself, or for ``"auto"`` :data:`AUTO_PRIORS` by ``pretrained``."""
    return AUTO_PRIORS[bool(pretrained)] if prior == "auto" else prior


def check_prior(prior) -> None:
    """A ``ValueError`` naming ``prior`` unless it is ``"auto"`` or one of :data:`schedules.PRIORS`."""
    if not isinstance(prior, str) or (prior != "auto" and prior not in PRIORS):
        raise ValueError(f"Unknown prior {prior!r}; valid priors: {['auto', *sorted(PRIORS)]}")


def check_eval_cut(eval_cut) -> None:
    """A ``ValueError`` naming ``eval_cut`` unless it is a finite number ≥ 1."""
    if isinstance(eval_cut, bool) or not isinstance(eval_cut, numbers.Real) or not 1.0 <= eval_cut < math.inf:
        raise ValueError(f"eval_cut must be a finite number >= 1, got {eval_cut!r}")


def _check_off_or_nonnegative(value, name: str, auto: bool = False) -> None:
    """A ``ValueError`` naming ``name`` unless ``value`` is None (off), a finite number ≥ 0, or with ``auto``
    ``"auto"``."""
    if auto and isinstance(value, str) and value == "auto":
        return
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if value is not None and not (number and 0 <= value < math.inf):
        allowed = '"auto", a finite number >= 0' if auto else "a finite number >= 0"
        raise ValueError(f"{name} must be {allowed} or None (off), got {value!r}")


def check_eval_overfit(eval_overfit) -> None:
    """A ``ValueError`` naming ``eval_overfit`` unless it is None or a finite number ≥ 0."""
    _check_off_or_nonnegative(eval_overfit, "eval_overfit")


def check_eval_gap(eval_gap) -> None:
    """A ``ValueError`` naming ``eval_gap`` unless it is None or a finite number ≥ 0."""
    _check_off_or_nonnegative(eval_gap, "eval_gap")


def check_eval_trust(eval_trust) -> None:
    """A ``ValueError`` naming ``eval_trust`` unless it is ``"auto"``, None or a finite number ≥ 0."""
    _check_off_or_nonnegative(eval_trust, "eval_trust", auto=True)


def check_smoothing(smoothing) -> None:
    """A ``ValueError`` naming ``smoothing`` unless it is ``"auto"`` or a number in [0, 1)."""
    if smoothing != "auto" and (
        isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not 0.0 <= smoothing < 1.0
    ):
        raise ValueError(f'smoothing must be a number in [0, 1) or "auto", got {smoothing!r}')


def check_controller_options(
    *,
    prior,
    min_lr_ratio,
    decay_fraction,
    guard_ratio,
    recovery,
    max_boost,
    warmup_boost,
    eval_patience,
    eval_cut,
    smoothing,
    eval_overfit,
    eval_gap=None,
    eval_trust=None,
) -> None:
    """The checks of the controller's options (``ValueError`` naming the option); ``MetaController`` runs them too."""
    check_prior(prior)
    if not isinstance(warmup_boost, bool):
        raise ValueError(f"warmup_boost must be true or false, got {warmup_boost!r}")
    if eval_patience is not None and (
        isinstance(eval_patience, bool) or not isinstance(eval_patience, numbers.Integral) or eval_patience < 1
    ):
        raise ValueError(f"eval_patience must be a positive number of evaluations or None, got {eval_patience!r}")
    check_eval_cut(eval_cut)
    check_eval_overfit(eval_overfit)
    check_eval_gap(eval_gap)
    check_eval_trust(eval_trust)
    check_smoothing(smoothing)
    for name, value, low, high in (
        ("min_lr_ratio", min_lr_ratio, 0.0, 1.0),
        ("decay_fraction", decay_fraction, 0.0, 1.0),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
            raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    if isinstance(guard_ratio, bool) or not isinstance(guard_ratio, numbers.Real) or not 1.0 < guard_ratio < math.inf:
        raise ValueError(f"guard_ratio must be a finite number > 1, got {guard_ratio!r}")
    if isinstance(recovery, bool) or not isinstance(recovery, numbers.Integral) or int(recovery) < 1:
        raise ValueError(f"recovery must be a positive number of steps, got {recovery!r}")
    if max_boost is not None and max_boost not in ("auto", "peak"):
        if isinstance(max_boost, bool) or not isinstance(max_boost, numbers.Real) or not 1.0 <= max_boost < math.inf:
            raise ValueError(f'max_boost must be a number >= 1, "auto", "peak" or None, got {max_boost!r}')


def knows_pretrained_runs(learner) -> bool:
    """Whether ``learner`` was meta-trained for runs that fine-tune pretrained weights: it reads the ``pretrained``
    feature, or its card (``card.json``) says ``"fine_tuning": true``. Under ``max_boost="auto"`` only such a
    learner may raise the LR of a pretrained run."""
    reads = "pretrained" in getattr(learner, "config", {}).get("feature_names", FEATURE_NAMES)
    return reads or getattr(learner, "card_context", {}).get("fine_tuning") is True


@dataclass(frozen=True)
class BoostPolicy:
    """What ``max_boost`` allows, in one place: the bound on δ for a run (:meth:`delta_cap`) and whether the
    product ``prior · exp(δ) · b · γ`` is capped by the warmup's ramp, then 1 (``peak``: the LR never above the base
    LR, and the warmup never skipped).

    Args:
        max_boost: the option (a number ≥ 1, ``"auto"``, ``"peak"`` or ``None``).
        learner_knows_pretrained: whether the learner was meta-trained for pretrained runs (it reads the
            ``pretrained`` feature, or its card says ``fine_tuning``: `options.knows_pretrained_runs`); under
            ``"auto"`` a learner that was not may only lower the LR of a pretrained run (δ ≤ 0).
        warmup_boost: whether the learner may raise the LR above the prior during the warmup (False: δ ≤ 0 there).
    """

    max_boost: Any = "auto"
    learner_knows_pretrained: bool = False
    warmup_boost: bool = True

    @property
    def peak(self) -> bool:
        return self.max_boost == "peak"

    def delta_cap(self, pretrained: bool, in_warmup: bool = False) -> float:
        """The largest δ a run may take (``inf``: only the learner's own bound); 0 in the warmup unless
        ``warmup_boost`` (the learner may lower the warmup's ramp, never raise it)."""
        if in_warmup and not self.warmup_boost:  # every other cap is >= 0
            return 0.0
        if self.max_boost == "auto":
            return 0.0 if pretrained and not self.learner_knows_pretrained else math.inf
        if self.max_boost in (None, "peak"):
            return math.inf
        return math.log(self.max_boost)


@dataclass
class MetaSchedulerOptions:
    """Options of ``lr_scheduler_type="meta"``; each can be passed in ``lr_scheduler_kwargs``.

    Args:
        meta_learner (`str`, *optional*): a folder written by ``save_pretrained``, a Hub repo id, or unset for
            the pair bundled with the package (works offline): ``metalr-finetune-v1`` for a run that fine-tunes
            pretrained weights (see ``pretrained``), ``metalr-default-v3`` otherwise. In Python, also a
            ``MetaLearner``.
        revision (`str`, *optional*): branch, tag or commit sha of a Hub learner (pin it for reproducible runs).
        cache_dir (`str`, *optional*), local_files_only (`bool`, defaults to `False`): as in ``from_pretrained``.
        token (`str`, *optional*): a Hub token, for a plain loop only; a ``Trainer`` refuses it in
            ``lr_scheduler_kwargs`` (they are logged and pickled): log in with ``hf auth login`` or set ``HF_TOKEN``.
        prior (`str`, defaults to `"wsd"`): the schedule the learner corrects: `constant`, `cosine`, `linear`,
            `wsd` (warmup, stable, then a linear decay over the last ``decay_fraction``), or `"auto"` (the default
            before 0.3): `wsd` on a run that fine-tunes pretrained weights (see ``pretrained``), `cosine` otherwise.
        min_lr_ratio (`float`, defaults to 0.0): the prior's final LR as a fraction of the peak.
        decay_fraction (`float`, defaults to 0.2): the share of the run the `wsd` prior spends decaying.
        guard (`bool`, defaults to `True`), guard_ratio (`float`, defaults to 3.0): the divergence guard cuts the
            LR while the smoothed loss sits more than ``guard_ratio``× above its best.
        recovery (`int`, defaults to 10): steps over which a backed-off LR recovers ×2.
        decision_lag (`int`, *optional*): 1 applies each decision one step later so that the host never waits
            for the accelerator; 0 at once; unset picks 1 on accelerators, 0 on the CPU.
        pretrained (`bool`, *optional*): the run fine-tunes pretrained weights (a learner feature); unset, a
            ``Trainer`` reads it from the model, a plain loop assumes False.
        max_boost (`float`, `"auto"`, `"peak"` or `None`, defaults to `"auto"`): the most the learner may raise the
            LR above the prior; `"auto"` caps it at 1 on pretrained runs for a learner that never saw one; `"peak"`
            lets it hold or raise the prior but never above the base LR the user chose (``lr ≤ base_lr``), nor above
            the warmup's ramp while it lasts.
        warmup_boost (`bool`, defaults to `True`): whether the learner may raise the LR above the prior during the
            warmup; `False` keeps the warmup's ramp as a ceiling (the learner may still lower it).
        eval_patience (`int`, *optional*, defaults to 2): from this many evaluations in a row without a new best
            (``eval_loss``, or ``metric_for_best_model`` in the direction of ``greater_is_better``), the learner may
            not raise the LR above the prior (it may still lower it) until an evaluation brings a new best. The
            Trainer's evaluations (``eval_strategy``) feed it; a run that never evaluates is not affected. `None`:
            off.
        eval_cut (`float`, defaults to 4.0): while ``eval_patience`` holds the LR, it is at most the prior divided by
            this (4: a quarter of the prior, as ``ReduceLROnPlateau(factor=0.25)`` would cut it; 1: at most the prior).
        eval_overfit (`float`, *optional*, defaults to 0.1): an evaluation more than this fraction above the best
            one, while the training loss (smoothed) has gone on falling since that best — the run overfits — starts
            ``eval_patience``'s hold at once. `None`: off.
        eval_gap (`float`, *optional*, defaults to 0.3): once an evaluation that brings no new best lies more than
            this above the smoothed training loss (both as logs: the model fits its training data far better than
            held-out data), the learner may not raise the LR above the prior for the rest of the run. Read from
            ``eval_loss`` only. `None`: off.
        eval_trust (`float`, `"auto"` or `None`, defaults to `"auto"`): while the last eval loss improved on the best
            before it by more than this (as logs; ``eval_loss`` also where ``metric_for_best_model`` names another
            metric; the first evaluation never counts), the run generalises and is not too hot: the learner may not
            cut the LR below 0.7× the prior (the evaluations' holds still may). `"auto"`: 0.3 on a run that
            fine-tunes pretrained weights, off from scratch. `None`: off.
        smoothing (`float` or `"auto"`, defaults to `"auto"`): the learner's correction is averaged over steps,
            ``δ ← smoothing · δ + (1 - smoothing) · its decision`` (0: each decision as it comes), so that its
            step-to-step jitter, and its first decisions read from a step or two, do not reach the LR whole;
            `"auto"`: 0.9 (about ten steps) on a run from scratch, 0 on a run that fine-tunes pretrained weights.
        log_features (`bool`, defaults to `False`): also log the learner's features, the back-off and the guard
            (``meta/feature/<name>``, ``meta/backoff``, ``meta/guard``) with every training log; ``meta/lr_scale``
            and ``meta/delta`` are always logged.
    """

    meta_learner: Any = field(
        default=None,
        metadata={"help": "a folder or Hub repo id (unset: the bundled pair, fine-tuning and from scratch)"},
    )
    revision: str | None = field(default=None, metadata={"help": "branch, tag or sha of a Hub learner: pin it"})
    cache_dir: str | None = field(default=None, metadata={"help": "the Hugging Face cache folder"})
    token: Any = field(default=None, metadata={"help": "a Hub token, plain loops only (a Trainer: `HF_TOKEN`)"})
    local_files_only: bool = field(default=False, metadata={"help": "never download the learner"})
    prior: str = field(
        default=DEFAULT_PRIOR,
        metadata={
            "help": "the schedule corrected: `wsd`, `cosine`, `linear`, `constant`, or `auto` (`wsd` on a "
            "pretrained run, `cosine` from scratch)"
        },
    )
    min_lr_ratio: float = field(default=0.0, metadata={"help": "the prior's final LR, as a fraction of the peak"})
    decay_fraction: float = field(default=DECAY_FRACTION, metadata={"help": "the share of a `wsd` run spent decaying"})
    guard: bool = field(default=True, metadata={"help": "the divergence guard on the smoothed loss"})
    guard_ratio: float = field(default=3.0, metadata={"help": "the guard cuts the LR above this × the best loss"})
    recovery: int = field(default=10, metadata={"help": "steps for a backed-off LR to recover ×2"})
    decision_lag: int | None = field(
        default=None, metadata={"help": "unset: 1 on accelerators (the host never waits), 0 on the CPU"}
    )
    pretrained: bool | None = field(
        default=None, metadata={"help": "the run fine-tunes pretrained weights (unset: read from the weights)"}
    )
    max_boost: Any = field(
        default="auto",
        metadata={
            "help": "most the LR may rise above the prior (`auto`: 1 on a pretrained run for a learner not made "
            "for one); `peak`: never above the base LR nor the warmup; `null`: no cap"
        },
    )
    warmup_boost: bool = field(
        default=True, metadata={"help": "the learner may raise the LR above the prior during the warmup"}
    )
    eval_patience: int | None = field(
        default=2,
        metadata={
            "help": "evaluations in a row without a new best eval loss from which the LR may not rise above the "
            "prior, until a new best (`null`: off)"
        },
    )
    eval_cut: float = field(
        default=4.0, metadata={"help": "while `eval_patience` holds, the LR is at most the prior / this"}
    )
    eval_overfit: float | None = field(
        default=0.1,
        metadata={
            "help": "an eval loss this fraction above the best while the training loss fell since then starts the "
            "hold at once (`null`: off)"
        },
    )
    eval_gap: float | None = field(
        default=0.3,
        metadata={
            "help": "an eval loss without a new best this far above the training loss (logs) ends the boost for the "
            "rest of the run (`null`: off)"
        },
    )
    eval_trust: Any = field(
        default="auto",
        metadata={
            "help": "while the last eval loss improved on the best by more than this (logs), the LR is not cut "
            f"below {TRUST_FLOOR:g}× the prior (`auto`: 0.3 on a pretrained run, off from scratch; `null`: off)"
        },
    )
    smoothing: Any = field(
        default="auto",
        metadata={
            "help": "the learner's correction averaged over steps, δ ← s·δ + (1-s)·decision (`auto`: 0.9 from "
            "scratch, 0 on a pretrained run)"
        },
    )
    log_features: bool = field(default=False, metadata={"help": "also log the features, back-off and guard"})

    def __post_init__(self):
        for name in ("local_files_only", "guard", "log_features", "warmup_boost"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.pretrained is not None and not isinstance(self.pretrained, bool):
            raise ValueError(f"pretrained must be true, false or unset (read from the model), got {self.pretrained!r}")
        if self.decision_lag is not None and (isinstance(self.decision_lag, bool) or self.decision_lag not in (0, 1)):
            raise ValueError(f"decision_lag must be 0, 1 or None (auto), got {self.decision_lag!r}")
        for name in ("revision", "cache_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")
        check_controller_options(**{k: v for k, v in self.controller_kwargs().items() if k != "guard"})

    @classmethod
    def table(cls) -> str:
        """The options as a Markdown table (name, default, help), from the fields: the README's and
        ``metalr-hf show --options``."""
        import json

        rows = ["| option | default | meaning |", "|---|---|---|"]
        for f in fields(cls):
            default = "unset" if f.default is None else f"`{json.dumps(f.default)}`"
            rows.append(f"| `{f.name}` | {default} | {f.metadata['help']} |")
        return "\n".join(rows)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def controller_kwargs(self) -> dict:
        names = ("prior", "min_lr_ratio", "decay_fraction", "guard", "guard_ratio", "recovery", "max_boost",
                 "warmup_boost", "eval_patience", "eval_cut", "eval_overfit", "eval_gap", "eval_trust",
                 "smoothing")  # fmt: skip
        return {k: getattr(self, k) for k in names}

    def hub_kwargs(self) -> dict:
        return {k: getattr(self, k) for k in HUB_OPTIONS[1:]}
