"""Meta-training by evolution strategies over full training runs.

Each iteration samples ``K`` tasks from the meta-training families and evaluates, on all of them at once (one
batched population), the prior schedule (``δ ≡ 0``), the current learner ``θ`` and ``N`` antithetic pairs
``θ ± σε_i``. Every run is a *full* unroll to its horizon — no truncation, so no short-horizon bias. The
fitness of a learner on task ``k`` (lower is better) is

    r_k = clip(log(L_val / L_val^prior), ±2) + λ · clip(log(AUC / AUC^prior), ±2)

where ``L_val`` is the final validation loss, ``AUC`` the mean training loss over the run, and the prior run
shares the task's data, initialisation, data order and base LR (common random numbers). A run that diverges
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
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call

from .._files import atomic_write, folder_lock
from ..features import FEATURE_NAMES
from ..learner import MetaLearner
from .evaluate import EvalConfig, evaluate, horizon_check, results_text
from .simulate import meta_policy, simulate
from .zoo import META_TRAIN, META_TRAIN_FINETUNE, OPTIMIZERS, make_population, sample_specs

__all__ = ["PRESETS", "Preset", "meta_train"]

# every feature before `pretrained` (added with the fine-tuning families): what the shipped learners read
BASE_FEATURES = FEATURE_NAMES[: FEATURE_NAMES.index("pretrained")]


@dataclass
class Preset:
    name: str
    iterations: int
    pairs: int  # N antithetic pairs
    tasks: int  # K tasks per iteration
    horizon: tuple[int, int]
    sigma: float = 0.05
    lr: float = 0.02
    auc_weight: float = 0.25
    core: str = "gru"
    hidden_size: int = 32
    max_delta: float = 2.0
    disabled_features: tuple[str, ...] = ()
    # The features the learner reads (a prefix of FEATURE_NAMES): the first 16 unless a preset asks for more,
    # so that the presets of the learners shipped before a feature was added still reproduce them.
    features: tuple[str, ...] = BASE_FEATURES
    batch_size: int = 32
    families: tuple[str, ...] = META_TRAIN
    optimizers: tuple[str, ...] = OPTIMIZERS
    lr_ranges: dict | None = None  # base-LR ranges (default: zoo.LR_RANGES)
    # Per-task scores worse than the prior count this many times (1: symmetric): "never worse than cosine".
    loss_aversion: float = 1.0
    # Start from the learner of another preset (run first, in `<output_dir>/stage-<name>`), not from scratch.
    init_from: str | None = None
    # Behaviour cloning of the best-in-hindsight schedules of a run collection (`metalr-hf collect`) first.
    warm_start: str | None = None
    warm_start_epochs: int = 30
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0


PRESETS = {
    "smoke": Preset(
        "smoke",
        iterations=3,
        pairs=2,
        tasks=3,
        horizon=(30, 50),
        eval=EvalConfig(
            families=("wine",),
            optimizers=("adam",),
            eval_lrs=(1e-3,),
            seeds=(0,),
            horizon=40,
            lr_grid={"adam": (1e-3, 1e-2), "sgd": (1e-2,)},
        ),
    ),
    # Stage 1: MLP families, Adam and SGD (the first shipped learner, ~25 min of compute).
    "default-mlp": Preset(
        "default-mlp",
        iterations=120,
        pairs=8,
        tasks=8,
        horizon=(100, 400),
        families=("teacher_cls", "blobs_cls", "teacher_reg", "friedman_reg"),
        optimizers=("adam", "sgd"),
    ),
    # Stage 2, from stage 1: every meta-training family and optimizer, losses to the prior weighted double
    # (the learner shipped as metalr-default-v2).
    "default-all": Preset(
        "default-all",
        iterations=80,
        pairs=6,
        tasks=6,
        horizon=(100, 300),
        lr=0.01,
        loss_aversion=2.0,
        init_from="default-mlp",
    ),
    # Stage 3, from stage 2 (the shipped default learner, metalr-default-v3): long runs, 300-2000 steps, every
    # family and optimizer, same bound and objective as stage 2.
    "default": Preset(
        "default",
        iterations=20,
        pairs=6,
        tasks=6,
        horizon=(300, 2000),
        lr=0.01,
        loss_aversion=2.0,
        init_from="default-all",
    ),
    # Another stage 3, from `default-all` (the opt-in learner metalr-scratch-v1, for training from scratch): the
    # correction bound widened from ×7.4 to ×148 (max_delta 2 → 5) so that a base LR 100× too small can be
    # repaired, SGD base LRs down to 1e-4, losses still weighted double. Not the default: it also boosts a small
    # LR that is right (fine-tuning a pretrained model), see its model card.
    "scratch": Preset(
        "scratch",
        iterations=60,
        pairs=6,
        tasks=8,
        horizon=(100, 300),
        lr=0.01,
        max_delta=5.0,
        loss_aversion=2.0,
        lr_ranges={"adam": (1e-5, 1e-1), "sgd": (1e-4, 1.0)},
        init_from="default-all",
    ),
    # An experiment, not shipped: a third stage from `default-all` with base LRs from the upper, well-tuned part of
    # the range and losses weighted triple (to make the learner leave a good LR alone). It did not change the
    # held-out results beyond noise (`results/experiment-high-lr/`).
    "high-lr": Preset(
        "high-lr",
        iterations=40,
        pairs=6,
        tasks=6,
        horizon=(100, 300),
        lr=0.01,
        loss_aversion=3.0,
        lr_ranges={"adam": (1e-4, 1e-1), "sgd": (1e-2, 1.0)},
        init_from="default-all",
    ),
}

# Experiments, not shipped. First the wide-bound stages after `scratch` (its bound, LR ranges, objective and ES
# sizes), then the warm-started copy of the shipped chain.
PRESETS |= {
    # From `scratch`: fine-tuning runs join the meta-training families (`finetune_cls`, half of the MLP runs),
    # where the small base LR is right and boosting it loses the pretrained features; to teach the wide-bound
    # learner to tell a small LR that is right from one too small.
    "scratch-ft": replace(
        PRESETS["scratch"], name="scratch-ft", iterations=45, families=META_TRAIN_FINETUNE * 4 + META_TRAIN,
        init_from="scratch",
    ),
    # From `scratch` too, as `scratch-ft`, but the learner also reads the `pretrained` feature (its input weights
    # start at zero) and fine-tuning runs are three quarters of the MLP runs.
    "finetune-aware-all": replace(
        PRESETS["scratch"], name="finetune-aware-all", iterations=45, families=META_TRAIN_FINETUNE * 12 + META_TRAIN,
        features=FEATURE_NAMES, init_from="scratch",
    ),
    # From `finetune-aware-all`: MLP runs only, half of them fine-tuning, so that every iteration carries the
    # fine-tuning signal (in the stage before, only the quarter of iterations that drew MLP runs did).
    "finetune-aware": replace(
        PRESETS["scratch"], name="finetune-aware", families=META_TRAIN_FINETUNE * 4 + PRESETS["default-mlp"].families,
        features=FEATURE_NAMES, init_from="finetune-aware-all",
    ),
    # The shipped chain with stage 1 warm-started by behaviour cloning on the full-size run collection, which must
    # be written first (`metalr-hf collect --preset default --output-dir runs/collect-default`).
    "default-mlp-ws": replace(PRESETS["default-mlp"], name="default-mlp-ws", warm_start="runs/collect-default"),
    "default-all-ws": replace(PRESETS["default-all"], name="default-all-ws", init_from="default-mlp-ws"),
    "default-ws": replace(PRESETS["default"], name="default-ws", init_from="default-all-ws"),
}  # fmt: skip


class PopulationLearner:
    """``G`` learners (one flat parameter vector each) acting on ``G`` groups of ``K`` runs: runs ``[gK, (g+1)K)``
    are driven by ``thetas[g]``. Presents the interface ``MetaController`` expects of a ``MetaLearner``."""

    def __init__(self, learner: MetaLearner, thetas: torch.Tensor, group_size: int):
        self.learner, self.thetas, self.K = learner, thetas, group_size
        self.shapes = [(n, p.shape, p.numel()) for n, p in learner.named_parameters()]
        self.device = learner.device

    def _params(self, theta):
        out, i = {}, 0
        for name, shape, n in self.shapes:
            out[name] = theta[i : i + n].view(shape)
            i += n
        return out

    def init_state(self, batch_size: int) -> torch.Tensor:
        return self.learner.init_state(batch_size)

    @torch.no_grad()
    def __call__(self, features: torch.Tensor, state: torch.Tensor):
        deltas, states = [], []
        for g, theta in enumerate(self.thetas):
            sl = slice(g * self.K, (g + 1) * self.K)
            d, s = functional_call(self.learner, self._params(theta), (features[sl], state[sl]))
            deltas.append(d)
            states.append(s)
        return torch.cat(deltas), torch.cat(states)


def _flat(learner: MetaLearner) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(learner.parameters()).detach().clone()


@torch.no_grad()
def _load_flat(learner: MetaLearner, theta: torch.Tensor) -> None:
    i = 0
    for p in learner.parameters():
        p.copy_(theta[i : i + p.numel()].view_as(p))
        i += p.numel()


def _head_mask(learner: MetaLearner) -> torch.Tensor:
    """True at the entries of θ that belong to the output layer."""
    return torch.cat([torch.full((p.numel(),), n.startswith("head.")) for n, p in learner.named_parameters()])


def widen(learner: MetaLearner, max_delta: float) -> MetaLearner:
    """The same learner with another bound ``δ_max``; the output layer is rescaled by ``old/new`` so that the
    correction is unchanged to first order (``δ = δ_max · tanh(z)``, exactly for small ``z``; a correction that
    sat at the old bound can now grow past it). Core and width must match the stage it continues."""
    if max_delta == learner.max_delta:
        return learner
    wide = MetaLearner(**dict(learner.config, max_delta=max_delta))
    state = learner.state_dict()
    scale = learner.max_delta / max_delta
    state["head.weight"], state["head.bias"] = state["head.weight"] * scale, state["head.bias"] * scale
    wide.load_state_dict(state)
    return wide


def with_features(learner: MetaLearner, names) -> MetaLearner:
    """The same learner reading the features ``names`` (a longer prefix of FEATURE_NAMES): the input weights of
    the added features start at zero, so its decisions are unchanged until training moves them."""
    names = list(names)
    if names == learner.config["feature_names"]:
        return learner
    if len(names) < learner.num_features:
        raise ValueError(f"Cannot drop features: the learner reads {learner.config['feature_names']}, asked {names}")
    wider = MetaLearner(**dict(learner.config, feature_names=names))
    state = learner.state_dict()
    w = state["input.weight"]
    state["input.weight"] = torch.cat([w, w.new_zeros(w.shape[0], len(names) - w.shape[1])], 1)
    wider.load_state_dict(state)
    return wider


def _task_scores(val, auc, val0, auc0, auc_weight, loss_aversion=1.0):
    def logratio(a, b):
        r = torch.log(a / b)
        r = torch.where(~torch.isfinite(a) & torch.isfinite(b), torch.full_like(r, 2.0), r)
        r = torch.where(torch.isfinite(a) & ~torch.isfinite(b), torch.full_like(r, -2.0), r)
        r = torch.where(~torch.isfinite(a) & ~torch.isfinite(b), torch.zeros_like(r), r)  # both diverged: a tie
        return r.nan_to_num(0.0).clamp(-2.0, 2.0)

    r = logratio(val, val0) + auc_weight * logratio(auc, auc0)
    return torch.where(r > 0, loss_aversion * r, r)


def _centered_ranks(x: torch.Tensor) -> torch.Tensor:
    ranks = torch.empty_like(x)
    ranks[x.argsort()] = torch.arange(len(x), dtype=x.dtype)
    return ranks / max(len(x) - 1, 1) - 0.5


def _dist():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def init_distributed() -> bool:
    """Join the process group when launched by ``torchrun`` / ``accelerate launch`` (gloo, the CPU backend;
    the population is simulated on the CPU). Returns True when this call created it."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("gloo")
        return True
    return False


