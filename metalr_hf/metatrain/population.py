"""The learner as ES sees it: one flat parameter vector, a population of them acting on batched runs, and the
surgery that continues a stage with a wider bound or more features."""

from __future__ import annotations

import torch
from torch.func import functional_call

from ..learner import MetaLearner

__all__ = ["PopulationLearner", "flat", "head_mask", "load_flat", "widen", "with_features"]


class PopulationLearner:
    """``G`` learners (one flat parameter vector each) acting on ``G`` groups of ``K`` runs: runs ``[gK, (g+1)K)``
    are driven by ``thetas[g]``. Presents the interface ``MetaController`` expects of a ``MetaLearner``."""

    def __init__(self, learner: MetaLearner, thetas: torch.Tensor, group_size: int):
        self.learner, self.thetas, self.K = learner, thetas, group_size
        self.shapes = [(n, p.shape, p.numel()) for n, p in learner.named_parameters()]
        self.device = learner.device

    def _params(self, theta):
        out, i = {}, 0
        for name, shape, n in self.shapes:
            out[name] = theta[i : i + n].view(shape)
            i += n
        return out

    def init_state(self, batch_size: int) -> torch.Tensor:
        return self.learner.init_state(batch_size)

    @torch.no_grad()
    def __call__(self, features: torch.Tensor, state: torch.Tensor):
        deltas, states = [], []
        for g, theta in enumerate(self.thetas):
            sl = slice(g * self.K, (g + 1) * self.K)
            d, s = functional_call(self.learner, self._params(theta), (features[sl], state[sl]))
            deltas.append(d)
            states.append(s)
        return torch.cat(deltas), torch.cat(states)


def flat(learner: MetaLearner) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(learner.parameters()).detach().clone()


@torch.no_grad()
def load_flat(learner: MetaLearner, theta: torch.Tensor) -> None:
    i = 0
    for p in learner.parameters():
        p.copy_(theta[i : i + p.numel()].view_as(p))
        i += p.numel()


def head_mask(learner: MetaLearner) -> torch.Tensor:
    """True at the entries of θ that belong to the output layer."""
    return torch.cat([torch.full((p.numel(),), n.startswith("head.")) for n, p in learner.named_parameters()])


def widen(learner: MetaLearner, max_delta: float) -> MetaLearner:
    """The same learner with another bound ``δ_max``; the output layer is rescaled by ``old/new`` so that the
    correction is unchanged to first order (``δ = δ_max · tanh(z)``, exactly for small ``z``; a correction that
    sat at the old bound can now grow past it). Core and width must match the stage it continues."""
    if max_delta == learner.max_delta:
        return learner
    wide = MetaLearner(**dict(learner.config, max_delta=max_delta))
    state = learner.state_dict()
    scale = learner.max_delta / max_delta
    state["head.weight"], state["head.bias"] = state["head.weight"] * scale, state["head.bias"] * scale
    wide.load_state_dict(state)
    return wide


def with_features(learner: MetaLearner, names) -> MetaLearner:
    """The same learner reading the features ``names`` (a longer prefix of FEATURE_NAMES): the input weights of
    the added features start at zero, so its decisions are unchanged until training moves them."""
    names = list(names)
    if names == learner.config["feature_names"]:
        return learner
    if len(names) < learner.num_features:
        raise ValueError(f"Cannot drop features: the learner reads {learner.config['feature_names']}, asked {names}")
    wider = MetaLearner(**dict(learner.config, feature_names=names))
    state = learner.state_dict()
    w = state["input.weight"]
    state["input.weight"] = torch.cat([w, w.new_zeros(w.shape[0], len(names) - w.shape[1])], 1)
    wider.load_state_dict(state)
    return wider
