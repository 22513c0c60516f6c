"""MetaTrainer / MetaTrainingArguments / MetaLRCallback inside a real transformers.Trainer (tiny BERT on CPU)."""

import json
import math

import pytest
import torch
from conftest import logged, perturbed_learner, tiny_bert, tiny_gpt2, toy_classification, toy_lm
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import SchedulerType

from metalr_hf import MetaLRCallback, MetaLRScheduler, MetaTrainer, MetaTrainingArguments
from metalr_hf.schedules import cosine, wsd


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        max_steps=30,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        lr_scheduler_type="meta",
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        use_cpu=True,
    )
    base.update(kw)
    return MetaTrainingArguments(**base)


class _KillAt(TrainerCallback):
    """Stops training after optimizer step ``step``, as a killed job would (its last checkpoint stays)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            control.should_training_stop = True


def _lrs(trainer):
    return [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_meta_trainer_moves_lr_within_bounds_and_learns(tmp_path):
    learner_dir = tmp_path / "learner"
    perturbed_learner(seed=1).save_pretrained(learner_dir)
    args = _args(tmp_path, lr_scheduler_kwargs={"meta_learner": str(learner_dir)}, warmup_steps=3)
    trainer = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification())
    trainer.train()
    lrs = _lrs(trainer)
    assert len(lrs) == 30
    prior = [3e-3 * float(wsd(t, 30, 3)) for t in range(30)]  # the default prior
    # the learner moves the LR away from the prior ...
    assert max(abs(a - b) / max(b, 1e-12) for a, b in zip(lrs[4:], prior[4:])) > 0.05
    # ... but within exp(±max_delta) of it
    bound = math.exp(trainer.lr_scheduler.learner.max_delta)
    assert all(a <= b * bound * (1 + 1e-6) for a, b in zip(lrs, prior))
    assert all(a >= b / bound * (1 - 1e-6) for a, b in zip(lrs, prior))
    losses = _losses(trainer)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    logged = [h for h in trainer.state.log_history if "meta/lr_scale" in h]
    assert len(logged) == 30 and set(logged[-1]) >= {"meta/lr_scale", "meta/delta"}
    assert not any(k.startswith("meta/feature/") for k in logged[-1])  # the features are opt-in
    assert trainer.meta_learner_info()["name_or_path"] == str(learner_dir)


def test_log_features_option_adds_the_features(tmp_path):
    args = _args(tmp_path, lr_scheduler_kwargs={"log_features": True}, max_steps=3)
    trainer = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification())
    trainer.train()
    logged = [h for h in trainer.state.log_history if "meta/lr_scale" in h]
    assert "meta/feature/log_loss_rel" in logged[-1] and "meta/guard" in logged[-1]


@pytest.mark.parametrize("reload", ["same-construction", "from-checkpoint-folder"])
def test_resume_from_checkpoint_gives_same_lr_trajectory(tmp_path, reload):
    """The model of the resumed run built as before, or loaded from the checkpoint folder with `from_pretrained`
    (which marks it pretrained by `config._name_or_path`: the run's `pretrained` feature must stay what it was)."""
    learner_dir = tmp_path / "learner"
    perturbed_learner(seed=2).save_pretrained(learner_dir)
    kwargs = {"meta_learner": str(learner_dir)}
    full = MetaTrainer(
        model=tiny_bert(),
        args=_args(tmp_path / "a", lr_scheduler_kwargs=kwargs, max_steps=20),
        train_dataset=toy_classification(),
    )
    full.train()
    # same run, checkpointed at step 10 and "killed" after 12 steps
    args = _args(tmp_path / "b", lr_scheduler_kwargs=kwargs, max_steps=20, save_strategy="steps", save_steps=10)
    first = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification())

    first.add_callback(_KillAt(12))
    first.train()
    checkpoint = tmp_path / "b" / "out" / "checkpoint-10"
    if reload == "same-construction":
        model = tiny_bert()
    else:
        model = type(tiny_bert()).from_pretrained(checkpoint)
        assert model.config._name_or_path == str(checkpoint)
    resumed = MetaTrainer(model=model, args=args, train_dataset=toy_classification())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    a = _lrs(full)[10:]
    b = [h["learning_rate"] for h in resumed.state.log_history if "learning_rate" in h and h["step"] > 10]
    assert len(a) == len(b) == 10
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=1e-6)
    # and the learner really moved the LR, so the equality says something
    assert trainer_scale_varies(full)