def es_iteration(learner, theta, preset: Preset, rng: np.random.Generator, eps_gen: torch.Generator):
    """One ES step's fitness evaluation; returns (ε [N, P], fitness of every group [2 + 2N], extra stats)."""
    N = preset.pairs
    eps = torch.randn(N, theta.numel(), generator=eps_gen)
    zero = theta.masked_fill(_head_mask(learner), 0.0)  # the prior: a zero output layer gives δ ≡ 0
    thetas = torch.stack([zero, theta] + [theta + s * preset.sigma * e for e in eps for s in (1.0, -1.0)])
    G, K = thetas.shape[0], preset.tasks
    specs = sample_specs(
        K, rng, families=preset.families, horizon=preset.horizon, batch_size=preset.batch_size,
        optimizers=preset.optimizers, lr_ranges=preset.lr_ranges,
    )  # fmt: skip
    dist, rank, world = _dist()
    # groups of this rank (the prior group 0 is simulated by every rank: all fitnesses are relative to it)
    mine = [0] + [g for g in range(1, G) if g % world == rank]
    pop = make_population([s for _g in mine for s in specs])
    # max_boost=None: the rule every committed learner was meta-trained under (a learner that reads `pretrained`
    # gets no cap under "auto" either; one that does not, trained on fine-tuning runs as `scratch-ft`, reproduces)
    policy = meta_policy(PopulationLearner(learner, thetas[mine], K), pop, guard=True, max_boost=None)
    res = simulate(pop, policy, seed=int(rng.integers(0, 2**31 - 1)))
    val = res.final_val_loss.view(len(mine), K)
    auc = res.mean_train_loss.view(len(mine), K)
    scores = torch.zeros(G, K)
    for j, g in enumerate(mine):
        if g > 0:
            scores[g] = _task_scores(val[j], auc[j], val[0], auc[0], preset.auc_weight, preset.loss_aversion)
    if dist is not None and world > 1:
        dist.all_reduce(scores)
    return eps, scores.mean(1), {"diverged_prior": int(res.diverged.view(len(mine), K)[0].sum())}


