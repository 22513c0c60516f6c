"""The declared validation table: meta against the best stock schedule, seeds as paired replicates."""

import math

import pytest

from metalr_hf.metatrain.validation import Run, declared_table, format_declared_table

LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
SEEDS = (0, 1, 2, 3)


def _stock(lr, seed):
    """A U-shaped loss over log LR with its minimum at 1e-3; WSD a little better than cosine everywhere."""
    base = 1.0 + (math.log10(lr) + 3) ** 2 + 0.01 * seed
    return {"cosine": base * 1.05, "wsd": base}


def _runs(meta_loss):
    runs = []
    for lr in LRS:
        for seed in SEEDS:
            for name, loss in _stock(lr, seed).items():
                runs.append(Run("task", "adam", lr, seed, name, loss))
            runs.append(Run("task", "adam", lr, seed, "meta", meta_loss(lr, seed)))
    return runs


def test_meta_equal_to_the_best_stock_schedule_ties_everywhere():
    table = declared_table(_runs(lambda lr, seed: _stock(lr, seed)["wsd"]))
    s, (task,) = table["summary"], table["tasks"]
    assert task["right_lr"] == 1e-3 and task["tuned_schedule"] == "wsd" and task["right_lr_ratio"] == 1.0
    assert s["ties"] == len(LRS) and s["le_best_stock"] == 1.0 and s["right_lr_pass"] == 1
    assert task["rescue_lr"] == 1e-4 and task["rescue"] == 0.0  # nothing closed at 0.1×
    assert s["median_regret"] > 0  # the wrong-LR cells keep their regret
    assert not s["meets_targets"]


def test_losing_at_the_right_lr_fails_even_when_the_rescue_wins():
    def meta(lr, seed):
        tuned = _stock(1e-3, seed)["wsd"]
        return tuned * 1.10 if lr == 1e-3 else tuned * 1.01  # rescues every wrong LR, 10 % worse at the right one

    table = declared_table(_runs(meta))
    s, (task,) = table["summary"], table["tasks"]
    assert task["right_lr_ratio"] == pytest.approx(1.10)
    lo, hi = task["right_lr_interval"]
    assert lo > 1.02 and s["right_lr_pass"] == 0 and s["right_lr_tie"] == 0
    verdicts = {c["base_lr"]: c["verdict"] for c in table["cells"]}
    assert verdicts[1e-3] == "loss" and all(verdicts[lr] == "win" for lr in LRS if lr != 1e-3)
    assert task["rescue"] == pytest.approx((_mean(1e-4) - 1.01 * _mean(1e-3)) / (_mean(1e-4) - _mean(1e-3)))
    assert not s["meets_targets"]
    assert "| task | adam | 0.001 |" in format_declared_table(table)


def _mean(lr):
    return sum(_stock(lr, s)["wsd"] for s in SEEDS) / len(SEEDS)


def test_noise_inside_the_interval_is_a_tie_and_a_diverged_run_a_loss():
    def meta(lr, seed):
        if lr == 1e-2:
            return math.nan  # diverged
        return _stock(lr, seed)["wsd"] * (1.3 if seed % 2 else 0.75)  # better on average, not on every seed

    table = declared_table(_runs(meta))
    verdicts = {c["base_lr"]: c["verdict"] for c in table["cells"]}
    assert verdicts[1e-2] == "loss" and math.isinf(next(c for c in table["cells"] if c["base_lr"] == 1e-2)["meta"])
    assert all(verdicts[lr] == "tie" for lr in LRS if lr != 1e-2)
    assert table["summary"]["p90_regret"] == math.inf


def test_meeting_every_target():
    def meta(lr, seed):
        tuned = _stock(1e-3, seed)["wsd"]
        return tuned * (0.99 if lr == 1e-3 else 1.0 + 0.02 * abs(math.log10(lr) + 3))

    s = declared_table(_runs(meta))["summary"]
    assert s["right_lr_pass"] == 1 and s["losses"] == 0 and s["median_regret"] <= 0.05 and s["rescue_min"] >= 0.6
    assert s["meets_targets"]


def test_a_right_lr_at_the_grids_edge_is_marked_as_not_bracketed():
    """A stock loss still falling at the grid's largest LR: its right LR is the top, which the report says, since a
    tuned user would have gone further; a right LR inside the grid is not marked."""
    inside = declared_table(_runs(lambda lr, seed: _stock(lr, seed)["wsd"]))
    assert inside["tasks"][0]["right_lr_edge"] is None
    assert "not bracketed" not in format_declared_table(inside)

    runs = [
        Run("task", "adam", lr, seed, name, 1.0 / lr + seed)
        for lr in LRS for seed in SEEDS for name in ("cosine", "meta")
    ]  # fmt: skip
    table = declared_table(runs)
    (task,) = table["tasks"]
    assert task["right_lr"] == LRS[-1] and task["right_lr_edge"] == "top"
    text = format_declared_table(table)
    assert "| task | adam | 0.01 (the grid's top) |" in text and "not bracketed" in text
