"""The task zoo: cheap training problems, sampled with random configurations and split by family.

A *population* is ``B`` independent training runs of one model kind (``models.py``) stacked along a leading
batch dimension, so one batched computation trains all of them, each with its own data set, width, optimizer
(Adam, AdamW or SGD with momentum), base LR, horizon and warmup.

Families (``FAMILIES``), split by family: the meta-training families are synthetic; the held-out families are
real data (scikit-learn's bundled sets, English text) or generators never seen in meta-training.

=================  =====  =========  ===========================================================================
family             kind   split      problem
=================  =====  =========  ===========================================================================
teacher_cls        mlp    train      labels of a random teacher MLP on Gaussian inputs (2-10 classes)
blobs_cls          mlp    train      Gaussian clusters with random spread (2-10 classes)
teacher_reg        mlp    train      random teacher MLP + noise (regression, standardised targets)
friedman_reg       mlp    train      scikit-learn's Friedman #1 generator (regression)
patterns_cnn       cnn    train      8×8 images: a random smooth template per class, shifted, plus noise
copy_tf            tf     train      copy a sequence of 3-5 tokens after a separator
sort_tf            tf     train      sort a sequence of 3-5 tokens after a separator
modadd_tf          tf     train      (a + b) mod p, p a prime from 7 to 23
series_rnn         rnn    train      next 6 values (from 16) of trend + one seasonality + AR(1) noise series
digits             mlp    held-out   8×8 handwritten digits (64 features, 10 classes)
breast_cancer      mlp    held-out   Wisconsin breast cancer (30 features, 2 classes)
wine               mlp    held-out   wine cultivars (13 features, 3 classes)
diabetes           mlp    held-out   diabetes progression (10 features, regression)
digits_cnn         cnn    held-out   the 8×8 handwritten digits as images
bytes_lm           tf     held-out   character-level language model on English text (the Python standard
                                     library's documentation strings, 29 symbols)
m4_rnn             rnn    held-out   M4-like series (multiplicative trend, seasonality, noise; forecasters.py)
finetune_cls       mlp    train (*)  fine-tuning: the hidden layer pretrained on 2048 inputs of a random teacher
                                     (regression onto 10 projections of its features), a new small head, then
                                     32-128 labelled examples of a new task on the same features (2-10 classes)
digits_finetune    mlp    held-out   fine-tuning: pretrained on the handwritten digits 0-4, then 32-128 examples
                                     of the digits 5-9 (5 classes)
grammar_finetune   tf     train (*)  fine-tuning a pretrained tiny transformer: a causal LM pretrained on text of a
                                     random probabilistic grammar, then 32-128 sequences of either a new
                                     classification (which of 2-4 variants of the grammar wrote a sequence; a new
                                     head) or continued LM on a shifted grammar (the pretrained head kept)
text_finetune      tf     held-out   the same on English: pretrained on the first two thirds of the text of
                                     ``bytes_lm``, then continued LM on the last third, or a new head telling plain,
                                     reversed and letter-shifted windows apart
grammar_lm         tf     train (†)  next-token prediction from scratch on text of a random probabilistic grammar
patterns_vit       vit    train (†)  the images of ``patterns_cnn``, classified by a tiny vision transformer
small_cls          mlp    train (†)  ``teacher_cls`` on 120-390 examples with up to 30 % of the labels redrawn at
                                     random: a long run overfits (as the small held-out sets do)
small_reg          mlp    train (†)  ``teacher_reg`` on as few examples, noise of 0.2-1 times the target's spread
=================  =====  =========  ===========================================================================

(*) The fine-tuning families (``FINETUNE``) are not in ``META_TRAIN`` / ``HELD_OUT``, whose runs start from a random
initialisation (the default presets and the held-out table use those); ``META_TRAIN_FINETUNE`` and
``HELD_OUT_FINETUNE`` name them. They test a learner that boosts every small LR (as one repairing LRs 100× too
small must): in ``finetune_cls`` a 10× larger LR than the right one overfits the few examples and loses the
pretrained features (Adam, cosine: 1e-3 beats 1e-2); ``digits_finetune`` is easier and tolerates larger LRs. The
pretraining is part of the initialisation (:func:`pretrained_init`), the same for every schedule of a run.

(†) Meta-training families outside ``META_TRAIN`` (``META_TRAIN_LM``, ``META_TRAIN_VIT``, ``META_TRAIN_OVERFIT``):
the shipped presets sample ``META_TRAIN`` and so still reproduce their learners; presets that want them name them.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .models import C_MAX, D_MAX, H_MAX, HORIZON, L_IN, SEQ_LEN, VOCAB, width

__all__ = [
    "FAMILIES",
    "FAMILY_KIND",
    "FINETUNE",
    "HELD_OUT",
    "HELD_OUT_FINETUNE",
    "META_TRAIN",
    "META_TRAIN_FINETUNE",
    "META_TRAIN_LM",
    "META_TRAIN_OVERFIT",
    "META_TRAIN_VIT",
    "OPTIMIZERS",
    "Population",
    "TaskSpec",
    "make_population",
    "make_populations",
    "pretrained_init",
    "pretrained_transformer",
    "sample_specs",
    "tf_finetune_weights",
]

N_TRAIN, N_VAL = 384, 256

FAMILY_KIND = {
    "teacher_cls": "mlp",
    "blobs_cls": "mlp",
    "teacher_reg": "mlp",
    "friedman_reg": "mlp",
    "patterns_cnn": "cnn",
    "copy_tf": "tf",
    "sort_tf": "tf",
    "modadd_tf": "tf",
    "series_rnn": "rnn",
    "grammar_lm": "tf",
    "digits": "mlp",
    "breast_cancer": "mlp",
    "wine": "mlp",
    "diabetes": "mlp",
    "digits_cnn": "cnn",
    "bytes_lm": "tf",
    "m4_rnn": "rnn",
    "finetune_cls": "mlp",
    "digits_finetune": "mlp",
    "grammar_finetune": "tf",
    "text_finetune": "tf",
    "patterns_vit": "vit",
    "small_cls": "mlp",
    "small_reg": "mlp",
}
META_TRAIN = ("teacher_cls", "blobs_cls", "teacher_reg", "friedman_reg", "patterns_cnn", "copy_tf", "sort_tf",
              "modadd_tf", "series_rnn")  # fmt: skip
HELD_OUT = ("digits", "breast_cancer", "wine", "diabetes", "digits_cnn", "bytes_lm", "m4_rnn")
META_TRAIN_FINETUNE, HELD_OUT_FINETUNE = ("finetune_cls", "grammar_finetune"), ("digits_finetune", "text_finetune")
TF_FINETUNE = ("grammar_finetune", "text_finetune")  # pretrained tiny transformers
FINETUNE = META_TRAIN_FINETUNE + HELD_OUT_FINETUNE
# Language modelling from scratch on text of a random probabilistic grammar (a meta-training family outside
# META_TRAIN, so that the shipped presets, which sample META_TRAIN, reproduce their learners).
META_TRAIN_LM = ("grammar_lm",)
# Image transformers from scratch (outside META_TRAIN for the same reason).
META_TRAIN_VIT = ("patterns_vit",)
# Small, noisy data sets that a long run overfits (outside META_TRAIN for the same reason).
META_TRAIN_OVERFIT = ("small_cls", "small_reg")
FAMILIES = META_TRAIN + HELD_OUT + FINETUNE + META_TRAIN_LM + META_TRAIN_VIT + META_TRAIN_OVERFIT
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_RANGES = {"adam": (1e-5, 1e-1), "sgd": (1e-3, 1.0)}  # log-uniform base LRs (Adam-family, SGD)
WEIGHT_DECAY = 0.01  # AdamW's decoupled weight decay


@dataclass(frozen=True)
class TaskSpec:
    """One run: the problem, the model size, the optimizer and the schedule budget."""

    family: str
    seed: int
    hidden: int
    optimizer: str  # "adam" | "adamw" | "sgd"
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
    optimizers: tuple[str, ...] = OPTIMIZERS,
    lr_ranges: dict | None = None,
) -> list[TaskSpec]:
    """``n`` random runs of one model kind (drawn uniformly among the kinds of ``families``, so that they batch);
    base LR log-uniform over 1e-5…1e-1 (Adam, AdamW) or 1e-3…1 (SGD); warmup on or off."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"Unknown task families {unknown}; valid families: {list(FAMILIES)}")
    bs = int(batch_size or rng.choice([32, 64, 128]))  # one batch size per population (it is batched)
    kinds = sorted({FAMILY_KIND[f] for f in families})
    kind = kinds[int(rng.integers(len(kinds)))] if len(kinds) > 1 else kinds[0]
    families = [f for f in families if FAMILY_KIND[f] == kind]
    out = []
    for _ in range(n):
        opt = optimizer or str(rng.choice(list(optimizers)))
        lo, hi = (lr_ranges or LR_RANGES)["sgd" if opt == "sgd" else "adam"]
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


