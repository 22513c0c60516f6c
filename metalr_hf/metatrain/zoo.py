"""The task zoo: populations of cheap training runs, batched by model kind.

A *population* is ``B`` independent training runs of one model kind (``models.py``) stacked along a leading
batch dimension, so one batched computation trains all of them, each with its own data set, width, optimizer
(Adam, AdamW or SGD with momentum), base LR, horizon and warmup. The families, their split and the sampling of runs
are in ``families.py``; their data in ``task_data.py``; the pretrained starting points of the fine-tuning families
in ``pretraining.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .families import FAMILIES, FAMILY_KIND, FINETUNE, N_TRAIN, N_VAL, TF_FINETUNE, WEIGHT_DECAY, TaskSpec
from .models import C_MAX, D_MAX, H_MAX, VOCAB, width
from .pretraining import _tf_finetune_data
from .task_data import _dataset, _finetune_data, _input_stats

__all__ = ["Population", "make_population", "make_populations"]


@dataclass
class Population:
    """``B`` runs of one model kind: their data and configuration as batched tensors."""

    specs: list[TaskSpec]
    kind: str  # a key of models.MODELS
    x_train: torch.Tensor  # [B, N_TRAIN, ...] (features, pixels, tokens or a window)
    y_train: torch.Tensor  # [B, N_TRAIN, ...] (class index, regression target, next tokens or future values)
    x_val: torch.Tensor
    y_val: torch.Tensor
    class_mask: torch.Tensor  # [B, C_MAX] True for a used class
    is_cls: torch.Tensor  # [B] bool
    hidden_mask: torch.Tensor  # [B, H_MAX]
    adam: torch.Tensor  # [B] bool (Adam or AdamW)
    weight_decay: torch.Tensor  # [B] (AdamW's decoupled decay; 0 otherwise)
    base_lr: torch.Tensor  # [B]
    horizon: torch.Tensor  # [B]
    warmup: torch.Tensor  # [B]

    @property
    def size(self) -> int:
        return len(self.specs)


def make_population(specs: list[TaskSpec]) -> Population:
    """One batched population; every spec must be of the same model kind (see :func:`make_populations`)."""
    kinds = {FAMILY_KIND.get(s.family) for s in specs}
    if None in kinds:
        bad = sorted({s.family for s in specs if s.family not in FAMILY_KIND})
        raise ValueError(f"Unknown task families {bad}; valid families: {list(FAMILIES)}")
    if len(kinds) != 1:
        raise ValueError(f"A population holds one model kind, got {sorted(kinds)}; use make_populations")
    (kind,) = kinds
    xs_tr, ys_tr, xs_va, ys_va, cmask, is_cls, hmask = [], [], [], [], [], [], []
    for spec in specs:
        if spec.family in TF_FINETUNE:
            x, y, _ = _tf_finetune_data(spec.family, spec.seed)
            x_src, c, n_val = None, VOCAB, N_VAL
        elif spec.family in FINETUNE:  # inputs are standardised as in pretraining: the features it taught
            x_src, _, x, y, c = _finetune_data(spec.family, spec.seed)
            n_val = N_VAL
        else:
            (x, y, c), x_src = _dataset(spec.family, spec.seed), None
            n_val = min(N_VAL, len(x) // 4)
        # disjoint train / validation splits, each repeated or cut to a fixed size so that runs stack
        x_va, y_va = np.resize(x[:n_val], (N_VAL, *x.shape[1:])), np.resize(y[:n_val], (N_VAL, *y.shape[1:]))
        x_tr, y_tr = np.resize(x[n_val:], (N_TRAIN, *x.shape[1:])), np.resize(y[n_val:], (N_TRAIN, *y.shape[1:]))
        if kind in ("mlp", "cnn", "vit"):
            mu, sd = _input_stats(x_tr if x_src is None else x_src)
            x_tr, x_va = (x_tr - mu) / sd, (x_va - mu) / sd
            if c == 0:  # standardise regression targets on the training split
                ym, ys = y_tr.mean(), y_tr.std() + 1e-8
                y_tr, y_va = (y_tr - ym) / ys, (y_va - ym) / ys
            pad = lambda a: np.pad(a, ((0, 0), (0, D_MAX - a.shape[1])))  # noqa: E731
            x_tr, x_va = pad(x_tr), pad(x_va)
        xs_tr.append(x_tr)
        xs_va.append(x_va)
        ys_tr.append(y_tr)
        ys_va.append(y_va)
        cmask.append(np.arange(C_MAX) < max(min(c, C_MAX), 1))
        is_cls.append(c > 0)
        hmask.append(np.arange(H_MAX) < width(kind, spec.hidden))
    f = lambda a: torch.tensor(np.stack(a), dtype=torch.float32)  # noqa: E731
    return Population(
        specs=list(specs),
        kind=kind,
        x_train=f(xs_tr),
        y_train=f(ys_tr),
        x_val=f(xs_va),
        y_val=f(ys_va),
        class_mask=torch.tensor(np.stack(cmask)),
        is_cls=torch.tensor(is_cls),
        hidden_mask=torch.tensor(np.stack(hmask)),
        adam=torch.tensor([s.optimizer != "sgd" for s in specs]),
        weight_decay=torch.tensor([WEIGHT_DECAY if s.optimizer == "adamw" else 0.0 for s in specs]),
        base_lr=torch.tensor([s.base_lr for s in specs], dtype=torch.float64),
        horizon=torch.tensor([s.horizon for s in specs], dtype=torch.float64),
        warmup=torch.tensor([s.warmup for s in specs], dtype=torch.float64),
    )


def make_populations(specs: list[TaskSpec]) -> list[tuple[list[int], Population]]:
    """Specs of several model kinds: one population per kind, with the positions of its specs in ``specs``."""
    by_kind: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        if spec.family not in FAMILY_KIND:
            raise ValueError(f"Unknown task family {spec.family!r}; valid families: {list(FAMILIES)}")
        by_kind.setdefault(FAMILY_KIND[spec.family], []).append(i)
    return [(idx, make_population([specs[i] for i in idx])) for idx in by_kind.values()]
