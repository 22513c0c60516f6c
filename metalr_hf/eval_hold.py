"""The evaluations' say in the rule: what :meth:`MetaController.observe_eval` reads from the evaluations a run hands
over (the Trainer's ``eval_loss``, or ``metric_for_best_model``) and the bound on the learner's correction δ that
follows (``eval_patience``, ``eval_cut``, ``eval_overfit``, ``eval_gap``; see `options.MetaSchedulerOptions`), and the
floor it sets while the run keeps improving on held-out data (``eval_trust``). A mixin of
:class:`~metalr_hf.controller.MetaController`, for ``B`` runs at once or one, as the rest of the rule."""

from __future__ import annotations

import math

import torch

from .options import TRUST_FLOOR, resolve_eval_trust

__all__ = ["EvalHolds"]


class EvalHolds:
    """``observe_eval``, the bound it sets (``eval_cap``) and the floor (``eval_trusted``); the state it keeps
    (``eval_best``, ``eval_stale``, ``eval_train_best``, ``eval_locked``, ``eval_loss_best``, ``eval_trusted``,
    ``overfitting``) is the controller's."""

    log_trust_floor = math.log(TRUST_FLOOR)  # δ ≥ this while ``eval_trusted`` (at most the cap: holds still act)

    def eval_trust_margins(self) -> torch.Tensor:
        """The ``[B]`` margin of ``eval_trust`` for each run (``"auto"``: by whether it is marked pretrained; inf:
        off)."""
        scratch, finetune = (resolve_eval_trust(self.eval_trust, flag) for flag in (False, True))
        margins = [math.inf if m is None else float(m) for m in (scratch, finetune)]
        return torch.where(self.extractor.pretrained > 0.5, margins[1], margins[0]).double()

    @property
    def eval_hold_cap(self) -> float:
        """The bound on δ while the evaluations hold: ``-log(eval_cut)``."""
        return -math.log(self.eval_cut)

    @property
    def eval_cap(self) -> torch.Tensor:
        """The ``[B]`` bound on δ the evaluations set: ``-log(eval_cut)`` while ``eval_stale >= eval_patience``, 0
        once ``eval_gap`` locked the boost."""
        held = self.eval_stale >= self.eval_hold_from
        return torch.where(held, self.eval_hold_cap, torch.where(self.eval_locked > 0, 0.0, math.inf)).float()

    def eval_gap_of(self, loss) -> torch.Tensor:
        """The ``[B]`` gap an evaluation shows: log(its eval ``loss``) minus the smoothed training log-loss (the
        guard's); NaN where the loss is not a finite number > 0 or no training loss was seen yet."""
        s = self.extractor.state
        loss = torch.as_tensor(loss, dtype=torch.float64).reshape(-1).expand(self.extractor.batch_size)
        readable = (loss > 0) & (loss < math.inf) & (s["n_loss"] > 0)
        return torch.where(readable, loss, math.nan).log() - s["guard_ema"]

    @torch.no_grad()
    def observe_eval(self, value, loss=None) -> torch.Tensor:
        """An evaluation of every run (``[B]``, or one number; lower is better, a non-finite value counts as no
        improvement): from the ``eval_patience``-th in a row without a new best — or at once where it is more than
        ``eval_overfit`` above the best while the smoothed training loss fell since that best (overfitting) —
        δ ≤ -log(eval_cut) (this step's δ included) until an evaluation brings a new best; one without a new best
        whose ``loss`` (the eval loss, ``value`` unless given; > 0) lies ``eval_gap`` above the smoothed training
        log-loss, δ ≤ 0 for good. While an eval loss (``loss``, or ``value`` where not given) lies more than
        ``eval_trust`` (log) below the best before it, δ ≥ log(TRUST_FLOOR) (at most the cap) until the next
        evaluation (:func:`controller._rule`), with a metric to maximise too. Returns the ``[B]`` mask of the runs
        this evaluation started holding."""
        B = self.extractor.batch_size
        if self.eval_patience is None:
            return torch.zeros(B, dtype=torch.bool)
        value = torch.as_tensor(value, dtype=torch.float64).reshape(-1).expand(B)
        value = torch.where(torch.isfinite(value), value, torch.full_like(value, float("inf")))
        best, held, better = self.eval_best, torch.isfinite(self.eval_cap), value < self.eval_best
        # the eval loss (``value`` unless given: a metric to maximise comes negated, with its loss beside it)
        # improving on its best before (the first evaluation has none) by more than the margin, as logs
        reading = value if loss is None else torch.as_tensor(loss, dtype=torch.float64).reshape(-1).expand(B)
        readable, loss_best = (reading > 0) & (reading < math.inf), self.eval_loss_best
        trusted = readable & torch.isfinite(loss_best) & (reading.log() < loss_best.log() - self.eval_trust_margins())
        s = self.extractor.state  # the training loss's level: the guard's smoothed log-loss, once a loss was seen
        seen, level = s["n_loss"] > 0, s["guard_ema"]
        stale, tol = self.eval_stale + 1, math.inf if self.eval_overfit is None else self.eval_overfit
        # overfitting (not read from a non-finite evaluation, nor without a loss now or at the best); for the log
        rose = (best + tol * best.abs() < value) & (value < math.inf)
        self.overfitting = rose & seen & (level < self.eval_train_best)
        stale = torch.where(self.overfitting, torch.clamp(stale, min=float(self.eval_hold_from)), stale)
        gap = math.inf if self.eval_gap is None else self.eval_gap
        wide = self.eval_gap_of(reading) > gap  # NaN (nothing readable): False
        self.eval_locked = torch.where(~better & wide, 1.0, self.eval_locked).float()
        self.eval_train_best = torch.where(better, torch.where(seen, level, -math.inf), self.eval_train_best)
        self.eval_best = torch.minimum(best, value)
        self.eval_loss_best = torch.where(readable, torch.minimum(loss_best, reading), loss_best)
        self.eval_stale = torch.where(better, torch.zeros(B), stale)
        self.eval_trusted = trusted.float()
        cap = self.eval_cap
        floor = torch.clamp(cap, max=self.log_trust_floor)
        self.delta = torch.where(trusted, torch.maximum(self.delta, floor), torch.minimum(self.delta, cap))
        return torch.isfinite(cap) & ~held
