"""Meta-training under ``torchrun`` / ``accelerate launch``: the process group and this process's place in it."""

from __future__ import annotations

__all__ = ["dist_info", "init_distributed"]


def dist_info():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def init_distributed() -> bool:
    """Join the process group when launched by ``torchrun`` / ``accelerate launch`` (gloo, the CPU backend;
    the population is simulated on the CPU). Returns True when this call created it."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("gloo")
        return True
    return False
