"""Where an optimizer's tensors live: wrappers around it, parameters sharded across processes (FSDP2's DTensors,
DeepSpeed ZeRO's flat partitions), and the layouts the reader refuses. What :mod:`reader` reads through."""

from __future__ import annotations

import torch

__all__ = ["check_layout", "optimizer_chain", "shard_count", "zero_optimizer"]


def _local(t: torch.Tensor) -> torch.Tensor:
    """The part of ``t`` this process holds: a ``DTensor``'s local shard (FSDP2's parameters, gradients and
    optimizer states), else ``t`` itself."""
    return t.to_local() if _is_dtensor(t) else t


def _is_dtensor(t) -> bool:
    return type(t).__name__ == "DTensor" and hasattr(t, "placements")


def shard_count(p: torch.Tensor) -> int:
    """Into how many disjoint shards ``p`` is split across the processes (1: each holds all of it). A ``DTensor``
    sharded over mesh dimensions of sizes s₁, s₂, … (FSDP2's ``Shard(0)``; replicated dimensions count 1): their
    product. Local sums times this count, averaged over all processes, are the sums over the whole tensor."""
    if not _is_dtensor(p):
        return 1
    count = 1
    for dim, placement in enumerate(p.placements):
        if placement.is_shard():
            count *= p.device_mesh.size(dim)
        elif not placement.is_replicate():
            raise NotImplementedError(
                f"metalr-hf reads parameters sharded (Shard) or replicated (Replicate) across processes; a "
                f"parameter of shape {tuple(p.shape)} is laid out as {p.placements}, which it cannot read."
            )
    return count


def optimizer_chain(optimizer):
    """``optimizer``, then each optimizer it wraps (``.optimizer``: accelerate's ``AcceleratedOptimizer``,
    DeepSpeed's ZeRO wrappers), outermost first."""
    while True:
        yield optimizer
        inner = getattr(optimizer, "optimizer", None)
        if inner is None or inner is optimizer:
            return
        optimizer = inner


# DeepSpeed's ZeRO optimizers (stages 1-2, stage 3): each wraps a torch optimizer (``.optimizer``) over flat fp32
# partitions, this rank's disjoint slice of every parameter (zero padding at the end), whose gradients exist only
# inside that optimizer's step.
_ZERO_OPTIMIZERS = ("DeepSpeedZeroOptimizer", "DeepSpeedZeroOptimizer_Stage3")


def zero_optimizer(optimizer):
    """The DeepSpeed ZeRO optimizer in ``optimizer``'s wrapper chain, or ``None``."""
    for inner in optimizer_chain(optimizer):
        if (type(inner).__module__ or "").split(".")[0] == "deepspeed" and type(inner).__name__ in _ZERO_OPTIMIZERS:
            return inner
    return None


def check_layout(optimizer) -> None:
    """Refuse, naming it, an optimizer or parameter layout whose statistics this reader would read wrongly:
    DeepSpeed's optimizers other than ZeRO's (``_ZERO_OPTIMIZERS``: their flat partitions are read), FSDP1's flat
    parameters (each process holds a shard that is not marked as one), parameters laid out other than sharded or
    replicated. FSDP2 (``fully_shard``: DTensors), DeepSpeed ZeRO and DDP are read."""
    zero = zero_optimizer(optimizer)
    for inner in optimizer_chain(optimizer):
        module = type(inner).__module__ or ""
        if module.split(".")[0] == "deepspeed" and inner is not zero:
            if zero is not None and inner is zero.optimizer:
                continue
            raise NotImplementedError(
                f"metalr-hf cannot read the statistics of DeepSpeed's {type(inner).__name__}: it reads DeepSpeed's "
                f"ZeRO optimizers ({', '.join(_ZERO_OPTIMIZERS)}), whose partitions it knows. Use ZeRO (any stage), "
                "FSDP2 (accelerate's fsdp_version: 2, or torch.distributed.fsdp.fully_shard) or DDP with "
                "lr_scheduler_type meta, or a stock schedule with this optimizer."
            )
    for group in optimizer.param_groups:
        for p in group["params"]:
            if getattr(p, "_is_flat_param", False):  # FSDP1's FlatParameter (a Parameter marked as one)
                raise NotImplementedError(
                    "metalr-hf cannot read FSDP1's flat parameters (FullyShardedDataParallel: each process holds a "
                    "shard not marked as one). Use FSDP2 (accelerate's fsdp_version: 2, or "
                    "torch.distributed.fsdp.fully_shard), whose DTensor shards it reads."
                )
            shard_count(p)  # a placement it cannot read raises
