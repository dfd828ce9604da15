"""Which release layout a file has, so that a file read with the wrong reader is named as such.

Without this, a TACoS file read as ActivityNet-Captions fails on every record ("unknown video
duration") and skipping bad records leaves nothing. Each parser checks the first records of what it
loaded (:func:`read_json` / :func:`check_text`) before any validation; only when they do not fit is
the whole file examined (:func:`file_layout`) to say which reader it looks like.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from higround.data.readers._io import load_json
from higround.errors import DataError, Fix, FixableDataError

# Records looked at: a file is told by its first few records, never by all of them.
_SAMPLE = 5
# A Charades-STA line: "VID start end##sentence".
CHARADES_LINE = re.compile(r"^\S+\s+[-+.\deE]+\s+[-+.\deE]+\s*##")


@dataclass(frozen=True)
class Layout:
    """A release layout: the readers that read it and how it looks (for the message)."""

    label: str
    looks: str
    readers: tuple[str, ...]


LAYOUTS: dict[str, Layout] = {
    "captions": Layout(
        "an ActivityNet-Captions-layout",
        "{video: {duration, timestamps in seconds, sentences}}",
        ("activitynet_captions", "charades_cg", "activitynet_cg"),
    ),
    "tacos": Layout("a tacos", "timestamps in frames with fps/num_frames", ("tacos",)),
    "tacos_paragraphs": Layout(
        "a tacos_paragraphs",
        "a list of {video, duration, sentences, timestamps} paragraphs",
        ("tacos_paragraphs",),
    ),
    "charades_sta": Layout("a charades_sta", "text lines 'VID start end##sentence'", ("charades_sta",)),
    "qvhighlights": Layout(
        "a qvhighlights", "JSON lines {qid, query, vid, duration, relevant_windows}", ("qvhighlights",)
    ),
    "didemo": Layout("a DiDeMo", "{video: {times, description}}", ("didemo",)),
}

# The layout each reader expects.
READER_LAYOUT: dict[str, str] = {
    reader: name for name, layout in LAYOUTS.items() for reader in layout.readers
}


class LayoutError(FixableDataError):
    """A file that has another reader's layout; :attr:`fix` names that reader (``dataset``)."""


def _json_record_layout(record: dict[str, Any]) -> str | None:
    """The layout one JSON object (a video's record, a paragraph, a query line) belongs to."""
    if "fps" in record or "num_frames" in record:
        return "tacos"
    if "times" in record and "description" in record:
        return "didemo"
    if "video" in record and "sentences" in record:
        return "tacos_paragraphs"
    if "qid" in record and "vid" in record:
        return "qvhighlights"
    if "duration" in record and ("timestamps" in record or "sentences" in record):
        return "captions"
    return None


def json_layout(data: Any) -> str | None:
    """The layout of a parsed JSON document, told from its first records; None when unknown."""
    if isinstance(data, dict):
        if "qid" in data and "vid" in data:  # a one-line JSON-lines file parses as one query
            return "qvhighlights"
        records = [r for r in list(data.values())[:_SAMPLE] if isinstance(r, dict)]
    elif isinstance(data, list):
        records = [r for r in data[:_SAMPLE] if isinstance(r, dict)]
    else:
        return None
    found = [layout for layout in map(_json_record_layout, records) if layout]
    return found[0] if found else None


def file_layout(path: Path) -> str | None:
    """The layout of the file at ``path`` (JSON, JSON lines or Charades-STA text); None when unknown.

    Only called once a parser found that the first records do not fit: it reads the whole file.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    try:
        return json_layout(json.loads(text))
    except ValueError:  # not JSON, or an integer longer than Python converts
        pass
    first = next((line for line in text.splitlines() if line.strip()), "")
    if CHARADES_LINE.match(first):
        return "charades_sta"
    try:
        value = json.loads(first)
    except ValueError:
        return None
    return (
        "qvhighlights" if isinstance(value, dict) and _json_record_layout(value) == "qvhighlights" else None
    )


def check(path: Path, reader: str, found: str | None) -> None:
    """Raise when ``found`` is a known layout that ``reader`` does not read.

    Raises:
        LayoutError: naming the reader(s) of that layout as the fix.
        DataError: the layout is one that no higround reader reads.
    """
    if found is None or found == READER_LAYOUT[reader]:
        return
    layout = LAYOUTS[found]
    message = f"{path}: not in the {reader} layout: it looks like {layout.label} file ({layout.looks})"
    if not layout.readers:
        raise DataError(f"{message}, which no higround reader reads")
    others = f"(or {', '.join(layout.readers[1:])}: same layout)" if len(layout.readers) > 1 else ""
    first = layout.readers[0]
    raise LayoutError(
        message,
        Fix("dataset", first, "data.dataset", purpose=others, verb="use", python=f"the {first!r} reader"),
    )


def read_json(path: Path, reader: str) -> Any:
    """Parse the JSON file ``path`` and check that it has the layout ``reader`` reads.

    A file that is not JSON at all (JSON lines, Charades-STA text) is examined as a whole first, so
    that it is named by its layout rather than by a JSON syntax error.
    """
    try:
        data = load_json(path)
    except DataError:
        check(path, reader, file_layout(path))
        raise
    check(path, reader, json_layout(data))
    return data


def check_text(path: Path, reader: str, fits: bool) -> None:
    """For a text-based reader: when its first record does not ``fits``, examine the whole file."""
    if not fits:
        check(path, reader, file_layout(path))
