"""Hostile inputs, round 2: outlier losses, optimizers and param groups the scheduler did not expect, copies of the
scheduler, and learner files built to exhaust memory. Each is survived correctly or refused naming the culprit."""

import copy
import io
import json
import pickle
import warnings

import pytest
import torch
from test_hostile import _loop

from metalr_hf import MetaLearner, MetaLRScheduler


# -- one outlier batch ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [200, 1000])
def test_one_huge_loss_never_raises_the_lr(steps):
    """A loss ×1e6 at one step (an outlier batch) is a trend to nobody: the next LR may only fall (the learner
    reads the spike as at most a clipped rise, the guard's median ignores it; before, it rose ×5 at T = 200),
    and the run then follows the clean one's LR, above it by no more than two trajectories' drift."""
    k = steps // 2

    def make(o):
        return MetaLRScheduler(o, num_training_steps=steps)

    _, clean = _loop(make, steps)
    _, spiked = _loop(make, steps, loss_at=lambda t, loss: loss * 1e6 if t == k else loss)
    assert spiked[:k] == clean[:k]
    # the LR of the step after the spike: down by at most the guard's ×0.7, up by nothing the learner would act on
    assert 0.7 * clean[k] <= spiked[k] <= 1.001 * clean[k]
    # after it, the two runs trained with other LRs for a few steps and their LRs drift apart by a few percent
    # either way (±5 % at T = 200, 0 at T = 1000); the spike raises none of them on average
    window = [s / c for s, c in zip(spiked[k : k + 30], clean[k : k + 30])]
    assert sum(window) / len(window) <= 1.001 and max(window) <= 1.1, window


