"""Meta-training by evolution strategies over full training runs.

Each iteration samples ``K`` tasks from the meta-training families and evaluates, on all of them at once (one
batched population), the prior schedule (``δ ≡ 0``), the current learner ``θ`` and ``N`` antithetic pairs
``θ ± σε_i``. Every run is a *full* unroll to its horizon — no truncation, so no short-horizon bias. The
fitness of a learner on task ``k`` (lower is better) is

    r_k = clip(log(L_val / L_val^prior), ±2) + λ · clip(log(AUC / AUC^prior), ±2)

where ``L_val`` is the final validation loss, ``AUC`` the mean training loss over the run, and the prior run
shares the task's data, initialisation, data order and base LR (common random numbers); with
``reference="best_prior"`` the reference is, task by task, the better (final validation loss) of that run and a
constant LR after warmup on the same task: what a user who tries both would keep; with ``reference="best_stock"``
every task runs at several multiples of its base LR, each run is scored against the best of the four stock
schedules at its own base LR, and the task's right LR counts more (``Preset.right_lr_weight``). A run that diverges
scores +2. Fitnesses are rank-shaped (centred ranks), and ``θ`` moves with Adam along

    g = Σ_i (u(θ+σε_i) - u(θ-σε_i)) ε_i / (2Nσ).

Under ``torch.distributed`` (``torchrun``/``accelerate launch``) the perturbations are split across ranks and
the fitness matrix is summed with one all-reduce; every rank draws the same ``ε`` from the same seed, so the
result does not depend on the number of processes (up to floating-point rounding: batched kernels of another
batch size round differently, and a training run amplifies it; tested with 2 ranks).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_write, folder_lock
from ..learner import MetaLearner
from .distributed import dist_info, init_distributed
from .evaluate import BASELINES as STOCK
from .evaluate import evaluate, horizon_check, results_text
from .families import FINETUNE, sample_specs
from .population import PopulationLearner, flat, head_mask, load_flat, widen, with_features
from .presets import BASE_FEATURES, PRESETS, Preset, get_preset, same_settings
from .simulate import PriorPolicy, meta_policy, simulate
from .zoo import make_population

# the names other modules and scripts import from here
__all__ = ["BASE_FEATURES", "PRESETS", "Preset", "init_distributed", "meta_train", "widen", "with_features"]


def _task_scores(val, auc, val0, auc0, auc_weight, loss_aversion=1.0):
    def logratio(a, b):
        r = torch.log(a / b)
        r = torch.where(~torch.isfinite(a) & torch.isfinite(b), torch.full_like(r, 2.0), r)
        r = torch.where(torch.isfinite(a) & ~torch.isfinite(b), torch.full_like(r, -2.0), r)
        r = torch.where(~torch.isfinite(a) & ~torch.isfinite(b), torch.zeros_like(r), r)  # both diverged: a tie
        return r.nan_to_num(0.0).clamp(-2.0, 2.0)

    r = logratio(val, val0) + auc_weight * logratio(auc, auc0)
    return torch.where(r > 0, loss_aversion * r, r)


def _best_stock(tasks, data_seed: int, n_lrs: int, right_lr_weight: float):
    """The reference of ``reference="best_stock"``: per run, the final validation loss (and mean training loss) of
    the best stock schedule at its base LR, and the run's weight (``right_lr_weight`` at each task's right LR, the
    factor whose best stock run is lowest). Runs come as tasks × LR factors. The regret to the best tuned run
    differs from the log-ratio to this reference by a constant per run, so the two rank learners alike."""
    runs = [simulate(tasks, PriorPolicy(name, tasks), seed=data_seed) for name in STOCK]
    val = torch.stack([r.final_val_loss for r in runs]).nan_to_num(float("inf"), float("inf"))
    auc = torch.stack([r.mean_train_loss for r in runs]).nan_to_num(float("inf"), float("inf"))
    best_val, which = val.min(0)
    best_auc = auc.gather(0, which[None]).squeeze(0)
    right = best_val.view(-1, n_lrs).argmin(1)
    weights = torch.ones(right.shape[0], n_lrs)
    weights[torch.arange(weights.shape[0]), right] = right_lr_weight
    return best_val, best_auc, weights.view(-1)


def _centered_ranks(x: torch.Tensor) -> torch.Tensor:
    ranks = torch.empty_like(x)
    ranks[x.argsort()] = torch.arange(len(x), dtype=x.dtype)
    return ranks / max(len(x) - 1, 1) - 0.5


def es_iteration(learner, theta, preset: Preset, rng: np.random.Generator, eps_gen: torch.Generator):
    """One ES step's fitness evaluation; returns (ε [N, P], fitness of every group [2 + 2N], extra stats)."""
    N = preset.pairs
    eps = torch.randn(N, theta.numel(), generator=eps_gen)
    zero = theta.masked_fill(head_mask(learner), 0.0)  # the prior: a zero output layer gives δ ≡ 0
    thetas = torch.stack([zero, theta] + [theta + s * preset.sigma * e for e in eps for s in (1.0, -1.0)])
    G, K = thetas.shape[0], preset.tasks
    specs = sample_specs(
        K, rng, families=preset.families, horizon=preset.horizon, batch_size=preset.batch_size,
        optimizers=preset.optimizers, lr_ranges=preset.lr_ranges,
    )  # fmt: skip
    if preset.evals:  # one horizon per population, so that its runs evaluate at the same steps
        T = specs[0].horizon
        specs = [replace(s, horizon=T, warmup=max(1, T // 20) if s.warmup else 0) for s in specs]
    if preset.reference == "best_stock":  # each task at every LR factor: same data, start and order
        specs = [replace(s, base_lr=s.base_lr * f) for s in specs for f in preset.lr_factors]
        K = len(specs)
    dist, rank, world = dist_info()
    # groups of this rank (the prior group 0 is simulated by every rank: all fitnesses are relative to it)
    mine = [0] + [g for g in range(1, G) if g % world == rank]
    pop = make_population([s for _g in mine for s in specs])
    # max_boost=None, warmup_boost=True, eval_patience=None, smoothing 0: the rule every committed learner was
    # meta-trained under (a learner that reads `pretrained` gets no cap under "auto" either; one that does not,
    # trained on fine-tuning runs as `scratch-ft`, reproduces); a preset may average the decisions (`smoothing`)
    # and hand the rule evaluations (`evals`, `eval_rule`)
    learners = PopulationLearner(learner, thetas[mine], K)
    policy = meta_policy(
        learners, pop, guard=True, max_boost=None, warmup_boost=True, prior=preset.prior, smoothing=preset.smoothing,
        **{"eval_patience": None, **dict(preset.eval_rule)},
    )  # fmt: skip
    data_seed = int(rng.integers(0, 2**31 - 1))
    every = int(pop.horizon.max()) // preset.evals if preset.evals else 0
    res = simulate(pop, policy, seed=data_seed, observe_every=every)
    val = res.final_val_loss.view(len(mine), K)
    auc = res.mean_train_loss.view(len(mine), K)
    val0, auc0 = val[0], auc[0]
    weights = torch.ones(K)
    tasks = make_population(specs) if preset.prior != "cosine" or preset.reference != "prior" else None
    if preset.reference == "best_stock":
        val0, auc0, weights = _best_stock(tasks, data_seed, len(preset.lr_factors), preset.right_lr_weight)
    elif preset.prior != "cosine":  # scored against cosine on the same task (same data, start and order)
        cos = simulate(tasks, PriorPolicy("cosine", tasks), seed=data_seed)
        val0, auc0 = cos.final_val_loss, cos.mean_train_loss
    if preset.reference == "best_prior":  # the better of the prior and a constant LR after warmup, task by task
        alt = simulate(tasks, PriorPolicy("constant", tasks), seed=data_seed)  # same data, start and order
        better = alt.final_val_loss < val0
        val0, auc0 = torch.where(better, alt.final_val_loss, val0), torch.where(better, alt.mean_train_loss, auc0)
    scores = torch.zeros(G, K)
    for j, g in enumerate(mine):
        if g > 0:
            scores[g] = _task_scores(val[j], auc[j], val0, auc0, preset.auc_weight, preset.loss_aversion)
    if dist is not None and world > 1:
        dist.all_reduce(scores)
    fitness = (scores * weights).sum(1) / weights.sum()
    return eps, fitness, {"diverged_prior": int(res.diverged.view(len(mine), K)[0].sum())}


def _stage_text(preset: Preset) -> str:
    extra = f", scores worse than the prior weighted ×{preset.loss_aversion:g}" if preset.loss_aversion != 1 else ""
    if preset.prior != "cosine":
        extra += f"; the learner corrects a `{preset.prior}` prior (scored against cosine)"
    if preset.reference == "best_prior":
        extra += "; the reference is the better of the prior and a constant LR after warmup, task by task"
    if preset.reference == "best_stock":
        extra += (
            f"; each task runs at base LRs × {list(preset.lr_factors)} and every run is scored against the best stock "
            f"schedule ({', '.join(STOCK)}) at its base LR, the task's right LR weighted ×{preset.right_lr_weight:g}"
        )
    if preset.smoothing:
        extra += f"; the learner's decisions averaged over steps (`smoothing` {preset.smoothing:g})"
    if preset.evals:
        extra += f"; {preset.evals} evaluations a run read by the rule ({dict(preset.eval_rule)})"
    if preset.lr_ranges:
        extra += f"; base LRs log-uniform over {preset.lr_ranges}"
    if preset.max_delta != Preset.max_delta:
        extra += f"; correction bound δ_max = {preset.max_delta:g} (at most ×{math.exp(preset.max_delta):.0f})"
    warm = "behaviour cloning of the best schedule per task of the run collection, then " if preset.warm_start else ""
    if preset.init_learner:
        warm = f"from the learner `{preset.init_learner}`, " + warm
    return (
        f"{warm}evolution strategies (preset `{preset.name}`): {preset.iterations} iterations × {preset.pairs} "
        f"antithetic pairs × {preset.tasks} tasks from the families {list(preset.families)} with optimizers "
        f"{list(preset.optimizers)}, full unrolls of {preset.horizon[0]}–{preset.horizon[1]} steps; objective: final "
        f"validation loss (+{preset.auc_weight} × area under the training loss) as a log-ratio to the cosine prior on "
        f"the same task{extra}."
    )


def meta_train(
    preset: Preset | str = "smoke",
    output_dir: str | Path = "runs/meta-train",
    resume: bool = True,
    progress: bool = True,
    evaluate_at_end: bool = True,
    **overrides,
) -> dict:
    """Meta-train a learner; writes ``learner/`` (loadable by ``MetaLearner.from_pretrained``), ``history.json``,
    ``eval.json`` and ``eval.md`` under ``output_dir``; checkpoints every iteration and resumes from it."""

    preset = replace(get_preset(preset), **overrides)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, rank, _ = dist_info()
    with folder_lock(out) if rank == 0 else contextlib.nullcontext():
        return _meta_train(preset, out, resume, progress, evaluate_at_end)


def _meta_train(preset: Preset, out: Path, resume: bool, progress: bool, evaluate_at_end: bool) -> dict:
    from tqdm.auto import tqdm

    torch.manual_seed(preset.seed)
    learner = MetaLearner(
        core=preset.core,
        hidden_size=preset.hidden_size,
        max_delta=preset.max_delta,
        disabled_features=list(preset.disabled_features),
        feature_names=list(preset.features),
    )
    start_from = preset.init_learner  # a learner made already, or the previous stage's (run or resumed first)
    if preset.init_from:
        stage = meta_train(
            preset.init_from, out / f"stage-{preset.init_from}", resume=resume, progress=progress,
            evaluate_at_end=False,
        )  # fmt: skip
        start_from = stage["learner_dir"]
        stage_seconds = sum(h["seconds"] for h in stage["history"]) + stage.get("stage_seconds", 0.0)
    if start_from:
        learner = with_features(widen(MetaLearner.from_pretrained(start_from), preset.max_delta), preset.features)
    ckpt_path = out / "checkpoint.pt"
    cloning = None
    if preset.warm_start and not (resume and ckpt_path.exists()):
        from .warmstart import behaviour_cloning

        cloning = behaviour_cloning(
            learner, preset.warm_start, epochs=preset.warm_start_epochs, progress=progress, families=preset.families
        )  # the meta-training families only: a collection also holds the held-out ones
        (out / "warm_start.json").write_text(json.dumps(cloning, indent=2))
    theta = flat(learner)
    adam_m, adam_v = torch.zeros_like(theta), torch.zeros_like(theta)
    history, start = [], 0
    rng = np.random.default_rng(preset.seed)
    eps_gen = torch.Generator().manual_seed(preset.seed)
    preset_dict = json.loads(json.dumps(asdict(preset), default=list))
    if resume and ckpt_path.exists():
        try:
            ckpt = torch.load(ckpt_path, weights_only=True)
        except Exception as e:  # a damaged zip, a truncated file, a pickle with forbidden globals
            raise ValueError(
                f"The meta-training checkpoint {str(ckpt_path)!r} cannot be read ({type(e).__name__}: "
                f"{str(e)[:200]}); delete it to start again, or pass --no-resume"
            ) from None
        if not same_settings(ckpt["preset"], preset_dict):
            raise ValueError(
                f"{ckpt_path} was written by another preset or settings; pass another --output-dir or --no-resume"
            )
        theta, adam_m, adam_v = ckpt["theta"], ckpt["adam_m"], ckpt["adam_v"]
        history, start = ckpt["history"], ckpt["iteration"]
        rng.bit_generator.state = ckpt["rng"]
        eps_gen.set_state(ckpt["eps_gen"])
    _, rank, _ = dist_info()
    bar = tqdm(total=preset.iterations, initial=start, desc=f"meta-train[{preset.name}]", disable=not progress or rank)
    for it in range(start, preset.iterations):
        t0 = time.time()
        load_flat(learner, theta)
        eps, fitness, stats = es_iteration(learner, theta, preset, rng, eps_gen)
        pert = fitness[2:]
        u = _centered_ranks(pert).view(preset.pairs, 2)
        grad = ((u[:, 0] - u[:, 1])[:, None] * eps).sum(0) / (2 * preset.pairs * preset.sigma)
        # Adam on θ (minimising the fitness)
        b1, b2, step = 0.9, 0.999, it + 1
        adam_m = b1 * adam_m + (1 - b1) * grad
        adam_v = b2 * adam_v + (1 - b2) * grad * grad
        theta = theta - preset.lr * (adam_m / (1 - b1**step)) / ((adam_v / (1 - b2**step)).sqrt() + 1e-8)
        record = {
            "iteration": it + 1,
            "fitness_current": float(fitness[1]),
            "fitness_perturbed_mean": float(pert.mean()),
            "fitness_perturbed_best": float(pert.min()),
            "seconds": round(time.time() - t0, 2),
            **stats,
        }
        history.append(record)
        if rank == 0:
            ckpt = {
                "theta": theta,
                "adam_m": adam_m,
                "adam_v": adam_v,
                "history": history,
                "iteration": it + 1,
                "rng": rng.bit_generator.state,
                "eps_gen": eps_gen.get_state(),
                "preset": preset_dict,
            }
            atomic_write(ckpt_path, lambda tmp, ckpt=ckpt: torch.save(ckpt, tmp))  # never half-written
        bar.set_postfix(fit=f"{record['fitness_current']:+.4f}", best=f"{record['fitness_perturbed_best']:+.4f}")
        bar.update(1)
    bar.close()
    load_flat(learner, theta)
    summary = {"preset": preset_dict, "history": history, "learner_dir": str(out / "learner")}
    if cloning is not None:
        summary["warm_start"] = cloning
    if preset.init_from:
        summary["stage_seconds"] = stage_seconds
    if rank == 0:
        learner.save_pretrained(out / "learner")  # now: a failed evaluation must not lose the trained learner
        (out / "history.json").write_text(json.dumps(history, indent=1))
        seconds = sum(h["seconds"] for h in history)
        chain = [preset]  # the stages, first to last
        while chain[0].init_from:
            chain.insert(0, get_preset(chain[0].init_from))
        if len(chain) == 1:
            text = _stage_text(preset)
            text = text[0].upper() + text[1:]
        else:
            text = " ".join(
                f"Stage {i + 1}{f', from stage {i}' if i else ''} — {_stage_text(p)}" for i, p in enumerate(chain)
            )
        if preset.init_from:
            seconds += summary["stage_seconds"]
        card = {
            "training": (
                f"{text} Compute: {seconds / 60:.0f} minutes on the CPU (2 cores). Reproduce: "
                f"`metalr-hf meta-train --preset {preset.name} --output-dir DIR`."
            )
        }
        if evaluate_at_end:
            result = evaluate(learner, preset.eval)
            check = result["horizon_check"] = horizon_check(learner, preset.eval)
            (out / "eval.json").write_text(json.dumps(result, indent=1, default=str))
            summary["eval"] = result["summary"]
            card["results_table"] = results_text(preset.eval, result["summary"], check)
            (out / "eval.md").write_text(card["results_table"] + "\n")
        # A fine-tuning learner stays one (``max_boost="auto"`` lets only such a learner raise a pretrained run's
        # LR): one that started as one, or that met pretrained runs in this stage.
        if learner.card_context.get("fine_tuning") is True or set(preset.families) & set(FINETUNE):
            card["fine_tuning"] = True
        learner.card_context = card
        learner.save_pretrained(out / "learner")  # again, with card.json
        learner.generate_model_card().save(out / "learner" / "README.md")  # the mixin keeps an existing card
    dist, _, world = dist_info()
    if dist is not None and world > 1:
        dist.barrier()  # the other ranks may read what rank 0 just wrote (a stage's learner)
    return summary
