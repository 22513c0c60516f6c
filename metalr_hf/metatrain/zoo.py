"""The task zoo: cheap training problems, sampled with random configurations and split by family.

A *population* is ``B`` independent training runs stacked along a leading batch dimension, so one batched
computation (``torch.bmm``) trains all of them: a population of two-layer MLPs, each with its own data set,
optimizer (Adam or SGD with momentum), base LR, horizon and warmup.

Families (``FAMILIES``): the meta-training families are synthetic; the held-out families are real data sets
bundled with scikit-learn, never seen in meta-training.

=================  =========  ==================================================================
family             split      problem
=================  =========  ==================================================================
teacher_cls        train      labels of a random teacher MLP on Gaussian inputs (2-10 classes)
blobs_cls          train      Gaussian clusters with random spread (2-10 classes)
teacher_reg        train      random teacher MLP + noise (regression, standardised targets)
friedman_reg       train      scikit-learn's Friedman #1 generator (regression)
digits             held-out   8×8 handwritten digits (64 features, 10 classes)
breast_cancer      held-out   Wisconsin breast cancer (30 features, 2 classes)
wine               held-out   wine cultivars (13 features, 3 classes)
diabetes           held-out   diabetes progression (10 features, regression)
=================  =========  ==================================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["FAMILIES", "HELD_OUT", "META_TRAIN", "Population", "TaskSpec", "make_population", "sample_specs"]

D_MAX = 64  # inputs are zero-padded to this width
C_MAX = 10  # outputs: logits of up to 10 classes (unused ones masked), or output 0 for regression
N_TRAIN, N_VAL = 384, 256

META_TRAIN = ("teacher_cls", "blobs_cls", "teacher_reg", "friedman_reg")
HELD_OUT = ("digits", "breast_cancer", "wine", "diabetes")
FAMILIES = META_TRAIN + HELD_OUT


@dataclass(frozen=True)
class TaskSpec:
    """One run: the problem, the model size, the optimizer and the schedule budget."""

    family: str
    seed: int
    hidden: int
    optimizer: str  # "adam" | "sgd"
    base_lr: float
    horizon: int
    warmup: int
    batch_size: int

    def to_dict(self) -> dict:
        return asdict(self)


def sample_specs(
    n: int,
    rng: np.random.Generator,
    families=META_TRAIN,
    horizon: tuple[int, int] = (100, 600),
    batch_size: int | None = None,
    base_lr: float | None = None,
    optimizer: str | None = None,
) -> list[TaskSpec]:
    """``n`` random runs; base LR log-uniform over 1e-5…1e-1 (Adam) or 1e-3…1 (SGD); warmup on or off."""
    bs = int(batch_size or rng.choice([32, 64, 128]))  # one batch size per population (it is batched)
    out = []
    for _ in range(n):
        opt = optimizer or str(rng.choice(["adam", "sgd"]))
        lo, hi = (1e-5, 1e-1) if opt == "adam" else (1e-3, 1.0)
        lr = base_lr if base_lr is not None else float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        T = int(rng.integers(horizon[0], horizon[1] + 1))
        out.append(
            TaskSpec(
                family=str(rng.choice(list(families))),
                seed=int(rng.integers(0, 2**31 - 1)),
                hidden=int(rng.choice([16, 32, 64])),
                optimizer=opt,
                base_lr=lr,
                horizon=T,
                warmup=int(rng.choice([0, max(1, T // 20)])),
                batch_size=bs,
            )
        )
    return out


# -- data ----------------------------------------------------------------------------------------------------
def _teacher(rng, n, d, out):
    x = rng.standard_normal((n, d))
    w1 = rng.standard_normal((d, 32)) / math.sqrt(d)
    w2 = rng.standard_normal((32, out)) / math.sqrt(32)
    return x, np.tanh(x @ w1 * 2) @ w2


def _dataset(family: str, seed: int):
    """``(x [n, d], y [n], num_classes or 0)`` for a family; real data sets are shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL
    if family == "teacher_cls":
        c, d = int(rng.integers(2, 11)), int(rng.integers(4, D_MAX + 1))
        x, logits = _teacher(rng, n, d, c)
        return x, logits.argmax(1), c
    if family == "blobs_cls":
        c, d = int(rng.integers(2, 11)), int(rng.integers(2, 33))
        centers = rng.standard_normal((c, d)) * rng.uniform(0.5, 2.0)
        y = rng.integers(0, c, n)
        return centers[y] + rng.standard_normal((n, d)), y, c
    if family == "teacher_reg":
        d = int(rng.integers(2, D_MAX + 1))
        x, t = _teacher(rng, n, d, 1)
        return x, t[:, 0] + rng.uniform(0.0, 0.5) * rng.standard_normal(n), 0
    if family == "friedman_reg":
        from sklearn.datasets import make_friedman1

        x, y = make_friedman1(n_samples=n, n_features=int(rng.integers(5, 20)), noise=1.0, random_state=seed)
        return x, y, 0
    from sklearn import datasets

    loader = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes,
    }.get(family)
    if loader is None:
        raise ValueError(f"Unknown task family {family!r}; valid families: {list(FAMILIES)}")
    x, y = loader(return_X_y=True)
    idx = rng.permutation(len(x))
    x, y = x[idx], y[idx]
    return x, y, 0 if family == "diabetes" else int(y.max()) + 1


