"""Argument types of numeric options: a bad value is an argparse usage error naming the option.

``parser.add_argument("--batch-size", type=positive_int)`` makes ``--batch-size 0`` end in
``higround extract: error: argument --batch-size: must be an integer >= 1, got '0'`` (exit status 2)
before any work starts, instead of a value that is silently taken or fails deep inside.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["fraction", "non_negative_int", "positive_float", "positive_int"]


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (a count, a batch size)."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (workers, thumbnails, a seed)."""
    return _integer(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0 (frames per second)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (an IoU threshold of NMS)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value