def trainer_scale_varies(trainer):
    scales = [h["meta/lr_scale"] for h in trainer.state.log_history if "meta/lr_scale" in h]
    return max(scales) - min(scales) > 0.01


def _bert_loss_averaged_by_trainer():
    # BERT's classification loss ignores `num_items_in_batch`; tell the Trainer so that it averages
    # micro-batch losses itself (transformers otherwise sums them under gradient accumulation).
    model = tiny_bert()
    model.accepts_loss_kwargs = False
    return model, toy_classification(n=320)


@pytest.mark.parametrize(
    "make", [lambda: (tiny_gpt2(), toy_lm()), _bert_loss_averaged_by_trainer], ids=["gpt2-num-items", "bert-mean"]
)
def test_gradient_accumulation_equals_large_batch(tmp_path, make):
    learner_dir = tmp_path / "learner"
    perturbed_learner(seed=3).save_pretrained(learner_dir)
    kwargs = {"meta_learner": str(learner_dir)}
    runs = {}
    for name, bs, ga in (("big", 32, 1), ("acc", 8, 4)):
        model, ds = make()
        args = _args(
            tmp_path / name,
            per_device_train_batch_size=bs,
            gradient_accumulation_steps=ga,
            lr_scheduler_kwargs=kwargs,
            max_steps=10,
        )
        trainer = MetaTrainer(model=model, args=args, train_dataset=ds)
        observed = []
        original = trainer._meta_callback.step_loss

        def spy(original=original, observed=observed):
            loss = original()
            observed.append(float(loss))
            return loss

        trainer._meta_callback.step_loss = spy
        trainer.train()
        runs[name] = (observed, _lrs(trainer))
    (loss_a, lr_a), (loss_b, lr_b) = runs["big"], runs["acc"]
    assert len(loss_a) == len(loss_b) == 10
    for x, y in zip(loss_a, loss_b):
        assert x == pytest.approx(y, rel=1e-4)
    for x, y in zip(lr_a, lr_b):
        assert x == pytest.approx(y, rel=1e-3)
    assert max(lr_a) != min(lr_a)


def test_stock_trainer_with_scheduler_and_callback(tmp_path):
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = MetaLRScheduler(optimizer, num_training_steps=15, meta_learner=perturbed_learner(seed=4))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=15,
        per_device_train_batch_size=16,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=toy_classification(),
        optimizers=(optimizer, scheduler),
        callbacks=[MetaLRCallback()],
    )
    with _no_missing_loss_warning():
        trainer.train()
    # the forward hook fed the real loss: the loss features are live
    assert scheduler.controller.extractor.state["n_loss"].item() == 15
    assert scheduler.features_dict()["loss_missing"] == 0.0
    assert scheduler.last_epoch == 15


class _no_missing_loss_warning:
    def __enter__(self):

        self._cm = logged()
        self.records = self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        assert not [r for r in self.records if "received no loss" in str(r.message)]


def test_nan_loss_mid_run_does_not_crash(tmp_path):
    args = _args(tmp_path, lr_scheduler_kwargs={}, max_steps=12)
    trainer = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification())
    original = trainer.compute_loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        loss = original(*a, **k)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 5 else loss

    trainer.compute_loss = poisoned
    with logged("non-finite"):
        trainer.train()
    lrs = _lrs(trainer)
    assert len(lrs) == 12 and all(math.isfinite(x) for x in lrs)
    assert trainer.lr_scheduler.controller.backoff.item() <= 1.0
    assert all(math.isfinite(v) for v in trainer.lr_scheduler.features_dict().values())


def test_every_stock_scheduler_name_still_works(tmp_path):
    for name in SchedulerType:
        if name.value in ("reduce_lr_on_plateau", "greedy"):
            kw = dict(eval_strategy="steps", eval_steps=5)
        else:
            kw = {}
        args = _args(tmp_path, lr_scheduler_type=name.value, **kw)
        assert args.lr_scheduler_type == name
        assert args.to_dict()["lr_scheduler_type"] == name.value


