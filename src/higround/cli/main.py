"""Entry point of the ``higround`` command: one sub-command per module of this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from higround import __version__
from higround.cli import (
    baseline_cmd,
    data_cmd,
    demo_cmd,
    evaluate_cmd,
    extract_cmd,
    ground_cmd,
    predict_cmd,
    train_cmd,
)
from higround.errors import HigroundError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="higround", description="Temporal grounding of paragraphs and sentences in video."
    )
    parser.add_argument("--version", action="version", version=f"higround {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (
        data_cmd,
        evaluate_cmd,
        train_cmd,
        predict_cmd,
        baseline_cmd,
        demo_cmd,
        extract_cmd,
        ground_cmd,
    ):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (HigroundError, FileNotFoundError) as err:
        # Readers and stores raise errors that already name the file and the record.
        print(f"higround {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
