"""``MetaLRScheduler``: the PyTorch scheduler interface around the rule (:mod:`metalr_hf.controller`).

It reads the run's signals after each optimizer step (loss, gradient norm, optimizer statistics: ``reader.py``),
averages them over ranks, hands them to a :class:`~metalr_hf.controller.MetaController` of one run, and sets every
param group's LR to its base LR times the controller's scale. Its state (``state_dict``,
:mod:`metalr_hf.scheduler_state`) resumes the LR trajectory exactly; :mod:`metalr_hf.scheduler_checks` says what it
accepts; :func:`metalr_hf.integration.get_scheduler` builds it by name, as ``transformers.get_scheduler`` does.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import torch
from torch.optim.lr_scheduler import LRScheduler

from . import scheduler_checks
from ._log import warn
from .controller import MetaController
from .features import FEATURE_NAMES
from .hub import DEFAULT_FINETUNE_LEARNER as FINETUNE
from .hub import DEFAULT_LEARNER
from .layouts import check_layout
from .learner import MetaLearner, load_learner
from .options import MetaSchedulerOptions
from .param_groups import adopt_new_groups, register_adopt_hook
from .reader import SignalReader
from .scheduler_checks import check_grad_norm, check_group_lrs, check_horizon, is_count, loss_tensor, scalar_f32
from .scheduler_state import SchedulerState
from .signals import SignalBuffers, Signals

__all__ = ["MetaController", "MetaLRScheduler", "load_learner"]

logger = logging.getLogger(__name__)

# Keys accepted in `lr_scheduler_kwargs` for the "meta" scheduler (see `options.MetaSchedulerOptions`).
META_SCHEDULER_KWARGS = MetaSchedulerOptions.names()


class MetaLRScheduler(SchedulerState, LRScheduler):
    """Learning-rate scheduler driven by a meta-learned recurrent policy (see the module docstring for the rule).

    Args:
        optimizer (`torch.optim.Optimizer`): its param groups' ``lr`` at construction are the base LRs.
        num_training_steps (`int`): number of optimizer steps ``T`` of the run (required, > 0).
        num_warmup_steps (`int`, *optional*, defaults to 0): linear warmup of the prior.
        meta_learner (`MetaLearner`, `str` or `None`, *optional*): a learner, a local folder, a Hub repo id, or
            ``None`` for the pair bundled in the package (works offline): ``metalr-finetune-v1`` for a run that
            fine-tunes pretrained weights, ``metalr-default-v3`` otherwise (see ``pretrained``).
        revision, cache_dir, token, local_files_only: where a Hub learner comes from (`revision` pins a commit).
        prior (`str`, defaults to `"wsd"`): one of `constant`, `cosine`, `linear`, `wsd`, or `"auto"`: `wsd` on a
            run that fine-tunes pretrained weights (see ``pretrained``), `cosine` otherwise. A resumed run keeps
            the prior its checkpoint was written with unless ``prior`` is given.
        min_lr_ratio, decay_fraction, guard, guard_ratio, recovery, max_boost, warmup_boost: see `MetaController`.
        pretrained (`bool` or `None`, defaults to `None`): whether the model was loaded from pretrained weights
            (the learner's ``pretrained`` feature). ``None``: a ``Trainer`` with :class:`MetaLRCallback` reads it
            from the model's weights (``pretrained_weights.weights_look_pretrained``: have they left the model's own
            initialisation?); a bare scheduler assumes False.
            A resumed run keeps the value its checkpoint was written with.
        decision_lag (`int` or `None`, defaults to `None`): 1 applies the learner's decision one step later, so
            the statistics stay on the accelerator and the host never waits for it; 0 applies it at once (what
            meta-training simulates). `None` picks 1 when the parameters live on an accelerator, else 0.
        last_epoch (`int`, defaults to -1): as in every PyTorch scheduler.

    Use it as any PyTorch scheduler, handing it the loss of each optimizer step before ``step()``:

    ```python
    scheduler = MetaLRScheduler(optimizer, num_training_steps=1000, num_warmup_steps=50)
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        scheduler.observe(loss.detach())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    ```

    Without ``observe`` it still runs on the gradient and optimizer statistics (warning once). Under
    ``torch.distributed`` every rank reduces its signals with one all-reduce, so all ranks set the same LR.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_training_steps: int | None = None,
        num_warmup_steps: int = 0,
        meta_learner: MetaLearner | str | None = None,
        last_epoch: int = -1,
        **options,
    ):
        unknown = sorted(set(options) - set(META_SCHEDULER_KWARGS))
        if unknown:
            raise TypeError(
                f"MetaLRScheduler got unknown option(s) {unknown}; valid options: {sorted(META_SCHEDULER_KWARGS)}"
            )
        opts = MetaSchedulerOptions(meta_learner=meta_learner, **options)
        if num_training_steps is not None:
            check_horizon(num_training_steps)  # before the learner is loaded
        if not is_count(num_warmup_steps) or int(num_warmup_steps) < 0:
            raise ValueError(f"num_warmup_steps must be a whole number >= 0, got {num_warmup_steps!r}")
        check_group_lrs(optimizer)
        check_layout(optimizer)
        self.opts = opts
        self.pretrained_given = opts.pretrained is not None
        lag = opts.decision_lag
        if lag is None:  # auto: lag on accelerators (no host-device sync per step), none on the CPU
            on_cpu = all(p.device.type == "cpu" for g in optimizer.param_groups for p in g["params"])
            lag = 0 if on_cpu else 1
        self.decision_lag = int(lag)
        self._held: tuple[torch.Tensor, int] | None = None
        # Building the learner's layers draws from the global generator (their random init, then overwritten by
        # the saved weights): done in a fork, so that the training's dropout masks and data order are the ones a
        # run without metalr-hf would draw, and meta and a baseline of the same seed stay paired.
        # Unset `meta_learner`: the bundled pair, DEFAULT_LEARNER for runs from scratch and DEFAULT_FINETUNE_LEARNER
        # for runs that fine-tune pretrained weights (`pretrained`, given or read from the weights by the callback).
        self.default_pair = opts.meta_learner is None or opts.meta_learner == "default"  # (a learner is not)
        self.learner = self._load(opts.meta_learner if not (self.default_pair and opts.pretrained) else FINETUNE)
        self.num_warmup_steps = int(num_warmup_steps)
        # the controller's options, recorded in the state: those given, as before the options were a dataclass
        self.options = {k: v for k, v in opts.controller_kwargs().items() if k in options}
        self.controller: MetaController | None = None
        self.num_training_steps: int | None = None
        if num_training_steps is not None:
            self.set_num_training_steps(num_training_steps)
        self._pending_loss = None
        self._pending_count = 0
        self._pending_grad_norm = None
        self._warned: set[str] = set()
        self.no_loss_hint: str | None = None  # why no loss arrives, where the feeder knows (the Trainer callback)
        self._in_incident = False
        self._last_values: list[float] | None = None
        self._signals = SignalBuffers()
        self._reader = SignalReader(optimizer)
        # Under DeepSpeed ZeRO the LRs live in its inner torch optimizer's param groups (the wrapper's are those),
        # which the reader reads (``optimizer`` itself otherwise)
        super().__init__(self._reader.optimizer, last_epoch)
        self._hook = None if self._reader.reads_zero else register_adopt_hook(self)

    def _load(self, meta_learner) -> MetaLearner:
        with torch.random.fork_rng(devices=[]):
            return load_learner(meta_learner, **self.opts.hub_kwargs())

    def set_pretrained(self, pretrained: bool) -> None:
        """Whether the run fine-tunes pretrained weights (the learner's ``pretrained`` feature), before the first
        step; the Trainer callback reads it from the model's weights when ``lr_scheduler_kwargs`` did not say. With
        the default learner (``meta_learner`` unset) it also picks the learner of the pair: the bundled
        fine-tuning learner for a pretrained run, the default one otherwise."""
        pretrained = bool(pretrained)
        if self.controller is not None and self.controller.step_count > 0:
            # mid-run (after the first step): the feature only, the learner and the prior stay
            self.controller.set_prior(self.controller.run_prior())
            self.controller.extractor.pretrained = float(pretrained)
            return
        self.opts.pretrained = pretrained
        if self.default_pair:
            self._use_learner(FINETUNE if pretrained else DEFAULT_LEARNER)
        if self.controller is not None:
            self.controller.extractor.pretrained = float(pretrained)

    def set_num_training_steps(self, num_training_steps: int) -> None:
        """Fix the horizon ``T`` of a scheduler built with ``num_training_steps=None`` (``MetaLRCallback`` does it
        from the Trainer's ``max_steps`` when training begins), before the first step."""
        check_horizon(num_training_steps)
        if self.controller is not None and self.controller.step_count > 0:
            self._change_horizon(int(num_training_steps))
            return
        self.num_training_steps = int(num_training_steps)
        self.controller = self._new_controller()
        if hasattr(self, "base_lrs"):  # set after construction: the LR of the current step follows
            self._set_group_lrs(self.get_lr())

    def _use_learner(self, name: str) -> None:
        """Switch to the bundled learner ``name`` of the default pair, before the first step or when a checkpoint
        is loaded. A built controller is rebuilt around it; the param groups' LRs are left as they are (a fresh
        controller's δ is 0 whichever learner it has, and a loaded checkpoint brings the run's own)."""
        if self.learner.source.get("name_or_path") != name:
            self.learner = self._load(name)
            if self.controller is not None:
                self.controller = self._new_controller()

    def attach_zero(self, zero) -> None:
        """Read DeepSpeed's ZeRO optimizer ``zero`` (its flat partitions, inside its step), for a scheduler built on
        the torch optimizer DeepSpeed wrapped afterwards (``MetaLRCallback`` calls it at train begin). ZeRO steps
        that optimizer one param group at a time, so the hook that adopts new groups is removed."""
        check_layout(zero)
        self._reader.attach_zero(zero)
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _new_controller(self) -> MetaController:
        return MetaController(
            self.learner,
            self.num_training_steps,
            self.num_warmup_steps,
            pretrained=bool(self.opts.pretrained),
            **self.opts.controller_kwargs(),
        )

    def _need_controller(self) -> MetaController:
        if self.controller is None:
            raise RuntimeError(
                "MetaLRScheduler was built with num_training_steps=None and stepped before it was set: pass "
                "num_training_steps, call set_num_training_steps(T), or add MetaLRCallback() to the Trainer."
            )
        return self.controller

    # -- signals -------------------------------------------------------------------------------------------
    def observe(self, loss, grad_norm=None) -> None:
        """Hand over the loss of the optimizer step about to be taken (and, optionally, the gradient norm before
        clipping). Several calls before one ``step()`` are averaged (gradient accumulation)."""
        if grad_norm is not None:
            check_grad_norm(grad_norm)
        if torch.is_tensor(loss) and loss.dim() == 0 and loss.dtype == torch.float32:  # the usual case, cheaply
            self._add_pending(loss.detach(), grad_norm)
            return
        self._add_pending(loss_tensor(loss), grad_norm)

    def observe_eval(self, value, loss=None) -> None:
        """Hand over an evaluation of the model (lower is better: ``eval_loss``, or a metric to maximise, negated;
        ``loss``: the eval loss where ``value`` is another metric); ``MetaLRCallback`` does after each evaluation of
        a Trainer. See the ``eval_patience``, ``eval_gap`` and ``eval_trust`` options."""
        value = scheduler_checks.eval_value(value)
        loss = None if loss is None else scheduler_checks.eval_value(loss)
        withdrawn = self.controller is not None and bool(self.controller.observe_eval(value, loss)[0])
        if withdrawn and self.last_epoch < self.num_training_steps:  # (not at the run's last step: nothing changes)
            message = scheduler_checks.eval_hold_message(self.last_epoch, value, self.opts, self.controller)
            self._warn_once("eval_hold", message + " (logged at INFO from now on)", message)
            self._set_group_lrs(self.get_lr())
        elif self.controller is not None and self.controller.eval_trusted[0] > 0:
            logger.info(scheduler_checks.eval_trust_message(self.last_epoch, value, loss, self.controller))

    def _add_pending(self, loss: torch.Tensor, grad_norm) -> None:
        self._pending_loss = loss if self._pending_loss is None else self._pending_loss + loss.to(self._pending_loss)
        self._pending_count += 1
        if grad_norm is not None:
            if hasattr(grad_norm, "full_tensor"):  # a DTensor (FSDP2's total norm): its value, not a shard's
                grad_norm = grad_norm.full_tensor()
            self._pending_grad_norm = scalar_f32(torch.as_tensor(grad_norm))

    def _warn_once(self, key: str, message: str, again: str | None = None) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warn(logger, message)
        elif again is not None:
            logger.info(again)

    def _collect_signals(self) -> torch.Tensor:
        """The ``[S]`` float64 signal vector of this step (the fields of :class:`Signals`), reduced over ranks
        (:class:`~metalr_hf.signals.SignalBuffers`: on an accelerator, on its way to the host)."""
        stats = self._reader._read_into(max(self.last_epoch, 0))  # Σg², g·m, …, Σv, adaptive (under no_grad)
        if self._pending_loss is None:
            hint = self.no_loss_hint or (
                "call `scheduler.observe(loss)` before `scheduler.step()`, or add `MetaLRCallback()` to the Trainer."
            )
            self._warn_once(
                "no_loss",
                f"MetaLRScheduler received no loss: {hint} Running on gradient and optimizer statistics only.",
            )
        pending, count, norm = self._pending_loss, self._pending_count, self._pending_grad_norm
        self._pending_loss, self._pending_count, self._pending_grad_norm = None, 0, None
        return self._signals.fill(stats, self._reader.out_np, pending, count, norm)

    def _consume(self, vec: torch.Tensor, step: int) -> None:
        """Feed one step's signals to the controller (the learner sees only finite ones)."""
        values = vec.tolist() if vec.dim() == 1 else vec.reshape(-1).tolist()
        self._last_values = values
        x = dict(zip(_SIGNAL_NAMES, values))
        has_loss = x.pop("has_loss") > 0.5
        if has_loss and x["loss"] < 0:
            self._warn_once(
                "negative_loss",
                f"MetaLRScheduler: negative loss {x['loss']:.4g} at step {step}. The learner reads the loss on a log "
                "scale, which a negative loss does not have: from this step on it runs on the gradient and "
                "optimizer statistics only (as without `observe`). To keep the loss features, hand `observe` a "
                "positive transform of your objective (e.g. `loss - lower_bound`).",
            )
        elif has_loss and x["loss"] == 0:
            self._warn_once(
                "zero_loss",
                f"MetaLRScheduler: a loss of exactly 0 at step {step} cannot be read on a log scale; the "
                "learner skips the loss of such steps (the gradient statistics are still read).",
            )
        if x["gg"] == 0.0:
            self._warn_once(
                "no_grad",
                "MetaLRScheduler found no gradients at `step()` (zero_grad before step, or a sharded backend); "
                "the gradient features use the gradient norm the Trainer reports, the others stay neutral.",
            )
        before = self.controller.nonfinite_decisions
        self._report(self.controller._update_values(x, has_loss, step))  # one run: the float path (under no_grad)
        if self.controller.nonfinite_decisions > before:
            self._warn_once(
                "nonfinite_delta",
                f"MetaLRScheduler: the meta-learner {self.learner.source.get('name_or_path')!r} returned a non-finite "
                f"correction at step {step}; the LR follows the prior schedule at such steps. The learner's weights "
                "or config are probably damaged.",
            )

    @property
    def last_signals(self) -> Signals | None:
        """The signals of the last step the controller consumed (``[1]`` tensors), or ``None``."""
        if self._last_values is None:
            return None
        return Signals.from_vector(torch.tensor([self._last_values], dtype=torch.float64))

    # -- LRScheduler API -----------------------------------------------------------------------------------
    def step(self, epoch: int | None = None) -> None:
        if not self._is_initial and epoch is None:
            self._need_controller()
            with torch.no_grad():
                vec, step = self._collect_signals(), self.last_epoch
                if self.decision_lag == 0:
                    if self._held is not None:  # resumed from a checkpoint written with decision_lag=1
                        held, self._held = self._held, None
                        self._consume(*held)
                    self._consume(vec, step)
                else:  # apply the decision one step later: the copy started last step has long arrived
                    held, self._held = self._held, (vec, step)
                    if held is not None:
                        self._consume(*held)
        if epoch is not None or not self._set_lrs():
            super().step(epoch)

    def _set_lrs(self) -> bool:
        """What ``LRScheduler.step()`` does once its first-call checks are done and every LR is a float, without its
        context manager and helpers (a tenth of the time); ``False`` (nothing done) otherwise."""
        groups = self.optimizer.param_groups
        if self._step_count <= 1 or not all(type(group["lr"]) is float for group in groups):
            return False
        self._step_count += 1
        self.last_epoch += 1
        lrs = self.get_lr()
        for group, lr in zip(groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = lrs
        return True

    def skip_step(self) -> None:
        """The optimizer skipped this step (an fp16 overflow): a non-finite step for the learner and the back-off.
        The step counter does not move, as for the stock schedulers; the backed-off LR applies at once."""
        if self._held is not None:
            held, self._held = self._held, None
            with torch.no_grad():
                self._consume(*held)
        self._pending_loss, self._pending_count, self._pending_grad_norm = None, 0, None
        self._report(self.controller.update_values(*Signals.nonfinite().run_values(), step=self.last_epoch))
        self._set_group_lrs(self.get_lr())

    def _report(self, ok: bool) -> None:
        bad = not ok
        if bad and not self._in_incident:  # one warning per incident (a run of non-finite steps)
            message = (
                f"MetaLRScheduler: non-finite loss or gradient at step {self.last_epoch}; the learner skipped it "
                f"and the LR backs off (scale now {float(self.controller.backoff[0]):.3g})."
            )
            warn(logger, message)
        self._in_incident = bad

    def get_lr(self) -> list[float]:
        if len(self.base_lrs) != len(self.optimizer.param_groups):
            adopt_new_groups(self)
        if self.controller is None:  # the horizon is not known yet: the LR is set when it is
            return list(self.base_lrs)
        scale = self.controller.scale_value(self.last_epoch)  # one run: the float path
        return [base * scale for base in self.base_lrs]

    def _set_group_lrs(self, lrs: list[float]) -> None:
        """Set every param group's LR (outside ``step``: a new horizon, a skipped step, a loaded state)."""
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    # -- copies --------------------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        """What ``copy.deepcopy``, ``pickle`` and ``torch.save`` copy: everything but the reader's plan and the
        signal buffers (NumPy views of the optimizer's tensors and of the reader's own), which the copy makes anew
        around its own optimizer."""
        state = self.__dict__.copy()
        state["_reader"], state["_signals"], state["_hook"] = None, SignalBuffers(), None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reader = SignalReader(self.optimizer)
        self._hook = register_adopt_hook(self)  # an optimizer's copy has no hooks

    @property
    def last_scale(self) -> float:
        """``exp(δ)·b·γ`` of the current step: the factor the learner and the guards apply to the prior."""
        c = self.controller
        return math.exp(float(c.delta[0])) * float(c.backoff[0]) * float(c.guard_scale[0])

    def features_dict(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self.controller.features[0].tolist()))


_SIGNAL_NAMES = tuple(f.name for f in dataclasses.fields(Signals))
