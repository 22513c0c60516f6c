"""MetaLRScheduler in a plain PyTorch loop, get_scheduler, and the batched controller used by meta-training."""

import io
import logging
import math

import pytest
import torch
from conftest import boosting_learner, logged, perturbed_learner
from transformers import get_scheduler as hf_get_scheduler
from transformers.trainer_utils import SchedulerType

from metalr_hf import MetaLRScheduler, get_scheduler
from metalr_hf.controller import MetaController
from metalr_hf.reader import optimizer_signals
from metalr_hf.schedules import cosine, wsd
from metalr_hf.signals import Signals


def _problem(seed=0, groups=False, opt="adamw", lr=1e-2):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    params = (
        [{"params": model[0].parameters(), "lr": lr}, {"params": model[2].parameters(), "lr": lr / 10}]
        if groups
        else model.parameters()
    )
    if opt == "adamw":
        optimizer = torch.optim.AdamW(params, lr=lr)
    else:
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    X = torch.randn(128, 8, generator=torch.Generator().manual_seed(1))
    y = X.sum(1, keepdim=True).sin()
    return model, optimizer, X, y


def _steps(model, optimizer, scheduler, X, y, steps, nan_at=(), observe=True):
    """``steps`` optimizer steps of full-batch regression on ``(X, y)``: the LRs after each step and the losses."""
    lrs, losses = [], []
    for t in range(steps):
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        if observe:
            # a NaN reading of the loss (the weights stay clean, so that recovery can be seen)
            scheduler.observe(loss.detach() * float("nan") if t in nan_at else loss.detach())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        lrs.append(scheduler.get_last_lr())
        losses.append(loss.item())
    return lrs, losses


def _run(scheduler_fn, steps=40, nan_at=(), observe=True, **kw):
    model, optimizer, X, y = _problem(**kw)
    scheduler = scheduler_fn(optimizer)
    lrs, losses = _steps(model, optimizer, scheduler, X, y, steps, nan_at, observe)
    return scheduler, lrs, losses, model


def test_plain_loop_learns_and_respects_param_group_base_lrs():
    learner = perturbed_learner(seed=7)
    sched, lrs, losses, _ = _run(
        lambda o: MetaLRScheduler(o, num_training_steps=40, num_warmup_steps=4, meta_learner=learner), groups=True
    )
    assert losses[-1] < losses[0]
    # every group keeps its own base LR; the ratio between groups is exactly preserved
    assert all(a == pytest.approx(10 * b) for a, b in lrs)
    # get_last_lr is what the optimizer uses
    assert sched.get_last_lr() == [g["lr"] for g in sched.optimizer.param_groups]
    # the learner moved the LR away from the prior (WSD by default)
    prior = [1e-2 * float(wsd(t + 1, 40, 4)) for t in range(39)]
    assert max(abs(a[0] / p - 1) for a, p in zip(lrs[:39], prior) if p > 0) > 0.05


def test_fresh_learner_reproduces_prior_exactly():
    from metalr_hf import MetaLearner

    make = lambda o: MetaLRScheduler(o, num_training_steps=30, meta_learner=MetaLearner(), prior="cosine")  # noqa: E731
    _, lrs, _, _ = _run(make, steps=30)
    model, opt, _, _ = _problem()
    ref = hf_get_scheduler("cosine", opt, num_warmup_steps=0, num_training_steps=30)
    for t in range(30):
        opt.step()
        ref.step()
        assert lrs[t][0] == pytest.approx(ref.get_last_lr()[0], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    "pretrained, prior, schedule",
    [(False, None, wsd), (True, None, wsd), (False, "auto", cosine), (True, "auto", wsd), (True, "cosine", cosine)],
)
def test_the_default_prior_is_wsd_and_auto_is_wsd_on_fine_tuning_runs_only(pretrained, prior, schedule):
    """A learner that outputs 0 follows the prior: by default WSD on every run (from scratch too); ``"auto"``
    (the default before) WSD on a run marked pretrained, cosine otherwise; an explicit prior holds for every run."""
    from metalr_hf import MetaLearner

    kw = {} if prior is None else {"prior": prior}
    make = lambda o: MetaLRScheduler(  # noqa: E731
        o, num_training_steps=30, num_warmup_steps=3, meta_learner=MetaLearner(), pretrained=pretrained, **kw
    )
    sched, lrs, _, _ = _run(make, steps=30)
    assert [lr[0] for lr in lrs] == pytest.approx([1e-2 * schedule(t + 1, 30, 3) for t in range(30)], abs=1e-12)
    assert sched.controller.run_prior() == schedule.__name__


def test_auto_prior_of_a_population_is_each_runs_own():
    """The batched controller (meta-training, evaluation) resolves "auto" run by run, as the scheduler does."""
    from metalr_hf import MetaLearner

    pretrained = torch.tensor([0.0, 1.0, 1.0, 0.0])
    batched = MetaController(MetaLearner(), torch.tensor([20.0, 20.0, 50.0, 50.0]), 2, batch_size=4,
                             pretrained=pretrained, prior="auto")  # fmt: skip
    for step in (0, 1, 5, 17, 19, 40):
        want = [float(f(step, T, 2)) for f, T in ((cosine, 20), (wsd, 20), (wsd, 50), (cosine, 50))]
        assert batched.scale(step).tolist() == pytest.approx(want, abs=1e-12)
        for run, (flag, T) in enumerate(((False, 20), (True, 20), (True, 50), (False, 50))):
            one = MetaController(MetaLearner(), T, 2, pretrained=flag, prior="auto")
            assert one.scale_value(step) == pytest.approx(want[run], abs=1e-12)


def test_a_resumed_run_keeps_the_prior_of_its_checkpoint():
    """A run written with ``prior="auto"`` (a pretrained run: WSD) resumes on it under the default options, one
    written with cosine on cosine: the LR does not jump at the resume; a state without its prior is refused."""
    from metalr_hf import MetaLearner

    learner = MetaLearner()
    for written_with, schedule in (("auto", wsd), ("cosine", cosine)):
        model, optimizer, X, y = _problem()
        first = MetaLRScheduler(optimizer, num_training_steps=20, meta_learner=learner, pretrained=True,
                                prior=written_with)  # fmt: skip
        _steps(model, optimizer, first, X, y, 8)
        state = first.state_dict()
        model2, optimizer2, _, _ = _problem(seed=123)
        model2.load_state_dict(model.state_dict())
        resumed = MetaLRScheduler(optimizer2, num_training_steps=20, meta_learner=learner)  # the default options
        optimizer2.load_state_dict(optimizer.state_dict())
        resumed.load_state_dict(state)
        after, _ = _steps(model2, optimizer2, resumed, X, y, 8)
        assert [lr[0] for lr in after] == pytest.approx([1e-2 * schedule(t, 20, 0) for t in range(9, 17)], abs=1e-12)
        assert resumed.state_dict()["prior"] == written_with
    assert wsd(12, 20, 0) != pytest.approx(cosine(12, 20, 0))
    del state["prior"]
    with pytest.raises(ValueError, match=r"missing keys \['prior'\]"):
        MetaLRScheduler(optimizer2, num_training_steps=20, meta_learner=learner).load_state_dict(state)


