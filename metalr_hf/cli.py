"""``metalr-hf``: the command line of metalr-hf.

Every command that writes files takes ``--output-dir``; ``--meta-learner`` takes a folder or a Hub repo id;
bad input exits with code 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


class CliError(Exception):
    """Bad input: printed as one line, exit code 2."""


def _cmd_show(args) -> None:
    from .learner import MetaLearner

    learner = MetaLearner.from_pretrained(None if args.learner == "default" else args.learner, revision=args.revision)
    info = {
        "source": learner.source,
        "fingerprint": learner.fingerprint(),
        "parameters": learner.num_parameters(),
        "config": learner.config,
    }
    print(json.dumps(info, indent=2))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalr-hf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="Print a learner's config, features, source and fingerprint.")
    show.add_argument("learner", nargs="?", default="default", help="folder, Hub repo id, or 'default'")
    show.add_argument("--revision", default=None, help="branch, tag or commit sha of a Hub learner")
    show.set_defaults(func=_cmd_show)
    from .metatrain import cli as metatrain_cli

    metatrain_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (CliError, ValueError, FileNotFoundError, TypeError) as e:
        print(f"metalr-hf {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
