"""``metalr-hf collect`` and ``metalr-hf meta-train``."""

from __future__ import annotations

import json


def _cmd_collect(args) -> None:
    from .collect import COLLECT_PRESETS, collect

    runner = None
    if args.preset in COLLECT_PRESETS and COLLECT_PRESETS[args.preset].trainer_tasks:
        runner = args.trainer_runner()  # the composition root (metalr_hf/cli.py) says where Trainer runs come from
    path = collect(args.preset, args.output_dir, seed=args.seed, progress=not args.no_progress, trainer_runner=runner)
    print(f"wrote {path}")


def _cmd_meta_train(args) -> None:
    from .es import PRESETS, init_distributed, meta_train

    if args.preset == "ablation":
        from .ablation import run_ablations

        print(run_ablations(args.output_dir, iterations=args.iterations, progress=not args.no_progress))
        return
    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; valid presets: {sorted(PRESETS) + ['ablation']}")
    for key, low in (("iterations", 1), ("hidden_size", 1), ("seed", 0)):
        value = getattr(args, key)
        if value is not None and value < low:
            raise ValueError(f"--{key.replace('_', '-')} must be at least {low}, got {value}")
    overrides = {}
    for key in ("iterations", "core", "hidden_size", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.disable:
        overrides["disabled_features"] = tuple(args.disable)
    if args.warm_start:
        overrides["warm_start"] = args.warm_start
    created = init_distributed()
    try:
        summary = meta_train(
            args.preset,
            args.output_dir,
            resume=not args.no_resume,
            progress=not args.no_progress,
            evaluate_at_end=not args.no_eval,
            **overrides,
        )
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    if "eval" in summary:
        print(json.dumps({k: v for k, v in summary["eval"].items() if k != "cells_detail"}, indent=2))
    print(f"learner written to {args.output_dir}/learner")


def register(sub, trainer_runner=None) -> None:
    """``trainer_runner()`` returns the function that runs one Trainer task (the benchmark's ``run_one``)."""
    c = sub.add_parser("collect", help="Record zoo runs under many schedules into a Parquet run collection.")
    c.add_argument("--preset", default="smoke", help="smoke | default")
    c.add_argument("--output-dir", required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=_cmd_collect, trainer_runner=trainer_runner)

    m = sub.add_parser("meta-train", help="Meta-train a learner by evolution strategies on the task zoo.")
    m.add_argument(
        "--preset",
        default="smoke",
        help="smoke (under a minute) | default (the shipped learner; runs its stages default-mlp, default-all "
        "first) | default-mlp | default-all | scratch (the opt-in learner for training from scratch; runs "
        "default-all first) | ablation. Unshipped experiments: python lab/experiments/run.py PRESET",
    )
    m.add_argument("--output-dir", required=True)
    m.add_argument("--iterations", type=int, default=None)
    m.add_argument("--core", default=None, choices=["rnn", "gru", "lstm", "transformer"])
    m.add_argument("--hidden-size", type=int, default=None)
    m.add_argument("--seed", type=int, default=None)
    m.add_argument("--disable", nargs="*", default=None, help="feature groups or features to switch off (ablation)")
    m.add_argument(
        "--warm-start", default=None, help="a run collection (`collect --output-dir`): behaviour cloning before ES"
    )
    m.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    m.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=_cmd_meta_train)
