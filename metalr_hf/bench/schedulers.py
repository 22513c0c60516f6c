"""Every scheduler and learning-rate-free optimizer the benchmark compares, built for one run.

- ``meta``: metalr-hf's scheduler (``--meta-learner`` picks the learner);
- transformers schedules, through ``lr_scheduler_type``: linear, cosine, constant_with_warmup,
  cosine_with_min_lr (min 10 %), warmup_stable_decay (decay over the last 20 %), inverse_sqrt, polynomial,
  reduce_lr_on_plateau, greedy (the last two are driven by the evaluation loss);
- PyTorch schedulers: StepLR (×0.5 every quarter), ExponentialLR (to 1 % at the end), CosineAnnealingLR,
  OneCycleLR (max LR = base LR);
- learning-rate-free optimizers at their recommended settings, run once per task and seed (no LR grid):
  Schedule-Free AdamW (``lr=0.0025``, 5 % warmup) and Prodigy (``lr=1``, cosine annealing).
"""

from __future__ import annotations

import torch

__all__ = ["HF_SCHEDULES", "LR_FREE", "SCHEDULERS", "TORCH_SCHEDULES", "build_optimizer_and_scheduler"]

HF_SCHEDULES = (
    "linear",
    "cosine",
    "constant_with_warmup",
    "cosine_with_min_lr",
    "warmup_stable_decay",
    "inverse_sqrt",
    "polynomial",
    "reduce_lr_on_plateau",
    "greedy",
)
TORCH_SCHEDULES = ("step_lr", "exponential_lr", "cosine_annealing", "one_cycle")
LR_FREE = ("schedulefree_adamw", "prodigy")
SCHEDULERS = ("meta",) + HF_SCHEDULES + TORCH_SCHEDULES + LR_FREE
EVAL_DRIVEN = ("reduce_lr_on_plateau", "greedy")

HF_KWARGS = {
    "cosine_with_min_lr": {"min_lr_rate": 0.1},
    "warmup_stable_decay": {"num_decay_steps": None},  # filled with 20 % of the run
}


def _optimizer(params, kind: str, lr: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"Unknown optimizer {kind!r}; valid optimizers: ['adam', 'sgd']")


def build_optimizer_and_scheduler(name: str, model, optimizer: str, lr: float, steps: int, warmup: int):
    """Returns ``(optimizer, scheduler or None, lr_scheduler_type, lr_scheduler_kwargs)`` for ``MetaTrainer``:
    a ``None`` scheduler lets the Trainer build it from ``lr_scheduler_type``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "schedulefree_adamw":
        import schedulefree

        opt = schedulefree.AdamWScheduleFree(params, lr=0.0025, warmup_steps=max(1, steps // 20))
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0), "constant", None
    if name == "prodigy":
        from prodigyopt import Prodigy

        opt = Prodigy(params, lr=1.0)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps), "constant", None
    opt = _optimizer(params, optimizer, lr)
    if name in TORCH_SCHEDULES:
        sched = {
            "step_lr": lambda: torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, steps // 4), gamma=0.5),
            "exponential_lr": lambda: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.01 ** (1 / steps)),
            "cosine_annealing": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps),
            "one_cycle": lambda: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps + 1),
        }[name]()
        return opt, sched, "constant", None
    if name == "meta":
        return opt, None, "meta", {}
    if name in HF_SCHEDULES:
        kwargs = dict(HF_KWARGS.get(name, {}))
        if "num_decay_steps" in kwargs:
            kwargs["num_decay_steps"] = max(1, steps // 5)
        return opt, None, name, kwargs or None
    raise ValueError(f"Unknown scheduler {name!r}; valid schedulers: {list(SCHEDULERS)}")