_TEXT_MODULES = ("collections", "json", "argparse", "logging", "textwrap", "functools", "itertools", "pathlib",
                 "typing", "dataclasses", "subprocess", "threading", "inspect", "email", "unittest")  # fmt: skip
_ALPHABET = "abcdefghijklmnopqrstuvwxyz .,"  # 29 symbols; other characters become the space


def english_text() -> str:
    """English prose available offline: the documentation strings of a fixed set of standard-library modules and
    their public members, lower-cased and mapped to ``_ALPHABET``."""
    import importlib
    import inspect

    chunks = []
    for name in _TEXT_MODULES:
        mod = importlib.import_module(name)
        chunks.append(inspect.getdoc(mod) or "")
        for attr in sorted(dir(mod)):
            obj = getattr(mod, attr, None)
            if not attr.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)):
                chunks.append(inspect.getdoc(obj) or "")
    text = " ".join(" ".join(c.split()) for c in chunks).lower()
    return "".join(ch if ch in _ALPHABET else " " for ch in text)


_TEXT_CACHE: dict[str, np.ndarray] = {}


def _sequence_task(family: str, rng: np.random.Generator, n: int):
    """Token sequences ``x [n, L]`` and next-token targets ``y [n, L]`` (-1 where no loss is taken); token 0 is
    padding, 1 the separator, 2… the symbols."""
    L = SEQ_LEN
    x, y = np.zeros((n, L)), np.full((n, L), -1.0)
    if family == "grammar_lm":
        seqs = _sample_grammar(*_grammar(int(rng.integers(0, 2**31 - 1))), n, L + 1, rng)
        return seqs[:, :L].astype(float), seqs[:, 1:].astype(float)
    if family == "bytes_lm":
        codes = _text_codes()
        starts = rng.integers(0, len(codes) - L - 1, n)
        windows = np.stack([codes[i : i + L + 1] for i in starts])
        return windows[:, :L].astype(float), windows[:, 1:].astype(float)
    if family == "modadd_tf":
        p = int(rng.choice([7, 11, 13, 17, 19, 23]))
        a, b = rng.integers(0, p, n), rng.integers(0, p, n)
        x[:, 0], x[:, 1], x[:, 2] = a + 2, b + 2, 1
        y[:, 2] = (a + b) % p + 2
        return x, y
    k = int(rng.integers(3, 6))  # copy / sort k tokens
    symbols = int(rng.integers(6, VOCAB - 1))
    src = rng.integers(2, symbols + 1, (n, k))
    tgt = np.sort(src, axis=1) if family == "sort_tf" else src
    seq = np.concatenate([src, np.ones((n, 1)), tgt], axis=1)  # length 2k + 1 <= L
    x[:, : 2 * k] = seq[:, :-1]
    y[:, k : 2 * k] = seq[:, k + 1 :]  # predict the target tokens, from the separator on
    return x, y


