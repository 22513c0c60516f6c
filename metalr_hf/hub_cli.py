"""``metalr-hf push``, ``push-runs`` and ``pull``."""

from __future__ import annotations

import os


def _token(args):
    return args.token or os.environ.get("HF_TOKEN")


def _push_kwargs(args) -> dict:
    kwargs = dict(token=_token(args), private=args.private, revision=args.revision, create_pr=args.create_pr)
    if args.commit_message:
        kwargs["commit_message"] = args.commit_message
    return kwargs


def _where(args, info) -> str:
    return f"pull request {info.pr_url}" if args.create_pr else args.revision or "main"


def _cmd_push(args) -> None:
    from .hub import push_learner

    info = push_learner(args.folder, args.repo_id, **_push_kwargs(args))
    print(f"pushed {args.folder} to {args.repo_id} ({_where(args, info)}) at commit {info.oid}")
    print(f'pin it with: --lr_scheduler_kwargs \'{{"meta_learner": "{args.repo_id}", "revision": "{info.oid}"}}\'')


def _cmd_push_runs(args) -> None:
    from .hub import push_runs

    info = push_runs(args.folder, args.repo_id, **_push_kwargs(args))
    print(f"pushed run collection {args.folder} to dataset {args.repo_id} ({_where(args, info)}) at commit {info.oid}")


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
        p.add_argument("--revision", default=None, help="the branch to push to (created from main if missing)")
        p.add_argument("--create-pr", action="store_true", help="open a pull request instead of pushing a commit")
        p.add_argument("--commit-message", default=None)
        p.add_argument("--private", action="store_true", default=None)
        p.add_argument("--token", default=None, help="defaults to HF_TOKEN or the cached login")
        p.set_defaults(func=func)
    p = sub.add_parser("pull", help="Download a learner into the HF cache so that it loads offline later.")
    p.add_argument("repo_id")
    p.add_argument("--revision", default=None)
    p.add_argument("--token", default=None)
    p.set_defaults(func=_cmd_pull)
