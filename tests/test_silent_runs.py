"""Runs that used to go wrong without an error: each now follows the documented rule or says why it cannot."""

import pytest
import torch
from conftest import tiny_bert, toy_classification
from test_trainer import _args
from transformers import Trainer

from metalr_hf import MetaLRCallback, MetaLRScheduler, MetaTrainer


# -- a changed horizon on resume ------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["MetaTrainer", "stock Trainer, horizon from the callback"])
def test_resume_with_a_longer_horizon_follows_the_new_one_and_warns(tmp_path, how, caplog):
    """Trained for max_steps=20 with a checkpoint at 10, resumed from it with max_steps=40: the schedule runs to
    step 40 (before: it kept T = 20 and steps 21-40 ran at LR 0), the learner's state carried, with a warning."""

    def trainer(max_steps):
        args = _args(tmp_path, max_steps=max_steps, save_strategy="steps", save_steps=10, learning_rate=3e-3)
        model = tiny_bert()
        if how == "MetaTrainer":
            return MetaTrainer(model=model, args=args, train_dataset=toy_classification())
        args.lr_scheduler_type = "constant"  # unused: the scheduler is given
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        return Trainer(model=model, args=args, train_dataset=toy_classification(),
                       optimizers=(opt, MetaLRScheduler(opt)), callbacks=[MetaLRCallback()])  # fmt: skip

    trainer(20).train()
    resumed = trainer(40)
    with caplog.at_level("WARNING", logger="metalr_hf"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-10"))
    assert sum("horizon changed from 20 to 40" in r.getMessage() for r in caplog.records) == 1
    assert resumed.lr_scheduler.num_training_steps == 40
    lrs = [h["learning_rate"] for h in resumed.state.log_history if "learning_rate" in h and h["step"] > 10]
    assert len(lrs) == 30 and all(lr > 0 for lr in lrs[:-1])
    assert lrs[9] > 0.3 * lrs[0]  # step 20: mid-schedule now, not the end
    assert lrs[-1] < 0.1 * lrs[0]  # and it decays towards step 40


def test_an_unchanged_resume_does_not_warn_about_the_horizon(tmp_path, caplog):
    args = _args(tmp_path, max_steps=20, save_strategy="steps", save_steps=10)
    MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification()).train()
    resumed = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification())
    with caplog.at_level("WARNING", logger="metalr_hf"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-10"))
    assert not any("horizon changed" in r.getMessage() for r in caplog.records)


# -- a fresh model inside a plain wrapper ---------------------------------------------------------------------------
class _Wrapper(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, **kwargs):
        return self.inner(**kwargs)


def test_a_fresh_model_inside_a_plain_wrapper_is_read_by_its_own_initialisation():
    """The wrapped transformers model's ``_init_weights`` is the rule (before: ``nn.Linear.reset_parameters``,
    whose std is 5× BERT's, so a fresh BERT in a wrapper read as pretrained)."""
    from metalr_hf.pretrained_weights import weights_look_pretrained

    fresh = tiny_bert()
    assert weights_look_pretrained(_Wrapper(fresh)) is False
    assert weights_look_pretrained(_Wrapper(_Wrapper(fresh))) is False
    trained = tiny_bert()
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(3.0)  # weights far from their initialisation, as pretrained ones are
    assert weights_look_pretrained(_Wrapper(trained)) is True


# -- losses the stock Trainer's hook could not see ------------------------------------------------------------------
class _TupleModel(torch.nn.Module):
    """A model returning ``(loss, logits)``, as many hand-written ones do (the Trainer takes ``outputs[0]``)."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_bert()

    def forward(self, input_ids, attention_mask=None, labels=None):
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        return (out.loss, out.logits) if labels is not None else (out.logits,)


@pytest.fixture
def enabled():
    import metalr_hf

    metalr_hf.enable()
    yield
    metalr_hf.disable()


def test_a_tuple_loss_reaches_the_scheduler_under_the_stock_trainer(tmp_path, enabled, caplog):
    from transformers import TrainingArguments

    args = TrainingArguments(**{**_args(tmp_path, max_steps=8).to_dict(), "lr_scheduler_type": "meta"})
    trainer = Trainer(model=_TupleModel(), args=args, train_dataset=toy_classification())
    with caplog.at_level("WARNING", logger="metalr_hf"):
        trainer.train()
    assert not any("received no loss" in r.getMessage() for r in caplog.records)
    signals = trainer.lr_scheduler.last_signals
    assert bool(signals.has_loss[0]) and 0.05 < float(signals.loss[0]) < 5


def _smoothed_loss(outputs, labels, num_items_in_batch=None):
    return torch.nn.functional.cross_entropy(outputs.logits, labels, label_smoothing=0.1)


@pytest.mark.parametrize("path", ["label_smoothing_factor", "compute_loss_func"])
def test_a_loss_computed_outside_the_model_reaches_the_scheduler_under_enable(tmp_path, enabled, caplog, path):
    """The Trainer pops the labels and computes the loss itself; ``enable()`` feeds the scheduler the loss that
    ``training_step`` returns, as MetaTrainer does: the one the Trainer logs."""
    from transformers import TrainingArguments

    extra = {"label_smoothing_factor": 0.1} if path == "label_smoothing_factor" else {}
    args = TrainingArguments(**{**_args(tmp_path, max_steps=3).to_dict(), "lr_scheduler_type": "meta", **extra})
    kwargs = {"compute_loss_func": _smoothed_loss} if path == "compute_loss_func" else {}
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=toy_classification(), **kwargs)
    with caplog.at_level("WARNING", logger="metalr_hf"):
        trainer.train()
    assert not any("received no loss" in r.getMessage() for r in caplog.records)
    signals = trainer.lr_scheduler.last_signals
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert bool(signals.has_loss[0]) and float(signals.loss[0]) == pytest.approx(logged[-1]["loss"], rel=1e-3)
    assert all("meta/lr_scale" in h for h in logged)


def test_a_loss_computed_outside_the_model_is_named_as_the_cause(tmp_path, caplog):
    """Without ``enable()`` (a stock Trainer given the scheduler and the callback), the callback reads the model's
    outputs, which carry no loss under label smoothing: the warning says why and what to use."""
    model = tiny_bert()
    args = _args(tmp_path, max_steps=3)
    args.label_smoothing_factor = 0.1
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model=model, args=args, train_dataset=toy_classification(),
                      optimizers=(optimizer, MetaLRScheduler(optimizer)), callbacks=[MetaLRCallback()])  # fmt: skip
    with caplog.at_level("WARNING", logger="metalr_hf"):
        trainer.train()
    message = " ".join(r.getMessage() for r in caplog.records if "received no loss" in r.getMessage())
    assert "label_smoothing_factor" in message and "Use MetaTrainer" in message


# -- the smaller ones -------------------------------------------------------------------------------------------------
def test_the_logged_lr_scale_is_the_factor_of_the_logged_learning_rate(tmp_path):
    """Each log row's ``learning_rate`` (the LR the step took) is base LR × prior(step) × ``meta/lr_scale`` of the
    same row (before, ``meta/lr_scale`` was the next step's factor)."""
    from conftest import perturbed_learner

    from metalr_hf.schedules import prior_multiplier

    learner = tmp_path / "learner"
    perturbed_learner(seed=2).save_pretrained(learner)
    args = _args(tmp_path, max_steps=20, lr_scheduler_kwargs={"meta_learner": str(learner), "prior": "cosine"})
    trainer = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification())
    trainer.train()
    rows = [h for h in trainer.state.log_history if "meta/lr_scale" in h]
    assert len(rows) == 20
    scales = [h["meta/lr_scale"] for h in rows]
    assert max(scales) - min(scales) > 0.05  # the learner moves the LR: the pairing is visible
    for h in rows:
        prior = float(prior_multiplier("cosine", h["step"] - 1, 20.0, 0.0))
        assert h["learning_rate"] == pytest.approx(3e-3 * prior * h["meta/lr_scale"], rel=1e-5), h["step"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss": 1.0, "grad_norm": [1.0, 2.0]}, "takes one real number"),
        ({"loss": torch.tensor(1 + 2j)}, "complex loss"),
        ({"loss": 1.0, "grad_norm": 1 + 2j}, "takes one real number"),
    ],
)
def test_observe_refuses_what_is_not_one_real_number_naming_it(kwargs, message):
    model = torch.nn.Linear(2, 1)
    sched = MetaLRScheduler(torch.optim.SGD(model.parameters(), lr=0.1), num_training_steps=5)
    with pytest.raises(TypeError, match=message):
        sched.observe(**kwargs)


@pytest.mark.parametrize("dtype", [torch.int32, torch.float16])
def test_learner_weights_not_in_float32_are_refused_naming_them(tmp_path, dtype):
    from safetensors.torch import load_file, save_file

    from metalr_hf import MetaLearner

    MetaLearner().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["head.bias"] = weights["head.bias"].to(dtype)
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=rf"must be float32.*head\.bias \({dtype}\)"):
        MetaLearner.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["meta-train", "--iterations", "-5", "--output-dir", "{tmp}/m"], "--iterations must be at least 1"),
        (["bench", "--output-dir", "/etc/passwd/x", "--no-progress"], "cannot write '/etc/passwd/x'"),
        (["run", "-m", "no_such_module"], "no module named 'no_such_module'"),
    ],
)
def test_cli_misuse_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, argv, message):
    from metalr_hf.cli import main

    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()