def test_arguments_round_trip_and_parser(tmp_path):
    args = _args(tmp_path, lr_scheduler_kwargs={"meta_learner": "org/learner", "revision": "v1"})
    d = args.to_dict()
    assert d["lr_scheduler_type"] == "meta"
    assert args.lr_scheduler_type.value == "meta"
    again = MetaTrainingArguments(**d)
    assert again.lr_scheduler_type.value == "meta"
    assert again.lr_scheduler_kwargs == {"meta_learner": "org/learner", "revision": "v1"}
    json.dumps(d)

    parser = HfArgumentParser((MetaTrainingArguments,))
    (parsed,) = parser.parse_args_into_dataclasses(
        args=[
            "--output_dir",
            str(tmp_path),
            "--lr_scheduler_type",
            "meta",
            "--lr_scheduler_kwargs",
            '{"meta_learner": "org/x", "prior": "linear"}',
            "--report_to",
            "none",
        ]
    )
    assert parsed.lr_scheduler_type.value == "meta"
    assert parsed.lr_scheduler_kwargs == {"meta_learner": "org/x", "prior": "linear"}
    (parsed,) = parser.parse_args_into_dataclasses(
        args=["--output_dir", str(tmp_path), "--lr_scheduler_type", "cosine"]
    )
    assert parsed.lr_scheduler_type == SchedulerType.COSINE


def test_unknown_scheduler_name_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown lr_scheduler_type 'metal'.*'cosine'.*'meta'"):
        _args(tmp_path, lr_scheduler_type="metal")


def test_unknown_lr_scheduler_kwargs_key(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown key\(s\) \['meta_lerner'\].*valid keys"):
        _args(tmp_path, lr_scheduler_kwargs={"meta_lerner": "x"})


def test_missing_learner_folder_is_named(tmp_path):
    args = _args(tmp_path, lr_scheduler_kwargs={"meta_learner": str(tmp_path / "nope")})
    trainer = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification())
    with pytest.raises(FileNotFoundError, match="nope"):
        trainer.train()


def test_model_card_records_learner(tmp_path):
    args = _args(tmp_path, max_steps=3)
    trainer = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification())
    trainer.train()
    trainer.create_model_card(model_name="tiny")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "metalr-hf" in card and "meta-lr" in card
    assert "metalr-default-v3" in card
    assert "lr_scheduler_type: meta" in card


class _ShardedGradAdamW(torch.optim.AdamW):
    """Stands in for DeepSpeed ZeRO: the update happens, but ``param.grad`` is gone by the time the scheduler
    steps (the backend keeps gradients in its own partitions)."""

    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return loss


def test_no_visible_gradients_falls_back_to_trainer_grad_norm_and_loss(tmp_path):
    args = _args(tmp_path, max_steps=20)  # the bundled default learner
    model = tiny_bert()
    opt = _ShardedGradAdamW(model.parameters(), lr=args.learning_rate)
    trainer = MetaTrainer(model=model, args=args, train_dataset=toy_classification(), optimizers=(opt, None))
    with logged("found no gradients") as record:
        trainer.train()
    assert sum("found no gradients" in str(w.message) for w in record) == 1  # said once
    feats = trainer.lr_scheduler.features_dict()
    for name in ("grad_momentum_cos", "update_ratio", "curvature_ratio", "grad_snr"):
        assert feats[name] == 0.0  # switched off, not fed garbage
    assert feats["log_loss_rel"] != 0.0  # the loss
    if hasattr(Trainer, "_get_grad_norm"):  # transformers >= 5 reports the norm it computed before clipping
        assert feats["grad_norm_rel"] != 0.0
    lrs = _lrs(trainer)
    assert len(lrs) == 20 and all(math.isfinite(x) and x > 0 for x in lrs)
    assert len(set(trainer.lr_scheduler.controller.delta.tolist() + [0.0])) > 1  # the learner still acts
    losses = _losses(trainer)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_pretrained_feature_is_read_from_the_model_unless_given(tmp_path):
    """The learner's ``pretrained`` feature is 1 for a model whose weights have left their initialisation (loaded
    with ``from_pretrained``) and 0 for one built from a config; ``lr_scheduler_kwargs={"pretrained": ...}``
    overrides it; anything but a bool is refused."""
    from conftest import pretrained_like
    from transformers import AutoModelForSequenceClassification

    from metalr_hf.features import FEATURE_NAMES

    pretrained_like(tiny_bert()).save_pretrained(tmp_path / "pretrained")
    col = FEATURE_NAMES.index("pretrained")

    def feature(model, **kwargs):
        args = _args(tmp_path, max_steps=2, lr_scheduler_kwargs=kwargs)
        trainer = MetaTrainer(model=model, args=args, train_dataset=toy_classification())
        trainer.train()
        return float(trainer.lr_scheduler.controller.features[0, col])

    loaded = lambda: AutoModelForSequenceClassification.from_pretrained(tmp_path / "pretrained")  # noqa: E731
    assert feature(loaded()) == 1.0
    assert feature(tiny_bert()) == 0.0
    assert feature(loaded(), pretrained=False) == 0.0
    assert feature(tiny_bert(), pretrained=True) == 1.0
    with pytest.raises(ValueError, match="pretrained"):
        feature(tiny_bert(), pretrained="yes")


