"""Hostile inputs and faults: each is refused with a message naming the culprit, or survived without harm."""

import json
import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import logged, perturbed_learner, tiny_bert, toy_classification

from metalr_hf import MetaLearner, MetaLRScheduler, MetaTrainer, MetaTrainingArguments
from metalr_hf._files import FolderInUseError, atomic_write, folder_lock


def _loop(scheduler_fn, steps, loss_at=None, observe=True, seed=0, sparse=False):
    """A small regression trained for ``steps``; ``loss_at(t, loss)`` replaces the loss the scheduler observes."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = scheduler_fn(optimizer)
    X = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    y = X.sum(1, keepdim=True).sin()
    lrs = []
    for t in range(steps):
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        if observe:
            scheduler.observe(loss_at(t, loss.detach()) if loss_at else loss.detach())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        lrs.append(scheduler.get_last_lr()[0])
    return scheduler, lrs


# -- 1. a learner that outputs non-finite values -------------------------------------------------------------------
def test_nonfinite_learner_output_falls_back_to_the_prior_and_warns_once_naming_it():
    broken = perturbed_learner(seed=3)
    with torch.no_grad():
        broken.head.bias.fill_(float("nan"))
    broken.source = {"name_or_path": "broken-learner", "revision": None}
    with logged("'broken-learner' returned a non-finite correction") as record:
        sched, lrs = _loop(lambda o: MetaLRScheduler(o, num_training_steps=30, meta_learner=broken), 30)
    assert sum("non-finite correction" in str(w.message) for w in record) == 1
    _, prior = _loop(lambda o: MetaLRScheduler(o, num_training_steps=30, meta_learner=MetaLearner()), 30)
    assert all(math.isfinite(x) for x in lrs)
    assert lrs == pytest.approx(prior, rel=1e-6)  # exactly the prior (δ ≡ 0), not NaN from step 2 on


# -- 2. a loss of exactly 0, or 1e-30, once -------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [200, 1000])
@pytest.mark.parametrize("outlier", [0.0, 1e-30])
def test_one_tiny_or_zero_loss_does_not_pin_the_lr_at_the_guard_floor(steps, outlier):
    fresh = MetaLearner()  # δ ≡ 0: the LR is the prior times the guards, so any guard action shows

    def make(o):
        return MetaLRScheduler(o, num_training_steps=steps, meta_learner=fresh)

    clean, clean_lrs = _loop(make, steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hit, hit_lrs = _loop(make, steps, loss_at=lambda t, loss: loss * 0 + outlier if t == steps // 4 else loss)
    assert float(hit.controller.guard_scale[0]) == 1.0
    assert hit_lrs == pytest.approx(clean_lrs, rel=1e-9)


def test_a_zero_loss_is_skipped_with_one_warning():
    fresh = MetaLearner()
    with logged("loss of exactly 0 at step 5"):
        sched, _ = _loop(
            lambda o: MetaLRScheduler(o, num_training_steps=20, meta_learner=fresh),
            20,
            loss_at=lambda t, loss: loss * 0 if t == 5 else loss,
        )
    assert sched.controller.extractor.state["n_loss"].item() == 19


# -- 3. negative losses -------------------------------------------------------------------------------------------
def test_negative_losses_switch_to_gradient_statistics_instead_of_reading_as_divergence():
    """An improving negative loss (a log-likelihood) was read through log|ℓ| as a growing loss: the guard cut the
    LR to the floor. Now the run reads the gradient statistics only, exactly as a run without a loss."""
    learner = perturbed_learner(seed=4)

    def make(o):
        return MetaLRScheduler(o, num_training_steps=60, meta_learner=learner)

    with logged("negative loss .* at step 0") as record:
        neg, neg_lrs = _loop(make, 60, loss_at=lambda t, loss: -1.0 - 0.1 * t - loss)
    assert sum("negative loss" in str(w.message) for w in record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, blind_lrs = _loop(make, 60, observe=False)
    assert neg_lrs == blind_lrs
    assert float(neg.controller.guard_scale[0]) == 1.0


# -- 4. a Hub token in lr_scheduler_kwargs -----------------------------------------------------------------------
def test_token_in_lr_scheduler_kwargs_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must not hold a Hub 'token'.*HF_TOKEN"):
        MetaTrainingArguments(
            str(tmp_path), lr_scheduler_type="meta", lr_scheduler_kwargs={"token": "hf_secret"}, report_to=[]
        )


# -- 6. sparse gradients -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt", ["sgd", "sparse_adam"])
def test_sparse_gradients_are_left_out_with_one_warning(opt):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 8, sparse=True)
    head = torch.nn.Linear(8, 1)
    if opt == "sgd":
        optimizer = torch.optim.SGD([*emb.parameters(), *head.parameters()], lr=0.1)
    else:
        optimizer = torch.optim.SparseAdam(list(emb.parameters()), lr=0.01)
    sched = MetaLRScheduler(optimizer, num_training_steps=20, meta_learner=perturbed_learner(seed=1))
    ids = torch.randint(0, 50, (16, 4))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(10):
            loss = head(emb(ids).mean(1)).pow(2).mean()
            loss.backward()
            sched.observe(loss.detach())
            optimizer.step()
            sched.step()
            optimizer.zero_grad()
    assert sum("sparse gradient" in str(w.message) for w in record) == 1
    assert all(math.isfinite(lr) and lr > 0 for lr in sched.get_last_lr())
    if opt == "sgd":  # the dense head is still read
        assert float(sched.last_signals.gg[0]) > 0


# -- 7. resume from a checkpoint without scheduler.pt -------------------------------------------------------------
def test_resume_from_a_checkpoint_without_scheduler_state_is_refused(tmp_path):
    def args(**kw):
        return MetaTrainingArguments(
            output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, learning_rate=3e-3, max_steps=8,
            save_strategy="steps", save_steps=4, report_to=[], lr_scheduler_type="meta", use_cpu=True,
            disable_tqdm=True, **kw,
        )  # fmt: skip

    MetaTrainer(model=tiny_bert(), args=args(), train_dataset=toy_classification(n=64)).train()
    checkpoint = tmp_path / "out" / "checkpoint-4"
    (checkpoint / "scheduler.pt").unlink()
    resumed = MetaTrainer(model=tiny_bert(), args=args(), train_dataset=toy_classification(n=64))
    with pytest.raises(ValueError, match="Resuming at step 4, but the MetaLRScheduler state was not restored"):
        resumed.train(resume_from_checkpoint=str(checkpoint))


# -- 8. two jobs, one output folder --------------------------------------------------------------------------------
def test_a_folder_in_use_by_a_live_job_is_refused_and_a_stale_lock_taken_over(tmp_path):
    from metalr_hf.bench.runner import run_suite

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".metalr-hf.lock").write_text(str(sleeper.pid))
        with pytest.raises(FolderInUseError, match=f"in use by another job \\(process {sleeper.pid}"):
            run_suite("smoke", tmp_path, progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    # the job was killed: its lock is stale and taken over
    with folder_lock(tmp_path):
        assert (tmp_path / ".metalr-hf.lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".metalr-hf.lock").exists()


def test_atomic_writers_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "results.json"
    seen = []

    def outer(tmp):
        seen.append(tmp)
        atomic_write(target, lambda inner: (seen.append(inner), open(inner, "w").write("inner")))
        open(tmp, "w").write("outer")

    atomic_write(target, outer)
    assert seen[0] != seen[1]
    assert target.read_text() == "outer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary file left


# -- 9. the smaller ones -------------------------------------------------------------------------------------------
def _sched(steps=10, groups=1):
    params = [torch.nn.Parameter(torch.ones(3)) for _ in range(groups)]
    opt = torch.optim.AdamW([{"params": [p]} for p in params], lr=1e-3)
    return MetaLRScheduler(opt, num_training_steps=steps, meta_learner=MetaLearner())


def test_load_state_dict_names_what_is_wrong():
    state = _sched().state_dict()
    truncated = {k: v for k, v in state.items() if k != "controller"}
    with pytest.raises(ValueError, match=r"missing keys \['controller'\]"):
        _sched().load_state_dict(truncated)
    with pytest.raises(ValueError, match=r"unexpected keys \['surprise'\]"):
        _sched().load_state_dict({**state, "surprise": 1})
    with pytest.raises(ValueError, match="holds 1 base_lrs .* this optimizer has 2 param groups"):
        _sched(groups=2).load_state_dict(state)
    for bad in ("cosinus", ["wsd"], 3):
        with pytest.raises(ValueError, match=r"'prior' is damaged: Unknown prior"):
            _sched().load_state_dict({**state, "prior": bad})


@pytest.mark.parametrize("bad, error", [(torch.tensor([]), ValueError), ("0.5", TypeError), (None, TypeError)])
def test_observe_rejects_what_is_not_a_loss(bad, error):
    with pytest.raises(error, match="observe"):
        _sched().observe(bad)


@pytest.mark.parametrize("steps", [10.5, float("nan"), float("inf"), "10"])
def test_num_training_steps_must_be_a_whole_number(steps):
    with pytest.raises(ValueError, match="num_training_steps > 0 \\(a whole number\\)"):
        _sched(steps=steps)


def test_bundled_name_shadowing_a_local_folder_says_which_is_loaded(tmp_path, monkeypatch):
    mine = perturbed_learner(seed=9)
    mine.save_pretrained(tmp_path / "metalr-default-v1")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="bundled learner is loaded. Pass './metalr-default-v1'"):
        bundled = MetaLearner.from_pretrained("metalr-default-v1")
    local = MetaLearner.from_pretrained("./metalr-default-v1")
    assert bundled.fingerprint() != local.fingerprint() == mine.fingerprint()


def _cli(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **kw.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-m", "metalr_hf.cli", *args], capture_output=True, text=True, env=env, **kw
    )


def test_push_offline_is_one_line_and_exit_2(tmp_path):
    MetaLearner().save_pretrained(tmp_path / "learner")
    proc = _cli("push", str(tmp_path / "learner"), "--repo-id", "org/x")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cannot be reached" in proc.stderr


def test_show_into_a_closed_pipe_is_quiet():
    """`metalr-hf show | head`: the reader is gone before the output is written."""
    code = (
        "import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1); "
        "from metalr_hf.cli import main; sys.exit(main(['show']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr


def test_card_json_with_a_config_key_is_refused_naming_it(tmp_path):
    from metalr_hf.cards import learner_card

    learner = MetaLearner()
    learner.save_pretrained(tmp_path)
    (tmp_path / "card.json").write_text(json.dumps({"core": "lstm", "training": "..."}))
    with pytest.raises(ValueError, match=r"card.json' holds \['core'\]"):
        learner_card(learner, folder=tmp_path)


def test_damaged_results_and_checkpoint_name_the_file(tmp_path):
    from metalr_hf.bench.runner import run_suite
    from metalr_hf.metatrain.es import meta_train

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "results.json").write_text('[{"task": ')
    with pytest.raises(ValueError, match="results.json' is damaged"):
        run_suite("smoke", tmp_path / "bench", progress=False)
    (tmp_path / "mt").mkdir()
    (tmp_path / "mt" / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="checkpoint.pt' cannot be read"):
        meta_train("smoke", tmp_path / "mt", progress=False, evaluate_at_end=False, iterations=1)


def test_a_first_step_that_is_not_finite_keeps_the_initial_features():
    """A run whose very first signals are not finite: the learner is fed the initial (zero) features, all of them."""
    from metalr_hf.features import FEATURE_NAMES, FeatureExtractor

    ext = FeatureExtractor(10)
    x = dict(loss=1.0, grad_norm=0.0, gg=0.0, gm=0.0, mm=0.0, g_upd=0.0, upd_sq=0.0, ww=0.0, vv=float("nan"),
             adaptive=0.0)  # fmt: skip
    assert ext.update_values(x, False, True, 1.0, 0.0) == [0.0] * len(FEATURE_NAMES)
