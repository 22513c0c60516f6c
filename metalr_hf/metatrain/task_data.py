"""The zoo's data: each family's training problem, generated or loaded offline (``families.py`` lists them)."""

from __future__ import annotations

import math

import numpy as np

from .families import FAMILIES, FAMILY_KIND, FINETUNE, META_TRAIN_OVERFIT, N_TRAIN, N_VAL
from .models import C_MAX, D_MAX, HORIZON, L_IN, SEQ_LEN, VOCAB

__all__ = ["english_text"]


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
    if family in ("finetune_cls", "noisy_finetune"):
        d, c = int(rng.integers(8, D_MAX + 1)), int(rng.integers(2, 11))
        w1 = rng.standard_normal((d, 32)) / math.sqrt(d)
        w_src = rng.standard_normal((32, C_MAX))
        w_tgt = w_src @ rng.standard_normal((C_MAX, c))  # the new task reads the features the source taught
        x_src, x_tgt = rng.standard_normal((N_SOURCE, d)), rng.standard_normal((N_VAL + n_ft, d))
        z_src = np.tanh(2 * x_src @ w1) @ w_src
        y_tgt = (np.tanh(2 * x_tgt @ w1) @ w_tgt).argmax(1)
        if family == "noisy_finetune":  # 10-30 % of the training labels redrawn; the validation rows stay clean
            flip = (np.arange(len(y_tgt)) >= N_VAL) & (rng.random(len(y_tgt)) < rng.uniform(0.1, 0.3))
            y_tgt = np.where(flip, rng.integers(0, c, len(y_tgt)), y_tgt)
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


_GRAMMAR_STATES, _GRAMMAR_SYMBOLS = 8, 20  # latent states; symbols are the tokens 2 … 21


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