def test_default_learner_may_only_lower_the_lr_of_a_pretrained_model(tmp_path):
    """Under the default ``max_boost="auto"`` a learner that never saw a pretrained model (no ``pretrained``
    feature) may not raise the LR of a model loaded with ``from_pretrained``; built from a config, it may."""
    from conftest import boosting_learner
    from transformers import AutoModelForSequenceClassification

    from metalr_hf.metatrain.presets import BASE_FEATURES

    boosting_learner(BASE_FEATURES).save_pretrained(tmp_path / "learner")
    from conftest import pretrained_like

    pretrained_like(tiny_bert()).save_pretrained(tmp_path / "pretrained")

    def scales(model, **kwargs):
        kwargs.update(meta_learner=str(tmp_path / "learner"), smoothing=0.0)  # the decisions as they come
        args = _args(tmp_path, max_steps=6, lr_scheduler_kwargs=kwargs)
        trainer = MetaTrainer(model=model, args=args, train_dataset=toy_classification())
        trainer.train()
        return [h["meta/lr_scale"] for h in trainer.state.log_history if "meta/lr_scale" in h]

    loaded = lambda: AutoModelForSequenceClassification.from_pretrained(tmp_path / "pretrained")  # noqa: E731
    assert max(scales(loaded())) <= 1.0 + 1e-6
    assert max(scales(tiny_bert())) > 7.0
    assert max(scales(loaded(), max_boost=None)) > 7.0


def test_a_pretrained_model_gets_the_wsd_prior_and_one_from_a_config_cosine(tmp_path):
    """``prior="auto"`` (the default before WSD became it) through the Trainer: with a learner that outputs 0 the
    LR follows WSD for a model whose weights look pretrained and cosine for one built from a config."""
    from conftest import pretrained_like
    from transformers import AutoModelForSequenceClassification

    from metalr_hf.learner import MetaLearner

    MetaLearner().save_pretrained(tmp_path / "zero")
    pretrained_like(tiny_bert()).save_pretrained(tmp_path / "pretrained")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pretrained")
    for model, schedule in ((loaded, wsd), (tiny_bert(), cosine)):
        kwargs = {"meta_learner": str(tmp_path / "zero"), "guard": False, "prior": "auto"}
        args = _args(tmp_path / schedule.__name__, max_steps=20, warmup_steps=2, lr_scheduler_kwargs=kwargs)
        trainer = MetaTrainer(model=model, args=args, train_dataset=toy_classification())
        trainer.train()
        assert _lrs(trainer) == pytest.approx([3e-3 * schedule(t, 20, 2) for t in range(20)], abs=1e-12)
    assert wsd(12, 20, 2) > 1.5 * cosine(12, 20, 2)  # the two priors differ where it is read


def test_a_learner_that_outputs_zero_reproduces_the_cosine_run(tmp_path):
    """δ ≡ 0 without the guard *is* the prior: same LRs and the very same losses as the stock cosine run of that
    seed — the scheduler draws nothing from the training's random generator (dropout masks, data order)."""
    from metalr_hf.learner import MetaLearner

    MetaLearner().save_pretrained(tmp_path / "zero")  # its output layer starts at zero: δ ≡ 0
    runs = {}
    zero = {"meta_learner": str(tmp_path / "zero"), "guard": False, "prior": "cosine"}
    for sched, kwargs in (("cosine", {}), ("meta", zero)):
        args = _args(tmp_path / sched, lr_scheduler_type=sched, lr_scheduler_kwargs=kwargs, max_steps=12,
                     warmup_steps=2)  # fmt: skip
        model = tiny_bert()
        for module in model.modules():  # dropout on: its masks come from the global generator
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.1
        trainer = MetaTrainer(model=model, args=args, train_dataset=toy_classification())
        trainer.train()
        runs[sched] = (_lrs(trainer), _losses(trainer))
    assert runs["meta"][0] == pytest.approx(runs["cosine"][0], rel=1e-6)
    assert runs["meta"][1] == runs["cosine"][1]


