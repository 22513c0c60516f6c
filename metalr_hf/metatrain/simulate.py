"""Train a whole population (of one model kind, ``models.py``) in one batched computation, with the LR set by a
schedule policy.

The LR policy is the very ``MetaController`` that ``MetaLRScheduler`` wraps (same features, same learner, same
guards); the simulator hands it the same signals that ``features.optimizer_signals`` reads from a
``torch.optim`` optimizer (the parity test checks equal LRs for a run trained both ways).

Optimizers, per run (``Population.adam``):

- Adam (β = 0.9, 0.999, ε = 1e-8, as ``torch.optim.Adam``): ``m ← β₁m + (1-β₁)g``, ``v ← β₂v + (1-β₂)g²``,
  ``Δw = -η m̂/(√v̂+ε)``; AdamW (as ``torch.optim.AdamW``) first decays ``w ← (1-ηλ)w``, λ = 0.01;
- SGD with momentum 0.9 (as ``torch.optim.SGD``): ``b ← 0.9b + g``, ``Δw = -η b``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..controller import MetaController
from ..reader import STAT_KEYS
from ..schedules import prior_multiplier
from ..signals import Signals
from .families import FINETUNE
from .models import MODELS
from .pretraining import pretrained_init
from .zoo import Population

__all__ = ["PriorPolicy", "SimResult", "init_params", "simulate"]

BETA1, BETA2, EPS, MOMENTUM = 0.9, 0.999, 1e-8, 0.9


class PriorPolicy:
    """A fixed schedule (``cosine``, ``linear``, ``wsd``, ``constant``) for every run of a population."""

    def __init__(self, name: str, pop: Population, **kwargs):
        self.name, self.pop, self.kwargs = name, pop, kwargs

    def scale(self, step) -> torch.Tensor:
        return prior_multiplier(self.name, step, self.pop.horizon, self.pop.warmup, **self.kwargs)

    def update(self, signals, step=None):
        return signals.finite()


@dataclass
class SimResult:
    final_val_loss: torch.Tensor  # [B]
    mean_train_loss: torch.Tensor  # [B] (area under the training-loss curve, per step)
    val_curve: torch.Tensor  # [E, B] validation loss at `eval_steps`
    eval_steps: list[int]
    lrs: torch.Tensor | None  # [T, B] when recorded
    diverged: torch.Tensor  # [B] bool
    final_val_metric: torch.Tensor  # [B] accuracy for classification, -RMSE for regression


def init_params(pop: Population, gen: torch.Generator | None = None) -> list[torch.Tensor]:
    """The stacked initial weights of every run (each run's spec seed makes them reproducible; fine-tuning runs
    start from their pretrained weights)."""
    return pretrained_init(pop, MODELS[pop.kind].init(pop))


def _forward(params, x, pop: Population):
    return MODELS[pop.kind].forward(params, x, pop)


def _losses(out, y, pop: Population) -> torch.Tensor:
    """Per-run mean loss ``[B]``."""
    return MODELS[pop.kind].losses(out, y, pop)


def _metric(out, y, pop: Population) -> torch.Tensor:
    return MODELS[pop.kind].metric(out, y, pop)


def batch_indices(pop: Population, steps: int, seed: int) -> torch.Tensor:
    """``[steps, B, batch]`` minibatch indices; runs sharing a spec seed share their data order (common random
    numbers across the perturbations of meta-training)."""
    bs = pop.specs[0].batch_size
    n = pop.x_train.shape[1]
    out = torch.empty(steps, pop.size, bs, dtype=torch.long)
    cache: dict[int, torch.Tensor] = {}
    for b, spec in enumerate(pop.specs):
        if spec.seed not in cache:
            g = torch.Generator().manual_seed(spec.seed ^ seed)
            cache[spec.seed] = torch.randint(0, n, (steps, bs), generator=g)
        out[:, b] = cache[spec.seed]
    return out


def simulate(
    pop: Population,
    policy,
    *,
    seed: int = 0,
    record_lrs: bool = False,
    eval_every: int = 0,
    observe_every: int = 0,
    params: list[torch.Tensor] | None = None,
) -> SimResult:
    """Train every run of ``pop`` for its horizon with ``policy`` (a ``MetaController`` or ``PriorPolicy``).

    ``eval_every``: record the validation loss every so many steps (``SimResult.val_curve``); ``observe_every``: hand
    it to the policy's ``observe_eval`` every so many steps, as a Trainer evaluating every ``eval_steps`` hands it to
    the scheduler (0: never)."""
    B = pop.size
    T = int(pop.horizon.max())
    params = params if params is not None else init_params(pop, torch.Generator().manual_seed(seed))
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    adam = pop.adam
    idx = batch_indices(pop, T, seed)
    ar = torch.arange(B)[:, None]
    diverged = torch.zeros(B, dtype=torch.bool)
    loss_sum = torch.zeros(B, dtype=torch.float64)
    lrs = torch.zeros(T, B) if record_lrs else None
    val_curve, eval_steps = [], []

    def shape(t, p):  # broadcast a [B] vector over a parameter
        return t.reshape(-1, *([1] * (p.dim() - 1)))

    for t in range(T):
        active = (t < pop.horizon) & ~diverged
        lr = (pop.base_lr * policy.scale(t)).float() * active.float()
        if lrs is not None:
            lrs[t] = lr
        xb, yb = pop.x_train[ar, idx[t]], pop.y_train[ar, idx[t]]
        loss = _losses(_forward(params, xb, pop), yb, pop)
        grads = torch.autograd.grad(loss.sum(), params)
        with torch.no_grad():
            step = t + 1
            acc = torch.zeros(7, B, dtype=torch.float64)
            for i, (p, g) in enumerate(zip(params, grads)):
                g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                m_adam = BETA1 * m[i] + (1 - BETA1) * g
                v_new = BETA2 * v[i] + (1 - BETA2) * g * g
                m_sgd = MOMENTUM * m[i] + g if t > 0 else g
                a = shape(adam, p)
                m[i] = torch.where(a, m_adam, m_sgd)
                v[i] = torch.where(a, v_new, v[i])
                vhat = v[i] / (1 - BETA2**step)
                u = torch.where(a, (m[i] / (1 - BETA1**step)) / (vhat.sqrt() + EPS), m[i])
                m_feat = torch.where(a, m[i], m[i] * (1 - MOMENTUM))
                upd = -shape(lr, p) * u
                p.mul_(1.0 - shape(lr * pop.weight_decay, p))  # AdamW's decoupled decay (not part of Δw)
                p.add_(upd)
                dims = tuple(range(1, p.dim()))
                acc += torch.stack(
                    [
                        (g * g).sum(dims),
                        (g * m_feat).sum(dims),
                        (m_feat * m_feat).sum(dims),
                        (g * upd).sum(dims),
                        (upd * upd).sum(dims),
                        (p * p).sum(dims),
                        torch.where(shape(adam, p), vhat, torch.zeros_like(vhat)).sum(dims),
                    ]
                ).double()
            stats = dict(zip(STAT_KEYS, acc))  # the sums the scheduler's reader reads, by the same names
            signals = Signals(
                loss=loss.detach().double(),
                has_loss=torch.ones(B, dtype=torch.bool),
                grad_norm=stats["gg"].sqrt(),
                adaptive=adam.double(),
                **stats,
            )
            ww = stats["ww"]
            policy.update(signals, step=t)
            bad = ~torch.isfinite(loss.detach()) | ~torch.isfinite(ww)
            diverged |= bad & active
            loss_sum += torch.where(
                active, loss.detach().double().nan_to_num(1e6), torch.zeros(B, dtype=torch.float64)
            )
            curve = eval_every and (t + 1) % eval_every == 0
            observe = observe_every and (t + 1) % observe_every == 0 and hasattr(policy, "observe_eval")
            if curve or observe:
                val_loss = _losses(_forward(params, pop.x_val, pop), pop.y_val, pop).detach()
                if curve:
                    val_curve.append(val_loss)
                    eval_steps.append(t + 1)
                if observe:  # what ``MetaLRCallback.on_evaluate`` hands the scheduler
                    policy.observe_eval(val_loss.double())
    with torch.no_grad():
        out = _forward(params, pop.x_val, pop)
        val = _losses(out, pop.y_val, pop)
        metric = _metric(out, pop.y_val, pop)
    val = torch.where(diverged | ~torch.isfinite(val), torch.full_like(val, float("inf")), val)
    return SimResult(
        final_val_loss=val,
        mean_train_loss=(loss_sum / pop.horizon).float(),
        val_curve=torch.stack(val_curve) if val_curve else torch.empty(0, B),
        eval_steps=eval_steps,
        lrs=lrs,
        diverged=diverged,
        final_val_metric=metric,
    )


def meta_policy(learner, pop: Population, horizon: float | None = None, **options) -> MetaController:
    """The controller ``MetaLRScheduler`` uses, for a whole population at once; ``horizon`` overrides the run
    length it is told (to test mis-specified horizons)."""
    told = pop.horizon if horizon is None else torch.full_like(pop.horizon, float(horizon))
    pretrained = torch.tensor([float(s.family in FINETUNE) for s in pop.specs])
    return MetaController(learner, told, pop.warmup, batch_size=pop.size, pretrained=pretrained, **options)
