"""The signal reader as it was before the batched one (metalr-hf 0.1.0, per-parameter views): kept here only so
that a test can show the new reader reads the same sums. Not used by the package.

It accumulates in float64 (the values gathered as the package reads them, then every product and sum in double
precision), so that it stands for the exact sums: the float32 reader's distance to it is that reader's own
rounding alone, which the tests bound from the arithmetic (``tests/test_reader.py``, ``_assert_same_sums``)."""

import warnings

import torch

_BLOCK = 256
SAMPLE_ELEMENTS = 1 << 15  # parameters read per step, about (see `optimizer_signals`)


def _kind(state: dict) -> str:
    if "exp_avg" in state and state.get("exp_avg_sq") is not None:
        return "adam"
    if state.get("momentum_buffer") is not None:
        return "sgd"
    return "plain"


def _sample(t: torch.Tensor, start: int, stride: int, rows: int) -> torch.Tensor:
    """Rows ``start, start + stride, …`` (``rows`` of them) of ``t`` cut into rows of 256 elements: one
    ``as_strided`` view for a contiguous tensor, no copy."""
    if t.is_contiguous():  # (under no_grad: the view does not require grad)
        return t.as_strided((rows, _BLOCK), (stride * _BLOCK, 1), t.storage_offset() + start * _BLOCK)
    flat = t.reshape(-1)
    return flat[: (flat.numel() // _BLOCK) * _BLOCK].view(-1, _BLOCK)[start::stride]


def _readable(p: torch.Tensor) -> bool:
    """A parameter whose statistics the reader takes: it has a dense gradient."""
    return p.grad is not None and p.grad.layout == torch.strided


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 1 else t.reshape(-1)


class ReferenceSignalReader:
    """Reads :func:`optimizer_signals` step after step into work buffers it keeps (their size is set by
    ``max_elements``, not by the model), so that a step allocates almost nothing."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_elements: int | None = SAMPLE_ELEMENTS):
        self.optimizer, self.max_elements = optimizer, max_elements
        self._warned_sparse = False
        self._buffers: dict[tuple, torch.Tensor] = {}

    def _cat(self, key: tuple, parts: list[torch.Tensor]) -> torch.Tensor:
        n = sum(t.numel() for t in parts)
        dtype, device = parts[0].dtype, parts[0].device
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = self._buffers[key] = torch.empty(n, dtype=dtype, device=device)
        out = buf[:n].view(-1, *parts[0].shape[1:])  # parts: all [k, 256] blocks, or all flat
        torch.cat(parts, out=out)
        return out.reshape(-1).double()

    @torch.no_grad()
    def read(self, offset: int = 0) -> dict[str, torch.Tensor]:
        optimizer = self.optimizer
        total = sum(p.numel() for group in optimizer.param_groups for p in group["params"] if _readable(p))
        budget = self.max_elements
        stride = 1 if not budget or total <= budget else -(-total // budget)
        start = offset % stride
        acc, adaptive = None, 0.0
        for group in optimizer.param_groups:
            buckets: dict[tuple, dict] = {}
            for p in group["params"]:
                if not _readable(p):
                    if p.grad is not None and not self._warned_sparse:
                        self._warned_sparse = True
                        message = (
                            f"metalr-hf: a parameter of shape {tuple(p.shape)} has a sparse gradient "
                            "(nn.Embedding(sparse=True)?); the scheduler leaves such parameters out of its "
                            "gradient and optimizer statistics."
                        )
                        warnings.warn(message, stacklevel=3)
                    continue
                state = optimizer.state.get(p, {})
                kind = _kind(state)
                sampled = stride > 1 and p.numel() > _BLOCK
                b = buckets.get((kind, sampled))
                if b is None:
                    b = buckets[(kind, sampled)] = {"g": [], "w": [], "m": [], "v": [], "step": 1.0}
                    if kind == "adam":
                        step = state.get("step", 1)
                        b["step"] = max(float(step.item() if torch.is_tensor(step) else step), 1.0)
                if sampled:
                    rows = -(-(p.numel() // _BLOCK - start) // stride)
                    if rows <= 0:
                        continue
                    take = lambda t, rows=rows: _sample(t, start, stride, rows)  # noqa: E731
                else:
                    take = _flat
                b["g"].append(take(p.grad))
                b["w"].append(take(p))
                if kind == "adam":
                    b["m"].append(take(state["exp_avg"]))
                    b["v"].append(take(state["exp_avg_sq"]))
                elif kind == "sgd":
                    b["m"].append(take(state["momentum_buffer"]))
            lr = float(group.get("lr", 0.0))
            for (kind, sampled), b in buckets.items():
                if not b["g"]:
                    continue

                def cat(key, b=b, kind=kind, sampled=sampled):  # buffers are reused group after group
                    return self._cat((kind, sampled, key), b[key])

                g, w = cat("g"), cat("w")
                gg, ww = torch.dot(g, g), torch.dot(w, w)
                if kind == "adam":
                    adaptive = 1.0
                    m, v = cat("m"), cat("v")
                    beta1, beta2 = group.get("betas", (0.9, 0.999))
                    bc1, bc2 = 1.0 - beta1 ** b["step"], 1.0 - beta2 ** b["step"]
                    d = v.sqrt().mul_(1.0 / bc2**0.5).add_(group.get("eps", 1e-8))
                    u = torch.div(m, d, out=d)  # m / (√v̂ + ε) = bc1 · update direction
                    vals = [gg, torch.dot(g, m), torch.dot(m, m), -lr / bc1 * torch.dot(g, u),
                            (lr / bc1) ** 2 * torch.dot(u, u), ww, v.sum() / bc2]  # fmt: skip
                elif kind == "sgd":
                    buf = cat("m")
                    c = 1.0 - group.get("momentum", 0.0)
                    gb, bb = torch.dot(g, buf), torch.dot(buf, buf)
                    vals = [gg, c * gb, c * c * bb, -lr * gb, lr * lr * bb, ww, torch.zeros_like(gg)]
                else:  # plain SGD or an optimizer we do not know: the gradient itself
                    vals = [gg, gg, gg, -lr * gg, lr * lr * gg, ww, torch.zeros_like(gg)]
                stats = torch.stack(vals) * (stride if sampled else 1)
                acc = stats if acc is None else acc + stats
        if acc is None:
            acc = torch.zeros(7, dtype=torch.float64)
        keys = ("gg", "gm", "mm", "g_upd", "upd_sq", "ww", "vv")
        out = dict(zip(keys, acc.unbind(0)))
        out["adaptive"] = torch.tensor(adaptive, device=acc.device)
        return out


def reference_optimizer_signals(
    optimizer: torch.optim.Optimizer, max_elements: int | None = SAMPLE_ELEMENTS, offset: int = 0
) -> dict[str, torch.Tensor]:
    """Σ g², g·m, m², g·Δw, Δw², w², v over every parameter with a gradient, read after ``optimizer.step()``.

    ``m`` is the first moment (Adam ``exp_avg``; SGD ``(1-β)·momentum_buffer``; the gradient otherwise), ``Δw``
    the update this step took (``-lr·m̂/(√v̂+ε)`` for Adam, ``-lr·buffer`` for SGD, weight decay left out), ``v``
    Adam's bias-corrected second moment. Returns 0-d tensors on the parameters' device (no host
    synchronisation).

    Cost and memory do not grow with the model: models with more than ``max_elements`` parameters are read in
    blocks of 256 contiguous elements, one block in every ``s`` (``s`` the smallest stride that fits the budget;
    the first block rotates with ``offset`` so that every block takes its turn), and those sums are scaled by
    ``s`` — unbiased estimates within a fraction of a percent of the exact sums; parameters of at most 256
    elements and models within the budget are read whole (exact sums). The sampled elements of each parameter
    group are gathered into work buffers of about ``max_elements`` in all (kept by :class:`SignalReader` from
    step to step), and about twenty vector operations per group do the rest; no copy of a whole gradient, moment
    or weight is ever kept.
    """
    return ReferenceSignalReader(optimizer, max_elements).read(offset)