def test_a_from_scratch_model_loaded_from_a_folder_is_not_fine_tuning(tmp_path):
    """A randomly initialised ViT or ResNet saved with save_pretrained and loaded back (how the recipes run a model
    from scratch) is read as from scratch from its weights, not as fine-tuning from its folder name: a boosting
    learner may raise its LR under the default cap. The same ResNet with trained-looking kernels is fine-tuning
    (ResNet's config has no initializer_range: the weights are compared with the model's own initialisation).
    A model whose weights cannot tell (bare parameters) runs as fine-tuning, the safe side, and a warning says
    so."""

    from conftest import boosting_learner, pretrained_like
    from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification

    from metalr_hf.features import FEATURE_NAMES
    from metalr_hf.metatrain.presets import BASE_FEATURES

    boosting_learner(BASE_FEATURES).save_pretrained(tmp_path / "learner")
    col = FEATURE_NAMES.index("pretrained")
    torch.manual_seed(0)
    vit = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=32, num_labels=2)  # fmt: skip
    ViTForImageClassification(vit).save_pretrained(tmp_path / "vit")
    resnet = ResNetConfig(num_channels=1, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=2)
    ResNetForImageClassification(resnet).save_pretrained(tmp_path / "resnet")
    pretrained_like(ResNetForImageClassification(resnet)).save_pretrained(tmp_path / "resnet-trained")
    from datasets import Dataset

    gen = torch.Generator().manual_seed(0)
    images = Dataset.from_dict({"pixel_values": torch.randn(64, 1, 8, 8, generator=gen).tolist(),
                                "labels": torch.randint(0, 2, (64,), generator=gen).tolist()})  # fmt: skip

    class Bare(torch.nn.Module):  # a linear probe held as a bare Parameter: no layer to re-initialise
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(0.1 * torch.randn(64, 2))

        def forward(self, pixel_values, labels=None):
            logits = pixel_values.flatten(1) @ self.w
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    def run(model):
        args = _args(tmp_path, max_steps=6, lr_scheduler_kwargs={"meta_learner": str(tmp_path / "learner")})
        with logged() as caught:
            trainer = MetaTrainer(model=model, args=args, train_dataset=images)
            trainer.train()
        scales = [h["meta/lr_scale"] for h in trainer.state.log_history if "meta/lr_scale" in h]
        said = [w for w in caught if "cannot tell from the weights" in str(w.message)]
        return float(trainer.lr_scheduler.controller.features[0, col]), max(scales), said

    for cls, folder in [(ViTForImageClassification, "vit"), (ResNetForImageClassification, "resnet")]:
        model = cls.from_pretrained(tmp_path / folder)
        assert model.config._name_or_path == str(tmp_path / folder)
        feature, top, said = run(model)
        assert feature == 0.0 and top > 2.0 and not said, folder  # from scratch: the learner's own bound applies
    feature, top, said = run(ResNetForImageClassification.from_pretrained(tmp_path / "resnet-trained"))
    assert feature == 1.0 and top <= 1.0 + 1e-6 and not said  # fine-tuning: the boost is capped
    feature, top, said = run(Bare())
    assert feature == 1.0 and top <= 1.0 + 1e-6 and len(said) == 1  # cannot tell: fine-tuning, said aloud


def test_weights_tell_trained_from_fresh_by_the_models_own_initialisation():
    """Fresh models of several families (with and without ``initializer_range``, a plain ``nn.Sequential``) sit
    at a std ratio of 1; the same weights moved as pretraining moves them read as trained. Reading them draws
    nothing from the run's random generator and leaves the weights as they were. A LoRA model is read from its
    base weights."""
    from conftest import pretrained_like
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        ResNetConfig,
        ResNetForImageClassification,
        T5Config,
        T5ForConditionalGeneration,
    )

    from metalr_hf.pretrained_weights import weight_std_ratio, weights_look_pretrained

    builders = {
        "bert": tiny_bert,
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=64, n_layer=2, n_head=2)),
        "t5": lambda: T5ForConditionalGeneration(
            T5Config(vocab_size=64, d_model=64, d_ff=128, num_layers=2, num_heads=2, d_kv=32)
        ),
        "resnet": lambda: ResNetForImageClassification(ResNetConfig(embedding_size=16, hidden_sizes=[16, 32])),
        "mlp": lambda: torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64)),
    }
    for name, build in builders.items():
        torch.manual_seed(1)
        model = build()
        state = torch.random.get_rng_state()
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        assert weight_std_ratio(model) == pytest.approx(1.0, abs=0.1), name
        assert torch.equal(torch.random.get_rng_state(), state), name
        assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items()), name  # read, never written
        assert weights_look_pretrained(model) is False, name
        assert weights_look_pretrained(pretrained_like(model)) is True, name
    assert weights_look_pretrained(torch.nn.ParameterList([torch.nn.Parameter(torch.randn(8, 8))])) is None
    # LoRA: the adapters start fresh by design; the base model's weights decide
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS")
    assert weights_look_pretrained(get_peft_model(tiny_bert(), lora)) is False
    assert weights_look_pretrained(get_peft_model(pretrained_like(tiny_bert()), lora)) is True