def _same_settings(saved: dict, current: dict) -> bool:
    """A checkpoint's preset against the current one; a field added to `Preset` after the checkpoint was written
    counts as its default value (so older checkpoints stay resumable)."""
    saved = _with_defaults(Preset, saved)
    if isinstance(saved.get("eval"), dict):  # the same for a field added to its EvalConfig
        saved["eval"] = _with_defaults(EvalConfig, saved["eval"])
    return saved == current


def _with_defaults(cls, saved: dict) -> dict:
    """``saved`` (a dataclass written as JSON) with the fields of ``cls`` it lacks set to their defaults."""
    added = {f.name: f.default for f in fields(cls) if f.default is not MISSING and f.name not in saved}
    return {**json.loads(json.dumps(added, default=list)), **saved}


def _preset(preset: Preset | str) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; valid presets: {sorted(PRESETS)}")
    return PRESETS[preset]


def _stage_text(preset: Preset) -> str:
    extra = f", scores worse than the prior weighted ×{preset.loss_aversion:g}" if preset.loss_aversion != 1 else ""
    if preset.lr_ranges:
        extra += f"; base LRs log-uniform over {preset.lr_ranges}"
    if preset.max_delta != Preset.max_delta:
        extra += f"; correction bound δ_max = {preset.max_delta:g} (at most ×{math.exp(preset.max_delta):.0f})"
    warm = "behaviour cloning of the best schedule per task of the run collection, then " if preset.warm_start else ""
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

    preset = replace(_preset(preset), **overrides)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, rank, _ = _dist()
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
    if preset.init_from:
        stage = meta_train(
            preset.init_from, out / f"stage-{preset.init_from}", resume=resume, progress=progress,
            evaluate_at_end=False,
        )  # fmt: skip
        learner = widen(MetaLearner.from_pretrained(stage["learner_dir"]), preset.max_delta)
        learner = with_features(learner, preset.features)
        stage_seconds = sum(h["seconds"] for h in stage["history"]) + stage.get("stage_seconds", 0.0)
    ckpt_path = out / "checkpoint.pt"
    cloning = None
    if preset.warm_start and not (resume and ckpt_path.exists()):
        from .warmstart import behaviour_cloning

        cloning = behaviour_cloning(
            learner, preset.warm_start, epochs=preset.warm_start_epochs, progress=progress, families=preset.families
        )  # the meta-training families only: a collection also holds the held-out ones
        (out / "warm_start.json").write_text(json.dumps(cloning, indent=2))
    theta = _flat(learner)
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
        if not _same_settings(ckpt["preset"], preset_dict):
            raise ValueError(
                f"{ckpt_path} was written by another preset or settings; pass another --output-dir or --no-resume"
            )
        theta, adam_m, adam_v = ckpt["theta"], ckpt["adam_m"], ckpt["adam_v"]
        history, start = ckpt["history"], ckpt["iteration"]
        rng.bit_generator.state = ckpt["rng"]
        eps_gen.set_state(ckpt["eps_gen"])
    _, rank, _ = _dist()
    bar = tqdm(total=preset.iterations, initial=start, desc=f"meta-train[{preset.name}]", disable=not progress or rank)
    for it in range(start, preset.iterations):
        t0 = time.time()
        _load_flat(learner, theta)
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
    _load_flat(learner, theta)
    summary = {"preset": preset_dict, "history": history, "learner_dir": str(out / "learner")}
    if cloning is not None:
        summary["warm_start"] = cloning
    if preset.init_from:
        summary["stage_seconds"] = stage_seconds
    if rank == 0:
        learner.save_pretrained(out / "learner")
        (out / "history.json").write_text(json.dumps(history, indent=1))
        seconds = sum(h["seconds"] for h in history)
        chain = [preset]  # the stages, first to last
        while chain[0].init_from:
            chain.insert(0, _preset(chain[0].init_from))
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
        learner.card_context = card
        learner.save_pretrained(out / "learner")  # config, weights and card.json
        learner.generate_model_card().save(out / "learner" / "README.md")  # the mixin keeps an existing card
    dist, _, world = _dist()
    if dist is not None and world > 1:
        dist.barrier()  # the other ranks may read what rank 0 just wrote (a stage's learner)
    return summary
