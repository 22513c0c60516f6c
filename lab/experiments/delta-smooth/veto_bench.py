"""The ``vetoS`` prototype of ``smooth.py`` (no cut while the training loss falls faster than S per tenth of the
run; the evaluations' holds and the guards still act) through the real Trainer: a bench run with the scheduler's
one-run path patched, on pretrained runs only (``--all``: every run):

    python lab/experiments/delta-smooth/veto_bench.py S [--all] -- BENCH-ARGS...
    python lab/experiments/delta-smooth/veto_bench.py 0.3 -- --suite finetune --schedulers meta --output-dir DIR

``ratchetK`` / ``rangeM`` in place of S: the ``ratchetK`` prototype (a cut not relaxed while the training loss is
flat) / the ``rangeM`` one (the warmup as an LR range test) / the ``decayL`` one (an evaluation that starts a hold
starts a linear decay to 0) / the ``gapG`` one (no boost while the evaluation's log-loss is G above the training
loss's) / the ``rampG`` one (the first evaluation whose log-loss is G above the training loss's starts a linear
decay to 0) / ``skip`` / ``drop`` (a step at LR 0, the warmup's first, hidden from the learner / its decision
not applied), on every run (the ``lgapG`` prototype is the package's ``eval_gap`` now: ``--meta-kwargs``);
``pvetoS``: ``vetoS`` only before the second evaluation and while the last one was trusted;
``tfloorF``: the package's ``eval_trust`` with its floor at F × the prior instead of ½. Several compose:
``veto_bench.py veto0.3 gap0.15+guard -- ...``.
"""

from __future__ import annotations

import sys

import torch

from metalr_hf.cli import main as cli_main
from metalr_hf.controller import MetaController
from metalr_hf.features import FEATURE_NAMES

SLOPE = FEATURE_NAMES.index("loss_slope_slow")


def patch(fall: float, every_run: bool = False) -> None:
    original = MetaController._update_values

    def _update_values(self, x, has_loss, step):
        ok = original(self, x, has_loss, step)
        c = self._control
        if (every_run or self.extractor._pretrained_value > 0.5) and c["features"][SLOPE] < -fall:
            held = c["eval_stale"] >= self.eval_hold_from
            c["delta"] = max(c["delta"], min(0.0, self.eval_hold_cap if held else 0.0))
        return ok

    MetaController._update_values = _update_values


def patch_provisional(fall: float, every_run: bool = False) -> None:
    """``smooth.ProvisionalVeto`` on the one-run path: ``vetoS`` only before the second evaluation and while the
    last one was trusted (``eval_trust``)."""
    observe, original = MetaController.observe_eval, MetaController._update_values

    def observe_eval(self, value, loss=None):
        self._n_evals = getattr(self, "_n_evals", 0) + 1
        return observe(self, value, loss)

    def _update_values(self, x, has_loss, step):
        ok = original(self, x, has_loss, step)
        c = self._control
        speaks = getattr(self, "_n_evals", 0) >= 2 and not c["eval_trusted"] > 0
        if (every_run or self.extractor._pretrained_value > 0.5) and c["features"][SLOPE] < -fall and not speaks:
            held = c["eval_stale"] >= self.eval_hold_from
            c["delta"] = max(c["delta"], min(0.0, self.eval_hold_cap if held else 0.0))
        return ok

    MetaController.observe_eval, MetaController._update_values = observe_eval, _update_values


def patch_ratchet(flat: float) -> None:
    original = MetaController._update_values

    def _update_values(self, x, has_loss, step):
        previous = self._control.get("delta", 0.0)
        ok = original(self, x, has_loss, step)
        c = self._control
        if previous < 0 and abs(c["features"][SLOPE]) < flat:
            c["delta"] = min(c["delta"], previous)
        return ok

    MetaController._update_values = _update_values


def patch_range(margin: float) -> None:
    """``smooth.RangeCeiling`` on the one-run path."""
    import math

    original = MetaController._update_values

    def _update_values(self, x, has_loss, step):
        r = self.__dict__.setdefault("_range", {"first": None, "best": math.inf, "scale": 1.0, "ceiling": None,
                                                "used": 0.0})  # fmt: skip
        step = self.step_count if step is None else step
        behind, r["used"] = r["used"], self.scale_value(step)
        ok = original(self, x, has_loss, step)
        v = self.extractor.values
        if v["n_loss"] > 0 and step < self._warmup:
            level = v["guard_ema"]
            r["first"] = level if r["first"] is None else r["first"]
            if level < r["best"]:
                r["best"], r["scale"] = level, behind
            fell = r["best"] < r["first"] - margin
            if fell and level > r["best"] + margin and r["ceiling"] is None:
                r["ceiling"] = math.log(max(r["scale"], 1e-12))
        if r["ceiling"] is not None:
            cap = r["ceiling"] - math.log(max(self._prior_value(step + 1), 1e-12))
            self._control["delta"] = min(self._control["delta"], cap)
        return ok

    MetaController._update_values = _update_values


def patch_decay(level: float, on_gap: float | None = None) -> None:
    """``smooth.EvalDecay`` on the one-run path: an evaluation that starts a hold starts a linear decay to 0 from
    ``level`` × the prior there, for good; ``on_gap`` (``rampG``): the first evaluation whose log-loss is more than G
    above the smoothed training log-loss starts it instead."""
    observe, scale_value = MetaController.observe_eval, MetaController.scale_value

    def observe_eval(self, value, loss=None):
        wide = on_gap is not None and bool(self.eval_gap_of(value if loss is None else loss)[0] > on_gap)
        started = observe(self, value, loss)
        if (wide if on_gap is not None else bool(started[0])) and getattr(self, "_decay", None) is None:
            step = self.step_count
            self._decay = (step, level * self._prior_value(step))
        return started

    def _scale_value(self, step):
        value = scale_value(self, step)
        decay = getattr(self, "_decay", None)
        if decay is not None and step >= decay[0]:
            value = min(value, decay[1] * min(1.0, max(0.0, (self._T - step) / max(self._T - decay[0], 1.0))))
        return value

    MetaController.observe_eval, MetaController.scale_value = observe_eval, _scale_value


