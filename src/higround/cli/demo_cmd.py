"""Placeholder: replaced by its owner."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Register this sub-command."""
    del sub


def run(args: argparse.Namespace) -> int:
    """Run it."""
    del args
    return 0
