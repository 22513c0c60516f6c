"""``metalr-hf``: the command line of metalr-hf.

Every command that writes files takes ``--output-dir``; ``--meta-learner`` takes a folder or a Hub repo id;
bad input exits with code 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["main"]


class CliError(Exception):
    """Bad input: printed as one line, exit code 2."""


def _cmd_show(args) -> None:
    if args.options:
        from .options import MetaSchedulerOptions

        print(MetaSchedulerOptions.table())
        return
    from .hub import resolve_learner_files
    from .learner import MetaLearner

    files = resolve_learner_files(None if args.learner == "default" else args.learner, revision=args.revision)
    learner = MetaLearner._from_files(files)
    readme = files.config.parent / "README.md"
    card = readme.read_text() if readme.is_file() else ""
    if args.card:
        print(card or "(no model card next to this learner)")
        return
    info = {
        "source": learner.source,
        "fingerprint": learner.fingerprint(),
        "parameters": learner.num_parameters(),
        "config": learner.config,
        "card": _card_summary(card),
    }
    print(json.dumps(info, indent=2))


def _card_summary(card: str) -> dict:
    """The title and the held-out results section of a model card."""
    title = next((line[2:] for line in card.splitlines() if line.startswith("# ")), None)
    results = (
        card.split("## Held-out results", 1)[1].split("\n## ", 1)[0].strip() if "## Held-out results" in card else None
    )
    return {"title": title, "held_out_results": results}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metalr-hf", description="The command line of metalr-hf, a meta-learned LR scheduler for transformers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="Print a learner's config, features, source and fingerprint.")
    show.add_argument("learner", nargs="?", default="default", help="folder, Hub repo id, or 'default'")
    show.add_argument("--revision", default=None, help="branch, tag or commit sha of a Hub learner")
    show.add_argument("--card", action="store_true", help="print the learner's model card instead")
    show.add_argument("--options", action="store_true", help="print the scheduler's options (lr_scheduler_kwargs)")
    show.set_defaults(func=_cmd_show)
    sub.add_parser(
        "run",
        help="Run a transformers script with --lr_scheduler_type meta available: metalr-hf run SCRIPT.py [args]",
        add_help=False,
    )
    # The lab's commands: registered here (their modules import nothing heavy), run with their extras installed.
    # This is the composition root, the one place where the product meets the lab and the lab's parts meet.
    from . import hub_cli
    from .bench import cli as bench_cli
    from .metatrain import cli as metatrain_cli

    metatrain_cli.register(sub, trainer_runner=_bench_runner)
    bench_cli.register(sub)
    hub_cli.register(sub)
    return parser


def _bench_runner():
    from .bench.runner import run_one

    return run_one


_EXTRAS = {"collect": "metatrain,bench", "meta-train": "metatrain", "bench": "bench", "push-runs": "metatrain"}


def _hub_error():
    from huggingface_hub.errors import HfHubHTTPError

    return HfHubHTTPError


def _offline_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises when it cannot reach the Hub (offline mode, no network)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from huggingface_hub.errors import OfflineModeIsEnabled

        errors.append(OfflineModeIsEnabled)
    except ImportError:
        pass
    for module, name in (("requests", "ConnectionError"), ("httpx", "TransportError"), ("httpx2", "TransportError")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:  # the script's own arguments and errors are its own: no parsing, no catching here
        from .run import main as run_main

        return run_main(argv[1:])
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except ImportError as e:  # a lab command without its extra
        extra = _EXTRAS.get(args.command)
        if extra is None:
            raise
        print(
            f"metalr-hf {args.command}: error: needs the {extra} extra: pip install 'metalr-hf[{extra}]' ({e})",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:  # `metalr-hf show | head`: the reader left, nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (CliError, ValueError, FileNotFoundError, TypeError, RuntimeError, _hub_error()) as e:
        print(f"metalr-hf {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except _offline_errors() as e:
        print(
            f"metalr-hf {args.command}: error: the Hugging Face Hub cannot be reached ({type(e).__name__}); check "
            "the network, or unset HF_HUB_OFFLINE",
            file=sys.stderr,
        )
        return 2
    except OSError as e:  # an output folder that cannot be made or written (a file in its path, no permission)
        where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
        print(f"metalr-hf {args.command}: error: cannot write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


if __name__ == "__main__":
    sys.exit(main())
