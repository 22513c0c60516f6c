"""A bucket of parameters read alike (optimizer kind, whole or sampled, device, merged param groups): its work rows,
the copy of a step's values into them and the seven sums of :data:`STAT_KEYS` from them (see :mod:`reader` for the
plan and the cost of a step)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from .layouts import _is_dtensor, _local

_BLOCK = 256
STAT_KEYS = ("gg", "gm", "mm", "g_upd", "upd_sq", "ww", "vv")
# On the CPU the Gram matrix of up to this many columns (the default budget's) is computed on one thread: MKL splits
# a product this skinny across threads at a loss (28K columns: 18 µs on one thread, 103 µs on two); beyond it one
# thread's float32 accumulation drifts (relative 1.6e-6 at 200K columns against 3e-7 at 28K).
_ONE_THREAD_GRAM = 1 << 16
_MAX_KEPT_STRIDE = 64  # up to this stride the weights' and moments' block views are kept, one set per phase
# Adam's row v becomes u. "rms": an adaptive optimizer whose moments cannot be read beside the parameter (Adafactor's
# factored second moments, an 8-bit Adam's quantised states): its update is read as the gradient normalised to an
# RMS of 1 per element, the size an adaptive step takes (Adafactor clips it there), not as SGD's lr·g.
_ROWS = {"adam": ("g", "w", "m", "v"), "sgd": ("g", "w", "m"), "plain": ("g", "w"), "rms": ("g", "w")}


@functools.lru_cache(maxsize=1)
def _openmp() -> bool:
    """Whether ATen runs on OpenMP, where changing the thread count is cheap and immediate (the native backend
    refuses a change once parallel work has started)."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


