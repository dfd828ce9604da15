"""File reading helpers shared by the format parsers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from higround.errors import DataError


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook: ``json`` keeps the last of duplicate keys, which would drop a record silently."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(Exception):
    """Raised inside the JSON hook; turned into a DataError naming the file."""


def load_json(path: Path) -> Any:
    """Parse a JSON file; bad JSON or a duplicate key (e.g. a video id twice) is a DataError."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=_unique_keys)
    except _DuplicateKey as err:
        raise DataError(f"{path}: duplicate key {err.args[0]!r}") from None
    except ValueError as err:  # bad JSON or UTF-8, or an integer longer than Python converts
        raise DataError(f"{path}: not valid JSON: {err}") from None


def load_json_line(path: Path, line_no: int, line: str, *, unique_keys: bool = True) -> Any:
    """Parse one line of a JSON-lines file (``line_no`` counts from 1, for the message).

    With ``unique_keys`` a key repeated inside an object is a DataError; without, the last one wins.
    """
    try:
        return json.loads(line, object_pairs_hook=_unique_keys if unique_keys else None)
    except _DuplicateKey as err:
        raise DataError(f"{path}: line {line_no}: duplicate key {err.args[0]!r}") from None
    except ValueError as err:  # bad JSON, or an integer longer than Python converts
        raise DataError(f"{path}: line {line_no}: not valid JSON: {err}") from None


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line_no, line)`` of a UTF-8 text file (from 1); bytes that are not UTF-8 are a DataError."""
    # Decoded line by line, so that the error names the line (a text stream decodes whole chunks).
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}: line {line_no}: not UTF-8 text: {err}") from None


def iter_json_lines(path: Path, *, unique_keys: bool = True) -> Iterator[tuple[int, Any]]:
    """``(line_no, value)`` of each non-blank line of a UTF-8 JSON-lines file (see :func:`load_json_line`)."""
    for line_no, line in text_lines(path):
        if line.strip():
            yield line_no, load_json_line(path, line_no, line, unique_keys=unique_keys)


def expect(value: Any, kind: type | tuple[type, ...], path: Path, what: str) -> Any:
    """``value`` if it is of ``kind``; otherwise the file's layout is not the expected one."""
    if not isinstance(value, kind):
        raise DataError(f"{path}: {what} is {type(value).__name__}, not the expected layout")
    return value
