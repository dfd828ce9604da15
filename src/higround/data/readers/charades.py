"""Charades-STA: ``charades_sta_{split}.txt`` lines ``VID start end##sentence`` (seconds).

Durations come from the ``length`` column of ``Charades_v1_{split}.csv`` beside the text file. A
video is one paragraph of its sentences in file order.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from higround.data.readers._io import text_lines
from higround.data.readers._layout import CHARADES_LINE, check_text
from higround.data.readers._table import Table
from higround.errors import DataError


def durations_csv(path: Path, split: str) -> Path:
    """The Charades csv that goes with ``charades_sta_{split}.txt``: ``Charades_v1_{split}.csv``."""
    return path.with_name(f"Charades_v1_{split}.csv")


def _float(text: str) -> float:
    """A decimal field as float, NaN when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_lengths(path: Path) -> dict[str, float]:
    """``{video id: length in seconds}`` from a Charades csv (NaN where the length is unreadable)."""
    if not path.is_file():
        raise FileNotFoundError(f"Charades durations csv not found: {path}")
    lengths: dict[str, float] = {}
    reader = csv.DictReader(line for _, line in text_lines(path))
    if not {"id", "length"} <= set(reader.fieldnames or ()):
        raise DataError(f"{path}: needs 'id' and 'length' columns, has {reader.fieldnames}")
    for row in reader:
        if row["id"] in lengths:
            raise DataError(f"{path}: line {reader.line_num}: duplicate id {row['id']!r}")
        lengths[row["id"]] = _float(row["length"] or "")
    return lengths


def _first_line(path: Path) -> str:
    """The first non-blank line of ``path`` ("" when none)."""
    return next((line for _, line in text_lines(path) if line.strip()), "")


def parse_charades_sta(path: Path, split: str, table: Table) -> None:
    """Fill ``table`` from a Charades-STA text file and its durations csv."""
    # Before the csv is looked for: a JSON file given here has no csv beside it either.
    check_text(path, table.reader, bool(CHARADES_LINE.match(_first_line(path))))
    csv_path = durations_csv(path, split)
    lengths = read_lengths(csv_path)
    for line_no, line in text_lines(path):
        if not line.strip():
            continue  # blank lines (a trailing newline) are not records
        head, sep, text = line.strip().partition("##")
        fields = head.split()
        if not fields:
            raise DataError(f"{path}: line {line_no}: no video id")
        length = lengths.get(fields[0], math.nan)
        pos = table.video(fields[0], length)
        if fields[0] not in lengths:
            table.flag_video(pos, f"unknown video duration (id not in {csv_path.name})")
        span = [_float(x) for x in fields[1:]]
        table.sentence(pos, text if sep else "", [span], where=f"line {line_no}")
