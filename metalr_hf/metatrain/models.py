"""Batched models of the task zoo: ``B`` independent networks whose weights are stacked along a leading
dimension, trained together by one batched computation (``torch.bmm`` / ``torch.einsum``).

Each kind provides ``init(pop)`` (the stacked weights, seeded by each run's spec), ``forward(params, x, pop)``,
``losses(out, y, pop)`` (the per-run mean loss, ``[B]``) and ``metric(out, y, pop)`` (accuracy, or minus the
RMSE). Widths differ between runs of one population by masking hidden units (``pop.hidden_mask``).

==========  =============================================================================================
kind        network
==========  =============================================================================================
mlp         two-layer ReLU MLP (16-64 hidden units), inputs zero-padded to 64 features
cnn         3×3 convolution (2-8 channels) + ReLU + 2×2 average pooling + linear, on 8×8 images
tf          one-block pre-LN transformer (causal self-attention, width 16, ReLU MLP of 8-32), next-token loss
rnn         GRU forecaster (state 8-32) over a 16-step window, linear head to the next 6 values
vit         one-block pre-LN vision transformer on 8×8 images: 16 patches of 2×2 pixels, width 16, full
            self-attention, ReLU MLP of 8-32, mean-pooled into a linear head
==========  =============================================================================================
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["C_MAX", "D_MAX", "H_MAX", "HORIZON", "L_IN", "MODELS", "SEQ_LEN", "VOCAB", "width"]

D_MAX = 64  # MLP inputs are zero-padded to this width (8×8 images for the CNN)
C_MAX = 10  # classes: logits of up to 10 classes (unused ones masked), or output 0 for regression
H_MAX = 64  # hidden units (masked per run; see `width`)
CH_MAX = 8  # CNN channels
SEQ_LEN, VOCAB, D_MODEL, FF_MAX = 12, 32, 16, 32  # transformer tasks: length, vocabulary, width, MLP width
PATCHES = 16  # the vision transformer's 2×2 patches of an 8×8 image
L_IN, HORIZON, GRU_MAX = 16, 6, 32  # forecasters: window, prediction length, GRU width


def width(kind: str, hidden: int) -> int:
    """The units a run of width class ``hidden`` (16, 32 or 64) uses in a model of ``kind`` (the rest are
    masked): the MLP's hidden layer, the CNN's channels, the transformer's MLP, the GRU's state."""
    return {"mlp": hidden, "cnn": max(2, hidden // 8), "tf": hidden // 2, "rnn": hidden // 2, "vit": hidden // 2}[kind]


def _gen(spec) -> torch.Generator:
    return torch.Generator().manual_seed(spec.seed)


def _stack(per_run: list[tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
    return [torch.stack([p[i] for p in per_run]).requires_grad_(True) for i in range(len(per_run[0]))]


def _classification_losses(logits, y, pop):
    """Cross-entropy over the used classes (``pop.class_mask``), or MSE on output 0 for regression runs."""
    logits = logits.masked_fill(~pop.class_mask[:, None], -1e9)
    ce = F.cross_entropy(logits.reshape(-1, C_MAX), y.clamp(min=0).long().reshape(-1) % C_MAX, reduction="none")
    mse = (logits[..., 0] - y) ** 2
    return torch.where(pop.is_cls[:, None], ce.reshape(y.shape), mse).mean(1)


def _classification_metric(logits, y, pop):
    logits = logits.masked_fill(~pop.class_mask[:, None], -1e9)
    acc = (logits.argmax(-1) == y.long()).float().mean(1)
    rmse = ((logits[..., 0] - y) ** 2).mean(1).sqrt()
    return torch.where(pop.is_cls, acc, -rmse)


class MLP:
    @staticmethod
    def init(pop):
        runs = []
        for spec in pop.specs:
            g = _gen(spec)
            w1 = torch.randn(D_MAX, H_MAX, generator=g) * (2.0 / D_MAX) ** 0.5
            w2 = torch.randn(H_MAX, C_MAX, generator=g) * (1.0 / spec.hidden) ** 0.5
            runs.append((w1, torch.zeros(H_MAX), w2, torch.zeros(C_MAX)))
        return _stack(runs)

    @staticmethod
    def forward(params, x, pop):
        w1, b1, w2, b2 = params
        h = torch.relu(torch.bmm(x, w1) + b1[:, None]) * pop.hidden_mask[:, None].float()
        return torch.bmm(h, w2) + b2[:, None]

    losses = staticmethod(_classification_losses)
    metric = staticmethod(_classification_metric)


class CNN:
    @staticmethod
    def init(pop):
        runs = []
        for spec in pop.specs:
            g = _gen(spec)
            ch = width("cnn", spec.hidden)
            w1 = torch.randn(9, CH_MAX, generator=g) * (2.0 / 9) ** 0.5
            w2 = torch.randn(16 * CH_MAX, C_MAX, generator=g) * (1.0 / (16 * ch)) ** 0.5
            runs.append((w1, torch.zeros(CH_MAX), w2, torch.zeros(C_MAX)))
        return _stack(runs)

    @staticmethod
    def forward(params, x, pop):
        w1, b1, w2, b2 = params
        B, n = x.shape[:2]
        img = F.pad(x.reshape(B, n, 8, 8), (1, 1, 1, 1))
        patches = torch.stack([img[..., i : i + 8, j : j + 8] for i in range(3) for j in range(3)], -1)
        h = torch.bmm(patches.view(B, n * 64, 9), w1).view(B, n, 64, CH_MAX) + b1[:, None, None]
        h = torch.relu(h) * pop.hidden_mask[:, None, None, :CH_MAX].float()
        h = h.view(B, n, 4, 2, 4, 2, CH_MAX).mean((3, 5)).reshape(B, n, 16 * CH_MAX)  # 2×2 average pooling
        return torch.bmm(h, w2) + b2[:, None]

    losses = staticmethod(_classification_losses)
    metric = staticmethod(_classification_metric)


def _layer_norm(h):
    return F.layer_norm(h, h.shape[-1:])


def _draw_runs(pop, draw) -> list[torch.Tensor]:
    """The stacked weights of every run of ``pop``: ``draw(r, spec)`` draws one run's with ``r(*shape, fan=...)``,
    normal draws over ``sqrt(fan)`` from the run's own generator."""
    runs = []
    for spec in pop.specs:
        g = _gen(spec)
        runs.append(draw(lambda *shape, fan, g=g: torch.randn(*shape, generator=g) / math.sqrt(fan), spec))
    return _stack(runs)


