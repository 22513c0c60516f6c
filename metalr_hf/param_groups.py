"""Param groups added mid-run (``optimizer.add_param_group``, as progressive unfreezing does) take the same rule as
those present when the scheduler was built: their ``lr`` when added is their base LR, and their parameters are read
from their first gradient on. A step pre-hook on the torch optimizer gives a new group the rule's LR before its
first optimizer step."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from .layouts import optimizer_chain
from .scheduler_checks import check_group_lrs

if TYPE_CHECKING:
    from .scheduler import MetaLRScheduler

__all__ = ["adopt_new_groups", "register_adopt_hook"]


def adopt_new_groups(scheduler: MetaLRScheduler) -> None:
    """Give the groups added since the last step their base LR and this step's LR; removing a group is refused."""
    groups = scheduler.optimizer.param_groups
    if len(groups) < len(scheduler.base_lrs):
        raise RuntimeError(
            f"MetaLRScheduler: the optimizer has {len(groups)} param groups, fewer than the "
            f"{len(scheduler.base_lrs)} it was built with; removing param groups mid-run is not supported (freeze "
            "their parameters instead)."
        )
    check_group_lrs(scheduler.optimizer)
    controller = scheduler.controller
    scale = None if controller is None else controller.scale_value(scheduler.last_epoch)
    for group in groups[len(scheduler.base_lrs) :]:
        group.setdefault("initial_lr", group["lr"])
        scheduler.base_lrs.append(group["initial_lr"])
        if scale is not None:  # its first step already takes this step's LR
            group["lr"] = group["initial_lr"] * scale
            scheduler._last_lr.append(group["lr"])


class _AdoptNewGroups:
    """The optimizer step pre-hook: :func:`adopt_new_groups` when the optimizer has groups the scheduler has not
    seen."""

    def __init__(self, scheduler: MetaLRScheduler):
        self.scheduler = weakref.ref(scheduler)  # the optimizer must not keep a dropped scheduler alive

    def __call__(self, optimizer, args, kwargs) -> None:
        scheduler = self.scheduler()
        if scheduler is not None and len(optimizer.param_groups) != len(scheduler.base_lrs):
            adopt_new_groups(scheduler)


def register_adopt_hook(scheduler: MetaLRScheduler):
    """:class:`_AdoptNewGroups` on the torch optimizer inside any wrappers (accelerate's ``AcceleratedOptimizer``
    steps the one it wraps); ``None`` where there is none (then a new group takes the rule at the next step)."""
    target = next((o for o in optimizer_chain(scheduler.optimizer) if hasattr(o, "_optimizer_step_pre_hooks")), None)
    return None if target is None else target.register_step_pre_hook(_AdoptNewGroups(scheduler))
