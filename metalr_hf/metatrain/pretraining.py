"""The pretrained starting points of the fine-tuning families: a hidden layer pretrained on a source task
(``finetune_cls``, ``digits_finetune``) and tiny transformers pretrained as causal LMs (``grammar_finetune``,
``text_finetune``; cached on disk). :func:`pretrained_init` puts them into a population's initial weights."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from .cache import cache_dir
from .families import FINETUNE, N_VAL, TF_FINETUNE, TaskSpec
from .models import C_MAX, D_MAX, H_MAX, SEQ_LEN, width
from .task_data import (
    _GRAMMAR_STATES,
    FT_SIZES,
    N_SOURCE,
    PRETRAIN_BATCH,
    PRETRAIN_LR,
    PRETRAIN_STEPS,
    _finetune_data,
    _grammar,
    _input_stats,
    _sample_grammar,
    _text_codes,
    _text_windows,
)

if TYPE_CHECKING:
    from .zoo import Population


__all__ = ["TF_BASES", "pretrained_init", "pretrained_transformer", "tf_finetune_weights"]


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
_TF_CACHE_VERSION = 1  # bump when the pretraining changes: cached files of another version are not read


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
    path = cache_dir("zoo-transformers") / f"{family}-base{base}-h{hidden}-v{_TF_CACHE_VERSION}.safetensors"
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
