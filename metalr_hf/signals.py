"""The signals the scheduler reads each optimizer step, and the buffers they travel in.

:class:`Signals` are the raw per-step values of ``B`` runs (loss, gradient norm, the reader's sums), which the
feature extractor turns into scale-free features. :class:`SignalBuffers` hold one run's step as a vector (the fields
of ``Signals``) in two buffers kept from step to step and used in turn (a decision held for one step keeps the
other), averaged over the ranks with one all-reduce. On an accelerator a non-blocking copy to pinned host memory
starts here; it is read one step later (``decision_lag=1``), so the scheduler never makes the host wait for the
device."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

import torch
import torch.distributed as dist

__all__ = ["SignalBuffers", "Signals", "finite_values"]

_SIGNAL_FLOATS = ("loss", "grad_norm", "gg", "gm", "mm", "g_upd", "upd_sq", "ww", "vv", "adaptive")


@dataclass
class Signals:
    """Raw per-step signals of ``B`` runs, each a float tensor of shape ``[B]``.

    ``loss`` is ``nan`` where no loss was observed and ``has_loss`` is False there. The sums are over all
    parameters (and, under data parallelism, already reduced across ranks).
    """

    loss: torch.Tensor
    has_loss: torch.Tensor
    grad_norm: torch.Tensor  # ‖g‖ before clipping
    gg: torch.Tensor  # Σ g²            (after clipping: same direction as g·m)
    gm: torch.Tensor  # Σ g·m
    mm: torch.Tensor  # Σ m²
    g_upd: torch.Tensor  # Σ g·Δw   (≤ 0 for a descent step)
    upd_sq: torch.Tensor  # Σ Δw²
    ww: torch.Tensor  # Σ w²
    vv: torch.Tensor  # Σ v  (0 when the optimizer keeps no second moment)
    adaptive: torch.Tensor  # 1 for Adam-family

    def to_vector(self) -> torch.Tensor:
        """``[B, S]`` float tensor (for one all-reduce across ranks)."""
        return torch.stack([getattr(self, f.name).to(torch.float64) for f in fields(self)], dim=-1)

    @classmethod
    def from_vector(cls, vec: torch.Tensor) -> Signals:
        cols = vec.unbind(-1)
        values = {f.name: c for f, c in zip(fields(cls), cols)}
        values["has_loss"] = values["has_loss"] > 0.5
        return cls(**values)

    @classmethod
    def nonfinite(cls, batch_size: int = 1) -> Signals:
        """Signals of a step that produced nothing usable (e.g. an optimizer step skipped on fp16 overflow)."""
        nan = torch.full((batch_size,), float("nan"), dtype=torch.float64)
        return cls(has_loss=torch.ones(batch_size, dtype=torch.bool), **{k: nan for k in _SIGNAL_FLOATS})

    def run_values(self) -> tuple[dict[str, float], bool]:
        """The first run's signals as Python floats (``_SIGNAL_FLOATS`` → float) and whether it has a loss."""
        values = {k: float(torch.as_tensor(getattr(self, k)).reshape(-1)[0]) for k in _SIGNAL_FLOATS}
        return values, bool(torch.as_tensor(self.has_loss).reshape(-1)[0])

    def finite(self) -> torch.Tensor:
        """``[B]`` bool: the loss (where observed) and every gradient and optimizer statistic are finite."""
        ok = torch.isfinite(self.loss) | ~self.has_loss
        rest = torch.stack([torch.as_tensor(getattr(self, n), dtype=torch.float64) for n in _SIGNAL_FLOATS[1:]], -1)
        ok = ok & torch.isfinite(rest).all(-1)
        return ok


def finite_values(x: dict[str, float], has_loss: bool) -> bool:
    """:meth:`Signals.finite` of one run given as Python floats."""
    return all(math.isfinite(v) for k, v in x.items() if k != "loss") and (math.isfinite(x["loss"]) or not has_loss)


_NUM_SIGNALS = len(dataclasses.fields(Signals))


class SignalBuffers:
    """The two signal buffers of a scheduler (made at the first step, on the statistics' device)."""

    def __init__(self):
        self._buffers: list | None = None
        self._flip = 0

    def fill(self, stats: torch.Tensor, stats_np, pending, count: int, norm) -> torch.Tensor:
        """This step's vector from the reader's ``stats`` (``stats_np``: their NumPy view on the CPU), the summed
        loss ``pending`` of ``count`` observations (``None``: no loss) and the gradient norm ``norm`` (``None``:
        the norm of the sums), reduced over ranks; on an accelerator, the host copy under way."""
        device = stats.device
        if self._buffers is None or self._buffers[0][0].device != device:
            on_host = device.type == "cpu"
            self._buffers = []
            for _ in range(2):
                vec = torch.empty(_NUM_SIGNALS, dtype=torch.float64, device=device)
                host = (
                    None
                    if on_host
                    else torch.empty(_NUM_SIGNALS, dtype=torch.float64, pin_memory=device.type == "cuda")
                )
                vec_np = vec.numpy() if on_host else None
                self._buffers.append((vec, host, vec[0], vec[1], vec[2], vec[3], vec[3:], vec_np))  # views made once
        self._flip ^= 1
        vec, host, v_loss, v_has_loss, v_grad_norm, v_gg, v_stats, vec_np = self._buffers[self._flip]
        if host is None and (pending is None or pending.is_cpu) and (norm is None or norm.is_cpu):
            # on the CPU: the values written through a NumPy view (no tensor operations)
            a = vec_np
            a[3:] = stats_np
            a[0] = math.nan if pending is None else float(pending) / count
            a[1] = 0.0 if pending is None else 1.0
            a[2] = math.sqrt(a[3]) if norm is None else float(norm)
        else:
            if pending is None:
                v_loss.fill_(math.nan)
                v_has_loss.fill_(0.0)
            else:
                v_loss.copy_(pending)
                if count > 1:
                    v_loss.div_(count)
                v_has_loss.fill_(1.0)
            v_stats.copy_(stats)
            if norm is None:
                torch.sqrt(v_gg, out=v_grad_norm)
            else:
                v_grad_norm.copy_(norm)
        reduced = _all_reduce_mean(vec)
        if reduced is not vec and norm is None:  # the norm of the reduced sums (of every shard, under FSDP2)
            torch.sqrt(reduced[3], out=reduced[2])
        vec = reduced
        if host is None:
            return vec
        return host.copy_(vec, non_blocking=True)


def _all_reduce_mean(vec: torch.Tensor) -> torch.Tensor:
    """Average a small signal vector over all ranks (no-op outside ``torch.distributed``)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        backend = dist.get_backend()
        work = vec.to(torch.float64)
        if backend == "nccl" and not work.is_cuda:
            work = work.cuda()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        vec = (work / dist.get_world_size()).to(vec.device)
    return vec