# -- optimizers the reader did not expect ---------------------------------------------------------------------------
def _regression(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    X = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    return model, X, X.sum(1, keepdim=True).sin()


def _train(model, X, y, optimizer, scheduler, steps, before_step=None):
    losses, lrs = [], []
    for t in range(steps):
        if before_step:
            before_step(t)
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        scheduler.observe(loss.detach())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(float(loss))
        lrs.append(list(scheduler.get_last_lr()))
    return losses, lrs


def test_adafactor_with_its_own_relative_step_is_refused_in_one_line():
    from transformers.optimization import Adafactor

    model, _, _ = _regression()
    with pytest.raises(TypeError, match="relative_step=True sets its own learning rate.*relative_step=False"):
        MetaLRScheduler(Adafactor(model.parameters(), lr=None), num_training_steps=10)  # its documented default


def test_adafactor_with_an_lr_trains_and_its_factored_moments_are_left_out_with_one_warning():
    from transformers.optimization import Adafactor

    model, X, y = _regression()
    opt = Adafactor(model.parameters(), lr=1e-2, relative_step=False, scale_parameter=False, warmup_init=False)
    sched = MetaLRScheduler(opt, num_training_steps=60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses, lrs = _train(model, X, y, opt, sched, 60)
    assert losses[-1] < 0.5 * losses[0]
    assert all(0 <= lr[0] <= 1e-2 * 7.39 for lr in lrs) and lrs[-2][0] > 0
    assert lrs[30] != pytest.approx(1e-2)  # scheduled
    assert sum("not laid out like the parameter" in str(w.message) for w in caught) <= 1


class _BlockMoments(torch.optim.Optimizer):
    """An Adam-like optimizer whose second moment is kept per row (block-wise), its first as a tensor subclass
    (as 8-bit and quantised states are): moments not shaped like the parameters."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p).as_subclass(_Quantised)
                    state["exp_avg_sq"] = torch.zeros(p.shape[0])
                    state["step"] = torch.tensor(0.0)
                state["step"] += 1
                g2 = p.grad.pow(2).reshape(p.shape[0], -1).mean(1)
                state["exp_avg_sq"].mul_(0.99).add_(g2, alpha=0.01)
                state["exp_avg"].mul_(0.9).add_(p.grad, alpha=0.1)
                denom = state["exp_avg_sq"].sqrt().add_(1e-8).reshape(-1, *([1] * (p.dim() - 1)))
                p.sub_(group["lr"] * torch.Tensor(state["exp_avg"]) / denom)


class _Quantised(torch.Tensor):
    pass


def test_moments_not_shaped_like_their_parameters_are_left_out_with_one_warning():
    model, X, y = _regression()
    opt = _BlockMoments(model.parameters(), lr=1e-2)
    sched = MetaLRScheduler(opt, num_training_steps=40)
    with pytest.warns(UserWarning, match="not laid out like the parameter.*exp_avg is a _Quantised") as caught:
        losses, lrs = _train(model, X, y, opt, sched, 40)
    assert sum("not laid out like the parameter" in str(w.message) for w in caught) == 1
    assert losses[-1] < losses[0] and all(lr[0] >= 0 for lr in lrs) and lrs[-2][0] > 0
    assert float(sched.last_signals.gg[0]) > 0  # the gradients are still read


def test_a_param_group_added_mid_run_gets_the_rule_from_its_first_step():
    """Progressive unfreezing: the second layer's group added at step 10 runs exactly as in a run that had the
    group from the start with its parameters frozen (no gradient) until step 10."""
    steps, k = 30, 10

    def run(added):
        model, X, y = _regression()
        first, second = list(model[0].parameters()), list(model[2].parameters())
        groups = [{"params": first, "lr": 1e-2}]
        if not added:
            groups.append({"params": second, "lr": 3e-3})
        for p in second:
            p.requires_grad_(False)
        opt = torch.optim.AdamW(groups)
        sched = MetaLRScheduler(opt, num_training_steps=steps, meta_learner="metalr-default-v3")

        def unfreeze(t):
            if t == k:
                for p in second:
                    p.requires_grad_(True)
                if added:
                    opt.add_param_group({"params": second, "lr": 3e-3})

        return _train(model, X, y, opt, sched, steps, unfreeze)

    losses_from_start, lrs_from_start = run(added=False)
    losses_added, lrs_added = run(added=True)
    assert [lr[0] for lr in lrs_added] == pytest.approx([lr[0] for lr in lrs_from_start], rel=1e-6)
    assert [lr[1] for lr in lrs_added[k:]] == pytest.approx([lr[1] for lr in lrs_from_start[k:]], rel=1e-6)
    assert losses_added == pytest.approx(losses_from_start, rel=1e-5)
    assert lrs_added[k][1] != pytest.approx(3e-3)  # scheduled from its first step, not left at the value given


def test_removing_a_param_group_is_refused_naming_it():
    model, X, y = _regression()
    opt = torch.optim.AdamW([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=1e-2)
    sched = MetaLRScheduler(opt, num_training_steps=10)
    _train(model, X, y, opt, sched, 2)
    opt.param_groups.pop()
    with pytest.raises(RuntimeError, match="fewer than the 2 it was built with"):
        _train(model, X, y, opt, sched, 1)


# -- copies of the scheduler ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
def test_a_copied_scheduler_continues_the_same_trajectory(how):
    model, X, y = _regression()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = MetaLRScheduler(opt, num_training_steps=40, meta_learner="metalr-default-v3")
    _train(model, X, y, opt, sched, 15)
    if how == "deepcopy":
        copied = copy.deepcopy((model, opt, sched))
    elif how == "pickle":
        copied = pickle.loads(pickle.dumps((model, opt, sched)))
    else:
        buffer = io.BytesIO()
        torch.save((model, opt, sched), buffer)
        copied = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    model2, opt2, sched2 = copied
    assert sched2.optimizer is opt2 and sched2._reader.optimizer is opt2
    _, original = _train(model, X, y, opt, sched, 25)
    _, continued = _train(model2, X, y, opt2, sched2, 25)
    assert continued == original
    assert len({lr[0] for lr in original}) > 5  # the LR moves


# -- learner files built to exhaust memory ---------------------------------------------------------------------------
def _learner_folder(tmp_path, config_text):
    MetaLearner().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(config_text)
    return tmp_path


def test_a_config_nested_100000_deep_is_refused_naming_the_file(tmp_path):
    folder = _learner_folder(tmp_path, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"config\.json.*(bytes|nested)"):
        MetaLearner.from_pretrained(folder)
    small = _learner_folder(tmp_path, '{"core": ' + "[" * 5000 + "]" * 5000 + "}")  # under the size bound
    with pytest.raises(ValueError, match=r"config\.json.*nested more than"):
        MetaLearner.from_pretrained(small)


def test_a_card_json_nested_deep_is_refused_naming_the_file(tmp_path):
    folder = _learner_folder(tmp_path, json.dumps(MetaLearner().config))
    (folder / "card.json").write_text('{"training": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(ValueError, match=r"card\.json.*nested more than"):
        MetaLearner.from_pretrained(folder)


def test_a_config_at_every_fields_maximum_is_refused_before_any_tensor_is_built(tmp_path, monkeypatch):
    config = dict(MetaLearner().config, hidden_size=4096, num_layers=64)
    folder = _learner_folder(tmp_path, json.dumps(config))

    def no_allocation(*args, **kwargs):
        raise AssertionError("a layer was built before the config was refused")

    monkeypatch.setattr(torch.nn.GRUCell, "__init__", no_allocation)
    monkeypatch.setattr(torch.nn.Linear, "__init__", no_allocation)
    with pytest.raises(ValueError, match=r"config\.json.*6,444,101,633 parameters.*at most 1,000,000"):
        MetaLearner.from_pretrained(folder)


@pytest.mark.parametrize("core", ["gru", "rnn", "lstm", "transformer"])
def test_the_parameter_count_from_a_config_is_the_built_learners(core):
    from metalr_hf.features import FEATURE_NAMES
    from metalr_hf.learner_files import count_parameters

    for hidden, layers in ((8, 1), (32, 2), (20, 3)):
        learner = MetaLearner(core=core, hidden_size=hidden, num_layers=layers, window=7)
        assert learner.num_parameters() == count_parameters(core, hidden, layers, 7, len(FEATURE_NAMES))
