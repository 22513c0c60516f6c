"""`metalr-hf run` / `python -m metalr_hf.run` / `metalr_hf.enable()`: one flag in an unmodified Trainer script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port, launch_ranks

SCRIPT = str(Path(__file__).parent / "scripts" / "train_like_examples.py")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _common(out, *extra):
    return [
        "--output_dir", str(out), "--max_steps", "8", "--logging_steps", "1", "--per_device_train_batch_size", "8",
        "--learning_rate", "3e-3", "--use_cpu", "--seed", "0", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def _launch(prefix, out, *extra, ranks=1):
    cmd = [*prefix, SCRIPT, *_common(out, *extra)]
    if ranks > 1:
        return launch_ranks(cmd, [Path(out) / f"log_history-{r}.json" for r in range(ranks)], env=ENV)
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _history(out, rank=0):
    return json.loads((Path(out) / f"log_history-{rank}.json").read_text())


def _lrs(history, after=0):
    return [h["learning_rate"] for h in history if "learning_rate" in h and h["step"] > after]


CLI = [sys.executable, "-m", "metalr_hf.cli", "run"]
MODULE = [sys.executable, "-m", "metalr_hf.run"]
PLAIN = [sys.executable]


def test_unmodified_script_runs_meta_logs_to_tensorboard_and_resumes(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "meta"
    _launch(CLI, out, "--lr_scheduler_type", "meta", "--report_to", "tensorboard", "--save_strategy", "steps",
            "--save_steps", "4")  # fmt: skip
    history = _history(out)
    logged = [h for h in history if "loss" in h]
    assert len(logged) == 8 and all("meta/lr_scale" in h and "meta/delta" in h for h in logged)
    assert not any(k.startswith("meta/feature/") for k in logged[0])  # console stays short by default
    # the same values reached TensorBoard
    (event_file,) = list(out.rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(event_file.parent))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "train/meta/lr_scale" in scalars and "train/meta/delta" in scalars
    tb = [e.value for e in acc.Scalars("train/meta/lr_scale")]
    assert tb == pytest.approx([h["meta/lr_scale"] for h in logged], rel=1e-5)
    # resumed from the step-4 checkpoint, the same LR trajectory continues
    resumed = tmp_path / "resumed"
    _launch(MODULE, resumed, "--lr_scheduler_type", "meta", "--report_to", "none",
            "--resume_from_checkpoint", str(out / "checkpoint-4"))  # fmt: skip
    assert _lrs(_history(resumed), after=4) == pytest.approx(_lrs(history, after=4), rel=1e-6)
    assert len(_lrs(history, after=4)) == 4


def test_a_stock_scheduler_through_the_launcher_is_the_same_run(tmp_path):
    _launch(PLAIN, tmp_path / "plain", "--lr_scheduler_type", "cosine", "--report_to", "none")
    _launch(CLI, tmp_path / "launched", "--lr_scheduler_type", "cosine", "--report_to", "none")
    a, b = _history(tmp_path / "plain"), _history(tmp_path / "launched")
    strip = ("train_runtime", "train_samples_per_second", "train_steps_per_second")
    assert [{k: v for k, v in h.items() if k not in strip} for h in a] == [
        {k: v for k, v in h.items() if k not in strip} for h in b
    ]


def test_without_the_launcher_meta_is_an_invalid_choice(tmp_path):
    proc = subprocess.run([*PLAIN, SCRIPT, *_common(tmp_path, "--lr_scheduler_type", "meta")], env=ENV,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode != 0 and "invalid choice: 'meta'" in proc.stderr


def test_two_ranks_under_torchrun_set_identical_lrs(tmp_path):
    prefix = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(free_port()), "-m", "metalr_hf.run"]  # fmt: skip
    _launch(prefix, tmp_path, "--lr_scheduler_type", "meta", "--report_to", "none", "--ddp_backend", "gloo", ranks=2)
    r0, r1 = _history(tmp_path, 0), _history(tmp_path, 1)
    assert len(_lrs(r0)) == 8 and _lrs(r0) == _lrs(r1)
    assert [h["meta/lr_scale"] for h in r0 if "loss" in h] == [h["meta/lr_scale"] for h in r1 if "loss" in h]


def test_launcher_usage_errors_exit_2(tmp_path):
    proc = subprocess.run([*CLI, str(tmp_path / "nope.py")], env=ENV, capture_output=True, text=True)
    assert proc.returncode == 2 and "no script" in proc.stderr


@pytest.fixture
def enabled():
    import metalr_hf

    metalr_hf.enable()
    yield
    metalr_hf.disable()


def test_enable_accepts_meta_everywhere_and_disable_takes_it_back(enabled, tmp_path):
    from transformers import HfArgumentParser, TrainingArguments, get_scheduler
    from transformers.trainer_utils import SchedulerType

    import metalr_hf

    parser = HfArgumentParser(TrainingArguments)
    assert "meta" in parser.format_help()
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--lr_scheduler_type", "meta", "--report_to", "none"]
    )
    assert args.to_dict()["lr_scheduler_type"] == "meta"
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=1e-3)
    sched = get_scheduler("meta", opt, num_warmup_steps=2, num_training_steps=10, scheduler_specific_kwargs={})
    assert isinstance(sched, metalr_hf.MetaLRScheduler) and sched.num_training_steps == 10
    with pytest.raises(ValueError, match="Unknown key.*meta_lerner"):
        get_scheduler("meta", opt, num_warmup_steps=0, num_training_steps=10,
                      scheduler_specific_kwargs={"meta_lerner": "x"})  # fmt: skip
    metalr_hf.disable()
    with pytest.raises(ValueError, match="meta is not a valid SchedulerType"):
        SchedulerType("meta")
    assert len(list(SchedulerType)) == len(SchedulerType.__members__)
    metalr_hf.enable()  # the fixture disables again


def _stock_trajectories():
    from transformers import get_scheduler
    from transformers.trainer_utils import SchedulerType

    out = {}
    for name in [s.value for s in SchedulerType if s.value not in ("meta", "reduce_lr_on_plateau", "greedy")]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
        kwargs = {"min_lr_rate": 0.1} if "min_lr" in name else {"num_decay_steps": 3} if "stable" in name else None
        sched = get_scheduler(name, opt, num_warmup_steps=2, num_training_steps=10, scheduler_specific_kwargs=kwargs)
        lrs = []
        for _ in range(10):
            opt.step()
            sched.step()
            lrs.append(sched.get_last_lr()[0])
        out[name] = (type(sched), lrs)
    return out


def test_enable_leaves_stock_schedulers_exactly_as_they_were(enabled):
    import metalr_hf

    with_meta = _stock_trajectories()
    metalr_hf.disable()
    try:
        assert _stock_trajectories() == with_meta and len(with_meta) >= 9
    finally:
        metalr_hf.enable()


def test_stock_trainer_with_the_callback_logs_meta_values_to_log_history(tmp_path):
    """The path without the launcher: a stock Trainer, a MetaLRScheduler built without a horizon (the Trainer's
    epochs set it) and MetaLRCallback, under ``enable()``; the meta values reach log_history and TensorBoard
    (without ``enable()`` they reach log_history only, and the callback says so: ``test_hf_native``)."""
    from conftest import tiny_bert, toy_classification
    from transformers import Trainer, TrainingArguments

    import metalr_hf
    from metalr_hf import MetaLRCallback, MetaLRScheduler

    model = tiny_bert()
    args = TrainingArguments(str(tmp_path), num_train_epochs=2, per_device_train_batch_size=16, logging_steps=1,
                             report_to=["tensorboard"], use_cpu=True, disable_tqdm=True)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = MetaLRScheduler(optimizer)
    trainer = Trainer(model=model, args=args, train_dataset=toy_classification(n=64),
                      optimizers=(optimizer, scheduler), callbacks=[MetaLRCallback()])  # fmt: skip
    metalr_hf.enable()
    try:
        trainer.train()
    finally:
        metalr_hf.disable()
    assert scheduler.num_training_steps == trainer.state.max_steps == 8
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 8 and all("meta/lr_scale" in h for h in logged)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (event_file,) = list(tmp_path.rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(event_file.parent))
    acc.Reload()
    assert [e.value for e in acc.Scalars("train/meta/lr_scale")] == pytest.approx([h["meta/lr_scale"] for h in logged])
