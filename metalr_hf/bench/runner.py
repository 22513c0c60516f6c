"""Run a benchmark suite: every (task, scheduler, optimizer, base LR, seed) through ``MetaTrainer``.

Each finished run is appended to ``results.json`` at once; rerunning the command skips the finished runs, so
a killed suite resumes where it stopped. ``report.py`` turns the results into tables and plots.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from .._files import folder_lock, read_json, write_text_atomic
from .schedulers import EVAL_DRIVEN, LR_FREE, SCHEDULERS, build_optimizer_and_scheduler
from .tasks import TASKS

__all__ = ["SUITES", "Suite", "run_suite"]


@dataclass
class Suite:
    tasks: tuple[str, ...]
    schedulers: tuple[str, ...]
    lrs: tuple[float, ...]
    optimizers: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int | None = None  # None: each task's default
    evals: int = 6  # evaluations per run (steps to target, plateau schedulers)
    extra: dict = field(default_factory=dict)
    # tasks whose grid goes on a decade above the suite's top: where the right LR sits at the top, the declared
    # table's regret and "≤ best stock" would otherwise only see base LRs below it (`lab/results/grid-edge/`)
    above: tuple[str, ...] = ()

    def task_lrs(self, task: str) -> tuple[float, ...]:
        """The base LRs of ``task`` before its `Task.lr_scale`."""
        return (*self.lrs, self.lrs[-1] * 10) if task in self.above else self.lrs


# meta against the stock schedules a user would tune (the declared table's "best stock schedule") and two LR-free
# optimizers
STOCK = ("cosine", "linear", "constant_with_warmup", "warmup_stable_decay")
QUICK_SCHEDULERS = ("meta", *STOCK, "schedulefree_adamw", "prodigy")
SUITES = {
    # the first run: a task that learns in the budget, cosine next to meta at a too-small and a sensible base LR
    "smoke": Suite(("bert_cls", "gpt2_lm"), ("meta", "cosine"), (1e-4, 1e-3), ("adam",), (0,), steps=100, evals=2),
    "quick": Suite(
        ("bert_cls", "gpt2_lm", "vit_digits", "forecaster"),
        QUICK_SCHEDULERS,
        (1e-4, 1e-3, 1e-2),
        ("adam", "sgd"),
        (0, 1),
        steps=150,  # every task learns under its tuned baseline (40 steps left BERT and the ViT at chance)
        evals=5,
        above=("gpt2_lm", "forecaster"),  # their right LRs sit at the grid's top (Adam; with SGD on some seeds)
    ),  # fmt: skip
    "full": Suite(tuple(TASKS), SCHEDULERS, (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), ("adam", "sgd"), (0, 1, 2)),
    # fine-tuning the pretrained all-MiniLM-L6-v2 (extra [minilm]) at 0.1×, 0.4×, 1×, 4× and 10× the usual 5e-5 (on
    # clean data, and on a small noisy set it can overfit), and the zoo's pretrained tiny transformers at the same
    # multiples of their usual 1e-3 (`Task.lr_scale`)
    "finetune": Suite(
        ("minilm_sst", "minilm_noisy", "zoo_text_cls", "zoo_text_lm"),
        ("meta", *STOCK, "schedulefree_adamw"),
        (5e-6, 2e-5, 5e-5, 2e-4, 5e-4),
        ("adam",),
        (0, 1),
        above=("minilm_sst",),  # on clean sentences its right LR is the grid's top
    ),
}


def run_key(task, scheduler, optimizer, lr, seed) -> str:
    return f"{task}|{scheduler}|{optimizer}|{lr:g}|{seed}"


def run_definition(scheduler, steps, evals, meta_learner=None, meta_kwargs=None) -> dict:
    """Everything beside :func:`run_key` that decides a run's result: the package version, the run length and
    evaluations, and for meta runs the learner (name and fingerprint: a learner retrained in the same folder is
    another learner) and its options. A finished run is reused only under the same definition."""
    from .. import __version__

    definition = {"metalr_hf": __version__, "steps": steps, "evals": evals}
    if scheduler == "meta":
        from ..hub import DEFAULT_FINETUNE_LEARNER, DEFAULT_LEARNER
        from ..options import HUB_OPTIONS, MetaSchedulerOptions
        from ..scheduler import load_learner

        names = [DEFAULT_LEARNER, DEFAULT_FINETUNE_LEARNER] if meta_learner in (None, "default") else [meta_learner]
        definition["meta_learner"] = {str(name): load_learner(name).fingerprint() for name in names}
        definition["meta_kwargs"] = json.loads(json.dumps(meta_kwargs or {}, sort_keys=True))
        # every option's value, defaults included: a run made under another default is another run
        options = MetaSchedulerOptions(**{k: v for k, v in (meta_kwargs or {}).items() if k not in HUB_OPTIONS})
        values = {f.name: getattr(options, f.name) for f in fields(options) if f.name not in HUB_OPTIONS}
        definition["meta_options"] = json.loads(json.dumps(values, sort_keys=True, default=str))
    return definition


def plan(suite: Suite) -> list[tuple]:
    runs = []
    for task in suite.tasks:
        for seed in suite.seeds:
            for scheduler in suite.schedulers:
                if scheduler in LR_FREE:  # their own recommended LR and optimizer: once per task and seed
                    runs.append((task, scheduler, "-", 0.0, seed))
                    continue
                for optimizer in suite.optimizers:
                    scale = TASKS[task].scale(optimizer)
                    if scale is None:  # the task does not run with this optimizer
                        continue
                    for lr in suite.task_lrs(task):
                        runs.append((task, scheduler, optimizer, float(f"{lr * scale:.6g}"), seed))
    return runs


def _recorder():
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def __init__(self):
            self.train_loss, self.lr, self.eval_steps, self.eval_loss = [], [], [], []
            self.step_times, self._t0 = [], None

        def on_step_begin(self, args, state, control, **kw):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.step_times.append(time.perf_counter() - self._t0)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.train_loss.append(float(logs["loss"]))
                self.lr.append(float(logs.get("learning_rate", float("nan"))))
            if logs and "eval_loss" in logs:
                self.eval_steps.append(state.global_step)
                self.eval_loss.append(float(logs["eval_loss"]))

    return Record()


def run_one(
    task_name, scheduler, optimizer, lr, seed, steps=None, evals=6, meta_learner=None, meta_kwargs=None, callbacks=()
) -> dict:
    """One training run through the real Trainer; returns its record (diverged runs are recorded, not dropped).
    ``meta_kwargs`` go to the meta scheduler (e.g. its ``prior``), ``callbacks`` to the Trainer."""
    from transformers import PrinterCallback, set_seed
    from transformers.utils import logging as hf_logging

    from ..trainer import MetaTrainer, MetaTrainingArguments

    hf_logging.set_verbosity_error()
    task = TASKS[task_name]
    steps = steps or task.steps
    set_seed(seed)
    model, train_ds, eval_ds = task.build(seed)
    warmup = max(1, steps // 20)
    opt, sched, lr_type, lr_kwargs = build_optimizer_and_scheduler(scheduler, model, optimizer, lr, steps, warmup)
    if lr_type == "meta":
        lr_kwargs = {
            **(task.meta_kwargs or {}),
            **({"meta_learner": meta_learner} if meta_learner is not None else {}),
            **(meta_kwargs or {}),
        }
    eval_steps = max(1, steps // evals)
    with tempfile.TemporaryDirectory() as tmp:
        args = MetaTrainingArguments(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=task.batch_size,
            per_device_eval_batch_size=128,
            learning_rate=lr if lr > 0 else opt.param_groups[0]["lr"],
            warmup_steps=warmup if sched is None else 0,
            lr_scheduler_type=lr_type,
            lr_scheduler_kwargs=lr_kwargs,
            eval_strategy="steps",
            eval_steps=eval_steps,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            seed=seed,
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            label_names=["future_values"] if task_name == "forecaster" else None,
            metric_for_best_model="eval_loss" if scheduler in EVAL_DRIVEN else None,
        )
        rec = _recorder()
        trainer = MetaTrainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            optimizers=(opt, sched),
            compute_metrics=task.compute_metrics,
            callbacks=[rec, *callbacks],
        )
        trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        error = None
        try:
            trainer.train()
            metrics = trainer.evaluate()
        except (RuntimeError, ValueError, FloatingPointError) as e:  # a blow-up is a result, not a crash
            metrics, error = {"eval_loss": float("nan")}, f"{type(e).__name__}: {e}"[:300]
        wall = time.perf_counter() - t0
    final = float(metrics.get("eval_loss", float("nan")))
    primary = (
        math.exp(min(final, 50.0))
        if task.primary_metric == "perplexity"
        else metrics.get(f"eval_{task.primary_metric}")
    )
    first = rec.eval_loss[0] if rec.eval_loss else final
    diverged = (
        error is not None
        or not math.isfinite(final)
        or any(not math.isfinite(x) for x in rec.train_loss)
        or final > 3.0 * max(first, 1e-12)
    )
    return {
        "task": task_name,
        "scheduler": scheduler,
        "optimizer": optimizer,
        "base_lr": lr,
        "seed": seed,
        "steps": steps,
        "warmup": warmup,
        "final_eval_loss": final,
        "best_eval_loss": min([x for x in rec.eval_loss + [final] if math.isfinite(x)], default=float("nan")),
        "primary_metric": task.primary_metric,
        "primary": float(primary) if primary is not None else float("nan"),
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        "diverged": bool(diverged),
        "error": error,
        "wall_per_step": statistics.median(rec.step_times) if rec.step_times else wall / steps,
        "wall_seconds": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_loss": rec.train_loss,
        "lr": rec.lr,
        "eval_steps": rec.eval_steps,
        "eval_loss": rec.eval_loss,
    }


def _validate(suite: Suite):
    bad = [t for t in suite.tasks if t not in TASKS]
    if bad:
        raise ValueError(f"Unknown task(s) {bad}; valid tasks: {list(TASKS)}")
    bad = [s for s in suite.schedulers if s not in SCHEDULERS]
    if bad:
        raise ValueError(f"Unknown scheduler(s) {bad}; valid schedulers: {list(SCHEDULERS)}")


def run_suite(
    suite: str | Suite,
    output_dir: str | os.PathLike,
    tasks=None,
    schedulers=None,
    meta_learner=None,
    progress: bool = True,
    meta_kwargs: dict | None = None,
    seeds=None,
) -> list[dict]:
    """Run (or resume) a suite into ``output_dir/results.json``; ``meta_kwargs`` go to every meta run's scheduler
    (``lr_scheduler_kwargs``, e.g. ``{"max_boost": None}``); ``seeds`` replace the suite's (more seeds into a
    folder that holds the suite's runs add only the new ones)."""
    if meta_kwargs is not None and not isinstance(meta_kwargs, dict):
        raise ValueError(f"meta_kwargs must be a dict (lr_scheduler_kwargs), got {meta_kwargs!r:.80}")
    if isinstance(suite, str):
        if suite not in SUITES:
            raise ValueError(f"Unknown suite {suite!r}; valid suites: {list(SUITES)}")
        suite = SUITES[suite]
    if tasks:
        suite = Suite(**{**suite.__dict__, "tasks": tuple(tasks)})
    if schedulers:
        suite = Suite(**{**suite.__dict__, "schedulers": tuple(schedulers)})
    if seeds:
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds):
            raise ValueError(f"seeds must be non-negative integers, got {list(seeds)}")
        suite = Suite(**{**suite.__dict__, "seeds": tuple(dict.fromkeys(seeds))})
    _validate(suite)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        return _run_suite(suite, out, meta_learner, progress, meta_kwargs)


