"""``python -m mango_lite <command>``: data (verify/download/synth), train, evaluate, reproduce."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import MangoLiteError


def program_name(argv0: str | None = None) -> str:
    """``mango-lite`` when run through the console script, ``python -m mango_lite`` otherwise."""
    name = Path(argv0 if argv0 is not None else sys.argv[0]).name
    return "mango-lite" if name.startswith("mango-lite") else "python -m mango_lite"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="MANGO multimodal normalizing-flow fusion: data tools, training and reproduction.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .datasets.cli import add_data_parser

    add_data_parser(sub)
    try:
        from .training.cli import add_training_parsers
    except ImportError as exc:  # the training package is optional while it is being built
        if "mango_lite.training.cli" not in str(exc) and "training.cli" not in str(exc):
            raise
    else:
        add_training_parsers(sub)
    return parser


def apply_environment(args: argparse.Namespace) -> argparse.Namespace:
    """The command line is an edge: options left unset take the environment's defaults here
    (``--jobs``: ``MANGO_LITE_JOBS``; ``--data-cache``: ``MANGO_LITE_DATA_CACHE``), and are passed on as
    arguments; the library reads no environment variable."""
    from . import environment

    for option, read in (("jobs", environment.jobs), ("data_cache", environment.data_cache)):
        if getattr(args, option, "absent") is None:
            setattr(args, option, read())
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import environment

    apply_environment(args)
    if args.command in ("train", "evaluate", "reproduce", "ablate"):
        from .utils import configure_threads

        configure_threads(environment.threads())  # 1 torch thread on small CPU-only machines unless set
    try:
        return int(args.func(args) or 0)
    except MangoLiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
