"""The learner's step for one run (the scheduler's case), in NumPy buffers made once: the arithmetic of
:meth:`MetaLearner.forward <metalr_hf.learner.MetaLearner.forward>` (``nn.GRUCell`` / ``nn.RNNCell``) for a batch of
one, equal to float32 rounding, a fifth of its time and no allocation. The parity test
(``tests/test_learner.py::test_one_run_step_is_the_forward_pass``) keeps the two equal."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .learner import MetaLearner


class OneRunStep:
    """One run's step of a GRU or RNN learner in NumPy, preallocated: the arithmetic of :meth:`MetaLearner.forward`
    (that of ``nn.GRUCell`` / ``nn.RNNCell``; equal to float32 rounding), about a fifth of its time, no allocation.
    ``step(features, state)`` takes the features as floats and the ``[1, S]`` state, and returns ``(δ, new state)``;
    the new state is one of two buffers used in turn, so the state handed in stays intact (``state_finite`` says
    whether all of it is finite).

    Each layer is one matrix-vector product: the cell's weights are packed once into one matrix over ``[x, h, 1]``
    (the gates r and z from both inputs and both biases, the candidate's two parts apart), the input layer's over
    ``[features, 1]`` with the feature mask folded in. The packing is redone when the learner's weights change in
    place (their version counters move); weights moved or replaced make the step stale (:meth:`fresh`)."""

    def __init__(self, learner: MetaLearner):
        self.np = np
        self.learner = learner
        self._params = list(learner.parameters())
        self._ptr = self._weights_ptr()
        H, F = learner.hidden_size, learner.num_features
        self.gru = learner.core == "gru"
        self.fx = np.zeros(F + 1, np.float32)  # the features, then a 1 (the input layer's bias)
        self.fx[F] = 1.0
        self.xh = [np.zeros(2 * H + 1, np.float32) for _ in learner.cells]  # each layer's [x, h, 1]
        for xh in self.xh:
            xh[2 * H] = 1.0
        self.gates = np.empty((4 if self.gru else 1) * H, np.float32)
        self.n = np.empty(H, np.float32)
        self.out = [torch.empty(1, learner.state_size), torch.empty(1, learner.state_size)]
        self.out_np = [t.numpy()[0] for t in self.out]
        self.ones = np.ones(learner.state_size, np.float32)  # the sum of the state as a dot product (3× faster)
        self.H, self.F, self.max_delta, self.turn = H, F, learner.max_delta, 0
        self._pack()

    def _versions(self) -> tuple:
        return tuple([p._version for p in self._params])

    def _pack(self) -> None:
        """The packed matrices from the learner's current weights (see the class docstring)."""
        np, learner, H = self.np, self.learner, self.H
        view = lambda t: t.detach().numpy()  # noqa: E731
        w_in = view(learner.input.weight)
        if not learner._unmasked:
            w_in = w_in * view(learner.mask).astype(np.float32)[None, :]  # W·(f ⊙ mask) = (W ⊙ mask)·f
        self.w_in = np.concatenate([w_in, view(learner.input.bias)[:, None]], axis=1)
        self.cells = []
        for cell in learner.cells:
            w_ih, w_hh, b_ih, b_hh = (view(t) for t in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh))
            if self.gru:  # rows: r and z (halved: σ(a) = (1 + tanh(a/2)) / 2), the candidate's input and hidden parts
                w = np.zeros((4 * H, 2 * H + 1), np.float32)
                w[: 2 * H, :H], w[: 2 * H, H : 2 * H] = 0.5 * w_ih[: 2 * H], 0.5 * w_hh[: 2 * H]
                w[: 2 * H, 2 * H] = 0.5 * (b_ih[: 2 * H] + b_hh[: 2 * H])
                w[2 * H : 3 * H, :H], w[2 * H : 3 * H, 2 * H] = w_ih[2 * H :], b_ih[2 * H :]
                w[3 * H :, H : 2 * H], w[3 * H :, 2 * H] = w_hh[2 * H :], b_hh[2 * H :]
            else:
                w = np.concatenate([w_ih, w_hh, (b_ih + b_hh)[:, None]], axis=1)
            self.cells.append(w)
        self.head_w, self.head_b = view(learner.head.weight)[0], view(learner.head.bias)
        self._packed = self._versions()

    def _weights_ptr(self) -> tuple:
        return tuple(map(torch.Tensor.data_ptr, self._params))

    def fresh(self) -> bool:
        """Whether the learner still holds the weights this step reads (not moved, cast or replaced)."""
        return self._weights_ptr() == self._ptr

    def __call__(self, features: list[float], state: torch.Tensor) -> tuple[float, torch.Tensor]:
        np, H, F = self.np, self.H, self.F
        if self._versions() != self._packed:  # weights changed in place
            self._pack()
        fx, n, gates = self.fx, self.n, self.gates
        fx[:F] = features if len(features) == F else features[:F]
        if self.out[self.turn] is state:  # never write into the state handed in (the usual case: our last output)
            h_all = self.out_np[self.turn]
            self.turn ^= 1
        else:
            h_all = state.detach().numpy()[0]
        new = self.out_np[self.turn]
        xh = self.xh[0]
        np.dot(self.w_in, fx, out=xh[:H])
        np.tanh(xh[:H], out=xh[:H])
        for layer, w in enumerate(self.cells):
            h, out = h_all[layer * H : (layer + 1) * H], new[layer * H : (layer + 1) * H]
            xh[H : 2 * H] = h
            np.dot(w, xh, out=gates)
            if self.gru:  # r, z = σ(·); n = tanh(gi_n + r·gh_n); h' = n + z·(h - n)
                rz = gates[: 2 * H]
                np.tanh(rz, out=rz)
                rz += 1.0
                rz *= 0.5
                gh_n = gates[3 * H :]
                gh_n *= rz[:H]
                np.add(gates[2 * H : 3 * H], gh_n, out=n)
                np.tanh(n, out=n)
                np.subtract(h, n, out=out)
                out *= rz[H:]
                out += n
            else:  # h' = tanh(W_ih x + W_hh h + b)
                np.tanh(gates, out=out)
            if layer + 1 < len(self.cells):
                xh = self.xh[layer + 1]
                xh[:H] = out
            else:
                x = out
        delta = self.max_delta * math.tanh(float(self.head_w.dot(x)) + float(self.head_b[0]))
        self.state_finite = math.isfinite(float(new.dot(self.ones)))  # a NaN or inf anywhere shows in the sum
        return delta, self.out[self.turn]