# How each optimizer kind's raw sums (g·g, g·w, g·m, g·u, w², m², u², Σv, 0) make the seven STAT_KEYS: which raw
# sum each takes (the coefficients are set per step, :meth:`_Bucket.coefficients`).
_PICK = {
    "adam": (0, 2, 5, 3, 6, 4, 7),  # gg, gm, mm, g·u → g_upd, u² → upd_sq, ww, Σv
    "sgd": (0, 2, 5, 2, 5, 4, 8),  # the buffer b in the rows of m: gm = c·g·b, mm = c²·b², g_upd = -lr·g·b, …
    "plain": (0, 0, 0, 0, 0, 4, 8),  # the gradient itself as m and as the update direction
    "rms": (0, 0, 0, 0, 0, 4, 8),  # the same sums; g·u and u² rescaled to the normalised gradient in `stats`
}
# Where each raw sum but Σv sits in the Gram matrix of the work rows (flattened, row-major; ``r`` rows): Adam's rows
# g, w, m, u; SGD's g, w, m; plain g, w. After the matrix come two more entries: one that stays 0 (the sums a kind
# has no row for), then Adam's Σv (summed from the copy of v before that row becomes u).
_RAW_CELLS = ((0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (2, 2), (3, 3))


def _gram_pick(kind: str) -> list[int]:
    r = len(_ROWS[kind])
    cells = [i * r + j if max(i, j) < r else r * r for i, j in _RAW_CELLS]
    cells += [r * r + 1 if kind == "adam" else r * r, r * r]  # Σv, 0
    return [cells[k] for k in _PICK[kind]]


class _Bucket:
    """Parameters read alike (optimizer kind, whole or sampled, device, and param groups with the same
    hyperparameters merged), with their work buffers: one float32 row per tensor kind (:data:`_ROWS`)."""

    def __init__(
        self, groups: list[dict], kind: str, sampled: bool, params: list, state: dict, device, shards: int = 1
    ):
        # Sharded parameters (DTensors) are read through their local shards, every sum scaled by ``shards``.
        self.sources, self.shards = params, shards
        self.dtensor = any(_is_dtensor(p) for p in params)  # read through local shards (also a mesh of one)
        params = [_local(p) for p in params] if self.dtensor else params
        self.groups, self.group, self.kind, self.sampled, self.params = groups, groups[0], kind, sampled, params
        self.moments = {}
        if kind == "adam":
            sources = self.sources
            self.moments = {
                "m": [_local(state[p]["exp_avg"]) for p in sources],
                "v": [_local(state[p]["exp_avg_sq"]) for p in sources],
            }
            self.step_of = state[sources[0]]
        elif kind == "sgd":
            self.moments = {"m": [_local(state[p]["momentum_buffer"]) for p in self.sources]}
        self.contiguous = all(p.is_contiguous() for p in params) and all(
            t.is_contiguous() for ts in self.moments.values() for t in ts
        )
        self.block_rows = [p.numel() // _BLOCK for p in params]
        self.numel = sum(p.numel() for p in params) if not sampled else None
        self.device = device
        self._phases: dict = {}
        self._kept: dict = {}
        self._views: dict = {}
        self._row_views_np: dict = {}
        self._bases: dict = {}
        self._bases_key = None
        self.rows = _ROWS[kind]
        self.work: torch.Tensor | None = None
        self.buffers: dict[str, torch.Tensor] = {}
        self.dst: dict[str, list[torch.Tensor]] = {}
        r = len(self.rows)
        self.gram = torch.zeros(r * r + 2, device=device)  # then a 0 (the sums a kind has no row for) and Σv
        self.sum_v = self.gram[-1]
        self.gram_matrix = self.gram[: r * r].view(r, r)
        self.pick = torch.tensor(_gram_pick(kind), device=device)
        self.picked = torch.zeros(len(STAT_KEYS), device=device)
        # the per-step coefficients: on the CPU written through a NumPy view (no tensor operation)
        self.coef = torch.ones(len(STAT_KEYS), device=device)
        self.coef_np = self.coef.numpy() if device.type == "cpu" else None
        self._coef_key = None
        self.root_eps = torch.zeros((), device=device)
        self.root_eps_value = 0.0
        self._root_eps_np = self.root_eps.numpy() if device.type == "cpu" else None
        self._gram_np = self._pick_np = self._picked_np = None
        if device.type == "cpu":  # the picking and scaling of the sums as NumPy operations on views made once
            self._gram_np, self._pick_np, self._picked_np = self.gram.numpy(), self.pick.numpy(), self.picked.numpy()
        self.all_f32 = all(t.dtype == torch.float32 for t in params) and all(
            t.dtype == torch.float32 for ts in self.moments.values() for t in ts
        )
        # On the CPU the weights and moments are copied by NumPy, from views made once (NumPy's concatenation of
        # strided blocks takes a third of torch.cat's time there); on an accelerator by torch.cat.
        self._cat = np.concatenate if device.type == "cpu" else torch.cat
        if not sampled:  # fixed layout: one flat row per tensor kind, a view of it per parameter
            self._allocate(self.numel)
            # weights and moments are updated in place: their flat views are made once and read with one
            # concatenation (while they keep their storage, :meth:`fill` checks); gradients are new every step
            self.flat = None
            if self.contiguous and self.all_f32:
                # the rows after g are w and the moments, in that order: one concatenation fills them all
                assert self.rows[1:] == ("w", *self.moments)
                flat = [t.detach().view(-1) for ts in (params, *self.moments.values()) for t in ts]
                self.flat = (self._host(flat), self._host(self.work[1:].view(-1)))
                self._storage = self._storage_key()
            for row in self.rows:
                views, off = [], 0
                for p in params:
                    views.append(self.buffers[row][off : off + p.numel()].view(p.shape))
                    off += p.numel()
                self.dst[row] = views

    def _host(self, tensors):
        """``tensors`` (a tensor or a list) as NumPy views on the CPU (no copy), as they are elsewhere."""
        if self.device.type != "cpu":
            return tensors
        return tensors.detach().numpy() if torch.is_tensor(tensors) else [t.detach().numpy() for t in tensors]

    def _allocate(self, n: int) -> None:
        self.work = torch.empty(len(self.rows), n, dtype=torch.float32, device=self.device)
        self.buffers = {row: self.work[i] for i, row in enumerate(self.rows)}

    def _storage_key(self) -> tuple:
        return tuple(map(torch.Tensor.data_ptr, self.params))

    def fill(self, stride: int, start: int, budget_rows: int) -> int:
        """Copy this step's values into the work rows; returns the number of elements read."""
        grads = [_local(p.grad) for p in self.sources] if self.dtensor else [p.grad for p in self.params]
        if not self.sampled:
            torch._foreach_copy_(self.dst["g"], grads)
            if self.flat is not None and self._storage_key() == self._storage:
                flat, out = self.flat
                self._cat(flat, out=out)
            else:  # moved weights (``model.to``, ``p.data = …``), other dtypes, non-contiguous tensors
                torch._foreach_copy_(self.dst["w"], self.params)
                for row, tensors in self.moments.items():
                    torch._foreach_copy_(self.dst[row], tensors)
            return self.numel
        sources = {"g": grads, "w": self.params, **self.moments}
        if self.work is None:  # sized by the budget, not the model
            self._allocate((budget_rows + len(self.params) + 1) * _BLOCK)  # one partial block per parameter at most
        rows, n = self._rows(stride, start)
        if n == 0:
            return 0
        kept = self._persistent_views(stride, start, rows, n) or {}
        for row, tensors in sources.items():
            if row in kept:  # weights and moments: views kept from an earlier step (NumPy ones on the CPU)
                parts, out = kept[row]
                self._cat(parts, out=out)
                continue
            if self._cat is np.concatenate and all(t.dtype == torch.float32 for t in tensors):
                np.concatenate(self._np_blocks(tensors, rows, stride, start), out=self._out_np(row, n))
                continue
            parts, out = self._blocks(tensors, rows, stride, start), self.buffers[row][:n].view(-1, _BLOCK)
            if parts[0].dtype == torch.float32:
                torch.cat(parts, out=out)
            else:
                out.copy_(torch.cat(parts))
        return n

    def _persistent_views(self, stride: int, start: int, rows: list[int], n: int) -> dict | None:
        """The block views of the weights and moments at this phase, from views made once (those tensors are updated
        in place, so their views stay valid; a model moved to other storage is noticed and the views made again):
        for a small stride (a model up to ~64× the budget) the phase's own views, kept; for a larger one, on the CPU,
        each tensor's ``[blocks, 256]`` NumPy view, sliced ``[start::stride]`` this step. Gradients are new tensors
        every step: never kept. ``None`` where neither applies (the views are then made each step)."""
        if not self.contiguous or not self.all_f32:
            return None
        key = (start, self.params[0].data_ptr(), self.params[-1].data_ptr())
        if stride > _MAX_KEPT_STRIDE:
            if self.device.type != "cpu":
                return None
            if self._bases_key != key[1:]:
                self._bases_key = key[1:]
                self._bases = {
                    row: [
                        t.detach().numpy().reshape(-1)[: r * _BLOCK].reshape(r, _BLOCK)
                        for t, r in zip(tensors, self.block_rows)
                    ]
                    for row, tensors in {"w": self.params, **self.moments}.items()
                }
            return {
                row: ([b[start::stride] for b in bases], self._out_np(row, n)) for row, bases in self._bases.items()
            }
        views = self._kept.get(key)
        if views is None:
            if len(self._kept) >= _MAX_KEPT_STRIDE:
                self._kept.clear()
            views = self._kept[key] = {
                row: (
                    self._host(self._blocks(tensors, rows, stride, start)),
                    self._host(self.buffers[row][:n]).reshape(-1, _BLOCK),
                )
                for row, tensors in {"w": self.params, **self.moments}.items()
            }
        return views

    def _blocks(self, tensors: list[torch.Tensor], rows: list[int], stride: int, start: int) -> list[torch.Tensor]:
        """Rows ``start, start + stride, …`` of each tensor cut into rows of 256 elements (``rows`` of them each):
        an ``as_strided`` view of a contiguous tensor, a flat copy's rows otherwise (a gradient assigned by hand
        may be laid out unlike its parameter)."""
        return [
            t.as_strided((k, _BLOCK), (stride * _BLOCK, 1), t.storage_offset() + start * _BLOCK)
            if t.is_contiguous()
            else t.reshape(-1)[: r * _BLOCK].view(-1, _BLOCK)[start::stride]
            for t, k, r in zip(tensors, rows, self.block_rows)
            if k
        ]

    def _np_blocks(self, tensors: list[torch.Tensor], rows: list[int], stride: int, start: int) -> list:
        """:meth:`_blocks` as NumPy arrays (CPU, float32), made this step: one strided array per tensor over its
        memory (the same blocks; a contiguous tensor's flat layout, a flat copy's otherwise)."""
        step, offset = stride * _BLOCK * 4, start * _BLOCK * 4  # in bytes
        out = []
        for t, k in zip(tensors, rows):
            if k:
                t = t.detach() if t.requires_grad else t
                a = t.numpy() if t.is_contiguous() else t.reshape(-1).numpy()
                out.append(np.ndarray((k, _BLOCK), np.float32, a, offset, (step, 4)))
        return out

    def _out_np(self, row: str, n: int) -> np.ndarray:
        """A work row's first ``n`` elements as a NumPy ``[n / 256, 256]`` view (made once per row and size)."""
        view = self._row_views_np.get((row, n))
        if view is None:
            view = self.buffers[row][:n].numpy().reshape(-1, _BLOCK)
            if len(self._row_views_np) < 4096:
                self._row_views_np[(row, n)] = view
        return view

    def _rows(self, stride: int, start: int) -> tuple[list[int], int]:
        """Blocks read from each parameter at this ``start`` (one of ``stride`` phases, remembered), and elements."""
        cached = self._phases.get(start)
        if cached is None:
            rows = [max(0, -(-(r - start) // stride)) for r in self.block_rows]
            cached = (rows, sum(rows) * _BLOCK)
            if len(self._phases) < 4096:
                self._phases[start] = cached
        return cached

    def _slices(self, n: int) -> tuple:
        """For ``n`` elements read: the work rows as a matrix and its transpose, and Adam's rows m, v (on the CPU,
        up to :data:`_ONE_THREAD_GRAM` elements, as NumPy views: NumPy's square root is 3× faster than torch's there;
        beyond, torch's threads pay); views made once per size."""
        cached = self._views.get(n)
        if cached is None:
            work = self.work[:, :n]
            adam = (work[2], work[3]) if self.kind == "adam" else None
            v_np = None  # larger reads on the CPU: Σv summed by NumPy (torch's threaded sum allocates)
            if adam is not None and self.coef_np is not None:
                if n <= _ONE_THREAD_GRAM:
                    adam = tuple(t.numpy() for t in adam)
                else:  # torch's threads pay for the elementwise work
                    v_np = adam[1].numpy()
            cached = (work, work.t(), adam, v_np)
            if len(self._views) < 4096:
                self._views[n] = cached
        return cached

    def coefficients(self, scale: int) -> bool:
        """Set this step's coefficients of the seven sums (learning rate, bias corrections, the sampling scale);
        ``False`` when the merged param groups no longer share their learning rate (the reader plans again)."""
        group = self.group
        lr = group.get("lr", 0.0)
        for other in self.groups[1:]:
            if other.get("lr", 0.0) != lr:
                return False
        lr = float(lr)
        if self.kind == "adam":
            step = self.step_of.get("step", 1)
            step = max(float(step.item() if torch.is_tensor(step) else step), 1.0)
            key = (lr, step, scale)
        else:
            key = (lr, scale)
        if key == self._coef_key:
            return True
        self._coef_key = key
        if self.kind == "adam":
            beta1, beta2 = group.get("betas", (0.9, 0.999))
            bc1, bc2 = 1.0 - beta1**step, 1.0 - beta2**step
            # m / (√v̂ + ε) = bc1 · update direction, with √v̂ = √v / √bc2: the row u holds √bc2 · m / (√v + √bc2 ε)
            # (the factor √bc2 moved into these coefficients)
            a = lr * bc2**0.5 / bc1
            self.root_eps_value = bc2**0.5 * group.get("eps", 1e-8)
            if self._root_eps_np is not None:
                self._root_eps_np[()] = self.root_eps_value
            else:
                self.root_eps.fill_(self.root_eps_value)
            coef = (1.0, 1.0, 1.0, -a, a * a, 1.0, 1.0 / bc2)
        elif self.kind == "sgd":
            c = 1.0 - group.get("momentum", 0.0)
            coef = (1.0, c, c * c, -lr, lr * lr, 1.0, 1.0)
        else:
            coef = (1.0, 1.0, 1.0, -lr, lr * lr, 1.0, 1.0)
        coef = [scale * self.shards * x for x in coef]
        if self.coef_np is not None:
            self.coef_np[:] = coef
        else:  # on an accelerator: scalars passed to the kernels, as a multiplication by a float (no copy, no wait)
            for cell, x in zip(self.coef, coef):
                cell.fill_(x)
        return True

    def stats(self, n: int, out: torch.Tensor, out_np) -> None:
        """Write this bucket's seven sums into ``out``: Σv, then Adam's update direction in three elementwise
        operations in place of the copy of v, then every other sum at once as the Gram matrix of the work rows (one
        matrix product into a preallocated output: one pass over the rows), then the picked sums times their
        coefficients (``out_np``: the NumPy view of ``out`` on the CPU, else ``None``)."""
        rows, rows_t, adam, v_np = self._slices(n)
        cpu = self.coef_np is not None
        if adam is not None:
            m, v = adam  # the row v is a copy: Σv, then √v, √v + ε and u = m / (√v + ε), in place
            if isinstance(v, np.ndarray):  # NumPy views of the work rows (the CPU, up to the one-thread size)
                np.sqrt(v, out=v)
                self._gram_np[-1] = np.dot(v, v)  # Σv as ‖√v‖² (a BLAS dot: half the time of a sum in NumPy)
                np.add(v, self.root_eps_value, out=v)
                np.divide(m, v, out=v)
            else:
                if v_np is not None:
                    self._gram_np[-1] = v_np.sum()  # Σv (NumPy's pairwise summation; torch's sum allocates)
                else:
                    torch.sum(v, 0, out=self.sum_v)  # Σv (a cascade sum)
                torch.sqrt(v, out=v)
                torch.add(v, self.root_eps, out=v)
                torch.div(m, v, out=v)
        threads = torch.get_num_threads() if cpu and n <= _ONE_THREAD_GRAM and _openmp() else 1
        if threads > 1:  # BLAS runs this skinny product (4 × n by n × 4) 5× slower on two threads than on one
            torch.set_num_threads(1)
            try:
                torch.mm(rows, rows_t, out=self.gram_matrix)
            finally:
                torch.set_num_threads(threads)
        else:
            torch.mm(rows, rows_t, out=self.gram_matrix)
        if cpu:
            np.take(self._gram_np, self._pick_np, out=self._picked_np, mode="clip")
            np.multiply(self._picked_np, self.coef_np, out=out_np)
            if self.kind == "rms":  # u = g·√(n/Σg²): g·u = √(n·Σg²) and u² = n, before the coefficients
                c2 = n / self._gram_np[0] if self._gram_np[0] > 0 else 0.0
                out_np[3] *= c2**0.5
                out_np[4] *= c2
        else:
            torch.index_select(self.gram, 0, self.pick, out=self.picked)
            torch.mul(self.picked, self.coef, out=out)
            if self.kind == "rms":  # as above, without reading the sum back (no wait for the device)
                c2 = torch.where(self.gram[0] > 0, n / self.gram[0], torch.zeros_like(self.gram[0]))
                out[3].mul_(c2.sqrt())
                out[4].mul_(c2)