def _series(family: str, rng: np.random.Generator, n: int):
    """Windows ``x [n, 24]`` and the next 6 values ``y [n, 6]``, both divided by the window's mean |x| (mean
    scaling, as in Hugging Face's time-series models)."""
    length = L_IN + HORIZON
    if family == "m4_rnn":
        from .forecasters import m4_like_series

        series = m4_like_series(n, length, rng)
    else:
        t = np.arange(length)
        period = rng.integers(3, 25, (n, 1))
        phi = rng.uniform(0.0, 0.9, (n, 1))
        noise = rng.normal(0, rng.uniform(0.02, 0.3), (n, length))
        for i in range(1, length):  # AR(1) noise
            noise[:, i] += phi[:, 0] * noise[:, i - 1]
        season = rng.uniform(0, 1, (n, 1)) * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3, (n, 1)))
        series = 2.0 + rng.normal(0, 0.03, (n, 1)) * t + season + noise
    scale = np.abs(series[:, :L_IN]).mean(1, keepdims=True) + 1e-6
    series = series / scale
    return series[:, :L_IN], series[:, L_IN:]


def _patterns(rng: np.random.Generator, n: int):
    """``n`` 8×8 images of 2-10 classes: a smooth random template per class, shifted by up to one pixel, noisy."""
    c = int(rng.integers(2, 11))
    templates = rng.standard_normal((c, 10, 10))
    templates = (templates + np.roll(templates, 1, 1) + np.roll(templates, 1, 2)) / 3  # smooth
    y = rng.integers(0, c, n)
    dx, dy = rng.integers(0, 3, n), rng.integers(0, 3, n)
    x = np.stack([templates[y[i], dx[i] : dx[i] + 8, dy[i] : dy[i] + 8] for i in range(n)])
    x = x + rng.uniform(0.3, 1.5) * rng.standard_normal(x.shape)
    return x.reshape(n, 64), y, c


