"""Are a model's weights pretrained? Read from the weights themselves, never from where they were loaded.

The scheduler's ``pretrained`` feature (and, under ``max_boost="auto"``, whether the learner may raise the LR)
comes from here when ``lr_scheduler_kwargs`` does not set it: a few weight layers are compared with a fresh
initialisation by the model's own rule (:func:`weight_std_ratio`).
"""

from __future__ import annotations

import logging

import torch

from ._log import warn

__all__ = ["infer_pretrained", "weight_std_ratio", "weights_look_pretrained"]

logger = logging.getLogger(__name__)


_SAMPLE = 1 << 16  # elements of each weight read to tell trained weights from their initialisation
_LAYERS = 8  # weight layers compared, evenly spread over the model
_MAX_COPY = 1 << 22  # the largest parent module copied to re-initialise a layer the way the model does
_MAX_LAYER = 1 << 24  # larger layers are compared only when a model has no smaller one
_FAR = 1.5  # a layer whose std differs from a fresh initialisation's by more than this factor has been trained


def _fresh_weight(model, name: str, module) -> torch.Tensor | None:
    """``module.weight`` as the model would initialise it now, on the CPU: a copy of the layer's parent module put
    through a transformers model's ``_init_weights`` (which may set a child's weights from its parent, as T5's
    attention does), else the layer's own ``reset_parameters()``. ``None`` when neither sets every element."""
    import math

    model, name = _init_owner(model, name)
    init = getattr(model, "_init_weights", None)
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else None
    size = sum(p.numel() for p in parent.parameters()) if parent is not None else 0
    small = 0 < size <= min(16 * module.weight.numel(), _MAX_COPY)
    if callable(init) and small:
        fresh = _empty_cpu_copy(parent)
        weight = fresh.get_submodule(leaf).weight
        weight.fill_(math.nan)
        fresh.apply(init)
    else:
        fresh = _empty_cpu_copy(module)
        weight = fresh.weight
        weight.fill_(math.nan)
        if callable(init):
            init(fresh)
        elif callable(getattr(fresh, "reset_parameters", None)):
            fresh.reset_parameters()
    return None if weight.isnan().any() else weight.detach()  # still NaN: the rule did not initialise it


def _init_owner(model, name: str):
    """The innermost module around layer ``name`` that has an initialisation rule (``_init_weights``: a
    transformers model, also inside a user's plain ``nn.Module`` wrapper), and the layer's name within it; the
    model itself when none has."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        owner = model.get_submodule(".".join(parts[:i]))
        if callable(getattr(owner, "_init_weights", None)):
            return owner, ".".join(parts[i:])
    return model, name


def _empty_cpu_copy(module):
    """A copy of ``module`` whose parameters and buffers are new, uninitialised CPU tensors of the same shapes
    (nothing is copied from, or allocated on, the model's device), without transformers' "already initialised"
    marks (transformers 5 skips marked tensors)."""
    import copy

    memo = {}
    for t in (*module.parameters(), *module.buffers()):
        empty = torch.empty(t.shape, dtype=t.dtype)
        memo[id(t)] = torch.nn.Parameter(empty, requires_grad=False) if isinstance(t, torch.nn.Parameter) else empty
    fresh = copy.deepcopy(module, memo)
    for t in (*fresh.modules(), *fresh.parameters()):
        if hasattr(t, "_is_hf_initialized"):
            delattr(t, "_is_hf_initialized")
    return fresh


def weights_look_pretrained(model) -> bool | None:
    """Whether ``model``'s weights have been trained: :func:`weight_std_ratio` outside [1/1.5, 1.5]; ``None``
    when the weights cannot tell."""
    ratio = weight_std_ratio(model)
    return None if ratio is None else not 1 / _FAR <= ratio <= _FAR


def weight_std_ratio(model) -> float | None:
    """How far ``model``'s weights have left the distribution the model initialises them with — read from the
    weights, never from where they were loaded. Up to eight weight layers (matrices and kernels; embeddings and
    LoRA adapters aside), evenly spread over the model, are compared with a fresh initialisation of the same layer
    by the model's own rule (:func:`_fresh_weight`; drawn under a forked, fixed-seed CPU generator, so the run's
    randomness is untouched and every rank decides alike). Returns the median ratio of their standard deviations
    (the first 2¹⁶ elements of each): a randomly initialised model sits at 1, pretrained weights far from it.
    ``None`` when no layer can be re-initialised (bare ``Parameter`` lists, quantised or sharded weights): the
    weights cannot tell."""
    import math
    import statistics

    layers = [
        (name, m)
        for name, m in model.named_modules()
        if not any(True for _ in m.children())
        and isinstance(getattr(m, "weight", None), torch.nn.Parameter)
        and m.weight.dim() >= 2
        and m.weight.is_floating_point()
        and m.weight.device.type != "meta"
        and m.weight.numel() > 1
        and not isinstance(m, torch.nn.Embedding)
        and "embed" not in name
        and "lora_" not in name
    ]
    big = [(name, m) for name, m in layers if m.weight.numel() >= 256]  # tiny layers give noisy stds
    layers = big or layers
    fit = [(name, m) for name, m in layers if m.weight.numel() <= _MAX_LAYER]  # each is re-drawn on the CPU
    smallest = min((m.weight.numel() for _, m in layers), default=0)
    layers = fit or [(name, m) for name, m in layers if m.weight.numel() == smallest]
    if len(layers) > _LAYERS:
        layers = [layers[round(i * (len(layers) - 1) / (_LAYERS - 1))] for i in range(_LAYERS)]
    ratios = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.random.default_generator.manual_seed(0)
        for name, m in layers:
            try:
                fresh = _fresh_weight(model, name, m)
            except Exception:  # a layer that cannot be copied or re-initialised tells nothing
                logger.debug("metalr-hf: cannot re-initialise %s", name, exc_info=True)
                continue
            if fresh is None:
                continue
            now = float(m.weight.detach().reshape(-1)[:_SAMPLE].float().std())
            then = float(fresh.reshape(-1)[:_SAMPLE].float().std())
            if then > 0 and math.isfinite(now) and math.isfinite(then):
                ratios.append(now / then)
    return statistics.median(ratios) if ratios else None


def infer_pretrained(model) -> bool:
    """The ``pretrained`` feature of a run whose ``lr_scheduler_kwargs`` did not set it, read from the weights
    (:func:`weights_look_pretrained`): a model trained from scratch and saved to a folder is still from scratch.
    When the weights cannot tell (bare parameters; sharded or quantised weights, which are mostly large pretrained
    models), the run counts as fine-tuning — the side that does not risk pretrained weights: the default pair gives
    it the learner made for them, other learners may not raise its LR — and a warning says how to say otherwise."""
    looks = weights_look_pretrained(model)
    if looks is not None:
        return looks
    message = (
        f"metalr-hf cannot tell from the weights of this {type(model).__name__} whether they are pretrained (no "
        "weight layer it can re-initialise to compare them with); the run is treated as fine-tuning, the safe side "
        "for pretrained weights. If it trains from scratch, pass lr_scheduler_kwargs={'pretrained': false} (true "
        "silences this)."
    )
    warn(logger, message)
    return True
