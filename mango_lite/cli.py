"""``python -m mango_lite <command>``: data (verify/download/synth), train, evaluate, reproduce."""

from __future__ import annotations

import argparse
import sys

from .errors import MangoLiteError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mango_lite",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "evaluate", "reproduce", "ablate"):
        from .utils import configure_threads

        configure_threads()  # 1 torch thread on small CPU-only machines (MANGO_LITE_THREADS overrides)
    try:
        return int(args.func(args) or 0)
    except MangoLiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