PRETRAIN_STEPS, PRETRAIN_LR, PRETRAIN_BATCH, N_SOURCE = 300, 1e-2, 256, 2048
FT_SIZES = (32, 64, 128)  # labelled examples of a fine-tuning run


def _finetune_data(family: str, seed: int):
    """A fine-tuning family's ``(source x, source targets [n, C_MAX], target x, target y, classes)``: the source
    trains the hidden layer (regression, :func:`pretrained_init`); the target's first ``N_VAL`` rows validate and
    the next ``FT_SIZES``-many train."""
    rng = np.random.default_rng(seed)
    n_ft = int(rng.choice(FT_SIZES))
    if family == "finetune_cls":
        d, c = int(rng.integers(8, D_MAX + 1)), int(rng.integers(2, 11))
        w1 = rng.standard_normal((d, 32)) / math.sqrt(d)
        w_src = rng.standard_normal((32, C_MAX))
        w_tgt = w_src @ rng.standard_normal((C_MAX, c))  # the new task reads the features the source taught
        x_src, x_tgt = rng.standard_normal((N_SOURCE, d)), rng.standard_normal((N_VAL + n_ft, d))
        z_src = np.tanh(2 * x_src @ w1) @ w_src
        y_tgt = (np.tanh(2 * x_tgt @ w1) @ w_tgt).argmax(1)
    elif family == "digits_finetune":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        idx = rng.permutation(len(x))
        x, y = x[idx], y[idx]
        c = 5
        x_src, z_src = x[y < c], np.eye(C_MAX)[y[y < c]]
        x_tgt, y_tgt = x[y >= c][: N_VAL + n_ft], y[y >= c][: N_VAL + n_ft] - c
    else:
        raise ValueError(f"{family!r} is not a fine-tuning family; they are {list(FINETUNE)}")
    z_src = (z_src - z_src.mean(0)) / (z_src.std(0) + 1e-6)
    return x_src, z_src, x_tgt, y_tgt, c


