"""The learner's correction averaged over steps (the option ``smoothing``), and a prototype early hold, on the
held-out zoo around WSD (the package's defaults otherwise: ``eval_patience`` 2, 10 evaluations a run):

    python lab/experiments/delta-smooth/smooth.py OUT [LEARNER] [VARIANT ...] [--horizon=300] [--seeds=0,1,2]

Through the Trainer the learner's correction jitters from step to step (the LR over the base LR of a ViT at its
right LR: 0.58 0.97 0.72 1.21 1.37 0.81 1.64 ...), and its first decision, after one observed step, is often its
largest boost (×3 to ×7 the prior at step 1). VARIANT:

- ``emaB``: the package's ``smoothing`` B: δ ← B·δ + (1-B)·the learner's (capped) decision (its ``prev_delta``
  feature reads the averaged δ);
- ``earlyF``: (a prototype, not in the package) δ ≤ 0 for the first fraction F of the run;
- ``linB``: (a prototype) the LR multiplier ``exp(δ)`` averaged with weight B instead of δ;
- ``riseB``: (a prototype) only a rise of δ averaged with weight B, a fall taken whole;
- ``cutC``: the package's ``eval_cut`` C (with ``emaB``: both options); ``fitX``: the package's ``eval_overfit`` X;
- ``holdK``: (a prototype) a boost needs the evaluations to keep bringing new bests: δ ≤ 0 from the K-th stale
  evaluation in a row (before ``eval_patience``'s cut);
- ``overK``: (a prototype) as ``holdK``, only where the training loss went on falling since the best evaluation
  (``+tolX``: and the evaluation is more than a fraction X above the best); ``ocutK``: cut there to the prior /
  ``eval_cut`` at once;
- ``floorF``: (a prototype) no cut (δ ≥ 0) for the first fraction F of the run;
- ``vetoS``: (a prototype) no cut while the training loss falls faster than S per tenth of the run;
  ``pvetoS``: the same only before the second evaluation and while the last one is trusted (``eval_trust``);
- ``ratchetK``: (a prototype) a cut not relaxed while the training loss is flat (|slope| < K per tenth of the run);
- ``rangeM``: (a prototype) the warmup as an LR range test: a fall then a rise of the smoothed loss by more than M
  (log) caps the LR multiplier for the rest of the run at the one behind the lowest loss;
- ``odeepK``: (a prototype) an evaluation that reads as overfitting caps the LR at 1/K of the prior (a stale one at
  1/``eval_cut``) until a new best;
- ``decL``: (a prototype) an evaluation that starts a hold starts a linear decay to 0 from L × the prior there;
- ``gapG``: (a prototype) no boost while the last evaluation's log-loss is more than G above the smoothed training
  log-loss (``gapG+guard``: not while the divergence guard or the back-off holds the LR down);
- ``rampG``: (a prototype) the first evaluation whose log-loss is more than G above the smoothed training log-loss
  starts a linear decay to 0 from the prior there (WSD's decay start moved to where the run starts to overfit);
- ``lgapG``: the package's ``eval_gap`` G: once an evaluation without a new best lies more than G (log) above the
  smoothed training loss, no boost for the rest of the run (prototyped here as ``lock1+lgapG``, 2026-12-07);
- ``ltrustM``: the package's ``eval_trust`` M (``impM+isc1+ifl0.69`` built in, 2026-12-07);
- several prototypes compose: ``gap0.15+ramp0.15``, ``veto0.3+gap0.15``;
- ``skip1``: (a prototype) a step at LR 0 (the warmup's first) is not shown to the extractor or the learner;
  ``drop1``: it is, but the decision made there is not applied;
- ``none``: no smoothing (the default before ``"auto"``); ``emaB+earlyF``: both.

Writes ``OUT-VARIANT.md`` (the report) and ``OUT-VARIANT.json`` (the declared table with its intervals), prints
each variant's declared summary; the baselines are simulated once.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time

import torch

from metalr_hf import MetaLearner
from metalr_hf.controller import MetaController
from metalr_hf.features import FEATURE_NAMES
from metalr_hf.metatrain import simulate as sim
from metalr_hf.metatrain.evaluate import EvalConfig, evaluate, results_text


class EarlyHold(MetaController):
    """No boost (δ ≤ 0) before ``early`` of the run; with ``floor``, no cut (δ ≥ 0) instead (a prototype: the
    learner's early cuts at a too-small LR, the forecaster's first quarter at 0.3×, do not reach the LR; the guards
    still act, the evaluations' holds do not)."""

    def __init__(self, *args, early=0.0, floor=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.early, self.floor = early, floor

    def update(self, signals, step=None):
        ok = super().update(signals, step)
        step = self.step_count - 1 if step is None else step
        early = torch.as_tensor(step, dtype=torch.float64) < self.early * self.T
        wrong_way = self.delta < 0 if self.floor else self.delta > 0
        self.delta = torch.where(early & wrong_way, torch.zeros_like(self.delta), self.delta)
        return ok


class ZeroSkip(MetaController):
    """(A prototype) a step taken at LR 0 — the warmup's first, where the prior is 0 — is not shown to the extractor
    or the learner: its update is zero by construction, so it reads as an LR far too small (``update_ratio`` at its
    clip) and the learner's first decision was its largest boost, made blind."""

    def update(self, signals, step=None):
        step = self.step_count if step is None else step
        skip = self.prior_at(step) == 0
        if not bool(skip.any()):
            return super().update(signals, step)
        # the update replaces these tensors rather than writing into them: the old ones can be kept as they are
        state, learner_state, control = self.extractor.state, self.learner_state, dict(self._control)
        ok = super().update(signals, step)

        def rows(old, new):  # ``old`` in the skipped runs (rows), ``new`` elsewhere
            return torch.where(skip.reshape(-1, *[1] * (new.dim() - 1)), old, new)

        self.extractor.state = {k: rows(state[k], v) for k, v in self.extractor.state.items()}
        self.learner_state = rows(learner_state, self.learner_state)
        self._control.update({k: rows(v, self._control[k]) for k, v in control.items()})
        return ok | skip


class ZeroDrop(MetaController):
    """(A prototype) the learner sees a step taken at LR 0 (the warmup's first) as it did in meta-training, but the
    decision it makes there is not applied: δ stays as it was (``skip1`` hides the step from it instead)."""

    def update(self, signals, step=None):
        step = self.step_count if step is None else step
        zero, before = self.prior_at(step) == 0, self.delta.clone()
        ok = super().update(signals, step)
        self.delta = torch.where(zero, before, self.delta)
        return ok


class StagedHold(MetaController):
    """(A prototype) δ ≤ 0 from the ``boost_from``-th evaluation in a row without a new best; the package's
    ``eval_patience`` / ``eval_cut`` bound still holds (the tensor path only: the zoo's)."""

    def __init__(self, *args, boost_from=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.boost_from = boost_from

    @property
    def eval_cap(self) -> torch.Tensor:
        held = torch.where(self.eval_stale >= self.boost_from, 0.0, math.inf).float()
        return torch.minimum(super().eval_cap, held)


class OverfitHold(StagedHold):
    """(A prototype) as :class:`StagedHold`, but a stale evaluation holds only where the training loss has gone on
    falling since the best evaluation (the generalisation gap widens: overfitting), not on a plateau of both."""

    def __init__(self, *args, tol=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.tol = tol
        self.train_at_best = torch.full((self.extractor.batch_size,), math.inf)
        self.overfit = torch.zeros(self.extractor.batch_size, dtype=torch.bool)

    def observe_eval(self, value):
        level = self.features[:, FEATURE_NAMES.index("log_loss_rel")].float()
        value = torch.as_tensor(value, dtype=torch.float64).reshape(-1).expand(self.extractor.batch_size)
        better = torch.isfinite(value) & (value < self.eval_best)
        self.train_at_best = torch.where(better, level, self.train_at_best)
        self.overfit = ~better & (level < self.train_at_best) & (value > self.eval_best * (1 + self.tol))
        return super().observe_eval(value)

    held_at = 0.0  # the bound on δ while overfitting

    @property
    def eval_cap(self) -> torch.Tensor:
        held = torch.where((self.eval_stale >= self.boost_from) & self.overfit, self.held_at, math.inf).float()
        return torch.minimum(MetaController.eval_cap.fget(self), held)


class OverfitCut(OverfitHold):
    """(A prototype) as :class:`OverfitHold`, the overfitting run cut at once to the prior / ``eval_cut``."""

    @property
    def held_at(self) -> float:
        return self.eval_hold_cap


class FallVeto(MetaController):
    """(A prototype) no cut (δ ≥ 0) while the training loss falls fast: its slope over the slow time scale
    (``loss_slope_slow``, the log-loss change per tenth of the run) below ``-fall``; the evaluations' holds and the
    guards still act (a run whose loss keeps falling at a lowered LR, MiniLM's 0.17× for 36 steps, is not at a
    too-large LR)."""

    def __init__(self, *args, fall=0.3, **kwargs):
        super().__init__(*args, **kwargs)
        self.fall = fall

    def update(self, signals, step=None):
        ok = super().update(signals, step)
        falling = self.features[:, FEATURE_NAMES.index("loss_slope_slow")] < -self.fall
        floor = torch.clamp(self.eval_cap, max=0.0)
        self.delta = torch.where(falling, torch.maximum(self.delta, floor), self.delta)
        return ok


class PlateauRatchet(MetaController):
    """(A prototype) a cut not relaxed on a plateau: while δ < 0 and the training loss is flat (``|loss_slope_slow|``
    below ``flat``), δ may not rise above its previous value (GPT-2 10× too hot: the learner cuts to 0.19× by step 26,
    then relaxes to 0.4× while the loss sits at 3.1, against 1.38 tuned)."""

    def __init__(self, *args, flat=0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.flat = flat

    def update(self, signals, step=None):
        previous = self.delta.clone()
        ok = super().update(signals, step)
        flat = self.features[:, FEATURE_NAMES.index("loss_slope_slow")].abs() < self.flat
        self.delta = torch.where(flat & (previous < 0), torch.minimum(self.delta, previous), self.delta)
        return ok


class RangeCeiling(MetaController):
    """(A prototype) the warmup read as an LR range test: once the smoothed training loss (the guard's) has fallen
    more than ``margin`` (log) below its first value and then risen more than ``margin`` above its lowest, during the
    warmup, the LR multiplier ``prior · exp(δ)`` is capped for the rest of the run at the one that reached the lowest
    (GPT-2 10× too hot: the loss falls to 4.0 at a twentieth of the base LR, jumps to 5.3 by the end of the warmup)."""

    def __init__(self, *args, margin=0.1, **kwargs):
        super().__init__(*args, **kwargs)
        B = self.extractor.batch_size
        self.margin = margin
        self.range_first = torch.full((B,), math.nan, dtype=torch.float64)
        self.range_best = torch.full((B,), math.inf, dtype=torch.float64)
        self.range_scale = torch.ones(B, dtype=torch.float64)  # the LR multiplier behind the lowest loss
        self.ceiling = torch.full((B,), math.inf, dtype=torch.float64)  # log of the cap on the multiplier
        self.used = torch.zeros(B, dtype=torch.float64)  # the multiplier of the last step taken

    def update(self, signals, step=None):
        step_ = self.step_count if step is None else step
        behind = self.used.clone()  # the loss of this step was made by the update before it
        self.used = self.scale(step_)
        ok = super().update(signals, step)
        s = self.extractor.state
        level, seen, warm = s["guard_ema"], s["n_loss"] > 0, self.warmup > step_
        self.range_first = torch.where(seen & torch.isnan(self.range_first), level, self.range_first)
        better = seen & warm & (level < self.range_best)
        self.range_best = torch.where(better, level, self.range_best)
        self.range_scale = torch.where(better, behind, self.range_scale)
        fell = self.range_best < self.range_first - self.margin
        rose = seen & warm & fell & (level > self.range_best + self.margin) & torch.isinf(self.ceiling)
        self.ceiling = torch.where(rose, self.range_scale.clamp_min(1e-12).log(), self.ceiling)
        cap = self.ceiling - self.prior_at(step_ + 1).clamp_min(1e-12).log()
        self.delta = torch.minimum(self.delta, cap.float())
        return ok


class OverfitDeep(MetaController):
    """(A prototype) an evaluation that reads as overfitting (the package's ``eval_overfit``) cuts deeper than a stale
    one: δ ≤ -log(``deep``) while the last evaluation read so, early stopping through the LR (breast cancer at its
    right LR: meta's eval loss is the lowest of any schedule by step 30 of 300, then climbs while the training loss
    falls; ``eval_cut`` 4 slows that climb, it does not stop it)."""

    def __init__(self, *args, deep=100.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.deep = deep

    @property
    def eval_cap(self) -> torch.Tensor:
        deep = torch.where(self.overfitting, -math.log(self.deep), math.inf).float()
        return torch.minimum(super().eval_cap, deep)


class EvalDecay(MetaController):
    """(A prototype) an evaluation that starts a hold (``eval_patience`` stale ones, or ``eval_overfit``) also starts
    the decay: from then on the LR multiplier is at most ``level`` × the prior at that step, falling linearly to 0 at
    the end of the run, for good (WSD's decay start moved to where the evaluations stop improving: where cosine or
    linear decay beat WSD at the right LR — BERT, the noisy MiniLM, breast cancer, diabetes — the runs stop improving
    early)."""

    def __init__(self, *args, level=1.0, on_gap=None, **kwargs):
        super().__init__(*args, **kwargs)
        B = self.extractor.batch_size
        self.level, self.on_gap = level, on_gap  # on_gap (``rampG``): the decay starts where the gap exceeds G
        self.decay_from = torch.full((B,), math.inf, dtype=torch.float64)
        self.decay_top = torch.ones(B, dtype=torch.float64)

    def observe_eval(self, value):
        wide = self.eval_gap_of(value) > (math.inf if self.on_gap is None else self.on_gap)  # the package's gap
        started = super().observe_eval(value)
        new = (wide if self.on_gap is not None else started) & torch.isinf(self.decay_from)
        step = float(self.step_count)
        self.decay_top = torch.where(new, self.level * self.prior_at(step).double(), self.decay_top)
        self.decay_from = torch.where(new, torch.full_like(self.decay_from, step), self.decay_from)
        return started

    def scale(self, step):
        scale = super().scale(step)
        T = self.T.double()
        ramp = self.decay_top * ((T - step) / (T - self.decay_from).clamp_min(1.0)).clamp(0.0, 1.0)
        return torch.where(torch.isfinite(self.decay_from) & (step >= self.decay_from), torch.minimum(scale, ramp),
                           scale)  # fmt: skip


class GapHold(MetaController):
    """(A prototype) no boost (δ ≤ 0) while the last evaluation's loss is more than ``exp(gap)`` times the smoothed
    training loss (the generalisation gap, log): a run that already fits its training set far better than its
    held-out set gains nothing from a larger LR (breast cancer at its right LR: a gap of +0.34 at the second of ten
    evaluations, at 0.1× it −0.02; the byte LM's stays under +0.07 at every LR)."""

    def __init__(self, *args, gap=0.3, guarded=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.gap, self.guarded = gap, guarded  # guarded: not while the guard or the back-off holds the LR down
        self.gap_held = torch.zeros(self.extractor.batch_size, dtype=torch.bool)

    def observe_eval(self, value):
        self.gap_held = self.eval_gap_of(value) > self.gap  # the package's reading (`eval_hold.py`)
        return super().observe_eval(value)

    @property
    def eval_cap(self) -> torch.Tensor:
        held = self.gap_held
        if self.guarded:
            held = held & (self.backoff >= 1.0) & (self.guard_scale >= 1.0)
        return torch.minimum(super().eval_cap, torch.where(held, 0.0, math.inf).float())


class _Averaged(MetaController):
    """A prototype average of the learner's decisions in place of the package's ``smoothing`` (kept at 0): δ ←
    ``mix(previous δ, decision)`` where the step's signals were finite, with weight ``keep`` on the past."""

    def __init__(self, *args, keep=0.9, **kwargs):
        super().__init__(*args, **{**kwargs, "smoothing": 0.0})
        self.keep = keep

    def mix(self, previous, decision):
        raise NotImplementedError

    def update(self, signals, step=None):
        previous = self.delta.clone()
        ok = super().update(signals, step)
        self.delta = torch.where(ok, self.mix(previous, self.delta), self.delta)
        return ok


class LinearAverage(_Averaged):
    """(A prototype) the LR multiplier averaged instead of δ: ``exp(δ) ← B·exp(δ) + (1-B)·exp(decision)``, which keeps
    the mean LR a jittering learner asks for (an average of δ lowers it by about ``exp(σ²/2)``)."""

    def mix(self, previous, decision):
        return (self.keep * previous.double().exp() + (1 - self.keep) * decision.double().exp()).log().float()


class RiseAverage(_Averaged):
    """(A prototype) only a rise of δ averaged, with weight B; a fall reaches the LR whole: a boost builds up over
    about ``1/(1-B)`` steps, a cut acts at once (on the zoo the right-LR losses are boosts, the rescue of a
    too-large LR a cut)."""

    def mix(self, previous, decision):
        return torch.where(decision > previous, self.keep * previous + (1 - self.keep) * decision, decision)


class ImprovingVeto(MetaController):
    """(A prototype) no cut (δ ≥ 0, or the evaluations' hold) while the run generalises: from an evaluation whose
    log-loss lies more than ``margin`` below the best before it (the first: below the first training log-loss) to
    the next evaluation that does not. A run at a too-large LR stops improving on held-out data; one that keeps
    improving is not too hot (the clean MiniLM at its right LR, held at 0.17× by the fine-tuning learner).
    ``deepest`` (``iflF``): cuts down to exp(-F) still allowed there, none deeper; ``second`` (``isc1``): the first
    evaluation never vetoes (a new head improves on its first loss at a too-large LR too); ``ratio`` (``igrR``): and
    only where the eval log-loss fell since that best by at least R times the smoothed training log-loss (a run that
    fits its training set much faster than it generalises — noisy labels, lost pretrained features — is not
    vetoed)."""

    def __init__(self, *args, margin=0.05, deepest=0.0, second=False, ratio=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.margin, self.deepest, self.second, self.ratio = margin, deepest, second, ratio
        B = self.extractor.batch_size
        self.first_level = torch.full((B,), math.nan, dtype=torch.float64)
        self.improving = torch.zeros(B, dtype=torch.bool)

    def update(self, signals, step=None):
        ok = super().update(signals, step)
        s = self.extractor.state
        self.first_level = torch.where(self.first_level.isnan() & (s["n_loss"] > 0), s["guard_ema"], self.first_level)
        self._veto()
        return ok

    def observe_eval(self, value, loss=None):
        value = torch.as_tensor(value, dtype=torch.float64).reshape(-1).expand(self.extractor.batch_size)
        first = torch.full_like(self.first_level, math.nan) if self.second else self.first_level
        ref = torch.where(torch.isfinite(self.eval_best), self.eval_best.log(), first)
        self.improving = (value > 0) & (value.log() < ref - self.margin)  # NaN (nothing to compare): False
        if self.ratio is not None:  # the training log-loss's fall since the best (its level there, kept by the hold)
            fell = self.eval_train_best - self.extractor.state["guard_ema"]
            self.improving &= (ref - value.log()) >= self.ratio * fell
        started = super().observe_eval(value, loss)
        self._veto()
        return started

    def _veto(self):
        floor = torch.clamp(self.eval_cap, max=-self.deepest)
        self.delta = torch.where(self.improving, torch.maximum(self.delta, floor), self.delta)


class ProvisionalVeto(FallVeto):
    """(A prototype) ``vetoS`` only until the evaluations can speak: no cut while the training loss falls faster
    than ``fall`` per tenth of the run, before the second evaluation (the first has nothing to compare with) and
    after it while the last one was trusted (``eval_trust``); a run whose evaluations stop improving is cut as the
    learner wants (the fall veto kept the cut from a run 10× too hot whose training loss fell as fast)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.n_evals = torch.zeros(self.extractor.batch_size)

    def observe_eval(self, value, loss=None):
        self.n_evals = self.n_evals + 1
        return super().observe_eval(value, loss)

    def update(self, signals, step=None):
        ok = super(FallVeto, self).update(signals, step)  # past FallVeto's own: composes with the others
        falling = self.features[:, FEATURE_NAMES.index("loss_slope_slow")] < -self.fall
        falling &= (self.n_evals < 2) | (self.eval_trusted > 0)
        floor = torch.clamp(self.eval_cap, max=0.0)
        self.delta = torch.where(falling, torch.maximum(self.delta, floor), self.delta)
        return ok


# The prototypes by their key in a VARIANT (a part's first three letters): the controller each one builds.
PROTOTYPES = {
    "ear": lambda p, v: functools.partial(EarlyHold, early=p["ear"]),
    "lin": lambda p, v: functools.partial(LinearAverage, keep=p["lin"]),
    "ove": lambda p, v: functools.partial(OverfitHold, boost_from=p["ove"], tol=p.get("tol", 0.0)),
    "flo": lambda p, v: functools.partial(EarlyHold, early=p["flo"], floor=True),
    "ocu": lambda p, v: functools.partial(OverfitCut, boost_from=p["ocu"], tol=p.get("tol", 0.0)),
    "hol": lambda p, v: functools.partial(StagedHold, boost_from=p["hol"]),
    "vet": lambda p, v: functools.partial(FallVeto, fall=p["vet"]),
    "pve": lambda p, v: functools.partial(ProvisionalVeto, fall=p["pve"]),
    "rat": lambda p, v: functools.partial(PlateauRatchet, flat=p["rat"]),
    "ran": lambda p, v: functools.partial(RangeCeiling, margin=p["ran"]),
    "ode": lambda p, v: functools.partial(OverfitDeep, deep=p["ode"]),
    "dec": lambda p, v: functools.partial(EvalDecay, level=p["dec"]),
    "gap": lambda p, v: functools.partial(GapHold, gap=p["gap"], guarded="guard" in v.split("+")),
    "ram": lambda p, v: functools.partial(EvalDecay, on_gap=p["ram"], level=1.0),
    "ris": lambda p, v: functools.partial(RiseAverage, keep=p["ris"]),
    "imp": lambda p, v: functools.partial(
        ImprovingVeto, margin=p["imp"], deepest=p.get("ifl", 0.0), second=bool(p.get("isc", 0)), ratio=p.get("igr")
    ),
    "ski": lambda p, v: functools.partial(ZeroSkip),
    "dro": lambda p, v: functools.partial(ZeroDrop),
}


def variant_parts(variant: str) -> dict[str, float]:
    """``{key: value}`` of a VARIANT such as ``ema0.9+cut4+gap0.15+guard`` (a part's first three letters: its
    number; ``none`` and the flag ``guard`` carry none)."""
    named = [p for p in variant.split("+") if p not in ("none", "guard")]
    return dict((p[:3], float(p.lstrip("acdefghiklmnoprstuvy"))) for p in named)


def controller_for(variant: str):
    """The controller a VARIANT's prototypes build, or None for the package's own: several named (``gap0.15+vet0.3``)
    compose, each bounding δ after the ones named after it (their methods call ``super()``)."""
    parts = variant_parts(variant)
    made = [make(parts, variant) for key, make in PROTOTYPES.items() if key in parts]
    if len(made) <= 1:
        return made[0] if made else None
    kwargs = {k: v for m in made for k, v in m.keywords.items()}
    return functools.partial(type("Composed", tuple(m.func for m in made), {}), **kwargs)


def main(out: str, name: str = "metalr-default-v3", *variants: str, horizon: int = 300, seeds=(0, 1, 2)) -> None:
    learner = MetaLearner.from_pretrained(name)
    original = sim.MetaController
    for variant in variants or ("none", "ema0.5", "ema0.8", "ema0.9", "early0.1"):
        parts = variant_parts(variant)
        cfg = EvalConfig(prior="wsd", evals=10, eval_patience=2, smoothing=parts.get("ema", 0.0), horizon=horizon,
                         seeds=tuple(seeds), eval_cut=parts.get("cut", 1.0),
                         eval_overfit=parts.get("fit"), eval_gap=parts.get("lga"),
                         eval_trust=parts.get("ltr"))  # fmt: skip
        prototype = controller_for(variant)
        if prototype is not None:
            sim.MetaController = prototype
        t0 = time.time()
        result = evaluate(learner, cfg)
        sim.MetaController = original
        with open(f"{out}-{variant}.md", "w") as f:
            f.write(results_text(cfg, result["summary"], None) + f"\n\n`python {' '.join(sys.argv)}` ({variant}): "
                    f"{time.time() - t0:.0f} s\n")  # fmt: skip
        with open(f"{out}-{variant}.json", "w") as f:
            json.dump(result["summary"]["declared"], f, default=str, indent=1)
        print(variant, json.dumps(result["summary"]["declared"]["summary"], default=str), flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))  # --horizon=1000 --seeds=0,1
    main(*args, horizon=int(opts.get("horizon", 300)), seeds=[int(x) for x in opts.get("seeds", "0,1,2").split(",")])
