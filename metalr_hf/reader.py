"""Reading the optimizer's statistics after each step, with a fixed number of operations whatever the model.

:class:`SignalReader` returns Σ g², g·m, m², g·Δw, Δw², w², v (see :func:`optimizer_signals`). It plans once — which
parameters are read whole and which in sampled blocks, in which work buffers, grouped by optimizer kind, device and
the param groups' hyperparameters (the Trainer's groups with and without weight decay are read as one) — and
re-plans only when the optimizer changes (a new state, another param group, a loaded state dict, merged groups whose
learning rates part). A step then costs, per bucket of parameters read alike:

- parameters read whole: the gradients copied with one ``torch._foreach_copy_``, the weights and moments (updated in
  place) with one concatenation of flat views made once, into one float32 work matrix;
- parameters read in blocks: one strided view per gradient, and one concatenation per tensor kind (the weights' and
  moments' block views made once for small strides);
- Σv, then Adam's update direction in three elementwise operations in place of the copy of v, every other sum at
  once as the Gram matrix of the work rows (one matrix product written into a preallocated output), then one
  multiplication by the step's coefficients (learning rate, bias corrections, sampling scale).

On the CPU the concatenations, the elementwise operations, the picking and the scaling run on NumPy views of the
same buffers (NumPy's square root is about 3× faster than torch's there, its concatenation of strided blocks 2.5×),
and the matrix product on one thread (MKL splits a product this skinny across threads at a 5× loss).

The buckets (their work rows and sums) are in :mod:`buckets`. The work buffers are allocated once (about
``max_elements`` float32 values per tensor kind, whatever the model), so after the first step the reader allocates
nothing (``lab/scripts/scheduler_allocations.py``); no copy of a whole gradient, moment or weight is ever kept.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .buckets import _BLOCK, STAT_KEYS, _Bucket
from .layouts import _local, shard_count, zero_optimizer

__all__ = ["SAMPLE_ELEMENTS", "STAT_KEYS", "SignalReader", "optimizer_signals"]
SAMPLE_ELEMENTS = 1 << 15  # parameters read per step, about (see `optimizer_signals`)
_HYPER = ("betas", "eps", "momentum", "dampening", "nesterov", "lr")  # what a merged bucket's groups share


def _is_adaptive(state: dict) -> bool:
    """A per-parameter second-moment estimate in the state: Adam's ``exp_avg_sq``, Adafactor's factored
    ``exp_avg_sq_row``/``_col``, an 8-bit Adam's quantised ``state2``. Such an optimizer divides by it (the
    ``adaptive`` feature), whether or not its moments can be read beside the parameter."""
    return any(str(k).startswith("exp_avg_sq") for k in state) or "state2" in state


def _kind(state: dict) -> str:
    if "exp_avg" in state and state.get("exp_avg_sq") is not None:
        return "adam"
    if state.get("momentum_buffer") is not None:
        return "sgd"
    return "plain"


_MOMENTS = {"adam": ("exp_avg", "exp_avg_sq"), "sgd": ("momentum_buffer",), "plain": (), "rms": ()}


def _odd_moments(p: torch.Tensor, state: dict, kind: str) -> str | None:
    """Why the moments of ``p`` cannot be read element by element beside it (block-wise or quantised states, tensor
    subclasses), or ``None`` when they can."""
    for name in _MOMENTS[kind]:
        t = state[name]
        if type(t) not in (torch.Tensor, torch.nn.Parameter):
            return f"{name} is a {type(t).__name__}"
        if t.shape != p.shape:
            return f"{name} has shape {tuple(t.shape)}"
    return None


def _readable(p: torch.Tensor) -> bool:
    """A parameter whose statistics the reader takes: it has a dense gradient."""
    return p.grad is not None and p.grad.layout == torch.strided


class _OneGroup:
    """One param group of an optimizer, seen as an optimizer (what :class:`SignalReader` plans over)."""

    def __init__(self, group: dict, state: dict):
        self.param_groups, self.state = [group], state


class SignalReader:
    """Reads :func:`optimizer_signals` step after step, planning once (see the module docstring).

    Args:
        optimizer (`torch.optim.Optimizer`): whose parameters, gradients and state are read after its step.
        max_elements (`int` or `None`, defaults to 2¹⁵): elements read per step, about; ``None`` reads everything.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_elements: int | None = SAMPLE_ELEMENTS):
        self.optimizer, self.max_elements = optimizer, max_elements
        # Under DeepSpeed ZeRO: its inner optimizer's flat partitions, one slice of the model per data-parallel rank,
        # read inside that optimizer's step (a post-step hook), while their gradients exist; `read_into` then returns
        # those sums (zeros, read as "no gradient", on a step the optimizer skipped).
        self.partitions = 1
        self._zero_hook = None
        self._warned_sparse = self._warned_layout = False
        self._key = None
        self._buckets: list[_Bucket] = []
        self._table: torch.Tensor | None = None
        self._out: torch.Tensor | None = None
        self.out_np = None
        self._merge = True
        zero = zero_optimizer(optimizer)
        if zero is not None:
            self.attach_zero(zero)

    def _signature(self) -> tuple:
        """What the plan depends on: the state and groups objects, how many states, which gradients exist (a
        gradient that turns sparse is caught because sparse ones are never planned as dense)."""
        opt = self.optimizer
        groups = opt.param_groups
        have = tuple([p.grad is not None for g in groups for p in g["params"]])
        return id(opt.state), len(opt.state), id(groups), len(groups), have

    def _plan(self) -> None:
        opt = self.optimizer
        total = 0
        for group in opt.param_groups:
            for p in group["params"]:
                if _readable(p):
                    total += _local(p).numel()
                elif p.grad is not None and not self._warned_sparse:
                    self._warned_sparse = True
                    warnings.warn(
                        f"metalr-hf: a parameter of shape {tuple(p.shape)} has a sparse gradient "
                        "(nn.Embedding(sparse=True)?); the scheduler leaves such parameters out of its "
                        "gradient and optimizer statistics.",
                        stacklevel=4,
                    )
        budget = self.max_elements
        self.stride = 1 if not budget or total <= budget else -(-total // budget)
        self._budget_rows = budget // _BLOCK if budget else 0
        # Param groups that differ only in what the sums do not read (weight decay: the Trainer's two groups) share
        # a bucket, while their learning rates stay equal (checked every step).
        buckets: dict[tuple, tuple[list, list]] = {}
        for gi, group in enumerate(opt.param_groups):
            hyper = tuple(repr(group.get(k)) for k in _HYPER) if self._merge else gi
            for p in group["params"]:
                if not _readable(p):
                    continue
                state = opt.state.get(p, {})
                kind = _kind(state)
                shards = shard_count(p) * self.partitions
                local = _local(p)
                odd = _odd_moments(local, {k: _local(state[k]) for k in _MOMENTS[kind]}, kind)
                if odd is not None:  # read as an optimizer we do not know: the gradient and the weights only
                    kind = "plain"
                    if not self._warned_layout:
                        self._warned_layout = True
                        warnings.warn(
                            f"metalr-hf: the {type(opt).__name__} state of a parameter of shape {tuple(p.shape)} is "
                            f"not laid out like the parameter ({odd}: block-wise or quantised moments?); the "
                            "scheduler reads such parameters' gradients and weights only, without their moments.",
                            stacklevel=4,
                        )
                if kind == "plain" and _is_adaptive(state):
                    kind = "rms"
                sampled = self.stride > 1 and local.numel() > _BLOCK
                groups, params = buckets.setdefault((hyper, kind, sampled, local.device, shards), ([], []))
                if not groups or groups[-1] is not group:
                    groups.append(group)
                params.append(p)
        self._buckets = [
            _Bucket(groups, kind, sampled, params, opt.state, device, shards)
            for (_, kind, sampled, device, shards), (groups, params) in buckets.items()
        ]
        if len({b.device for b in self._buckets}) > 1:
            raise NotImplementedError("metalr-hf reads the parameters of one device per process")
        device = self._buckets[0].device if self._buckets else torch.device("cpu")
        self._out = torch.zeros(len(STAT_KEYS) + 1, device=device)  # the seven sums, then `adaptive`
        self._sums, self._adaptive = self._out[: len(STAT_KEYS)], self._out[len(STAT_KEYS)]
        if len(self._buckets) == 1:  # the usual case: the bucket writes the sums itself
            self._table, self._rows_of = None, [self._sums]
        else:
            self._table = torch.zeros(len(self._buckets), len(STAT_KEYS), device=device)
            self._rows_of = [self._table[i] for i in range(len(self._buckets))]
        self._rows_np = [row.numpy() if device.type == "cpu" else None for row in self._rows_of]
        self.out_np = self._out.numpy() if device.type == "cpu" else None  # the NumPy view of the output, CPU
        cpu_table = self._table is not None and device.type == "cpu"
        self._table_np, self._sums_np = (self._table.numpy(), self._sums.numpy()) if cpu_table else (None, None)
        self._adaptive.fill_(1.0 if any(b.kind in ("adam", "rms") for b in self._buckets) else 0.0)

    @torch.no_grad()
    def read_into(self, offset: int = 0) -> torch.Tensor:
        """The seven sums of :data:`STAT_KEYS` and ``adaptive`` (1 for Adam-family) as one float32 vector on the
        parameters' device. The vector is the reader's own buffer: copy what must outlive the next call."""
        return self._read_into(offset)

    def _read_into(self, offset: int) -> torch.Tensor:
        """:meth:`read_into` for a caller already under ``torch.no_grad()`` (the scheduler's step)."""
        if self._zero_hook is not None:  # read inside the ZeRO optimizer's step (`_read_in_step`)
            if self._out is None:
                self._zero_output(torch.device("cpu"))
            if not self._zero_fresh:  # a step the optimizer skipped: no gradient seen
                self._out.zero_()
            self._zero_fresh = False
            self._zero_steps += 1
            return self._out
        return self._read_now(offset)

    @property
    def reads_zero(self) -> bool:
        """Whether this reader reads a DeepSpeed ZeRO optimizer's partitions (``optimizer`` is then its inner one)."""
        return self._zero_hook is not None

    def attach_zero(self, zero) -> None:
        """Read DeepSpeed's ZeRO optimizer ``zero`` from now on: its inner optimizer's flat partitions, one per
        data-parallel rank, inside that optimizer's step. For a scheduler built on the torch optimizer that DeepSpeed
        wrapped later (the Trainer builds it so), the Trainer callback attaches the wrapper at train begin."""
        import torch.distributed as dist

        if self._zero_hook is not None:
            return
        group = getattr(zero, "dp_process_group", None)
        self.optimizer = zero.optimizer
        self.partitions = dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1
        self._zero_hook = self.optimizer.register_step_post_hook(self._read_in_step)
        self._zero_fresh, self._zero_steps, self._key = False, 0, None
        self._zero_groups: dict[int, SignalReader] = {}
        self._out = self.out_np = None  # made at the first read, on the partitions' device

    @torch.no_grad()
    def _read_in_step(self, optimizer, args, kwargs) -> None:
        """The ZeRO optimizer's post-step hook: the sums of this step, while the partitions hold their gradients.
        ZeRO-1/2 step the inner optimizer one param group at a time (its ``param_groups`` then hold that group
        only): each group is read by a reader of its own, and the sums of a step add up until the scheduler takes
        them."""
        for group in optimizer.param_groups:
            reader = self._zero_groups.get(id(group))
            if reader is None:
                reader = SignalReader(_OneGroup(group, optimizer.state), self.max_elements)
                reader.partitions = self.partitions
                self._zero_groups[id(group)] = reader
            out = reader._read_now(self._zero_steps)
            if self._out is None or self._out.device != out.device:
                self._zero_output(out.device)
            if not self._zero_fresh:
                self._out.zero_()
                self._zero_fresh = True
            self._out[: len(STAT_KEYS)] += out[: len(STAT_KEYS)]
            self._out[len(STAT_KEYS)] = torch.maximum(self._out[len(STAT_KEYS)], out[len(STAT_KEYS)])

    def _zero_output(self, device) -> None:
        self._out = torch.zeros(len(STAT_KEYS) + 1, device=device)
        self.out_np = self._out.numpy() if self._out.device.type == "cpu" else None

    def _read_now(self, offset: int) -> torch.Tensor:
        key = self._signature()
        if key != self._key:
            self._plan()
            self._key = key
        stride = self.stride
        start = offset % stride
        if not all(bucket.coefficients(stride if bucket.sampled else 1) for bucket in self._buckets):
            self._merge = False  # merged groups whose learning rates parted: one bucket per group from now on
            self._key = None
            return self._read_now(offset)
        for bucket, row, row_np in zip(self._buckets, self._rows_of, self._rows_np):
            n = bucket.fill(stride, start, self._budget_rows)
            if n == 0:
                row.zero_()
                continue
            bucket.stats(n, row, row_np)
        if self._table_np is not None:  # several buckets, or none (an empty table sums to zeros), on the CPU
            np.sum(self._table_np, 0, out=self._sums_np)
        elif self._table is not None:
            torch.sum(self._table, 0, out=self._sums)
        return self._out

    def read(self, offset: int = 0) -> dict[str, torch.Tensor]:
        """:meth:`read_into` as a dict of 0-d tensors (``adaptive`` included)."""
        vec = self.read_into(offset).clone()
        return dict(zip((*STAT_KEYS, "adaptive"), vec.unbind(0)))


def optimizer_signals(
    optimizer: torch.optim.Optimizer, max_elements: int | None = SAMPLE_ELEMENTS, offset: int = 0
) -> dict[str, torch.Tensor]:
    """Σ g², g·m, m², g·Δw, Δw², w², v over every parameter with a dense gradient, read after ``optimizer.step()``.

    ``m`` is the first moment (Adam ``exp_avg``; SGD ``(1-β)·momentum_buffer``; the gradient otherwise), ``Δw``
    the update this step took (``-lr·m̂/(√v̂+ε)`` for Adam, ``-lr·buffer`` for SGD, weight decay left out), ``v``
    Adam's bias-corrected second moment. Returns 0-d tensors on the parameters' device (no host
    synchronisation).

    Cost and memory do not grow with the model: models with more than ``max_elements`` parameters are read in
    blocks of 256 contiguous elements, one block in every ``s`` (``s`` the smallest stride that fits the budget;
    the first block rotates with ``offset`` so that every block takes its turn), and those sums are scaled by
    ``s`` — unbiased estimates within a fraction of a percent of the exact sums; parameters of at most 256
    elements and models within the budget are read whole (exact sums).
    """
    return SignalReader(optimizer, max_elements).read(offset)