def _block_init(r, kind: str, hidden: int) -> tuple[torch.Tensor, ...]:
    """The weights of :func:`_block`, drawn by ``r(*shape, fan=...)`` (a run's generator) in a fixed order."""
    d = D_MODEL
    return (
        r(d, 3 * d, fan=d),  # q, k, v
        r(d, d, fan=d) * 0.5,  # attention output
        r(d, FF_MAX, fan=d),  # MLP in
        torch.zeros(FF_MAX),
        r(FF_MAX, d, fan=width(kind, hidden)) * 0.5,  # MLP out
    )


def _block(h, params, mask, causal: bool):
    """One pre-LN transformer block on ``h`` ``[B, n, L, D_MODEL]`` (MLP units masked by ``mask`` ``[B, FF_MAX]``)."""
    wqkv, wo, w1, b1, w2 = params
    B, n, L, _ = h.shape
    q, k, v = torch.bmm(_layer_norm(h).view(B, n * L, D_MODEL), wqkv).view(B, n, L, 3 * D_MODEL).chunk(3, -1)
    att = q @ k.transpose(-1, -2) / math.sqrt(D_MODEL)
    if causal:
        att = att.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    h = h + torch.bmm((att.softmax(-1) @ v).view(B, n * L, D_MODEL), wo).view(B, n, L, D_MODEL)
    f = torch.relu(torch.einsum("bnld,bdh->bnlh", _layer_norm(h), w1) + b1[:, None, None])
    return h + torch.einsum("bnlh,bhd->bnld", f * mask[:, None, None, :FF_MAX].float(), w2)


