"""Where a Trainer user goes: a lazy import, checkpoints that load anywhere, logging through the Trainer's
levels, and runs with PEFT, bf16, gradient checkpointing, Adafactor and trl — each asserting the LR and that the
model learns."""

import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import logged, tiny_bert, tiny_gpt2, toy_classification
from test_trainer import _args, _lrs

import metalr_hf
from metalr_hf import MetaLRScheduler, MetaTrainer

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


# -- import --------------------------------------------------------------------------------------------------------
def test_import_is_lazy_and_every_public_name_resolves():
    out = _python(
        "import sys, metalr_hf\n"
        "print(sorted(m for m in ('torch', 'transformers.trainer') if m in sys.modules))\n"
        "for name in metalr_hf.__all__: getattr(metalr_hf, name)\n"
        "print('transformers.trainer' in sys.modules)"
    )
    assert out.splitlines() == ["[]", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        metalr_hf.nope  # noqa: B018


# -- checkpoints ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["enable", "MetaTrainingArguments"])
def test_training_args_bin_of_a_meta_run_loads_in_a_process_that_never_enabled_it(tmp_path, how):
    from transformers import TrainingArguments

    path = tmp_path / "training_args.bin"
    if how == "enable":
        metalr_hf.enable()
        try:
            torch.save(TrainingArguments(str(tmp_path), lr_scheduler_type="meta", report_to=[]), path)
        finally:
            metalr_hf.disable()
    else:
        torch.save(_args(tmp_path), path)
    out = _python(
        f"import torch\nargs = torch.load({str(path)!r}, weights_only=False)\n"
        "print(type(args).__name__, args.lr_scheduler_type.value)\n"
        "from transformers.trainer_utils import SchedulerType\nprint('meta' in SchedulerType._value2member_map_)"
    )
    expected = "TrainingArguments" if how == "enable" else "MetaTrainingArguments"
    assert out.splitlines() == [f"{expected} meta", "False"]  # loaded, and transformers left as it was


# -- logging -------------------------------------------------------------------------------------------------------
def test_the_learner_in_use_is_named_once_at_warning_when_training_begins(tmp_path):
    trainer = MetaTrainer(model=tiny_bert(), args=_args(tmp_path, max_steps=2), train_dataset=toy_classification())
    with logged() as said:
        trainer.train()
    named = [s.message for s in said if "meta-learner" in s.message]
    assert len(named) == 1
    assert "metalr-default-v3" in named[0] and "prior wsd" in named[0] and "from-scratch run" in named[0]


def test_log_level_reaches_the_package_warnings(tmp_path):
    """``--log_level error`` silences the scheduler's warnings as it silences the Trainer's."""

    def run(level):
        args = _args(tmp_path / level, max_steps=6, log_level=level)
        trainer = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification())
        original = trainer.compute_loss
        trainer.compute_loss = lambda *a, **k: original(*a, **k) * float("nan")  # every step non-finite
        with logged() as said:
            trainer.train()
        return [s.message for s in said]

    import logging

    from transformers.utils import logging as hf_logging

    from metalr_hf._log import package_logger

    verbosity = hf_logging.get_verbosity()  # the Trainer sets transformers' verbosity from log_level, for good
    try:
        assert any("non-finite" in m for m in run("passive"))  # the default leaves the package's level alone
        assert any("non-finite" in m for m in run("warning"))
        assert run("error") == []
    finally:
        hf_logging.set_verbosity(verbosity)
        package_logger().setLevel(logging.NOTSET)


