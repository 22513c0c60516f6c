"""metalr-hf bench: the smoke suite end to end, aggregation logic, bad input."""

import json
import math

import pytest
import torch

from metalr_hf.bench.report import aggregate
from metalr_hf.bench.schedulers import SCHEDULERS
from metalr_hf.cli import main


def test_smoke_suite_shows_cosine_next_to_meta_and_resumes(tmp_path, capsys):
    assert main(["bench", "--suite", "smoke", "--output-dir", str(tmp_path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    scale = {"bert_cls": 1.0, "gpt2_lm": 3.0}  # each task's grid (`Task.lr_scale`)
    assert sorted((r["task"], r["scheduler"], r["base_lr"]) for r in results) == [
        (t, s, pytest.approx(lr * scale[t])) for t in scale for s in ("cosine", "meta") for lr in (1e-4, 1e-3)
    ]
    out = capsys.readouterr().out
    assert out.count("meta better") + out.count("meta worse") + out.count("meta tied") == 4
    assert "meta vs cosine at the same base LR: better in" in out
    cosine = {(r["task"], r["base_lr"]): r for r in results if r["scheduler"] == "cosine"}
    assert cosine["bert_cls", 1e-3]["final_eval_loss"] < 0.9 * math.log(2)  # the tasks learn within the budget
    assert cosine["gpt2_lm", 3e-3]["final_eval_loss"] < 0.9 * math.log(64)
    # resumable: a rerun skips every finished run
    mtime = (tmp_path / "results.json").stat().st_mtime_ns
    assert main(["bench", "--suite", "smoke", "--output-dir", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "results.json").stat().st_mtime_ns == mtime


def test_every_scheduler_runs_and_reports(tmp_path):
    from metalr_hf.bench.report import write_report
    from metalr_hf.bench.runner import Suite, run_suite

    results = run_suite(Suite(("bert_cls",), SCHEDULERS, (1e-3,), ("adam",), (0,), steps=8, evals=2), tmp_path,
                        progress=False)  # fmt: skip
    assert {r["scheduler"] for r in results} == set(SCHEDULERS)  # every scheduler and LR-free optimizer
    for r in results:
        assert len(r["train_loss"]) == r["steps"] and len(r["lr"]) == r["steps"]
        assert r["wall_per_step"] > 0 and "eval_accuracy" in r["metrics"]
    write_report(results, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "Performance profile" in report and "| cosine |" in report and "meta vs cosine" in report
    for png in ("curves_bert_cls.png", "performance_profile.png", "regret_vs_lr.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_verdict_does_not_count_ties_as_wins():
    from metalr_hf.bench.report import verdict

    results = [_run("meta", 1e-3, 0.500), _run("cosine", 1e-3, 0.501), _run("meta", 1e-2, 0.3),
               _run("cosine", 1e-2, 0.4), _run("meta", 1e-4, 0.9), _run("cosine", 1e-4, 0.6)]  # fmt: skip
    lines = verdict(results)
    assert lines[-1].startswith("meta vs cosine at the same base LR: better in 1 of 3, worse in 1, tied in 1")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--suite", "huge"], "valid suites"),
        (["--tasks", "resnet9000"], "valid tasks"),
        (["--schedulers", "cosin"], "valid schedulers"),
    ],
)
def test_bad_names_are_rejected_with_the_valid_ones(tmp_path, capsys, argv, message):
    assert main(["bench", "--output-dir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def _run(scheduler, lr, loss, seed=0, evals=(), diverged=False, opt="adam"):
    return {
        "task": "t", "scheduler": scheduler, "optimizer": opt, "base_lr": lr, "seed": seed, "steps": 10,
        "final_eval_loss": loss, "diverged": diverged, "eval_steps": [5], "eval_loss": list(evals) or [loss],
        "wall_per_step": 1.0, "primary": 0.0, "primary_metric": "accuracy",
    }  # fmt: skip


def test_aggregate_win_rate_regret_profile_and_divergence():
    results = [
        _run("meta", 1e-3, 0.5, evals=[0.55]),
        _run("cosine", 1e-3, 0.6, evals=[0.9]),
        _run("meta", 1e-2, float("nan"), diverged=True),
        _run("cosine", 1e-2, 0.4, evals=[0.7]),
        _run("linear", 1e-2, 0.45, evals=[0.5]),
    ]
    agg = aggregate(results)
    assert agg["win_rate_vs"]["cosine"] == 0.5  # wins at 1e-3, loses (diverged) at 1e-2
    regrets = {x["base_lr"]: x["regret"] for x in agg["regret"]}
    assert regrets[1e-3] == pytest.approx(0.5 / 0.4 - 1) and math.isinf(regrets[1e-2])
    # target = tuned cosine (0.4): meta never reaches it at its best LR; cosine reaches it at the end (step 10)
    assert agg["profile"]["cosine"]["rho"][0] == 1.0 and agg["profile"]["meta"]["score"] == 0.0
    assert agg["diverged"] == 1


def test_a_tuned_run_with_a_loss_of_exactly_zero_is_a_huge_regret_not_a_crash():
    """A baseline whose eval loss rounds to 0 (a classifier sure of every label) makes meta's regret huge; a meta
    run at 0 too ties it."""
    results = [_run("meta", 1e-3, 0.01), _run("cosine", 1e-3, 0.0), _run("meta", 1e-2, 0.0), _run("cosine", 1e-2, 0.5)]
    regrets = {x["base_lr"]: x["regret"] for x in aggregate(results)["regret"]}
    assert regrets[1e-3] == pytest.approx(0.01 / 1e-12 - 1) and regrets[1e-2] == 0.0


def test_overhead_state_does_not_grow_with_the_model(monkeypatch):
    """The meta scheduler keeps no copy of gradients or weights: its state has the same size for a model twice
    as wide, and the measured times are real (positive, paired); the table names every model."""
    from metalr_hf.bench.overhead import MODELS, measure_overhead, overhead_table

    for name, width in (("narrow", 32), ("wide", 64)):
        config = dict(vocab_size=64, hidden_size=width, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=2 * width, max_position_embeddings=16)  # fmt: skip
        monkeypatch.setitem(MODELS, name, ("bert", config, 2, 8, 3))
    result = measure_overhead(models=("narrow", "wide"), trainer_steps=4, progress=False)
    small, wide = result["models"]
    assert wide["parameters"] > 1.5 * small["parameters"]
    assert wide["state_bytes"] == small["state_bytes"] > 0
    lo, hi = small["step_ratio_ci95"]
    assert lo <= hi and all(t > 0 for t in small["median_step_ms"].values())
    assert 0 < small["scheduler_ms_median"] <= small["scheduler_ms_p90"] < small["median_step_ms"]["meta"]
    wall = result["trainer_wall"]
    assert wall["ratio"] > 0 and len(wall["seconds"]["meta"]) == len(wall["seconds"]["cosine"]) == 4
    assert min(wall["pair_ratios"]) <= wall["ratio"] <= max(wall["pair_ratios"])
    table = overhead_table(result)
    assert "| narrow |" in table and "| wide |" in table and "wall time meta / cosine" in table
    assert "pairs of runs" in table


def test_wav2vec2_task_learns_under_the_meta_scheduler():
    """The audio task (a tiny Wav2Vec2 built from its config, raw waveforms in) trains through the Trainer with
    ``lr_scheduler_type="meta"``: the eval loss falls below chance level (log 4) and every LR is recorded."""
    from metalr_hf.bench.runner import run_one

    r = run_one("wav2vec2_kws", "meta", "adam", 3e-3, 0, steps=30, evals=2)
    assert not r["diverged"] and len(r["lr"]) == 30
    assert r["final_eval_loss"] < math.log(4) - 0.1
    assert len(set(r["lr"])) > 2  # the scheduler moved the LR


def test_more_seeds_add_only_the_new_runs(tmp_path, capsys):
    """``--seeds`` replaces the suite's seeds; run again with one more seed into the same folder, it adds only
    that seed's runs and keeps the others untouched; a negative seed is refused."""
    common = ["bench", "--suite", "smoke", "--tasks", "gpt2_lm", "--schedulers", "cosine", "--no-progress"]
    assert main([*common, "--output-dir", str(tmp_path), "--seeds", "3"]) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert sorted((r["seed"], r["base_lr"]) for r in first) == [(3, 3e-4), (3, 3e-3)]  # gpt2_lm: ×3
    assert main([*common, "--output-dir", str(tmp_path), "--seeds", "3", "4"]) == 0
    both = json.loads((tmp_path / "results.json").read_text())
    assert both[:2] == first and sorted((r["seed"], r["base_lr"]) for r in both[2:]) == [(4, 3e-4), (4, 3e-3)]
    assert both[2]["train_loss"] != both[0]["train_loss"]  # another seed, another run
    assert main([*common, "--output-dir", str(tmp_path / "bad"), "--seeds", "-1"]) == 2
    assert "seeds must be non-negative" in capsys.readouterr().err


def test_meta_kwargs_reach_the_meta_runs(tmp_path):
    """``--meta-kwargs`` are the meta runs' ``lr_scheduler_kwargs``: a constant prior capped at the base LR keeps
    every LR at or below it, where the default learner on the same run raises it."""
    common = ["bench", "--suite", "smoke", "--tasks", "bert_cls", "--schedulers", "meta", "--no-progress"]
    assert main([*common, "--output-dir", str(tmp_path / "default")]) == 0
    kwargs = '{"prior": "constant", "max_boost": 1.0}'
    assert main([*common, "--output-dir", str(tmp_path / "capped"), "--meta-kwargs", kwargs]) == 0
    default, capped = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("default", "capped"))
    assert any(lr > 1.01 * r["base_lr"] for r in default for lr in r["lr"])  # the check has teeth
    assert all(lr <= r["base_lr"] * (1 + 1e-6) for r in capped for lr in r["lr"])
    assert {lr for r in capped for lr in r["lr"]} != {r["base_lr"] for r in capped}  # not a stock constant schedule


def test_seed_means_count_cells_and_the_gap_meta_closes():
    from metalr_hf.bench.report import seed_means

    results = [
        _run("meta", 1e-3, 0.5, seed=0), _run("meta", 1e-3, 0.3, seed=1),  # mean 0.4
        _run("cosine", 1e-3, 0.6, seed=0), _run("cosine", 1e-3, 0.6, seed=1),  # mean 0.6
        _run("linear", 1e-2, 0.2, seed=0), _run("linear", 1e-2, 0.2, seed=1),  # the best tuned: 0.2
        _run("meta", 1e-2, 0.1, seed=0), _run("meta", 1e-2, float("nan"), seed=1, diverged=True),
        _run("cosine", 1e-2, 0.3, seed=0), _run("cosine", 1e-2, 0.3, seed=1),
    ]  # fmt: skip
    rows = {r["base_lr"]: r for r in seed_means(results)}
    assert rows[1e-3]["meta"] == pytest.approx(0.4) and rows[1e-3]["best_tuned"] == pytest.approx(0.2)
    assert rows[1e-3]["gap_closed"] == pytest.approx(0.5)  # from 0.6 halfway to 0.2
    assert math.isinf(rows[1e-2]["meta"]) and rows[1e-2]["gap_closed"] is None  # a diverged seed: no credit
    assert rows[1e-2]["meta"] > rows[1e-2]["cosine"]


def test_zoo_text_tasks_fine_tune_the_zoos_pretrained_base_through_the_trainer():
    """The finetune suite's zoo tasks start from the held-out pretrained base (its LM loss far below a random
    init's), train through the real Trainer, and run at the multiples of their own usual LR (1e-3)."""
    from types import SimpleNamespace

    from metalr_hf.bench.runner import SUITES, plan, run_one
    from metalr_hf.bench.tasks import TASKS, ZooTransformer
    from metalr_hf.metatrain.models import Transformer

    model, _train, val = TASKS["zoo_text_lm"].build(0)
    ids, labels = torch.tensor(val["input_ids"]), torch.tensor(val["labels"])
    spec = SimpleNamespace(seed=0, hidden=32)
    random = ZooTransformer([w[0] for w in Transformer.init(SimpleNamespace(specs=[spec]))], hidden=32)
    with torch.no_grad():
        assert model(ids, labels)["loss"] < 0.8 * random(ids, labels)["loss"]
    lrs = {lr for task, _s, _o, lr, _seed in plan(SUITES["finetune"]) if task == "zoo_text_cls" and lr > 0}
    assert min(lrs) == pytest.approx(1e-4) and max(lrs) == pytest.approx(1e-2)
    r = run_one("zoo_text_cls", "cosine", "adam", 1e-3, 0, steps=60, evals=2)  # a new head: log(32) at first
    assert not r["diverged"] and r["final_eval_loss"] < 0.8 * math.log(32)


def test_the_default_pair_raises_a_cautious_lr_on_the_zoos_pretrained_transformer():
    """At 0.1× its usual LR, a pretrained tiny transformer with a new head (told pretrained=True, as the task does)
    gets the bundled fine-tuning learner, which raises the LR above the prior and ends well below cosine."""
    from metalr_hf.bench.runner import run_one

    meta = run_one("zoo_text_cls", "meta", "adam", 1e-4, 0, steps=60, evals=2)
    cosine = run_one("zoo_text_cls", "cosine", "adam", 1e-4, 0, steps=60, evals=2)
    assert meta["final_eval_loss"] < 0.95 * cosine["final_eval_loss"]
    assert max(m / c for m, c in zip(meta["lr"][5:], cosine["lr"][5:])) > 1.5


def test_finished_runs_are_reused_only_under_the_same_definition(tmp_path, capsys):
    """The same folder with another learner or other meta options: the meta runs are run again and replaced
    (before, the old results were reported under the new command), the baselines are kept."""
    from metalr_hf import MetaLearner

    other = tmp_path / "other-learner"
    MetaLearner().save_pretrained(other)  # δ ≡ 0: a learner whose runs differ from the default's
    out = str(tmp_path / "bench")
    common = ["bench", "--suite", "smoke", "--tasks", "bert_cls", "--schedulers", "cosine", "meta", "--no-progress"]
    assert main([*common, "--output-dir", out]) == 0
    first = {(r["scheduler"], r["base_lr"]): r for r in json.loads((tmp_path / "bench" / "results.json").read_text())}
    assert main([*common, "--output-dir", out, "--meta-learner", str(other)]) == 0
    assert "2 finished run(s)" in capsys.readouterr().err
    second = {(r["scheduler"], r["base_lr"]): r for r in json.loads((tmp_path / "bench" / "results.json").read_text())}
    assert second.keys() == first.keys()
    for (scheduler, lr), run in second.items():
        if scheduler == "cosine":
            assert run == first[scheduler, lr]  # reused as it was
        else:
            assert run["definition"]["meta_learner"] == {str(other): MetaLearner.from_pretrained(other).fingerprint()}
            assert run["lr"] != first[scheduler, lr]["lr"]  # really run again with the other learner
    assert (
        main([*common, "--output-dir", out, "--meta-learner", str(other), "--meta-kwargs", '{"prior": "linear"}']) == 0
    )
    assert "2 finished run(s)" in capsys.readouterr().err
    third = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert {json.dumps(r["definition"].get("meta_kwargs")) for r in third if r["scheduler"] == "meta"} == {
        '{"prior": "linear"}'
    }
    # every option's value is part of the definition, defaults too: a run under another default is another run
    from metalr_hf.options import MetaSchedulerOptions

    options = [r["definition"]["meta_options"] for r in third if r["scheduler"] == "meta"]
    assert options and all(o["prior"] == "linear" for o in options)
    assert all(o["eval_patience"] == MetaSchedulerOptions().eval_patience for o in options)


@pytest.mark.parametrize(
    "task,optimizer", [("bert_cls", "adam"), ("vit_digits", "adam"), ("gpt2_lm", "sgd"), ("forecaster", "sgd")]
)
def test_every_quick_cell_learns_at_the_middle_of_its_grid(task, optimizer):
    """Each (task, optimizer) of `bench --suite quick` learns under a stock schedule at the middle of its LR grid
    (at 40 steps BERT and the ViT stayed at chance under every schedule, and SGD never moves a tiny transformer:
    such a cell measures nothing, so the suite runs them longer, and only with the optimizers that learn)."""
    from metalr_hf.bench.runner import SUITES, plan, run_one

    suite = SUITES["quick"]
    lrs = sorted({lr for t, s, o, lr, _ in plan(suite) if (t, s, o) == (task, "cosine", optimizer)})
    assert len(lrs) == len(suite.task_lrs(task)) >= 3
    r = run_one(task, "warmup_stable_decay", optimizer, lrs[1], 0, steps=suite.steps, evals=2)
    assert not r["diverged"]
    if task in ("bert_cls", "vit_digits"):  # well above chance (0.5, 0.1), not only a lower loss
        assert r["primary"] > (0.7 if task == "bert_cls" else 0.4)
    else:  # against the first step's loss, at the initial weights
        assert r["final_eval_loss"] < 0.8 * r["train_loss"][0]


def test_the_quick_suite_runs_transformers_with_adam_only_and_every_stock_schedule():
    from metalr_hf.bench.runner import STOCK, SUITES, plan

    quick = plan(SUITES["quick"])
    assert {(t, o) for t, _s, o, _lr, _seed in quick if o != "-"} == {
        ("bert_cls", "adam"), ("vit_digits", "adam"), ("gpt2_lm", "adam"), ("gpt2_lm", "sgd"),
        ("forecaster", "adam"), ("forecaster", "sgd"),
    }  # fmt: skip
    for suite in ("quick", "finetune"):
        assert set(STOCK) <= {s for _t, s, *_ in plan(SUITES[suite])}


@pytest.mark.parametrize("suite_name,above", [("quick", ("gpt2_lm", "forecaster")), ("finetune", ("minilm_sst",))])
def test_a_suite_measures_a_decade_above_a_right_lr_at_its_grids_top(suite_name, above):
    """GPT-2 and the forecaster (quick), MiniLM on clean sentences (finetune) are tuned at the top of their suite's
    grid: every stock schedule and meta also run a decade above it there, so the declared table sees base LRs on
    both sides of their right LRs; the other tasks keep the suite's grid (the suite's time)."""
    from metalr_hf.bench.runner import STOCK, SUITES, plan
    from metalr_hf.bench.tasks import TASKS

    suite = SUITES[suite_name]
    top = {}
    for t, s, o, lr, _seed in plan(suite):
        if s in ("meta", *STOCK):
            top.setdefault((t, o, s), []).append(lr / TASKS[t].scale(o))
    assert {t for t, _o, _s in top} >= set(above)
    for (t, o, s), lrs in top.items():
        assert max(lrs) == pytest.approx(suite.lrs[-1] * (10 if t in above else 1)), (t, o, s)


def test_the_noisy_fine_tuning_set_can_be_memorised():
    """minilm_noisy: unique sentences (a memorisable training set) with about a fifth of the labels flipped."""
    import numpy as np

    from metalr_hf.bench.tasks import noisy_sentiment_sentences, sentiment_sentences

    texts, labels = noisy_sentiment_sentences(2000, np.random.default_rng(0), 0.2)
    _texts, clean = sentiment_sentences(2000, np.random.default_rng(0))
    assert len(set(texts[:64])) == 64
    assert 0.17 < np.mean(labels != clean) < 0.23