def test_without_observe_warns_once_and_runs_on_gradients():
    with logged() as records:
        sched, lrs, _, _ = _run(
            lambda o: MetaLRScheduler(o, num_training_steps=20, meta_learner=perturbed_learner(seed=8)),
            steps=20,
            observe=False,
        )
    assert sum("received no loss" in str(r.message) for r in records) == 1
    assert all(math.isfinite(x[0]) for x in lrs)
    feats = sched.features_dict()
    assert feats["loss_missing"] == 1.0 and feats["log_loss_rel"] == 0.0
    assert feats["grad_norm_rel"] != 0.0  # the gradient statistics are live


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_nan_steps_skip_the_learner_back_off_and_recover(opt):
    learner = perturbed_learner(seed=9)
    with logged("non-finite") as records:
        sched, lrs, _, _ = _run(
            lambda o: MetaLRScheduler(o, num_training_steps=60, meta_learner=learner),
            steps=60,
            nan_at=(10, 11, 30),
            opt=opt,
        )
    assert sum("non-finite" in str(r.message) for r in records) == 2  # one warning per incident
    assert all(math.isfinite(x[0]) and x[0] >= 0 for x in lrs)
    assert sched.controller.backoff.item() == pytest.approx(1.0)  # recovered
    assert sched.controller.extractor.state["n_loss"].item() == 57  # the bad steps never reached the statistics


def test_backoff_halves_the_lr_on_a_bad_step():
    learner = perturbed_learner(seed=9)
    _, clean, _, _ = _run(lambda o: MetaLRScheduler(o, num_training_steps=30, meta_learner=learner), steps=12)
    with logged("non-finite"):
        _, bad, _, _ = _run(
            lambda o: MetaLRScheduler(o, num_training_steps=30, meta_learner=learner), steps=12, nan_at=(10,)
        )
    # the step after the NaN runs at half the LR the learner would otherwise have kept (δ frozen)
    assert bad[10][0] < 0.75 * clean[10][0]


def test_the_scheduler_sets_the_lrs_as_torch_s_own_step_does(monkeypatch):
    """The scheduler sets the param groups' LRs itself once torch's first-call checks are done (`_set_lrs`): the
    LRs, `get_last_lr()`, the step counters and the state dict equal those of a run through `LRScheduler.step`."""
    learner = perturbed_learner(seed=10)
    make = lambda o: MetaLRScheduler(o, num_training_steps=30, meta_learner=learner)  # noqa: E731
    own, lrs_own, _, _ = _run(make, steps=30, groups=True)
    monkeypatch.setattr(MetaLRScheduler, "_set_lrs", lambda self: False)  # every step through torch's step()
    torch_s, lrs_torch, _, _ = _run(make, steps=30, groups=True)
    assert lrs_own == lrs_torch and len({lr[0] for lr in lrs_own}) > 10  # the LR moved, alike
    assert [g["lr"] for g in own.optimizer.param_groups] == [g["lr"] for g in torch_s.optimizer.param_groups]
    assert (own.last_epoch, own._step_count) == (torch_s.last_epoch, torch_s._step_count) == (30, 31)
    assert _save(own.state_dict()) == _save(torch_s.state_dict())