def test_the_default_pair_picks_its_learner_from_the_weights_and_resumes_with_it(tmp_path):
    """With ``meta_learner`` unset, a model whose weights have left their initialisation gets the bundled
    fine-tuning learner, which ``auto`` does not cap (its card says it was meta-trained on fine-tuning runs); one
    built from a config gets the default learner; a learner named explicitly is kept (and capped on a pretrained
    run). A pretrained run resumed from its checkpoint continues with the fine-tuning learner, on the same LRs."""
    from conftest import pretrained_like
    from transformers import AutoModelForSequenceClassification

    from metalr_hf.hub import DEFAULT_FINETUNE_LEARNER, DEFAULT_LEARNER

    pretrained_like(tiny_bert()).save_pretrained(tmp_path / "pretrained")
    loaded = lambda: AutoModelForSequenceClassification.from_pretrained(tmp_path / "pretrained")  # noqa: E731

    def train(model, out, **kw):
        args = _args(out, lr_scheduler_kwargs=kw.pop("kwargs", {}), **kw)
        trainer = MetaTrainer(model=model, args=args, train_dataset=toy_classification())
        trainer.train(resume_from_checkpoint=kw.get("resume"))
        return trainer

    ft = train(loaded(), tmp_path / "ft", max_steps=8, save_strategy="steps", save_steps=4)
    scheduler = ft.lr_scheduler
    assert scheduler.learner.source["name_or_path"] == DEFAULT_FINETUNE_LEARNER
    assert scheduler.controller.boost.delta_cap(True) == math.inf
    assert train(tiny_bert(), tmp_path / "scratch", max_steps=2).lr_scheduler.learner.source["name_or_path"] == (
        DEFAULT_LEARNER
    )
    named = train(loaded(), tmp_path / "named", max_steps=2, kwargs={"meta_learner": DEFAULT_LEARNER})
    assert named.lr_scheduler.learner.source["name_or_path"] == DEFAULT_LEARNER
    assert named.lr_scheduler.controller.boost.delta_cap(True) == 0.0
    # resumed from step 4: a fresh scheduler (the default learner until the state says otherwise)
    args = _args(tmp_path / "ft", max_steps=8, save_strategy="steps", save_steps=4)
    resumed = MetaTrainer(model=loaded(), args=args, train_dataset=toy_classification())
    resumed.train(resume_from_checkpoint=str(tmp_path / "ft" / "out" / "checkpoint-4"))
    assert resumed.lr_scheduler.learner.source["name_or_path"] == DEFAULT_FINETUNE_LEARNER
    assert _lrs(resumed)[-4:] == pytest.approx(_lrs(ft)[-4:], rel=1e-6)