def _run_suite(suite: Suite, out: Path, meta_learner, progress: bool, meta_kwargs=None) -> list[dict]:
    from tqdm.auto import tqdm

    path = out / "results.json"
    results = read_json(path, "benchmark results file") if path.exists() else []
    if not isinstance(results, list):
        raise ValueError(f"The benchmark results file {str(path)!r} is damaged (not a list of runs); delete it")
    definitions = {
        name: run_definition(name, suite.steps, suite.evals, meta_learner, meta_kwargs)
        for name in {run[1] for run in plan(suite)}
    }
    index = {
        run_key(r["task"], r["scheduler"], r["optimizer"], r["base_lr"], r["seed"]): i for i, r in enumerate(results)
    }
    todo, stale = [], 0
    for run in plan(suite):
        i = index.get(run_key(*run))
        if i is None:
            todo.append((run, None))
        elif results[i].get("definition") != definitions[run[1]]:  # another learner, options, version or length
            todo.append((run, i))
            stale += 1
    if stale:
        print(
            f"bench: {stale} finished run(s) in {str(path)!r} were made under another definition (learner, its "
            "options, metalr-hf version or run length); they are run again and replaced",
            file=sys.stderr,
        )
    done = len(plan(suite)) - len(todo)
    bar = tqdm(total=len(todo) + done, initial=done, desc="bench", disable=not progress)
    for (task, scheduler, optimizer, lr, seed), i in todo:
        bar.set_postfix_str(f"{task} {scheduler} {optimizer} {lr:g} s{seed}")
        record = run_one(task, scheduler, optimizer, lr, seed, suite.steps, suite.evals, meta_learner, meta_kwargs)
        record["definition"] = definitions[scheduler]
        if i is None:
            results.append(record)
        else:
            results[i] = record
        write_text_atomic(path, json.dumps(results, indent=1))  # a kill never leaves a half-written file
        bar.update(1)
    bar.close()
    return results