def patch_gap(gap: float, guarded: bool = False) -> None:
    """``smooth.GapHold`` on the one-run path: no boost while the last evaluation's log-loss is more than ``gap``
    above the smoothed training log-loss (the bound taken after the step's averaging, not before it); ``guarded``
    (``gapG+guard``): not while the divergence guard or the back-off holds the LR down."""

    def clip(self):
        c = self._control
        if getattr(self, "_gap_held", False) and not (guarded and min(c["backoff"], c["guard_scale"]) < 1.0):
            c["delta"] = min(c["delta"], 0.0)

    observe, original = MetaController.observe_eval, MetaController._update_values

    def observe_eval(self, value, loss=None):
        self._gap_held = bool(self.eval_gap_of(value if loss is None else loss)[0] > gap)  # the package's reading
        started = observe(self, value, loss)
        clip(self)
        return started

    def _update_values(self, x, has_loss, step):
        ok = original(self, x, has_loss, step)
        clip(self)
        return ok

    MetaController.observe_eval, MetaController._update_values = observe_eval, _update_values


def patch_improving(margin: float, second: bool = False, ratio: float | None = None, deepest: float = 0.0) -> None:
    """``smooth.ImprovingVeto`` on the one-run path: no cut while the last evaluation improved on the best before it
    (the first: on the first training log-loss; with ``second``, ``impM+isc1``, never) by more than ``margin``
    (log); ``+igrR``: and by R times the training log-loss's fall; ``+iflF``: cuts to exp(-F) still allowed."""
    import math

    observe, original = MetaController.observe_eval, MetaController._update_values

    def veto(self):
        if getattr(self, "_improving", False):
            held = self._control["eval_stale"] >= self.eval_hold_from
            floor = min(-deepest, self.eval_hold_cap if held else -deepest)
            self._control["delta"] = max(self._control["delta"], floor)

    def observe_eval(self, value, loss=None):
        v = float(torch.as_tensor(value, dtype=torch.float64).reshape(-1)[0])
        best = float(self.eval_best.reshape(-1)[0])
        first = math.nan if second else getattr(self, "_first_level", math.nan)
        ref = math.log(best) if math.isfinite(best) else first
        self._improving = v > 0 and math.isfinite(v) and math.log(v) < ref - margin
        if ratio is not None and self._improving:  # and the eval log-loss fell at least R times the training one
            fell = float(self.eval_train_best.reshape(-1)[0]) - float(self.extractor.values["guard_ema"])
            self._improving = ref - math.log(v) >= ratio * fell
        started = observe(self, value, loss)
        veto(self)
        return started

    def _update_values(self, x, has_loss, step):
        ok = original(self, x, has_loss, step)
        v = self.extractor.values
        if not hasattr(self, "_first_level") and v["n_loss"] > 0:
            self._first_level = float(v["guard_ema"])
        veto(self)
        return ok

    MetaController.observe_eval, MetaController._update_values = observe_eval, _update_values


def patch_zero_step(hide: bool) -> None:
    """``smooth.ZeroSkip`` (``hide``: the step at LR 0 is not shown to the extractor or the learner) / ``ZeroDrop``
    (it is, but the decision made there is not applied) on the one-run path."""
    original = MetaController._update_values

    def _update_values(self, x, has_loss, step):
        at = self.step_count if step is None else step
        if self._prior_value(at) != 0.0:
            return original(self, x, has_loss, step)
        if hide:
            self.step_count += 1
            return True
        before = self._control["delta"]
        ok = original(self, x, has_loss, step)
        self._control["delta"] = before
        return ok

    MetaController._update_values = _update_values


if __name__ == "__main__":
    ours, _, bench = " ".join(sys.argv[1:]).partition(" -- ")
    for token in ours.split():  # several prototypes compose: each wraps the methods the ones before it patched
        if token.startswith("gap"):
            value, _, guard = token[len("gap") :].partition("+")
            patch_gap(float(value), guard == "guard")
        elif token.startswith("ramp"):
            patch_decay(1.0, on_gap=float(token[len("ramp") :]))
        elif token.startswith("decay"):
            patch_decay(float(token[len("decay") :]))
        elif token.startswith("range"):
            patch_range(float(token[len("range") :]))
        elif token.startswith("ratchet"):
            patch_ratchet(float(token[len("ratchet") :]))
        elif token.startswith("imp"):
            value, *flags = token[len("imp") :].split("+")
            ratio = next((float(f[len("igr") :]) for f in flags if f.startswith("igr")), None)
            deepest = next((float(f[len("ifl") :]) for f in flags if f.startswith("ifl")), 0.0)
            patch_improving(float(value), "isc1" in flags, ratio, deepest)
        elif token.startswith("tfloor"):  # the package's eval_trust floor, F × the prior
            import math

            from metalr_hf.eval_hold import EvalHolds

            EvalHolds.log_trust_floor = math.log(float(token[len("tfloor") :]))
        elif token.startswith("pveto"):
            patch_provisional(float(token[len("pveto") :]), "--all" in ours.split())
        elif token in ("skip", "drop"):
            patch_zero_step(hide=token == "skip")
        elif token != "--all":
            patch(float(token.removeprefix("veto")), "--all" in ours.split())
    sys.exit(cli_main(["bench", *bench.split()]))