def test_the_trainer_s_evaluations_withdraw_the_boost_when_they_stop_improving(tmp_path):
    """``eval_patience`` (default 2) reads the Trainer's evaluations, here ``metric_for_best_model`` with
    ``greater_is_better``: while the metric improves a boosting learner keeps its boost; two evaluations in a row
    without a new best withdraw it (here for the rest of the run: the metric never improves again). The final
    ``evaluate()`` after training changes nothing."""
    from conftest import boosting_learner

    from metalr_hf.metatrain.presets import BASE_FEATURES

    boosting_learner(BASE_FEATURES).save_pretrained(tmp_path / "learner")

    def scales(improving: bool):
        calls = []

        def metrics(_):
            calls.append(1)
            return {"score": float(len(calls)) if improving else 0.5}

        kwargs = {"meta_learner": str(tmp_path / "learner"), "smoothing": 0.0}
        args = _args(tmp_path, max_steps=24, eval_strategy="steps", eval_steps=4, metric_for_best_model="score",
                     greater_is_better=True, lr_scheduler_kwargs=kwargs)  # fmt: skip
        data = toy_classification()
        trainer = MetaTrainer(model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data.select(range(32)),
                              compute_metrics=metrics)  # fmt: skip
        trainer.train()
        trainer.evaluate()
        return [h["meta/lr_scale"] for h in trainer.state.log_history if "meta/lr_scale" in h], trainer

    boosted, _ = scales(improving=True)
    assert min(boosted[4:]) > 7.0
    stalled, trainer = scales(improving=False)
    assert stalled[4:12] == pytest.approx(boosted[4:12])  # evaluated at 4 (best), 8 (stale): still boosted
    assert max(stalled[12:]) <= 1.0 + 1e-6  # at 12 (stale again): withdrawn
    assert float(trainer.lr_scheduler.controller.eval_stale[0]) == 5  # at 8, 12, 16, 20, 24; not the final evaluate()


def test_the_callback_hands_eval_gap_the_eval_loss_never_another_metric(tmp_path):
    """``eval_gap`` (and ``eval_trust``) read the eval *loss*: where the Trainer's evaluations are read through
    ``metric_for_best_model``, the callback hands the scheduler that metric (negated where greater is better) and
    the ``eval_loss`` beside it (NaN where there is none: no gap read); without one, the eval loss alone."""
    seen = []

    class Scheduler:
        def observe_eval(self, value, loss=None):
            seen.append((value, loss))

    callback = MetaLRCallback()
    callback._scheduler, callback._training = Scheduler(), True
    metrics = {"eval_loss": 0.7, "eval_score": 0.9}
    for kwargs in ({"metric_for_best_model": "score", "greater_is_better": True}, {}):
        args = TrainingArguments(output_dir=str(tmp_path), report_to=[], **kwargs)
        callback.on_evaluate(args, None, None, metrics=metrics)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], metric_for_best_model="eval_wer",
                             greater_is_better=False)  # fmt: skip
    callback.on_evaluate(args, None, None, metrics={"eval_wer": 0.3})
    assert seen[:2] == [(-0.9, 0.7), (0.7, None)]
    assert seen[2][0] == 0.3 and math.isnan(seen[2][1])


def test_a_run_resumed_while_the_evaluations_hold_its_lr_continues_the_same_trajectory(tmp_path):
    """Checkpointed at step 14, after two evaluations without a new best (8, 12) withdrew a boosting learner's
    boost: the resumed run keeps the hold (the evaluation state is in the checkpoint) and sets the LRs of the
    uninterrupted run, evaluated at the same steps."""
    from conftest import boosting_learner

    from metalr_hf.metatrain.presets import BASE_FEATURES

    boosting_learner(BASE_FEATURES).save_pretrained(tmp_path / "learner")
    kwargs = {"meta_learner": str(tmp_path / "learner"), "smoothing": 0.0}

    def trainer(folder, **kw):
        args = _args(folder, max_steps=24, eval_strategy="steps", eval_steps=4, metric_for_best_model="score",
                     greater_is_better=True, lr_scheduler_kwargs=kwargs, **kw)  # fmt: skip
        data = toy_classification()
        return MetaTrainer(model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data.select(range(32)),
                           compute_metrics=lambda _: {"score": 0.5})  # fmt: skip

    full = trainer(tmp_path / "a")
    full.train()
    first = trainer(tmp_path / "b", save_strategy="steps", save_steps=14)

    first.add_callback(_KillAt(16))
    first.train()
    resumed = trainer(tmp_path / "b", save_strategy="steps", save_steps=14)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-14"))
    scales = [h["meta/lr_scale"] for h in full.state.log_history if "meta/lr_scale" in h]
    assert min(scales[4:12]) > 7.0 and max(scales[12:]) <= 1.0 + 1e-6  # boosted, then held: the state matters
    b = [h["learning_rate"] for h in resumed.state.log_history if "learning_rate" in h and h["step"] > 14]
    assert len(b) == 10 and b == pytest.approx(_lrs(full)[14:], rel=1e-6)
    assert float(resumed.lr_scheduler.controller.eval_stale[0]) == float(full.lr_scheduler.controller.eval_stale[0])
