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
    retrieve_cmd,
    train_cmd,
)
from higround.errors import Fix, FixableDataError, HigroundError


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
        retrieve_cmd,
    ):
        module.register(sub)
    return parser


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub-)command that parsed ``args``: ``higround data stats`` -> its own."""
    # argparse keeps sub-parsers only in its private actions; walk them along the chosen names.
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, sub.dest, None) if sub is not None else None
        if sub is None or chosen not in sub.choices:
            return parser
        parser = sub.choices[chosen]


def spell_fix(parser: argparse.ArgumentParser, fix: Fix) -> str | None:
    """``fix`` spelled as the command of ``parser`` accepts it; None when it has no way to take it.

    The rule (docs/data.md, "Suggested fixes"): a flag whose destination is the fix's option
    (``--on-bad skip``); else a positional argument of that name (``higround data stats tacos ...``);
    else, for a command that takes recipe overrides, the recipe key (``data.on_bad=skip``). A value
    outside a flag's choices is never suggested.
    """
    overrides = False
    for action in parser._actions:
        if action.dest == fix.option and (action.choices is None or fix.value in action.choices):
            if action.option_strings:
                return f"{max(action.option_strings, key=len)} {fix.value}"
            return f"{parser.prog} {fix.value} ..."
        overrides = overrides or action.dest == "overrides"
    return f"{fix.key}={fix.value}" if overrides else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = command_parser(parser, args)
    try:
        return int(args.func(args) or 0)
    except FixableDataError as err:
        # The error carries its fix as data: suggest it as this command spells it, or not at all.
        message = err.with_fix(spell_fix(command, err.fix))
    except (HigroundError, FileNotFoundError) as err:
        # Readers and stores raise errors that already name the file and the record.
        message = str(err)
    except OSError as err:
        if err.filename is None:
            raise  # not about a path the user gave: a fault to see in full
        # A path that cannot be read or written (permissions, a folder where a file should be, ...).
        message = f"{err.filename}: {err.strerror or err}"
    print(f"{command.prog}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