def _dataset(family: str, seed: int):
    """``(x [n, ...], y [n, ...], num_classes or 0)`` for a family; real data sets are shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL
    kind = FAMILY_KIND.get(family)
    if kind == "tf":
        x, y = _sequence_task(family, rng, n)
        return x, y, VOCAB
    if kind == "rnn":
        x, y = _series(family, rng, n)
        return x, y, 0
    if family in ("patterns_cnn", "patterns_vit"):
        return _patterns(rng, n)
    if family == "teacher_cls":
        c, d = int(rng.integers(2, 11)), int(rng.integers(4, D_MAX + 1))
        x, logits = _teacher(rng, n, d, c)
        return x, logits.argmax(1), c
    if family == "blobs_cls":
        c, d = int(rng.integers(2, 11)), int(rng.integers(2, 33))
        centers = rng.standard_normal((c, d)) * rng.uniform(0.5, 2.0)
        y = rng.integers(0, c, n)
        return centers[y] + rng.standard_normal((n, d)), y, c
    if family in META_TRAIN_OVERFIT:  # 120-390 distinct examples (a quarter more validate), noisy targets
        n, d = int(rng.integers(160, 521)), int(rng.integers(4, D_MAX + 1))
        if family == "small_cls":
            c = int(rng.integers(2, 11))
            x, logits = _teacher(rng, n, d, c)
            y = logits.argmax(1)
            flip = rng.random(n) < rng.uniform(0.0, 0.3)
            return x, np.where(flip, rng.integers(0, c, n), y), c
        x, t = _teacher(rng, n, d, 1)
        return x, t[:, 0] + rng.uniform(0.2, 1.0) * t.std() * rng.standard_normal(n), 0
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
        "digits_cnn": datasets.load_digits,
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


def _input_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation for standardising inputs; a feature constant over ``x`` (digits'
    border pixels) gets deviation 1."""
    sd = x.std(0)
    return x.mean(0), np.where(sd > 1e-6, sd, 1.0)


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


def _adam_cosine(params: list[torch.Tensor], lr: float, steps: int, losses_at) -> None:
    """Pretrain the stacked ``params`` in place: ``steps`` of Adam, cosine from ``lr`` to 0, on the sum of the
    per-run losses ``losses_at(t)`` (each run's gradient is its own)."""
    opt = torch.optim.Adam(params, lr=lr)
    for t in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t / steps))
        with torch.enable_grad():
            loss = losses_at(t).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


# -- pretrained tiny transformers (TF_FINETUNE) ----------------------------------------------------------------
TF_BASES = 4  # pretrained models per family and width; a run fine-tunes base `seed % TF_BASES`
TF_PRETRAIN_STEPS, TF_PRETRAIN_LR, TF_PRETRAIN_BATCH = 400, 3e-3, 64
_GRAMMAR_STATES, _GRAMMAR_SYMBOLS = 8, 20  # latent states; symbols are the tokens 2 … 21
_TF_CACHE_VERSION = 1  # bump when the pretraining changes: cached files of another version are not read