@dataclass
class Population:
    """``B`` runs' data and configuration as batched tensors."""

    specs: list[TaskSpec]
    x_train: torch.Tensor  # [B, N_TRAIN, D_MAX]
    y_train: torch.Tensor  # [B, N_TRAIN] (class index, or target in column for regression)
    x_val: torch.Tensor
    y_val: torch.Tensor
    class_mask: torch.Tensor  # [B, C_MAX] True for a used class
    is_cls: torch.Tensor  # [B] bool
    hidden_mask: torch.Tensor  # [B, H_MAX]
    adam: torch.Tensor  # [B] bool
    base_lr: torch.Tensor  # [B]
    horizon: torch.Tensor  # [B]
    warmup: torch.Tensor  # [B]

    @property
    def size(self) -> int:
        return len(self.specs)


H_MAX = 64


def make_population(specs: list[TaskSpec]) -> Population:
    xs_tr, ys_tr, xs_va, ys_va, cmask, is_cls, hmask = [], [], [], [], [], [], []
    for spec in specs:
        x, y, c = _dataset(spec.family, spec.seed)
        # disjoint train / validation splits, each repeated or cut to a fixed size so that runs stack
        n_val = min(N_VAL, len(x) // 4)
        x_va, y_va = np.resize(x[:n_val], (N_VAL, x.shape[1])), np.resize(y[:n_val], N_VAL)
        x_tr, y_tr = np.resize(x[n_val:], (N_TRAIN, x.shape[1])), np.resize(y[n_val:], N_TRAIN)
        mu, sd = x_tr.mean(0), x_tr.std(0)
        sd = np.where(sd > 1e-6, sd, 1.0)  # features constant on the training split (digits' border pixels)
        x_tr, x_va = (x_tr - mu) / sd, (x_va - mu) / sd
        if c == 0:  # standardise regression targets on the training split
            ym, ys = y_tr.mean(), y_tr.std() + 1e-8
            y_tr, y_va = (y_tr - ym) / ys, (y_va - ym) / ys
        pad = lambda a: np.pad(a, ((0, 0), (0, D_MAX - a.shape[1])))  # noqa: E731
        xs_tr.append(pad(x_tr))
        xs_va.append(pad(x_va))
        ys_tr.append(y_tr)
        ys_va.append(y_va)
        cmask.append(np.arange(C_MAX) < max(c, 1))
        is_cls.append(c > 0)
        hmask.append(np.arange(H_MAX) < spec.hidden)
    f = lambda a: torch.tensor(np.stack(a), dtype=torch.float32)  # noqa: E731
    return Population(
        specs=list(specs),
        x_train=f(xs_tr),
        y_train=f(ys_tr),
        x_val=f(xs_va),
        y_val=f(ys_va),
        class_mask=torch.tensor(np.stack(cmask)),
        is_cls=torch.tensor(is_cls),
        hidden_mask=torch.tensor(np.stack(hmask)),
        adam=torch.tensor([s.optimizer == "adam" for s in specs]),
        base_lr=torch.tensor([s.base_lr for s in specs], dtype=torch.float64),
        horizon=torch.tensor([s.horizon for s in specs], dtype=torch.float64),
        warmup=torch.tensor([s.warmup for s in specs], dtype=torch.float64),
    )
