"""What a :class:`~metalr_hf.scheduler.MetaLRScheduler` checkpoint holds, and how a run resumes from it.

``state_dict()`` holds tensors and plain Python values only (``torch.load(weights_only=True)``): the step counts,
base LRs, options, the controller's state (the learner's recurrent state, the feature statistics, the guards), and
the learner's fingerprint and feature schema, so that a checkpoint is never resumed with another learner. A resumed
run continues the exact LR trajectory; one resumed with another horizon (``max_steps``) follows the new one from the
current step on (:meth:`SchedulerState._change_horizon`).
"""

from __future__ import annotations

from .features import SCHEMA_VERSION
from .hub import DEFAULT_FINETUNE_LEARNER as FINETUNE
from .hub import DEFAULT_LEARNER
from .scheduler_checks import PRE_OPTION_STATE, check_scheduler_state

__all__ = ["SchedulerState"]


class SchedulerState:
    """The checkpoint half of ``MetaLRScheduler`` (a mixin: every attribute it reads is the scheduler's)."""

    def _change_horizon(self, num_training_steps: int) -> None:
        """A run that has taken steps gets a new horizon (a resume with another ``max_steps``, epochs over another
        number of ranks): as a stock scheduler, the schedule follows the new ``T`` from the current step on, and the
        learner's state, statistics, prior and guards carry over (the time constants follow ``T``). Warned."""
        old = self.num_training_steps
        if num_training_steps == old:
            return
        state, prior = self.controller.state_dict(), self.controller.prior
        self.num_training_steps = num_training_steps
        self.controller = self._new_controller()
        self.controller.load_state_dict(state)
        self.controller.set_prior(prior)
        message = (
            f"MetaLRScheduler: the run's horizon changed from {old} to {num_training_steps} optimizer steps at step "
            f"{self.last_epoch} (resumed with another max_steps, epochs or number of processes?); the schedule "
            f"follows {num_training_steps} from here on, with the learner's state carried over."
        )
        if self.last_epoch >= num_training_steps:
            message += " The run is already past its new end: the LR stays at the end of the schedule."
        self._warn_once(f"horizon_{old}_{num_training_steps}", message)
        if self.controller.step_count > 0:
            self._set_group_lrs(self.get_lr())

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Tensors and plain Python values only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "_last_lr": [float(x) for x in self._last_lr],
            "num_training_steps": self.num_training_steps,
            "num_warmup_steps": self.num_warmup_steps,
            "options": dict(self.options),
            "schema_version": SCHEMA_VERSION,
            "learner_fingerprint": self.learner.fingerprint(),
            "learner_source": {k: v for k, v in self.learner.source.items() if v is not None},
            "controller": self.controller.state_dict(),
            "decision_lag": self.decision_lag,
            "held_signals": None if self._held is None else self._held[0].cpu().clone(),
            "held_step": None if self._held is None else self._held[1],
            "prior": self.controller.prior,
            "smoothing": self.controller.smoothing,
            "eval_cut": self.opts.eval_cut,
            "eval_overfit": self.opts.eval_overfit,
            "eval_gap": self.opts.eval_gap,
            "eval_trust": self.opts.eval_trust,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        check_scheduler_state(state_dict, len(self.optimizer.param_groups))
        schema = state_dict.get("schema_version")
        if schema != SCHEMA_VERSION:
            raise ValueError(
                f"This scheduler checkpoint was written for feature schema {schema}, this metalr-hf reads "
                f"schema {SCHEMA_VERSION}: it cannot be resumed with this version."
            )
        source = state_dict.get("learner_source")
        written_by = source.get("name_or_path") if isinstance(source, dict) else None
        if self.default_pair and written_by in (DEFAULT_LEARNER, FINETUNE):
            self._use_learner(written_by)  # the pair's learner the interrupted run used
        mine, theirs = self.learner.fingerprint(), state_dict.get("learner_fingerprint")
        if theirs != mine:
            raise ValueError(
                f"This scheduler checkpoint was written by meta-learner {written_by or 'another learner'!r} "
                f"(fingerprint {theirs}), but this scheduler uses {self.learner.source.get('name_or_path')!r} "
                f"(fingerprint {mine}). Resume with the same `meta_learner` (and revision) as the interrupted run."
            )
        # The horizon: this scheduler's own where it was built with one (a Trainer resuming with another
        # max_steps builds it with the new one, as for stock schedulers), else the interrupted run's.
        horizon = self.num_training_steps
        self.num_training_steps = None
        self.controller = None
        self.set_num_training_steps(state_dict["num_training_steps"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self.base_lrs = list(state_dict["base_lrs"])
        self._last_lr = list(state_dict["_last_lr"])
        self.controller.load_state_dict(state_dict["controller"])
        if "prior" not in self.options:  # the interrupted run's
            self.opts.prior = state_dict["prior"]
            self.controller.set_prior(self.opts.prior)
        # the interrupted run's, or for a checkpoint written before the key what that run ran with
        ran = {key: state_dict.get(key, before) for key, before in PRE_OPTION_STATE.items()}
        if "smoothing" not in self.options:
            self.opts.smoothing = self.controller.smoothing = ran["smoothing"]
        if "eval_cut" not in self.options:
            self.opts.eval_cut = self.controller.eval_cut = float(ran["eval_cut"])
        if "eval_overfit" not in self.options:
            self.opts.eval_overfit = self.controller.eval_overfit = ran["eval_overfit"]
        if "eval_gap" not in self.options:
            self.opts.eval_gap = self.controller.eval_gap = ran["eval_gap"]
        if "eval_trust" not in self.options:
            self.opts.eval_trust = self.controller.eval_trust = ran["eval_trust"]
        # decided by the interrupted run: the Trainer callback must not read it again from weights that have been
        # trained since (a run from scratch would now look pretrained)
        self.pretrained_given = True
        held = state_dict["held_signals"]
        self._held = None if held is None else (held, int(state_dict["held_step"]))
        # The LRs this scheduler had set for the next step, whatever the optimizer's loaded state holds (PyTorch's
        # distributed `set_state_dict` leaves them at the 0 it initialises the state with).
        self._set_group_lrs(self._last_lr)
        if horizon is not None and horizon != self.num_training_steps:
            self._change_horizon(horizon)