def _grammar(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random probabilistic grammar (a hidden-Markov source): sparse ``[S, S]`` transitions between latent
    states and sparse ``[S, V]`` emissions, from ``seed``."""
    rng = np.random.default_rng(seed)
    trans = rng.dirichlet(np.full(_GRAMMAR_STATES, 0.2), _GRAMMAR_STATES)
    emit = rng.dirichlet(np.full(_GRAMMAR_SYMBOLS, 0.1), _GRAMMAR_STATES)
    return trans, emit


def _sample_grammar(trans, emit, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, length]`` tokens (2 … 21) of the grammar ``(trans, emit)``."""
    states = rng.integers(0, len(trans), n)
    out = np.empty((n, length), dtype=np.int64)
    ctrans, cemit = trans.cumsum(1), emit.cumsum(1)
    for t in range(length):
        out[:, t] = (cemit[states] < rng.random((n, 1))).sum(1).clip(max=emit.shape[1] - 1) + 2
        states = (ctrans[states] < rng.random((n, 1))).sum(1).clip(max=len(trans) - 1)
    return out


def _text_codes() -> np.ndarray:
    if "text" not in _TEXT_CACHE:
        _TEXT_CACHE["text"] = np.array([_ALPHABET.index(ch) + 2 for ch in english_text()], dtype=np.int64)
    return _TEXT_CACHE["text"]


def _text_windows(codes: np.ndarray, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    starts = rng.integers(0, len(codes) - length, n)
    return np.stack([codes[i : i + length] for i in starts])


def _base_seed(family: str, base: int) -> int:
    return 1_000_003 * (TF_FINETUNE.index(family) + 1) + base


def _pretraining_text(family: str, base: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, SEQ_LEN + 1]`` token windows of a base's pretraining text."""
    if family == "grammar_finetune":
        return _sample_grammar(*_grammar(_base_seed(family, base)), n, SEQ_LEN + 1, rng)
    codes = _text_codes()
    return _text_windows(codes[: 2 * len(codes) // 3], n, SEQ_LEN + 1, rng)


def _tf_task(spec_seed: int) -> tuple[int, str]:
    """The base a transformer fine-tuning run starts from and its task (``"cls"``: a new head; ``"lm"``)."""
    return spec_seed % TF_BASES, ("cls", "lm")[(spec_seed // TF_BASES) % 2]


def _tf_finetune_data(family: str, seed: int):
    """``(x [n, L], y [n, L], n_train)`` of a transformer fine-tuning run: ``N_VAL`` validation sequences, then
    ``FT_SIZES``-many training ones. Classification puts the class token (2 …) as the target of the last position
    (a separator); continued LM takes the next-token loss everywhere."""
    base, task = _tf_task(seed)
    rng = np.random.default_rng(seed)
    n_ft = int(rng.choice(FT_SIZES))
    n, L = N_VAL + n_ft, SEQ_LEN
    if task == "lm":
        if family == "grammar_finetune":
            trans, emit = _grammar(_base_seed(family, base))
            new = rng.dirichlet(np.full(_GRAMMAR_STATES, 0.2), _GRAMMAR_STATES)
            seqs = _sample_grammar(0.5 * trans + 0.5 * new, emit, n, L + 1, rng)
        else:
            codes = _text_codes()
            seqs = _text_windows(codes[2 * len(codes) // 3 :], n, L + 1, rng)
        return seqs[:, :L].astype(float), seqs[:, 1:].astype(float), n_ft
    c = int(rng.integers(2, 5)) if family == "grammar_finetune" else int(rng.integers(2, 4))
    labels = rng.integers(0, c, n)
    body = np.empty((n, L - 1), dtype=np.int64)
    if family == "grammar_finetune":
        trans, emit = _grammar(_base_seed(family, base))
        for k in range(c):  # each class: the grammar with its transitions half replaced
            mixed = 0.5 * trans + 0.5 * rng.dirichlet(np.full(_GRAMMAR_STATES, 0.2), _GRAMMAR_STATES)
            rows = labels == k
            body[rows] = _sample_grammar(mixed, emit, int(rows.sum()), L - 1, rng)
    else:  # plain, reversed, or every letter shifted by one
        codes = _text_codes()
        body = _text_windows(codes[2 * len(codes) // 3 :], n, L - 1, rng)
        body[labels == 1] = body[labels == 1][:, ::-1]
        shift = labels == 2
        body[shift] = np.where(body[shift] < 28, (body[shift] - 2 + 1) % 26 + 2, body[shift])
    x = np.concatenate([body, np.ones((n, 1), dtype=np.int64)], 1).astype(float)
    y = np.full((n, L), -1.0)
    y[:, -1] = labels + 2
    return x, y, n_ft


def _tf_cache_dir() -> Path:
    return Path(os.environ.get("METALR_HF_CACHE") or Path.home() / ".cache" / "metalr-hf") / "zoo-transformers"


_TF_PRETRAINED: dict[tuple, list[torch.Tensor]] = {}


def pretrained_transformer(family: str, base: int, hidden: int) -> list[torch.Tensor]:
    """The weights of base ``base`` of a transformer fine-tuning family at width class ``hidden``, after
    ``TF_PRETRAIN_STEPS`` of Adam (cosine from ``TF_PRETRAIN_LR``) on next-token prediction of its pretraining text.
    Deterministic from the family, base and width; kept in memory and in a safetensors file of the cache folder
    (written atomically; a damaged file is named and pretrained again)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from .._files import atomic_write
    from .models import Transformer

    if family not in TF_FINETUNE:
        raise ValueError(f"{family!r} is not a transformer fine-tuning family; they are {list(TF_FINETUNE)}")
    key = (family, base, hidden)
    if key in _TF_PRETRAINED:
        return _TF_PRETRAINED[key]
    path = _tf_cache_dir() / f"{family}-base{base}-h{hidden}-v{_TF_CACHE_VERSION}.safetensors"
    weights = None
    if path.is_file():
        try:
            loaded = load_file(str(path))
            weights = [loaded[f"p{i}"] for i in range(len(loaded))]
        except (SafetensorError, OSError, KeyError, RuntimeError) as e:
            warnings.warn(
                f"metalr-hf: damaged cached pretrained transformer {path} ({e}); pretraining it again", stacklevel=2
            )
    if weights is None:
        spec = TaskSpec(family, _base_seed(family, base), hidden, "adam", TF_PRETRAIN_LR, TF_PRETRAIN_STEPS, 0,
                        TF_PRETRAIN_BATCH)  # fmt: skip
        mask = torch.from_numpy(np.arange(H_MAX) < width("tf", hidden))[None]
        view = type("Runs", (), {"specs": [spec], "hidden_mask": mask})
        params = Transformer.init(view)
        rng = np.random.default_rng(spec.seed)
        data = torch.tensor(_pretraining_text(family, base, TF_PRETRAIN_STEPS * TF_PRETRAIN_BATCH, rng))
        data = data.view(TF_PRETRAIN_STEPS, 1, TF_PRETRAIN_BATCH, SEQ_LEN + 1).float()

        def next_token_losses(t):
            return Transformer.losses(Transformer.forward(params, data[t, :, :, :-1], view), data[t, :, :, 1:], view)

        _adam_cosine(params, TF_PRETRAIN_LR, TF_PRETRAIN_STEPS, next_token_losses)
        weights = [p.detach()[0].clone() for p in params]
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"p{i}": w.contiguous() for i, w in enumerate(weights)}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"family": family, "base": str(base)}))
    _TF_PRETRAINED[key] = weights
    return weights


_PRETRAINED: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # (family, seed, hidden) -> hidden layer


def _pretrain(specs: list[TaskSpec]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The hidden layer ``(w1, b1)`` of each fine-tuning spec after pretraining: from the spec's random
    initialisation, ``PRETRAIN_STEPS`` of Adam (cosine from ``PRETRAIN_LR``, batches of ``PRETRAIN_BATCH``) on the
    mean squared error to the source targets (all ``C_MAX`` outputs). Batched; each run's result depends only on
    its own spec (its seed draws its data, initial weights and batches), and is cached."""
    from .models import MLP

    todo = list(dict.fromkeys(s for s in specs if (s.family, s.seed, s.hidden) not in _PRETRAINED))
    if todo:
        xs, zs, hmask = [], [], []
        for spec in todo:
            x_src, z_src, *_ = _finetune_data(spec.family, spec.seed)
            mu, sd = _input_stats(x_src)
            x_src = (x_src - mu) / sd
            xs.append(np.pad(np.resize(x_src, (N_SOURCE, x_src.shape[1])), ((0, 0), (0, D_MAX - x_src.shape[1]))))
            zs.append(np.resize(z_src, (N_SOURCE, C_MAX)))
            hmask.append(np.arange(H_MAX) < width("mlp", spec.hidden))
        x, z = torch.tensor(np.stack(xs), dtype=torch.float32), torch.tensor(np.stack(zs), dtype=torch.float32)
        view = type("Runs", (), {"specs": todo, "hidden_mask": torch.tensor(np.stack(hmask))})()
        params = MLP.init(view)
        gens = [torch.Generator().manual_seed(s.seed) for s in todo]
        idx = torch.stack([torch.randint(0, N_SOURCE, (PRETRAIN_STEPS, PRETRAIN_BATCH), generator=g) for g in gens], 1)
        ar = torch.arange(len(todo))[:, None]
        _adam_cosine(
            params, PRETRAIN_LR, PRETRAIN_STEPS,
            lambda t: ((MLP.forward(params, x[ar, idx[t]], view) - z[ar, idx[t]]) ** 2).mean((1, 2)),
        )  # fmt: skip
        for i, spec in enumerate(todo):
            _PRETRAINED[(spec.family, spec.seed, spec.hidden)] = (params[0][i].detach(), params[1][i].detach())
    out = [_PRETRAINED[(s.family, s.seed, s.hidden)] for s in specs]
    while len(_PRETRAINED) > 1024:  # a bounded cache (evaluation reuses runs across schedules and LRs)
        del _PRETRAINED[next(iter(_PRETRAINED))]
    return out


def _new_head(shape, seed: int) -> torch.Tensor:
    """A fine-tuning run's new head, drawn with standard deviation 0.02 (as Hugging Face's ``initializer_range``
    draws a classifier head) from the run's ``seed``."""
    return 0.02 * torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))


def tf_finetune_weights(family: str, seed: int, hidden: int) -> list[torch.Tensor]:
    """The weights a transformer fine-tuning run of ``family`` starts from: its pretrained base, with a new head
    for a classification run (:func:`_tf_task`)."""
    base, task = _tf_task(seed)
    weights = list(pretrained_transformer(family, base, hidden))
    if task == "cls":
        weights[-1] = _new_head(weights[-1].shape, seed)
    return weights


@torch.no_grad()
def pretrained_init(pop: Population, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fine-tuning runs of ``pop`` start from their pretrained hidden layer and a new head drawn with standard
    deviation 0.02 (as Hugging Face's ``initializer_range`` draws a classifier head); transformer fine-tuning runs
    from their pretrained base (with a new head for a classification); other runs are unchanged."""
    if pop.kind == "tf":
        for b, spec in enumerate(pop.specs):
            if spec.family in TF_FINETUNE:
                for p, w in zip(params, tf_finetune_weights(spec.family, spec.seed, spec.hidden)):
                    p[b] = w
        return params
    rows = [b for b, s in enumerate(pop.specs) if s.family in FINETUNE]
    if rows:
        for b, (w1, b1) in zip(rows, _pretrain([pop.specs[b] for b in rows])):
            params[0][b], params[1][b] = w1, b1
            params[2][b], params[3][b] = _new_head(params[2].shape[1:], pop.specs[b].seed), 0.0
    return params


def make_populations(specs: list[TaskSpec]) -> list[tuple[list[int], Population]]:
    """Specs of several model kinds: one population per kind, with the positions of its specs in ``specs``."""
    by_kind: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        if spec.family not in FAMILY_KIND:
            raise ValueError(f"Unknown task family {spec.family!r}; valid families: {list(FAMILIES)}")
        by_kind.setdefault(FAMILY_KIND[spec.family], []).append(i)
    return [(idx, make_population([specs[i] for i in idx])) for idx in by_kind.values()]
