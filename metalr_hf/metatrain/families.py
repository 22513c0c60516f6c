"""The task zoo's families: what each run trains, how runs are sampled, and which are held out.

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
noisy_finetune     mlp    train (*)  ``finetune_cls`` with 10-30 % of the training labels redrawn at random (the
                                     validation labels clean): a long run or a high LR fits the noise
grammar_lm         tf     train (†)  next-token prediction from scratch on text of a random probabilistic grammar
patterns_vit       vit    train (†)  the images of ``patterns_cnn``, classified by a tiny vision transformer
small_cls          mlp    train (†)  ``teacher_cls`` on 120-390 examples with up to 30 % of the labels redrawn at
                                     random: a long run overfits (as the small held-out sets do)
small_reg          mlp    train (†)  ``teacher_reg`` on as few examples, noise of 0.2-1 times the target's spread
=================  =====  =========  ===========================================================================

(*) The fine-tuning families (``FINETUNE``) are not in ``META_TRAIN`` / ``HELD_OUT``, whose runs start from a random
initialisation (the default presets and the held-out table use those); ``META_TRAIN_FINETUNE`` and
``HELD_OUT_FINETUNE`` name them (``DECLARED_FINETUNE``, the declared table's fine-tuning families, both);
``noisy_finetune`` (``META_TRAIN_FINETUNE_NOISY``) is in neither, so that presets naming those reproduce. They
test a learner that boosts every small LR (as one repairing LRs 100× too small must): in ``finetune_cls`` a 10×
larger LR than the right one overfits the few examples and loses the pretrained features (Adam, cosine: 1e-3 beats
1e-2); ``digits_finetune`` is easier and tolerates larger LRs. The pretraining is part of the initialisation
(:func:`pretrained_init`), the same for every schedule of a run.

(†) Meta-training families outside ``META_TRAIN`` (``META_TRAIN_LM``, ``META_TRAIN_VIT``, ``META_TRAIN_OVERFIT``):
the shipped presets sample ``META_TRAIN`` and so still reproduce their learners; presets that want them name them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "DECLARED_FINETUNE",
    "FAMILIES",
    "FAMILY_KIND",
    "FINETUNE",
    "HELD_OUT",
    "HELD_OUT_FINETUNE",
    "META_TRAIN",
    "META_TRAIN_FINETUNE",
    "META_TRAIN_FINETUNE_NOISY",
    "META_TRAIN_LM",
    "META_TRAIN_OVERFIT",
    "META_TRAIN_VIT",
    "OPTIMIZERS",
    "TaskSpec",
    "sample_specs",
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
    "noisy_finetune": "mlp",
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
META_TRAIN_FINETUNE_NOISY = ("noisy_finetune",)  # fine-tuning on noisy labels, which a boosted run overfits
DECLARED_FINETUNE = META_TRAIN_FINETUNE + HELD_OUT_FINETUNE  # the declared table's fine-tuning families
FINETUNE = DECLARED_FINETUNE + META_TRAIN_FINETUNE_NOISY  # every family that starts from pretrained weights
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