class Transformer:
    @staticmethod
    def init(pop):
        d = D_MODEL
        return _draw_runs(
            pop,
            lambda r, spec: (
                r(VOCAB, d, fan=1) * 0.5,  # token embedding
                r(SEQ_LEN, d, fan=1) * 0.5,  # positions
                *_block_init(r, "tf", spec.hidden),
                r(d, VOCAB, fan=d),  # unembedding
            ),
        )

    @staticmethod
    def forward(params, x, pop):
        emb, pos, *block, wout = params
        B, n, L = x.shape
        tok = F.one_hot(x.long(), VOCAB).float().view(B, n * L, VOCAB)
        h = torch.bmm(tok, emb).view(B, n, L, D_MODEL) + pos[:, None]
        h = _block(h, block, pop.hidden_mask, causal=True)
        return torch.einsum("bnld,bdv->bnlv", _layer_norm(h), wout)

    @staticmethod
    def losses(out, y, pop):
        """Next-token cross-entropy over the target positions (``y >= 0``), averaged per run."""
        B = out.shape[0]
        mask = y >= 0
        ce = F.cross_entropy(out.reshape(-1, VOCAB), y.clamp(min=0).long().reshape(-1), reduction="none")
        ce = ce.view(B, -1) * mask.view(B, -1)
        return ce.sum(1) / mask.view(B, -1).sum(1).clamp(min=1)

    @staticmethod
    def metric(out, y, pop):
        B = out.shape[0]
        mask = (y >= 0).view(B, -1)
        hit = (out.argmax(-1) == y.long()).view(B, -1) & mask
        return hit.sum(1).float() / mask.sum(1).clamp(min=1)


class ViT:
    """A vision transformer of one block on the 8×8 images of the CNN families (``PATCHES`` patches of 2×2)."""

    @staticmethod
    def init(pop):
        d = D_MODEL
        return _draw_runs(
            pop,
            lambda r, spec: (
                r(4, d, fan=4),  # patch embedding
                r(PATCHES, d, fan=1) * 0.5,  # positions
                *_block_init(r, "vit", spec.hidden),
                r(d, C_MAX, fan=d),  # head
                torch.zeros(C_MAX),
            ),
        )

    @staticmethod
    def forward(params, x, pop):
        patch, pos, *block, wout, bout = params
        B, n = x.shape[:2]
        img = x.reshape(B, n, 4, 2, 4, 2).permute(0, 1, 2, 4, 3, 5).reshape(B, n * PATCHES, 4)
        h = torch.bmm(img, patch).view(B, n, PATCHES, D_MODEL) + pos[:, None]
        h = _block(h, block, pop.hidden_mask, causal=False)
        return torch.bmm(_layer_norm(h.mean(2)), wout) + bout[:, None]

    losses = staticmethod(_classification_losses)
    metric = staticmethod(_classification_metric)


class GRUForecaster:
    @staticmethod
    def init(pop):
        runs = []
        for spec in pop.specs:
            g = _gen(spec)
            h = width("rnn", spec.hidden)
            runs.append(
                (
                    torch.randn(1, 3 * GRU_MAX, generator=g),
                    torch.randn(GRU_MAX, 3 * GRU_MAX, generator=g) / math.sqrt(h),
                    torch.zeros(3 * GRU_MAX),
                    torch.randn(GRU_MAX, HORIZON, generator=g) / math.sqrt(h),
                    torch.zeros(HORIZON),
                )
            )
        return _stack(runs)

    @staticmethod
    def forward(params, x, pop):
        wx, wh, b, wout, bout = params
        B, n, L = x.shape
        mask = pop.hidden_mask[:, None, :GRU_MAX].float()
        h = torch.zeros(B, n, GRU_MAX)
        for t in range(L):
            gx = x[:, :, t, None] * wx + b[:, None]  # [B, n, 3H]
            gh = torch.bmm(h, wh)
            rx, zx, nx = gx.split(GRU_MAX, -1)
            rh, zh, nh = gh.split(GRU_MAX, -1)
            r, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
            h = ((1 - z) * torch.tanh(nx + r * nh) + z * h) * mask
        return torch.bmm(h, wout) + bout[:, None]

    @staticmethod
    def losses(out, y, pop):
        return ((out - y) ** 2).mean((1, 2))

    @staticmethod
    def metric(out, y, pop):
        return -((out - y) ** 2).mean((1, 2)).sqrt()


MODELS = {"mlp": MLP, "cnn": CNN, "tf": Transformer, "rnn": GRUForecaster, "vit": ViT}
