"""``metalr-hf push``, ``push-runs`` and ``pull``."""

from __future__ import annotations

import os


def _token(args):
    return args.token or os.environ.get("HF_TOKEN")


def _cmd_push(args) -> None:
    from .hub import push_learner

    sha = push_learner(args.folder, args.repo_id, token=_token(args), private=args.private, branch=args.branch)
    print(f"pushed {args.folder} to {args.repo_id} at commit {sha}")
    print(f'pin it with: --lr_scheduler_kwargs \'{{"meta_learner": "{args.repo_id}", "revision": "{sha}"}}\'')


def _cmd_push_runs(args) -> None:
    from .hub import push_runs

    sha = push_runs(args.folder, args.repo_id, token=_token(args), private=args.private, branch=args.branch)
    print(f"pushed run collection {args.folder} to dataset {args.repo_id} at commit {sha}")


def _cmd_pull(args) -> None:
    from .hub import pull_learner

    files = pull_learner(args.repo_id, revision=args.revision, token=_token(args))
    print(f"{args.repo_id} at commit {files.revision} is in the local cache: {files.config.parent}")


def register(sub) -> None:
    for name, help_, func in (
        ("push", "Push a learner folder (config, weights, rendered model card) to the Hub.", _cmd_push),
        ("push-runs", "Push a run collection (runs.parquet + card) to the Hub as a dataset.", _cmd_push_runs),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("folder")
        p.add_argument("--repo-id", required=True)
        p.add_argument("--branch", default=None)
        p.add_argument("--private", action="store_true", default=None)
        p.add_argument("--token", default=None, help="defaults to HF_TOKEN or the cached login")
        p.set_defaults(func=func)
    p = sub.add_parser("pull", help="Download a learner into the HF cache so that it loads offline later.")
    p.add_argument("repo_id")
    p.add_argument("--revision", default=None)
    p.add_argument("--token", default=None)
    p.set_defaults(func=_cmd_pull)