@pytest.mark.parametrize("pretrained", [False, True])
def test_state_dict_is_weights_only_and_resume_is_exact(pretrained):
    """Resumed in a scheduler built with the defaults: the checkpoint brings the run's `pretrained` feature too."""
    learner = perturbed_learner(seed=10)
    make = lambda o, **kw: MetaLRScheduler(o, num_training_steps=40, meta_learner=learner, **kw)  # noqa: E731
    _, full, _, _ = _run(lambda o: make(o, pretrained=pretrained), steps=40)
    # run 20 steps, save model, optimizer and scheduler, then continue in fresh objects
    model, optimizer, X, y = _problem()
    sched = make(optimizer, pretrained=pretrained)
    _steps(model, optimizer, sched, X, y, 20)
    buf = io.BytesIO()
    torch.save({"m": model.state_dict(), "o": optimizer.state_dict(), "s": sched.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2, optimizer2, _, _ = _problem(seed=123)
    model2.load_state_dict(ckpt["m"])
    sched2 = make(optimizer2)
    optimizer2.load_state_dict(ckpt["o"])
    sched2.load_state_dict(ckpt["s"])
    rest, _ = _steps(model2, optimizer2, sched2, X, y, 20)
    for a, b in zip(full[20:], rest):
        assert a[0] == pytest.approx(b[0], rel=1e-6)


def test_checkpoint_of_another_learner_is_refused():
    _, opt, _, _ = _problem()
    a = MetaLRScheduler(opt, num_training_steps=10, meta_learner=perturbed_learner(seed=1))
    b = MetaLRScheduler(opt, num_training_steps=10, meta_learner=perturbed_learner(seed=2))
    with pytest.raises(ValueError, match="fingerprint"):
        b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("steps", [0, -5])
def test_num_training_steps_required(steps):
    _, opt, _, _ = _problem()
    with pytest.raises(ValueError, match="num_training_steps > 0"):
        MetaLRScheduler(opt, num_training_steps=steps)


def test_horizon_set_later_gives_the_same_run_and_stepping_without_it_is_refused():
    learner = perturbed_learner(seed=3)
    _, lrs, _, _ = _run(lambda o: MetaLRScheduler(o, num_training_steps=20, meta_learner=learner), steps=20)

    def later(o):
        sched = MetaLRScheduler(o, meta_learner=learner)
        sched.set_num_training_steps(20)
        return sched

    _, lrs_later, _, _ = _run(later, steps=20)
    assert lrs_later == lrs
    with pytest.raises(RuntimeError, match="num_training_steps=None .* MetaLRCallback"):
        _run(lambda o: MetaLRScheduler(o, meta_learner=learner), steps=2)


def test_unknown_option_and_missing_learner(tmp_path):
    _, opt, _, _ = _problem()
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['meta_lerner'\]"):
        MetaLRScheduler(opt, num_training_steps=10, meta_lerner="x")
    with pytest.raises(FileNotFoundError, match="missing-dir"):
        MetaLRScheduler(opt, num_training_steps=10, meta_learner=str(tmp_path / "missing-dir"))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        MetaLRScheduler(opt, num_training_steps=10, meta_learner="no-such-org/no-such-learner")


def _trajectory(sched, opt, n=25):
    out = []
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
    return out


@pytest.mark.parametrize("name", [s.value for s in SchedulerType])
def test_get_scheduler_equals_transformers_for_stock_names(name):
    kwargs = {"min_lr_rate": 0.1} if "min_lr" in name else None
    if name == "warmup_stable_decay":
        kwargs = {"num_decay_steps": 5}
    _, opt_a, _, _ = _problem()
    _, opt_b, _, _ = _problem()
    ours = get_scheduler(name, opt_a, num_warmup_steps=3, num_training_steps=25, scheduler_specific_kwargs=kwargs)
    ref = hf_get_scheduler(name, opt_b, num_warmup_steps=3, num_training_steps=25, scheduler_specific_kwargs=kwargs)
    assert type(ours) is type(ref)
    if name in ("reduce_lr_on_plateau", "greedy"):
        return  # driven by metrics, not steps
    assert _trajectory(ours, opt_a) == _trajectory(ref, opt_b)


def test_get_scheduler_meta():
    _, opt, _, _ = _problem()
    sched = get_scheduler(
        "meta", opt, num_warmup_steps=2, num_training_steps=10, scheduler_specific_kwargs={"prior": "linear"}
    )
    assert isinstance(sched, MetaLRScheduler) and sched.controller.prior == "linear"


def test_controller_batched_equals_single_runs():
    """A population of runs in one controller gives the same LRs as each run alone (meta-training parity)."""
    learner = perturbed_learner(seed=11)
    B, T = 3, 15
    gen = torch.Generator().manual_seed(0)
    seq = [
        {k: torch.rand(B, generator=gen) + 0.1 for k in ("loss", "grad_norm", "gg", "mm", "upd_sq", "ww", "vv")}
        for _ in range(T)
    ]
    for s in seq:
        s["gm"] = torch.randn(B, generator=gen)
        s["g_upd"] = -torch.rand(B, generator=gen)
        s["adaptive"] = torch.ones(B)
        s["has_loss"] = torch.ones(B, dtype=torch.bool)
    horizons = torch.tensor([15.0, 40.0, 100.0])
    batched = MetaController(learner, horizons, batch_size=B)
    singles = [MetaController(learner, horizons[i : i + 1]) for i in range(B)]
    for t, s in enumerate(seq):
        batched.update(Signals(**s))
        for i, c in enumerate(singles):
            c.update(Signals(**{k: v[i : i + 1] for k, v in s.items()}))
        scale_b = batched.scale(t + 1)
        for i, c in enumerate(singles):
            assert float(scale_b[i]) == pytest.approx(float(c.scale(t + 1)[0]), rel=1e-5)


def test_optimizer_signals_are_consistent():
    model, opt, X, y = _problem(opt="sgd")
    for _ in range(3):
        torch.nn.functional.mse_loss(model(X), y).backward()
        opt.step()
    stats = optimizer_signals(opt)
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    bufs = torch.cat([opt.state[p]["momentum_buffer"].flatten() for p in model.parameters()])
    assert float(stats["gg"]) == pytest.approx(float(grads @ grads), rel=1e-5)
    assert float(stats["gm"]) == pytest.approx(float(grads @ bufs) * 0.1, rel=1e-5)
    assert float(stats["g_upd"]) == pytest.approx(-1e-2 * float(grads @ bufs), rel=1e-5)
    assert float(stats["adaptive"]) == 0.0


def _scripted(scheduler, vectors):
    """Feed the scheduler a fixed sequence of signal vectors (so that they do not depend on the LR)."""
    it = iter(vectors)
    scheduler._collect_signals = lambda: next(it).clone()
    out = []
    for _ in vectors:
        scheduler.optimizer.step()
        scheduler.step()
        prior = float(scheduler.controller.prior_at(scheduler.last_epoch)[0])
        assert scheduler.get_last_lr()[0] == pytest.approx(scheduler.base_lrs[0] * prior * scheduler.last_scale)
        out.append(scheduler.last_scale)
    return out


def _signal_vectors(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    vecs = []
    for t in range(n):
        v = torch.rand(11, generator=gen, dtype=torch.float64) + 0.1
        v[0] = 2.0 * 0.97**t  # a decreasing loss
        v[1] = 1.0  # has_loss
        v[6] = -v[6]  # g·Δw < 0
        v[10] = 1.0  # adaptive
        vecs.append(v[None])
    return vecs


def test_decision_lag_applies_the_same_decisions_one_step_later():
    learner = perturbed_learner(seed=12)
    vecs = _signal_vectors(20)
    _, o1, _, _ = _problem()
    _, o2, _, _ = _problem()
    now = _scripted(MetaLRScheduler(o1, num_training_steps=30, meta_learner=learner, decision_lag=0), vecs)
    later = _scripted(MetaLRScheduler(o2, num_training_steps=30, meta_learner=learner, decision_lag=1), vecs)
    assert later[0] == pytest.approx(1.0)  # nothing decided yet
    for a, b in zip(now[:-1], later[1:]):
        assert b == pytest.approx(a, rel=1e-9)
    assert max(now) - min(now) > 0.05


def test_decision_lag_state_round_trip():
    learner = perturbed_learner(seed=13)
    vecs = _signal_vectors(16, seed=1)
    _, o1, _, _ = _problem()
    full = _scripted(MetaLRScheduler(o1, num_training_steps=30, meta_learner=learner, decision_lag=1), vecs)
    _, o2, _, _ = _problem()
    first = MetaLRScheduler(o2, num_training_steps=30, meta_learner=learner, decision_lag=1)
    _scripted(first, vecs[:8])
    state = torch.load(io.BytesIO(_save(first.state_dict())), weights_only=True)
    _, o3, _, _ = _problem()
    second = MetaLRScheduler(o3, num_training_steps=30, meta_learner=learner, decision_lag=1)
    second.load_state_dict(state)
    assert _scripted(second, vecs[8:]) == pytest.approx(full[8:], rel=1e-9)


def _save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_divergence_guard_overrides_a_learner_that_boosts():
    from metalr_hf import MetaLearner

    learner = MetaLearner(max_delta=1.0)
    torch.nn.init.constant_(learner.head.bias, 10.0)  # always δ = +δ_max
    vecs = _signal_vectors(40)
    for t, v in enumerate(vecs):
        v[0, 0] = 1.0 if t < 10 else 1.0 * 1.5 ** (t - 9)  # the loss blows up from step 10 on
    _, opt, _, _ = _problem()
    sched = MetaLRScheduler(opt, num_training_steps=40, meta_learner=learner, smoothing=0.0)
    scales = _scripted(sched, vecs)
    assert scales[5] == pytest.approx(math.e, rel=1e-6)  # the learner's boost, before the blow-up
    assert scales[-1] < 0.05  # the guard drove the LR down whatever the learner says
    assert sched.controller.guard_scale.item() < 0.05


def test_sampled_signals_estimate_the_exact_sums():
    """Above the element budget the statistics are read on sampled blocks: estimates close to the exact sums."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(300, 300), torch.nn.Linear(300, 10))
    for kind in ("adamw", "sgd"):
        opt = (
            torch.optim.AdamW(model.parameters(), lr=1e-3)
            if kind == "adamw"
            else torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
        )
        for _ in range(3):
            for p in model.parameters():
                p.grad = torch.randn_like(p) + 0.5 * p.detach()
            opt.step()
        exact = optimizer_signals(opt, max_elements=None)
        for offset in (0, 7):
            est = optimizer_signals(opt, max_elements=20_000, offset=offset)  # ~1 element in 5
            for k in ("gg", "gm", "mm", "g_upd", "upd_sq", "ww", "vv"):
                if float(exact[k]) != 0:
                    assert float(est[k]) == pytest.approx(float(exact[k]), rel=0.05), (kind, k)


def test_skipped_optimizer_step_backs_off_without_advancing():
    """An optimizer step the Trainer skipped (fp16 overflow) never reaches the learner and halves the LR."""
    learner = perturbed_learner(seed=14)
    _, opt, _, _ = _problem()
    sched = MetaLRScheduler(opt, num_training_steps=30, meta_learner=learner)
    _scripted(sched, _signal_vectors(6))
    epoch, lr, n_loss = sched.last_epoch, sched.get_last_lr()[0], sched.controller.extractor.state["n_loss"].item()
    with logged("non-finite"):
        sched.skip_step()
    assert sched.last_epoch == epoch
    assert sched.get_last_lr()[0] == pytest.approx(lr / 2) == opt.param_groups[0]["lr"]
    assert sched.controller.extractor.state["n_loss"].item() == n_loss


@pytest.mark.parametrize(
    "reads_pretrained, pretrained, max_boost, expected",
    [
        (False, True, "auto", 1.0),  # never shown a pretrained model: it may only lower that LR
        (False, False, "auto", math.exp(2.0)),  # from scratch: its own bound
        (True, True, "auto", math.exp(2.0)),  # taught the feature: trusted
        (False, True, None, math.exp(2.0)),  # cap lifted
        (False, False, 3.0, 3.0),  # an explicit cap holds for every run
        (True, True, 1.5, 1.5),
    ],
)
def test_max_boost_caps_the_correction(reads_pretrained, pretrained, max_boost, expected):
    from metalr_hf.features import FEATURE_NAMES
    from metalr_hf.metatrain.presets import BASE_FEATURES

    learner = boosting_learner(FEATURE_NAMES if reads_pretrained else BASE_FEATURES)
    sched, lrs, _, _ = _run(
        lambda o: MetaLRScheduler(
            o,
            num_training_steps=20,
            meta_learner=learner,
            pretrained=pretrained,
            max_boost=max_boost,
            guard=False,
            smoothing=0.0,
        ),
        steps=20,
    )
    prior = [1e-2 * float(wsd(t + 1, 20, 0)) for t in range(20)]  # the default prior, from scratch too
    ratios = [lr[0] / p for lr, p in zip(lrs[:-1], prior[:-1])]
    assert max(ratios) == pytest.approx(expected, rel=1e-3)
    assert sched.last_scale == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("bad", [0.5, "high", True, -1])
def test_bad_max_boost_is_refused_naming_it(bad):
    _, optimizer, _, _ = _problem()
    with pytest.raises(ValueError, match="max_boost"):
        MetaLRScheduler(optimizer, num_training_steps=10, max_boost=bad)


@pytest.mark.parametrize("warmup", [0, 6])
def test_peak_cap_holds_the_lr_at_most_at_the_base_lr_and_never_skips_the_warmup(warmup):
    """max_boost="peak": a learner that boosts may keep the LR from decaying, never above what the user chose, and
    never above the warmup's ramp (before, a boosting learner jumped to the full base LR at the second step, which
    diverged an LSTM at its right LR on the quick bench)."""
    from metalr_hf.features import FEATURE_NAMES

    learner = boosting_learner(FEATURE_NAMES)
    _, lrs, _, _ = _run(
        lambda o: MetaLRScheduler(
            o, num_training_steps=20, num_warmup_steps=warmup, meta_learner=learner, max_boost="peak", guard=False,
            prior="cosine",
        ),
        steps=20,
    )  # fmt: skip
    prior = [1e-2 * float(cosine(t + 1, 20, warmup)) for t in range(20)]
    ramp = [1e-2 * min((t + 1) / warmup, 1.0) if warmup else 1e-2 for t in range(20)]
    assert all(lr[0] <= r * (1 + 1e-6) for lr, r in zip(lrs, ramp))
    assert lrs[9][0] == pytest.approx(1e-2) and lrs[9][0] > 1.05 * prior[9]  # held at the peak, above the decay
    if warmup:
        assert lrs[1][0] == pytest.approx(ramp[1], rel=1e-5) and lrs[1][0] < 0.5e-2  # the ramp, not the base LR


@pytest.mark.parametrize("warmup_boost", [True, False])
def test_warmup_boost_false_keeps_the_warmup_ramp_as_a_ceiling(warmup_boost):
    """warmup_boost=False: a learner that boosts may not raise the LR above the warmup's ramp while it lasts (on the
    Trainer bench the default learner reached 1.6-3x the base LR within the warmup at the right LR); from the end of
    the warmup it boosts as before. The batched controller (meta-training) makes the same decisions."""
    from metalr_hf.controller import MetaController
    from metalr_hf.features import FEATURE_NAMES
    from metalr_hf.signals import Signals

    learner, warmup = boosting_learner(FEATURE_NAMES), 6
    sched, lrs, _, _ = _run(
        lambda o: MetaLRScheduler(
            o, num_training_steps=20, num_warmup_steps=warmup, meta_learner=learner, guard=False,
            warmup_boost=warmup_boost, smoothing=0.0,
        ),
        steps=20,
    )  # fmt: skip
    prior = [1e-2 * float(wsd(t + 1, 20, warmup)) for t in range(20)]
    ratios = [lr[0] / p for lr, p in zip(lrs[:-1], prior[:-1])]
    in_warmup, after = ratios[: warmup - 1], ratios[warmup + 1 :]
    if warmup_boost:
        assert max(in_warmup) > 2.0
    else:
        assert max(in_warmup) <= 1.0 + 1e-6
    assert min(after) == pytest.approx(math.exp(2.0), rel=1e-3)  # after the warmup: the learner's own bound

    # the batched rule: two runs, one with each setting, step by step equal to one-run controllers
    batched = MetaController(learner, 20, warmup, batch_size=2, guard=False, warmup_boost=warmup_boost, smoothing=0.0)
    single = MetaController(learner, 20, warmup, guard=False, warmup_boost=warmup_boost, smoothing=0.0)
    for t, v in enumerate(_signal_vectors(12)):
        row = v.reshape(1, -1)
        batched.update(Signals.from_vector(row.expand(2, -1).clone()), step=t)
        single.update(Signals.from_vector(row), step=t)
        assert batched.scale(t + 1)[0].item() == pytest.approx(single.scale_value(t + 1), rel=1e-5)


def test_the_default_pair_resumes_with_the_learner_its_checkpoint_names():
    """A default scheduler resumes with the learner of the pair its checkpoint was written by: a pretrained run of
    the previous release (the capped default learner) continues with that learner, capped, on the same LRs; a run
    of the fine-tuning learner with that one."""
    import copy

    from metalr_hf.hub import DEFAULT_FINETUNE_LEARNER, DEFAULT_LEARNER

    for written_by in (DEFAULT_LEARNER, DEFAULT_FINETUNE_LEARNER):
        model, optimizer, X, y = _problem()
        first = MetaLRScheduler(optimizer, num_training_steps=20, meta_learner=written_by, pretrained=True)
        _steps(model, optimizer, first, X, y, 5)
        states = copy.deepcopy([first.state_dict(), optimizer.state_dict(), model.state_dict()])
        rest, _ = _steps(model, optimizer, first, X, y, 5)
        model2, optimizer2, _, _ = _problem(seed=123)
        resumed = MetaLRScheduler(optimizer2, num_training_steps=20)  # the default pair
        model2.load_state_dict(states[2])
        optimizer2.load_state_dict(states[1])
        resumed.load_state_dict(states[0])
        assert resumed.learner.source["name_or_path"] == written_by
        assert resumed.controller.boost.delta_cap(True) == (0.0 if written_by == DEFAULT_LEARNER else math.inf)
        after, _ = _steps(model2, optimizer2, resumed, X, y, 5)
        assert [lr[0] for lr in after] == pytest.approx([lr[0] for lr in rest], rel=1e-6)


def test_eval_patience_withdraws_the_boost_once_evaluations_stop_improving():
    """``eval_patience=2``: a learner that boosts keeps its boost through one evaluation without a new best and
    loses it (δ ≤ 0, the LR at the prior or below) from the second in a row, at once, until an evaluation brings a
    new best; a NaN evaluation counts as no improvement. ``None`` ignores evaluations. A resumed run keeps the
    withdrawal, and the batched controller (the zoo's) decides the same."""
    import copy

    from metalr_hf.features import FEATURE_NAMES

    learner = boosting_learner(FEATURE_NAMES)

    def run(patience, evals, cut=1.0):
        model, optimizer, X, y = _problem()
        sched = MetaLRScheduler(optimizer, num_training_steps=40, meta_learner=learner, guard=False,
                                eval_patience=patience, eval_cut=cut, smoothing=0.0, eval_gap=None)  # fmt: skip
        ratios, states = [], {}
        for t in range(30):
            _steps(model, optimizer, sched, X, y, 1)
            if t in evals:
                sched.observe_eval(evals[t])
            states[t] = copy.deepcopy(sched.state_dict())
            prior = 1e-2 * float(wsd(sched.last_epoch, 40, 0))
            ratios.append(sched.get_last_lr()[0] / prior)
        return ratios, states

    evals = {4: 1.0, 9: 0.9, 14: 0.95, 19: float("nan"), 24: 0.5}  # best, best, stale, stale (withdrawn), best
    ratios, states = run(2, evals)
    boosted = math.exp(2.0)
    assert ratios[:19] == pytest.approx([boosted] * 19, rel=1e-3)  # boosted through one stale evaluation
    assert max(ratios[19:25]) <= 1.0 + 1e-6  # withdrawn at the second, at once, until the new best at 24
    assert ratios[25:] == pytest.approx([boosted] * 5, rel=1e-3)
    assert run(None, evals)[0] == pytest.approx([boosted] * 30, rel=1e-3)  # evaluations ignored
    assert run(3, evals)[0] == pytest.approx([boosted] * 30, rel=1e-3)  # never three stale in a row
    cut = run(2, evals, cut=4.0)[0]  # eval_cut: while held, the LR at most the prior / 4
    assert (
        cut[:19] == pytest.approx(ratios[:19])
        and max(cut[19:25]) <= 0.25 + 1e-6
        and cut[25:] == pytest.approx(ratios[25:])
    )

    # resumed after the withdrawal: the same LRs
    model, optimizer, X, y = _problem()
    resumed = MetaLRScheduler(
        optimizer, num_training_steps=40, meta_learner=learner, guard=False, eval_patience=2, smoothing=0.0
    )
    resumed.load_state_dict(states[20])
    resumed.last_epoch = states[20]["last_epoch"]
    assert float(resumed.controller.eval_cap[0]) == 0.0 and float(resumed.controller.eval_best[0]) == 0.9
    lrs, _ = _steps(model, optimizer, resumed, X, y, 5)
    assert all(lr[0] <= 1e-2 * float(wsd(21 + i, 40, 0)) * (1 + 1e-6) for i, lr in enumerate(lrs))

    # the batched rule: one run that evaluates as above, one that never does
    batched = MetaController(learner, 40, 0, batch_size=2, guard=False, eval_patience=2, smoothing=0.0)
    single = MetaController(learner, 40, 0, guard=False, eval_patience=2, smoothing=0.0)
    for t, v in enumerate(_signal_vectors(30)):
        row = v.reshape(1, -1)
        batched.update(Signals.from_vector(row.expand(2, -1).clone()), step=t)
        single.update(Signals.from_vector(row), step=t)
        if t in evals:
            batched.observe_eval(torch.tensor([evals[t], 1.0 / (t + 1)], dtype=torch.float64))
            single.observe_eval(evals[t])
        assert batched.scale(t + 1)[0].item() == pytest.approx(single.scale_value(t + 1), rel=1e-5)
        assert batched.scale(t + 1)[1].item() > 2.0  # a new best at every evaluation: boosted throughout


def _ratios_resumed(learner, options, evaluate, at, state, resume_options):
    """20 steps of ``_problem()`` under ``learner`` with ``options`` (``evaluate(t, sched)`` after each): the LR over
    the WSD prior at each step. With ``state``, the scheduler is rebuilt at step ``at`` naming ``resume_options``
    and loaded with ``state(sched)``."""
    model, optimizer, X, y = _problem()
    sched = MetaLRScheduler(optimizer, num_training_steps=40, meta_learner=learner, guard=False, **options)
    out = []
    for t in range(20):
        if t == at and state is not None:
            written = state(sched)
            sched = MetaLRScheduler(optimizer, num_training_steps=40, meta_learner=learner, guard=False,
                                    **resume_options)  # fmt: skip
            sched.load_state_dict(written)
        _steps(model, optimizer, sched, X, y, 1)
        evaluate(t, sched)
        out.append(sched.get_last_lr()[0] / (1e-2 * float(wsd(sched.last_epoch, 40, 0))))
    return out


def _written_before(option: str, control: str):
    """A scheduler's checkpoint as one written before ``option`` existed: without it, nor the controller's
    ``control`` state."""
    import copy

    def state(sched):
        state = {k: v for k, v in copy.deepcopy(sched.state_dict()).items() if k != option}
        state["controller"].pop(control)
        return state

    return state


def test_eval_overfit_holds_at_once_where_the_eval_loss_rises_while_the_training_loss_falls():
    """``eval_overfit=x``: an evaluation more than ``x`` above the best one, while the (smoothed) training loss has
    gone on falling since that best, starts ``eval_patience``'s hold at once (LR ≤ prior / ``eval_cut``) until a new
    best; within ``x`` of the best, or on a plateau of the training loss, one stale evaluation does not hold; ``None``
    (the option off) waits for ``eval_patience``. The batched controller (the zoo's) decides as the scalar one; the
    option travels in the checkpoint (one written before it resumes with it off) and a damaged value is refused."""
    import copy

    from metalr_hf.features import FEATURE_NAMES

    learner = boosting_learner(FEATURE_NAMES)

    def ratios(evals, overfit=0.03, state=None, **resume_options):
        def evaluate(t, sched):
            if t in evals:
                sched.observe_eval(evals[t])

        options = dict(eval_patience=2, eval_cut=4.0, smoothing=0.0, eval_overfit=overfit, eval_gap=None)
        return _ratios_resumed(learner, options, evaluate, 7, state, resume_options)

    boosted = math.exp(learner.max_delta * math.tanh(5.0))
    rising = {4: 1.0, 9: 1.2, 14: 0.9}  # the training loss falls throughout (full-batch regression)
    held = ratios(rising)
    assert held[:9] == pytest.approx([boosted] * 9, rel=1e-4)
    assert max(held[9:15]) <= 0.25 * (1 + 1e-6)  # held at once, at the prior / eval_cut, until the new best
    assert held[15:] == pytest.approx([boosted] * 5, rel=1e-4)
    assert ratios(rising, overfit=None) == pytest.approx([boosted] * 20, rel=1e-4)  # off: one stale is not two
    assert ratios({4: 1.0, 9: 1.02, 14: 0.9}) == pytest.approx([boosted] * 20, rel=1e-4)  # within 3 %
    assert ratios(rising, overfit=0.5) == pytest.approx([boosted] * 20, rel=1e-4)  # within 50 %
    assert ratios({4: 1.0, 9: math.nan, 14: 0.9}) == pytest.approx([boosted] * 20, rel=1e-4)  # a NaN: one stale

    # the checkpoint: keeps the option; one written before it resumes with it off; named on resume, it acts
    keep = ratios(rising, state=lambda s: copy.deepcopy(s.state_dict()))
    assert keep == pytest.approx(held, rel=1e-6)
    before = lambda s: {k: v for k, v in copy.deepcopy(s.state_dict()).items() if k != "eval_overfit"}  # noqa: E731
    assert ratios(rising, state=before) == pytest.approx([boosted] * 20, rel=1e-4)
    assert ratios(rising, state=before, eval_overfit=0.03) == pytest.approx(held, rel=1e-6)
    for bad in (-0.1, float("nan"), "0.03", True):
        with pytest.raises(ValueError, match="'eval_overfit' is damaged"):
            MetaLRScheduler(_problem()[1], num_training_steps=40).load_state_dict(
                {**MetaLRScheduler(_problem()[1], num_training_steps=40).state_dict(), "eval_overfit": bad}
            )

    # batched: run 0's training loss falls, run 1's stays on a plateau; both evaluate 1.0 then 1.2
    options = dict(guard=False, eval_patience=2, eval_cut=4.0, eval_overfit=0.03, smoothing=0.0)
    batched = MetaController(learner, 40, 0, batch_size=2, **options)
    single = MetaController(learner, 40, 0, **options)
    for t, v in enumerate(_signal_vectors(12)):
        rows = v.reshape(1, -1).expand(2, -1).clone()
        rows[1, 0] = 1.0  # a flat training loss
        batched.update(Signals.from_vector(rows), step=t)
        single.update(Signals.from_vector(rows[:1].clone()), step=t)
        if t in (4, 9):
            batched.observe_eval(torch.tensor([1.0 if t == 4 else 1.2] * 2, dtype=torch.float64))
            single.observe_eval(1.0 if t == 4 else 1.2)
        assert batched.scale(t + 1)[0].item() == pytest.approx(single.scale_value(t + 1), rel=1e-5)
    assert batched.eval_cap.tolist() == [pytest.approx(-math.log(4.0)), math.inf]  # the plateau is not held


def test_eval_gap_ends_the_boost_once_a_stale_evaluation_lies_far_above_the_training_loss():
    """``eval_gap=g``: an evaluation that brings no new best while its log lies more than ``g`` above the smoothed
    training log-loss ends the learner's boost for the rest of the run (LR ≤ prior), a later new best included; a new
    best with the same gap, a smaller gap, the option off, or an eval loss that is not a number do not. It reads the
    eval *loss* (``loss=``) where the evaluation is another metric. The lock travels in the checkpoint (one written
    before the option resumes with it off); the batched controller (the zoo's) decides as the scalar one."""
    import copy

    from metalr_hf.features import FEATURE_NAMES

    learner = boosting_learner(FEATURE_NAMES)
    boosted = math.exp(learner.max_delta * math.tanh(5.0))

    def ratios(gap=0.3, above=1.0, loss=None, state=None, **resume_options):
        """Evaluations at 4 (a best, ``exp(above)`` × the training loss), 9 (the same value: stale), 14 (a best)."""
        first = []

        def evaluate(t, sched):
            if t == 4:
                first.append(math.exp(sched.controller.extractor.values["guard_ema"] + above))
            if t in (4, 9, 14):
                value = first[0] / 100 if t == 14 else first[0]
                # ``loss``: a metric evaluated (-1 / value: the same bests), the eval loss handed over beside it
                sched.observe_eval(
                    value if loss is None else -1.0 / value, **({} if loss is None else {"loss": loss(value)})
                )

        options = dict(eval_patience=2, eval_cut=4.0, smoothing=0.0, eval_overfit=None, eval_gap=gap)
        return _ratios_resumed(learner, options, evaluate, 11, state, resume_options)

    locked = ratios()
    assert locked[:9] == pytest.approx([boosted] * 9, rel=1e-4)  # the first evaluation is a new best: no lock
    assert max(locked[9:]) <= 1.0 + 1e-6  # stale and far above: the prior from then on, the new best at 14 too
    for kept in (ratios(gap=None), ratios(above=-2.0), ratios(loss=lambda v: math.nan)):
        assert kept == pytest.approx([boosted] * 20, rel=1e-4)  # off; within the gap; no eval loss
    assert ratios(loss=lambda v: v) == pytest.approx(locked, rel=1e-6)  # a metric evaluated, the eval loss read

    # the checkpoint: keeps the lock; one written before the option resumes with it off
    assert ratios(state=lambda s: copy.deepcopy(s.state_dict())) == pytest.approx(locked, rel=1e-6)

    resumed = ratios(state=_written_before("eval_gap", "eval_locked"))
    assert max(resumed[9:11]) <= 1.0 + 1e-6 and resumed[11:] == pytest.approx([boosted] * 9, rel=1e-4)
    with pytest.raises(ValueError, match="'eval_gap' is damaged"):
        MetaLRScheduler(_problem()[1], num_training_steps=40).load_state_dict(
            {**MetaLRScheduler(_problem()[1], num_training_steps=40).state_dict(), "eval_gap": -1.0}
        )

    # batched: run 0 evaluates far above its training loss, run 1 close to it; both stale at the second
    options = dict(guard=False, eval_patience=2, eval_cut=4.0, eval_overfit=None, eval_gap=0.3, smoothing=0.0)
    batched = MetaController(learner, 40, 0, batch_size=2, **options)
    single = MetaController(learner, 40, 0, **options)
    level = 0.0
    for t, v in enumerate(_signal_vectors(12)):
        rows = v.reshape(1, -1).expand(2, -1).clone()
        batched.update(Signals.from_vector(rows), step=t)
        single.update(Signals.from_vector(rows[:1].clone()), step=t)
        if t in (4, 9):
            level = float(single.extractor.values["guard_ema"]) if t == 4 else level
            batched.observe_eval(torch.tensor([math.exp(level + 1.0), math.exp(level)], dtype=torch.float64))
            single.observe_eval(math.exp(level + 1.0))
        assert batched.scale(t + 1)[0].item() == pytest.approx(single.scale_value(t + 1), rel=1e-5)
    assert batched.eval_cap.tolist() == [0.0, math.inf]


def test_eval_trust_keeps_the_learner_from_cutting_deep_a_run_that_improves_on_held_out_data(caplog):
    """``eval_trust=m``: while the last eval loss improved on the best before it by more than ``m`` (logs; the first
    evaluation has none), the learner may not cut the LR below TRUST_FLOOR × the prior, from the next step to the next
    evaluation; a metric to maximise (negated) engages it through the eval loss handed beside it. An improvement within
    ``m``, a metric without its loss, the option off, or a run from scratch under ``"auto"`` (the default: 0.3 on a
    pretrained run) do not. The state travels in the checkpoint (one written before the option resumes with it off);
    the batched controller (the zoo's) decides as the scalar one."""
    import copy

    from metalr_hf.features import FEATURE_NAMES
    from metalr_hf.options import TRUST_FLOOR

    learner = boosting_learner(FEATURE_NAMES)
    with torch.no_grad():
        learner.head.bias.fill_(-5.0)  # it asks for its deepest cut, whatever it reads
    cut = math.exp(-learner.max_delta * math.tanh(5.0))
    assert cut < TRUST_FLOOR

    def ratios(evals=None, sign=1.0, state=None, pretrained=True, metric=False, **options):
        evals = {4: 1.0, 9: 0.5, 14: 0.45} if evals is None else evals  # 9: log 2 below the best; 14: 0.1 below

        def evaluate(t, sched):
            if t in evals and metric:  # a metric to maximise, improving, negated; the eval loss beside it
                sched.observe_eval(-1.0 / evals[t], loss=evals[t])
            elif t in evals:
                sched.observe_eval(sign * evals[t])

        options = dict(eval_patience=2, eval_cut=4.0, eval_overfit=None, eval_gap=None, pretrained=pretrained,
                       **options)  # fmt: skip
        return _ratios_resumed(learner, options, evaluate, 12, state, {"pretrained": pretrained})

    with caplog.at_level(logging.INFO, logger="metalr_hf"):
        trusted = ratios()
    said = [r.getMessage() for r in caplog.records if "eval_trust" in r.getMessage()]
    assert said == ["MetaLRScheduler, step 10: the eval loss 0.5 improved on the best before it by more than 0.3 "
                    "(log): no cut below 0.7× the prior until the next evaluation (eval_trust)"]  # fmt: skip
    assert trusted[:10] == pytest.approx([cut] * 10, rel=1e-4)  # the first evaluation is not an improvement
    assert trusted[10:15] == pytest.approx([TRUST_FLOOR] * 5, rel=1e-4)  # from the step after the evaluation at 9
    assert trusted[15:] == pytest.approx([cut] * 5, rel=1e-4)  # 14 improved by less than the margin
    assert ratios(evals={4: 1.0, 9: 0.5}, eval_trust=0.8) == pytest.approx([cut] * 20, rel=1e-4)
    for kept in (ratios(eval_trust=None), ratios(sign=-1.0), ratios(pretrained=False, smoothing=0.0)):
        assert kept == pytest.approx([cut] * 20, rel=1e-4)  # off; a metric without its loss; from scratch ("auto")
    assert ratios(metric=True) == pytest.approx(trusted, rel=1e-6)  # a metric to maximise: its eval loss trusted
    scratch = ratios(pretrained=False, smoothing=0.0, eval_trust=0.3)  # named: from scratch too
    assert scratch == pytest.approx(trusted, rel=1e-6)

    # the checkpoint (written at step 12, while trusted): keeps it; one written before the option resumes it off
    assert ratios(state=lambda s: copy.deepcopy(s.state_dict())) == pytest.approx(trusted, rel=1e-6)

    resumed = ratios(state=_written_before("eval_trust", "eval_trusted"))
    assert resumed[:12] == pytest.approx(trusted[:12], rel=1e-6)
    assert resumed[12:] == pytest.approx([cut] * 8, rel=1e-4)
    for bad in (-0.1, float("nan"), "on", True):
        with pytest.raises(ValueError, match="'eval_trust' is damaged"):
            MetaLRScheduler(_problem()[1], num_training_steps=40).load_state_dict(
                {**MetaLRScheduler(_problem()[1], num_training_steps=40).state_dict(), "eval_trust": bad}
            )

    # batched: a pretrained run and one from scratch under "auto", the same evaluations
    options = dict(guard=False, eval_patience=2, eval_cut=4.0, eval_overfit=None, eval_gap=None, smoothing=0.0)
    batched = MetaController(learner, 40, 0, batch_size=2, pretrained=torch.tensor([True, False]), **options)
    singles = [MetaController(learner, 40, 0, pretrained=flag, **options) for flag in (True, False)]
    for t, v in enumerate(_signal_vectors(16)):
        batched.update(Signals.from_vector(v.reshape(1, -1).expand(2, -1).clone()), step=t)
        for single in singles:
            single.update(Signals.from_vector(v.reshape(1, -1)), step=t)
        if t in (4, 9):
            batched.observe_eval(torch.tensor([1.0 if t == 4 else 0.5] * 2, dtype=torch.float64))
            for single in singles:
                single.observe_eval(1.0 if t == 4 else 0.5)
        for i, single in enumerate(singles):
            assert batched.scale(t + 1)[i].item() == pytest.approx(single.scale_value(t + 1), rel=1e-5)
    assert batched.eval_trusted.tolist() == [1.0, 0.0]
    assert batched.scale(16)[0].item() == pytest.approx(TRUST_FLOOR * float(wsd(16, 40, 0)), rel=1e-5)


def test_smoothing_averages_the_learners_decisions_over_steps():
    """``smoothing=s``: δ_t = s·δ_{t-1} + (1-s)·decision_t, so a learner that asks for its largest boost from the
    first step reaches it as 1 - s^t; a withdrawal by the evaluations is at once, and the boost then comes back at
    the same rate; the batched controller (the zoo's) decides the same; 0 is the decision as it comes; ``"auto"`` (the
    default) is 0.9 from scratch and 0 on a run marked pretrained."""
    from metalr_hf.features import FEATURE_NAMES

    learner = boosting_learner(FEATURE_NAMES)
    bound = learner.max_delta * math.tanh(5.0)  # its head: bias 5, weights 0

    def ratios(smoothing, evals=None, pretrained=None, eval_cut=1.0):
        model, optimizer, X, y = _problem()
        sched = MetaLRScheduler(optimizer, num_training_steps=40, meta_learner=learner, guard=False,
                                smoothing=smoothing, pretrained=pretrained, eval_cut=eval_cut,
                                eval_overfit=None, eval_gap=None)  # fmt: skip
        out = []
        for t in range(20):
            _steps(model, optimizer, sched, X, y, 1)
            if evals and t in evals:
                sched.observe_eval(evals[t])
            out.append(sched.get_last_lr()[0] / (1e-2 * float(wsd(sched.last_epoch, 40, 0))))
        return out

    assert ratios(0.0) == pytest.approx([math.exp(bound)] * 20, rel=1e-4)
    smooth = ratios(0.9)
    assert smooth == pytest.approx([math.exp(bound * (1 - 0.9 ** (t + 1))) for t in range(20)], rel=1e-4)
    assert ratios("auto") == pytest.approx(smooth, rel=1e-6)  # the default, from scratch: 0.9
    assert ratios("auto", pretrained=True) == pytest.approx([math.exp(bound)] * 20, rel=1e-4)  # fine-tuning: 0
    held = ratios(0.9, {4: 1.0, 5: 2.0, 6: 2.0, 9: 0.5})  # stale at 5 and 6: held; a new best at 9
    assert held[:6] == pytest.approx(smooth[:6], rel=1e-4) and max(held[6:10]) <= 1.0 + 1e-6
    assert held[10] == pytest.approx(math.exp(bound * 0.1), rel=1e-4)  # from δ = 0, at the same rate
    cut = ratios(0.9, {4: 1.0, 5: 2.0, 6: 2.0, 9: 0.5}, eval_cut=2.0)  # a cut: held at half the prior
    assert cut[:6] == pytest.approx(smooth[:6], rel=1e-4) and max(cut[6:10]) <= 0.5 * (1 + 1e-6)
    assert cut[10] == pytest.approx(math.exp(-0.9 * math.log(2.0) + 0.1 * bound), rel=1e-4)  # and back from there

    # resumed naming a tighter cap than its averaged δ: the cap holds from the first step
    model, optimizer, X, y = _problem()
    first = MetaLRScheduler(optimizer, num_training_steps=40, meta_learner=learner, guard=False, smoothing=0.9)
    _steps(model, optimizer, first, X, y, 10)
    assert first.last_scale > 3.0 * float(wsd(10, 40, 0))
    tight = MetaLRScheduler(optimizer, num_training_steps=40, meta_learner=learner, guard=False, smoothing=0.9,
                            max_boost=2.0)  # fmt: skip
    tight.load_state_dict(first.state_dict())
    for t in range(3):
        _steps(model, optimizer, tight, X, y, 1)
        assert tight.last_scale <= 2.0 * float(wsd(11 + t, 40, 0)) * (1 + 1e-6)

    batched = MetaController(learner, 40, 0, batch_size=2, guard=False, pretrained=torch.tensor([False, True]))
    singles = [MetaController(learner, 40, 0, guard=False, pretrained=flag) for flag in (False, True)]
    for t, v in enumerate(_signal_vectors(10)):
        batched.update(Signals.from_vector(v.reshape(1, -1).expand(2, -1).clone()), step=t)
        for i, single in enumerate(singles):
            single.update(Signals.from_vector(v.reshape(1, -1)), step=t)
            assert batched.scale(t + 1)[i].item() == pytest.approx(single.scale_value(t + 1), rel=1e-5)
    assert batched.scale(10)[0].item() < 0.9 * batched.scale(10)[1].item()  # from scratch: still on its way up


@pytest.mark.parametrize("option, bad", [("eval_patience", v) for v in (0, -1, 1.5, True, "2")]
                         + [("eval_cut", v) for v in (0.5, 0, float("inf"), float("nan"), True, "2")]
                         + [("smoothing", v) for v in (-0.1, 1.0, 2, float("nan"), True, "0.5")]
                         + [("eval_overfit", v) for v in (-0.1, math.inf, math.nan, True, "0.03")]
                         + [("eval_gap", v) for v in (-0.1, math.inf, math.nan, True, "0.3")]
                         + [("eval_trust", v) for v in (-0.1, math.inf, math.nan, True, "0.3", "on")])  # fmt: skip
def test_eval_patience_cut_and_smoothing_refuse_what_they_cannot_be(option, bad):
    model, optimizer, _, _ = _problem()
    with pytest.raises(ValueError, match=option):
        MetaLRScheduler(optimizer, num_training_steps=10, **{option: bad})


@pytest.mark.parametrize("bad", ["0.5", None, True, [1.0, 2.0], torch.ones(2), 1j])
def test_observe_eval_names_what_is_not_one_number(bad):
    model, optimizer, _, _ = _problem()
    sched = MetaLRScheduler(optimizer, num_training_steps=10)
    with pytest.raises(TypeError, match="observe_eval"):
        sched.observe_eval(bad)
    sched.observe_eval(torch.tensor(0.5))  # a 0-d tensor is one number, and so is a list of one
    sched.observe_eval([0.25])
    assert float(sched.controller.eval_best[0]) == 0.25


def test_a_checkpoint_from_before_smoothing_resumes_as_it_ran_and_a_damaged_value_is_refused():
    """A run interrupted under metalr-hf < 0.3 (no ``smoothing`` in its state: its δ was never averaged) continues
    as it was going, not under today's default; one that names ``smoothing`` on resume gets what it names; a damaged
    value is refused naming it."""
    import copy

    model, optimizer, X, y = _problem()
    sched = MetaLRScheduler(optimizer, num_training_steps=20, smoothing=0.0)
    _steps(model, optimizer, sched, X, y, 5)
    states = copy.deepcopy([sched.state_dict(), optimizer.state_dict(), model.state_dict()])
    rest, _ = _steps(model, optimizer, sched, X, y, 5)
    old = {k: v for k, v in states[0].items() if k != "smoothing"}

    def resume(**options):
        model2, optimizer2, _, _ = _problem(seed=123)
        resumed = MetaLRScheduler(optimizer2, num_training_steps=20, **options)
        model2.load_state_dict(states[2])
        optimizer2.load_state_dict(states[1])
        resumed.load_state_dict(copy.deepcopy(old))
        return [lr[0] for lr in _steps(model2, optimizer2, resumed, X, y, 5)[0]], resumed

    after, resumed = resume()  # today's default is "auto"
    assert resumed.controller.smoothing == 0.0
    assert after == pytest.approx([lr[0] for lr in rest], rel=1e-6)
    assert resume(smoothing="auto")[0] != pytest.approx(after, rel=1e-3)  # named: the new rule, another LR
    bad = {**copy.deepcopy(states[0]), "smoothing": 1.5}
    with pytest.raises(ValueError, match="smoothing"):
        MetaLRScheduler(_problem()[1], num_training_steps=20).load_state_dict(bad)


def test_a_checkpoint_keeps_its_eval_cut_and_one_from_before_it_was_saved_resumes_at_1():
    """``eval_cut`` (4 by default) travels in the scheduler's state: a resumed run that does not name it holds a
    stale run's LR where the interrupted run did (the checkpoint's value; 1, at the prior, for a checkpoint written
    before it was saved); one that names it gets what it names; a damaged value is refused."""
    import copy

    from metalr_hf.features import FEATURE_NAMES

    learner = boosting_learner(FEATURE_NAMES)

    def held_ratio(**options):  # the LR over the prior after two stale evaluations
        model, optimizer, X, y = _problem()
        sched = MetaLRScheduler(optimizer, num_training_steps=40, meta_learner=learner, guard=False, smoothing=0.0)
        _steps(model, optimizer, sched, X, y, 3)
        state = copy.deepcopy(sched.state_dict())
        if options.pop("written_before", False):
            del state["eval_cut"]
        model2, optimizer2, _, _ = _problem(seed=123)
        resumed = MetaLRScheduler(optimizer2, num_training_steps=40, meta_learner=learner, guard=False, **options)
        resumed.load_state_dict(state)
        for value in (1.0, 2.0, 3.0):
            resumed.observe_eval(value)
        lrs, _ = _steps(model2, optimizer2, resumed, X, y, 1)
        return lrs[0][0] / (1e-2 * float(wsd(resumed.last_epoch, 40, 0)))

    assert MetaLRScheduler(_problem()[1], num_training_steps=40).state_dict()["eval_cut"] == 4.0
    assert held_ratio() == pytest.approx(0.25, rel=1e-4)  # the checkpoint's (today's default)
    assert held_ratio(written_before=True) == pytest.approx(1.0, rel=1e-4)  # as that run was going
    assert held_ratio(written_before=True, eval_cut=8.0) == pytest.approx(0.125, rel=1e-4)  # named on resume
    model, optimizer, X, y = _problem()
    sched = MetaLRScheduler(optimizer, num_training_steps=20)
    _steps(model, optimizer, sched, X, y, 2)
    for bad in (0.5, float("nan"), "2"):
        with pytest.raises(ValueError, match="'eval_cut' is damaged"):
            MetaLRScheduler(_problem()[1], num_training_steps=20).load_state_dict(
                {**sched.state_dict(), "eval_cut": bad}
            )