def test_a_callback_in_a_stock_trainer_says_the_trackers_miss_its_values(tmp_path):
    from transformers import Trainer

    model = tiny_bert()
    args = _args(tmp_path, max_steps=2, report_to=["tensorboard"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model=model, args=args, train_dataset=toy_classification(),
                      optimizers=(optimizer, MetaLRScheduler(optimizer)),
                      callbacks=[metalr_hf.MetaLRCallback()])  # fmt: skip
    with logged("reach log_history, not the trackers .*metalr_hf.enable"):
        trainer.train()
    assert all("meta/lr_scale" in h for h in trainer.state.log_history if "loss" in h)


# -- where users train -----------------------------------------------------------------------------------------------
def _learned(trainer, steps):
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert len(lrs) == steps and all(math.isfinite(x) and 0 <= x <= 10 * trainer.args.learning_rate for x in lrs)
    assert max(lrs) > 0.1 * trainer.args.learning_rate  # the schedule ran, not the guard's floor
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    return lrs


def test_lora_fine_tuning_with_peft(tmp_path):
    from conftest import pretrained_like
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(pretrained_like(tiny_bert()), LoraConfig(r=4, target_modules=["query", "value"],
                                                                    modules_to_save=["classifier"]))  # fmt: skip
    # at 1e-2 the fine-tuning learner cuts the LR to ~0.16x and this run barely learns in 60 steps (cosine does):
    # LoRA's usual LRs sit above full fine-tuning's, which that learner was not meta-trained on (issue 29)
    trainer = MetaTrainer(model=model, args=_args(tmp_path, max_steps=60, learning_rate=3e-2),
                          train_dataset=toy_classification())  # fmt: skip
    trainer.train()
    _learned(trainer, 60)
    assert trainer.lr_scheduler.opts.pretrained is True  # read from the base model's weights


@pytest.mark.parametrize("setting", ["bf16", "gradient_checkpointing", "adafactor"])
def test_bf16_gradient_checkpointing_and_adafactor(tmp_path, setting):
    extra = {"bf16": {"bf16": True}, "gradient_checkpointing": {"gradient_checkpointing": True},
             "adafactor": {"optim": "adafactor", "learning_rate": 1e-2}}[setting]  # fmt: skip
    trainer = MetaTrainer(model=tiny_bert(), args=_args(tmp_path, max_steps=30, **extra),
                          train_dataset=toy_classification())  # fmt: skip
    trainer.train()
    _learned(trainer, 30)
    if setting == "adafactor":  # read as adaptive, its update as the gradient normalised to RMS 1
        assert type(trainer.optimizer.optimizer).__name__ == "Adafactor"
        assert trainer.lr_scheduler.features_dict()["adaptive"] == 1.0


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(62)} | {"<pad>": 62, "<eos>": 63}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def test_trl_sft_trainer_takes_the_flag_under_enable(tmp_path):
    """trl's ``SFTTrainer`` keeps ``Trainer.create_scheduler``: ``enable()`` reaches it, feeds the loss it computes
    and logs the meta values."""
    from datasets import Dataset

    trl = pytest.importorskip("trl")
    text = [" ".join(f"t{(s + i) % 62}" for i in range(15)) for s in range(320)]
    metalr_hf.enable()
    try:
        args = trl.SFTConfig(str(tmp_path), max_steps=30, per_device_train_batch_size=16, learning_rate=3e-3,
                             lr_scheduler_type="meta", logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                             max_length=32, disable_tqdm=True)  # fmt: skip
        trainer = trl.SFTTrainer(model=tiny_gpt2(), args=args, train_dataset=Dataset.from_dict({"text": text}),
                                 processing_class=_tiny_tokenizer())  # fmt: skip
        with logged() as said:
            trainer.train()
    finally:
        metalr_hf.disable()
    assert isinstance(trainer.lr_scheduler, MetaLRScheduler)
    assert not [s.message for s in said if "received no loss" in s.message]
    assert all("meta/lr_scale" in h for h in trainer.state.log_history if "loss" in h)
    assert bool(trainer.lr_scheduler.last_signals.has_loss[0])
    _learned(trainer, 30)


def test_meta_trainer_mixes_into_another_trainer_subclass(tmp_path):
    """``class MyTrainer(MetaTrainer, OtherTrainer)``: MetaTrainer's behaviour on top of another subclass."""
    from transformers import Trainer

    class Counting(Trainer):
        calls = 0

        def compute_loss(self, *args, **kwargs):
            Counting.calls += 1
            return super().compute_loss(*args, **kwargs)

    class MetaCounting(MetaTrainer, Counting):
        pass

    trainer = MetaCounting(model=tiny_bert(), args=_args(tmp_path, max_steps=30), train_dataset=toy_classification())
    trainer.train()
    assert Counting.calls == 30 and isinstance(trainer.lr_scheduler, MetaLRScheduler)
    _learned(trainer, 30)


def test_hyperparameter_search_gives_each_trial_the_schedule_of_a_standalone_run(tmp_path):
    """``Trainer.hyperparameter_search`` (optuna, model_init) rebuilds the scheduler for every trial: each trial's
    LR trajectory is the one a standalone run at its learning rate gets, with nothing carried over between trials."""
    optuna = pytest.importorskip("optuna")
    from transformers import TrainerCallback

    grid = [1e-3, 1e-2]
    trials = []

    class Record(TrainerCallback):
        def on_train_end(self, args, state, control, lr_scheduler=None, **kw):
            lrs = [h["learning_rate"] for h in state.log_history if "learning_rate" in h]
            trials.append((args.learning_rate, type(lr_scheduler).__name__, lrs))

    data = toy_classification(n=96)
    trainer = MetaTrainer(model_init=lambda trial=None: tiny_bert(), args=_args(tmp_path, max_steps=10),
                          train_dataset=data, eval_dataset=data, callbacks=[Record()])  # fmt: skip
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {"learning_rate": trial.suggest_categorical("learning_rate", grid)},
        backend="optuna", n_trials=2, direction="minimize",
        sampler=optuna.samplers.GridSampler({"learning_rate": grid}),
    )  # fmt: skip
    assert sorted(lr for lr, _, _ in trials) == grid and best.hyperparameters["learning_rate"] in grid
    for lr, kind, lrs in trials:
        alone = MetaTrainer(model=tiny_bert(), args=_args(tmp_path / str(lr), max_steps=10, learning_rate=lr),
                            train_dataset=data)  # fmt: skip
        alone.train()
        assert kind == "MetaLRScheduler" and lrs == pytest.approx(_lrs(alone), rel=1e-6)


def test_the_readme_options_table_is_generated_from_the_dataclass():
    """One declaration of each option: its default and help live in ``MetaSchedulerOptions``; the README's table
    and ``metalr-hf show --options`` are generated from it."""
    from pathlib import Path

    from metalr_hf.options import MetaSchedulerOptions

    table = MetaSchedulerOptions.table()
    assert table in (Path(__file__).parents[1] / "README.md").read_text()
    assert _python("from metalr_hf.cli import main; main(['show', '--options'])") == table
    assert table.count("\n") == 1 + len(MetaSchedulerOptions.names())


def test_help_is_plain_text():
    out = _python("from metalr_hf.cli import make_parser; make_parser().print_help()")
    assert "``" not in out and ":class:" not in out and "metalr-hf" in out
