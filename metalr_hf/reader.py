"""Reading the optimizer's statistics after each step, with a fixed number of operations whatever the model.

:class:`SignalReader` returns Σ g², g·m, m², g·Δw, Δw², w², v (see :func:`optimizer_signals`). It plans once — which
parameters are read whole and which in sampled blocks, in which work buffers, grouped by param group, optimizer
kind and device — and re-plans only when the optimizer changes (a new state, another param group, a loaded state
dict). A step then costs, per group of parameters read alike:

- parameters read whole: one ``torch._foreach_copy_`` per tensor kind (gradient, weight, moments) into float32
  work buffers, no view made per step;
- parameters read in blocks: one ``as_strided`` view per tensor and one ``torch.cat`` into the work buffer;
- seven dot products written into a preallocated table, then one sum over the groups.

The work buffers are allocated once (about ``max_elements`` float32 values per tensor kind, whatever the model), so
after the first step the reader allocates nothing; no copy of a whole gradient, moment or weight is ever kept.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["SAMPLE_ELEMENTS", "STAT_KEYS", "SignalReader", "optimizer_signals"]

_BLOCK = 256
SAMPLE_ELEMENTS = 1 << 15  # parameters read per step, about (see `optimizer_signals`)
STAT_KEYS = ("gg", "gm", "mm", "g_upd", "upd_sq", "ww", "vv")
_MAX_KEPT_STRIDE = 64  # up to this stride the weights' and moments' block views are kept, one set per phase
_ROWS = {"adam": ("g", "w", "m", "v", "u"), "sgd": ("g", "w", "m"), "plain": ("g", "w")}


def _kind(state: dict) -> str:
    if "exp_avg" in state and state.get("exp_avg_sq") is not None:
        return "adam"
    if state.get("momentum_buffer") is not None:
        return "sgd"
    return "plain"


def _readable(p: torch.Tensor) -> bool:
    """A parameter whose statistics the reader takes: it has a dense gradient."""
    return p.grad is not None and p.grad.layout == torch.strided


class _Bucket:
    """Parameters of one param group read alike (optimizer kind, whole or sampled, device), with their buffers."""

    def __init__(self, group: dict, kind: str, sampled: bool, params: list, state: dict, device):
        self.group, self.kind, self.sampled, self.params = group, kind, sampled, params
        self.moments = {}
        if kind == "adam":
            self.moments = {"m": [state[p]["exp_avg"] for p in params], "v": [state[p]["exp_avg_sq"] for p in params]}
            self.step_of = state[params[0]]
        elif kind == "sgd":
            self.moments = {"m": [state[p]["momentum_buffer"] for p in params]}
        self.contiguous = all(p.is_contiguous() for p in params) and all(
            t.is_contiguous() for ts in self.moments.values() for t in ts
        )
        self.block_rows = [p.numel() // _BLOCK for p in params]
        n = sum(p.numel() for p in params) if not sampled else None
        self.numel = n
        self.device = device
        self._phases: dict = {}
        self._kept: dict = {}
        self._views: dict = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self.dst: dict[str, list[torch.Tensor]] = {}
        if not sampled:  # fixed layout: one flat float32 row per tensor kind, a view of it per parameter
            for row in _ROWS[kind]:
                buf = self.buffers[row] = torch.empty(n, dtype=torch.float32, device=device)
                if row != "u":
                    views, off = [], 0
                    for p in params:
                        views.append(buf[off : off + p.numel()].view(p.shape))
                        off += p.numel()
                    self.dst[row] = views

    def fill(self, stride: int, start: int, budget_rows: int) -> int:
        """Copy this step's values into the work buffers; returns the number of elements read."""
        grads = [p.grad for p in self.params]
        if not self.sampled:
            torch._foreach_copy_(self.dst["g"], grads)
            torch._foreach_copy_(self.dst["w"], self.params)
            for row, tensors in self.moments.items():
                torch._foreach_copy_(self.dst[row], tensors)
            return self.numel
        sources = {"g": grads, "w": self.params, **self.moments}
        if not self.buffers:
            rows_max = budget_rows + len(self.params) + 1  # the budget, and one partial block per parameter at most
            for row in _ROWS[self.kind]:  # sized by the budget, not the model
                self.buffers[row] = torch.empty(rows_max * _BLOCK, dtype=torch.float32, device=self.device)
        rows, n = self._rows(stride, start)
        if n == 0:
            return 0
        kept = self._persistent_views(stride, start, rows, n) or {}
        for row, tensors in sources.items():
            if row in kept:  # weights and moments: views kept from an earlier step
                parts, out = kept[row]
            else:
                parts, out = self._blocks(tensors, rows, stride, start), self.buffers[row][:n].view(-1, _BLOCK)
            if parts[0].dtype == torch.float32:
                torch.cat(parts, out=out)
            else:
                out.copy_(torch.cat(parts))
        return n

    def _persistent_views(self, stride: int, start: int, rows: list[int], n: int) -> dict | None:
        """For a small stride (a model up to ~64× the budget), the block views of the weights and moments at this
        phase, made once: those tensors are updated in place, so their views stay valid (a model moved to other
        storage is noticed and the views made again). Gradients are new tensors every step: never kept."""
        if stride > _MAX_KEPT_STRIDE or not self.contiguous:
            return None
        key = (start, self.params[0].data_ptr(), self.params[-1].data_ptr())
        views = self._kept.get(key)
        if views is None:
            if len(self._kept) >= _MAX_KEPT_STRIDE:
                self._kept.clear()
            views = self._kept[key] = {
                row: (self._blocks(tensors, rows, stride, start), self.buffers[row][:n].view(-1, _BLOCK))
                for row, tensors in {"w": self.params, **self.moments}.items()
            }
        return views

    def _blocks(self, tensors: list[torch.Tensor], rows: list[int], stride: int, start: int) -> list[torch.Tensor]:
        """Rows ``start, start + stride, …`` of each tensor cut into rows of 256 elements (``rows`` of them each):
        an ``as_strided`` view of a contiguous tensor, a flat copy's rows otherwise."""
        if self.contiguous:
            return [
                t.as_strided((k, _BLOCK), (stride * _BLOCK, 1), t.storage_offset() + start * _BLOCK)
                for t, k in zip(tensors, rows)
                if k
            ]
        return [
            t.reshape(-1)[: r * _BLOCK].view(-1, _BLOCK)[start::stride]
            for t, k, r in zip(tensors, rows, self.block_rows)
            if k
        ]

    def _rows(self, stride: int, start: int) -> tuple[list[int], int]:
        """Blocks read from each parameter at this ``start`` (one of ``stride`` phases, remembered), and elements."""
        cached = self._phases.get(start)
        if cached is None:
            rows = [max(0, -(-(r - start) // stride)) for r in self.block_rows]
            cached = (rows, sum(rows) * _BLOCK)
            if len(self._phases) < 4096:
                self._phases[start] = cached
        return cached

    def _slices(self, n: int) -> dict[str, torch.Tensor]:
        cached = self._views.get(n)
        if cached is None:
            cached = {k: v[:n] for k, v in self.buffers.items()}
            if len(self._views) < 4096:
                self._views[n] = cached
        return cached

    def stats(self, out: list[torch.Tensor], n: int, scale: int, row: torch.Tensor) -> bool:
        """Write this bucket's seven sums into ``out`` (views of ``row``); returns whether it read Adam moments."""
        b = self._slices(n)
        g, w = b["g"], b["w"]
        group, lr = self.group, float(self.group.get("lr", 0.0))
        torch.dot(g, g, out=out[0])
        torch.dot(w, w, out=out[5])
        if self.kind == "adam":
            m, v, u = b["m"], b["v"], b["u"]
            step = self.step_of.get("step", 1)
            step = max(float(step.item() if torch.is_tensor(step) else step), 1.0)
            beta1, beta2 = group.get("betas", (0.9, 0.999))
            bc1, bc2 = 1.0 - beta1**step, 1.0 - beta2**step
            # m / (√v̂ + ε) = bc1 · update direction, with √v̂ = √v / √bc2: computed as √bc2 · m / (√v + √bc2 ε), the
            # factor √bc2 moved into the scalars (one pass over the buffer fewer)
            root = bc2**0.5
            torch.sqrt(v, out=u).add_(root * group.get("eps", 1e-8))
            torch.div(m, u, out=u)
            torch.dot(g, m, out=out[1])
            torch.dot(m, m, out=out[2])
            torch.dot(g, u, out=out[3]).mul_(-lr * root / bc1)
            torch.dot(u, u, out=out[4]).mul_((lr * root / bc1) ** 2)
            torch.sum(v, 0, out=out[6]).div_(bc2)
        elif self.kind == "sgd":
            c = 1.0 - group.get("momentum", 0.0)
            buf = b["m"]
            torch.dot(g, buf, out=out[1])
            torch.dot(buf, buf, out=out[2])
            out[3].copy_(out[1]).mul_(-lr)
            out[4].copy_(out[2]).mul_(lr * lr)
            out[1].mul_(c)
            out[2].mul_(c * c)
            out[6].zero_()
        else:  # plain SGD or an optimizer we do not know: the gradient itself
            out[1].copy_(out[0])
            out[2].copy_(out[0])
            out[3].copy_(out[0]).mul_(-lr)
            out[4].copy_(out[0]).mul_(lr * lr)
            out[6].zero_()
        if scale != 1:
            row.mul_(scale)
        return self.kind == "adam"


class SignalReader:
    """Reads :func:`optimizer_signals` step after step, planning once (see the module docstring).

    Args:
        optimizer (`torch.optim.Optimizer`): whose parameters, gradients and state are read after its step.
        max_elements (`int` or `None`, defaults to 2¹⁵): elements read per step, about; ``None`` reads everything.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_elements: int | None = SAMPLE_ELEMENTS):
        self.optimizer, self.max_elements = optimizer, max_elements
        self._warned_sparse = False
        self._key = None
        self._buckets: list[_Bucket] = []
        self._table: torch.Tensor | None = None
        self._out: torch.Tensor | None = None

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
                    total += p.numel()
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
        buckets: dict[tuple, list] = {}
        for gi, group in enumerate(opt.param_groups):
            for p in group["params"]:
                if not _readable(p):
                    continue
                kind = _kind(opt.state.get(p, {}))
                sampled = self.stride > 1 and p.numel() > _BLOCK
                buckets.setdefault((gi, kind, sampled, p.device), []).append(p)
        self._buckets = [
            _Bucket(opt.param_groups[gi], kind, sampled, params, opt.state, device)
            for (gi, kind, sampled, device), params in buckets.items()
        ]
        if len({b.device for b in self._buckets}) > 1:
            raise NotImplementedError("metalr-hf reads the parameters of one device per process")
        device = self._buckets[0].device if self._buckets else torch.device("cpu")
        self._table = torch.zeros(max(len(self._buckets), 1), len(STAT_KEYS), device=device)
        self._rows_of = [self._table[i] for i in range(len(self._buckets))]
        self._cells = [[row[j] for j in range(len(STAT_KEYS))] for row in self._rows_of]
        self._out = torch.zeros(len(STAT_KEYS) + 1, device=device)  # the seven sums, then `adaptive`
        self._sums, self._adaptive = self._out[: len(STAT_KEYS)], self._out[len(STAT_KEYS)]

    @torch.no_grad()
    def read_into(self, offset: int = 0) -> torch.Tensor:
        """The seven sums of :data:`STAT_KEYS` and ``adaptive`` (1 for Adam-family) as one float32 vector on the
        parameters' device. The vector is the reader's own buffer: copy what must outlive the next call."""
        key = self._signature()
        if key != self._key:
            self._plan()
            self._key = key
        stride = self.stride
        start = offset % stride
        adaptive = False
        for bucket, row, cells in zip(self._buckets, self._rows_of, self._cells):
            n = bucket.fill(stride, start, self._budget_rows)
            if n == 0:
                row.zero_()
                continue
            adaptive |= bucket.stats(cells, n, stride if bucket.sampled else 1, row)
        torch.sum(self._table, 0, out=self._sums)
        self._adaptive.fill_(1.0 if adaptive else 0.0)
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
