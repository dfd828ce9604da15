"""QVHighlights ``highlight_{split}_release.jsonl``: one query a line.

``{qid, query, vid, duration, relevant_windows: [[s, e], ...], relevant_clip_ids, saliency_scores}``.
A video (``vid``) holds one single-sentence paragraph per query (the sentence-grounding view; the
queries of one video are independent, not a narrative). Every window is kept in
:attr:`Sentence.windows`, the first is ``(start, end)``; ``relevant_clip_ids`` and
``saliency_scores`` go to :attr:`Sentence.extra` as released, after a check (a bad-record problem of
the sentence): the ids are distinct integers in ``[0, int(duration / 2))`` (the 2-s clip grid,
:data:`CLIP_SECONDS`), and ``saliency_scores`` holds one row of :data:`ANNOTATORS` scores in
``[0, 4]`` per id. A query may have neither field (no highlight annotation), not one alone. The key is
``str(qid)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from higround.data.readers._io import expect, iter_json_lines
from higround.data.readers._layout import check_text
from higround.data.readers._table import Table, as_number
from higround.errors import DataError

EXTRA_FIELDS = ("relevant_clip_ids", "saliency_scores")
# QVHighlights' clip grid: relevant_clip_ids count 2-s clips, and three annotators scored each 0..4.
CLIP_SECONDS = 2.0
ANNOTATORS = 3
MAX_SALIENCY = 4


def _first_record_fits(path: Path) -> bool:
    """Whether the first non-blank line is a JSON object with the QVHighlights keys."""
    try:
        with path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        record = json.loads(first)
    except ValueError:  # not UTF-8, not JSON, or an integer longer than Python converts
        return False
    return isinstance(record, dict) and ("qid" in record or "vid" in record)


def _is_real(x: Any) -> bool:
    """A JSON number (not a bool), finite."""
    return not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x)


def saliency_problem(record: dict[str, Any], duration: float) -> str | None:
    """What is wrong with a record's ``relevant_clip_ids`` / ``saliency_scores``, or None.

    Args:
        record: the released JSON object of one query.
        duration: its video's duration in seconds (NaN when unknown: the bound on ids is not checked).
    """
    has = [name in record for name in EXTRA_FIELDS]
    if not any(has):
        return None
    if not all(has):
        missing, given = EXTRA_FIELDS[has.index(False)], EXTRA_FIELDS[has.index(True)]
        return f"{missing!r} is missing while {given!r} is given"
    ids, scores = record["relevant_clip_ids"], record["saliency_scores"]
    if not isinstance(ids, list) or not isinstance(scores, list):
        return "relevant_clip_ids and saliency_scores must be lists"
    if len(scores) != len(ids):
        return f"{len(scores)} saliency_scores rows for {len(ids)} relevant_clip_ids (want one per clip)"
    clips = math.floor(duration / CLIP_SECONDS) if math.isfinite(duration) else math.inf
    first: dict[int, int] = {}
    for i, clip in enumerate(ids):
        if isinstance(clip, bool) or not isinstance(clip, int):
            return f"relevant_clip_ids[{i}] is {clip!r}, not an integer"
        if not 0 <= clip < clips:
            return (
                f"relevant_clip_ids[{i}] is {clip}, outside the {clips} clips of {CLIP_SECONDS:g} s of "
                f"the {duration:g}-s video"
            )
        if clip in first:
            return f"relevant_clip_ids[{i}] repeats clip {clip} (relevant_clip_ids[{first[clip]}])"
        first[clip] = i
    for i, row in enumerate(scores):
        if not isinstance(row, list) or len(row) != ANNOTATORS or not all(_is_real(x) for x in row):
            return f"saliency_scores[{i}] is {row!r}, not {ANNOTATORS} numbers (one per annotator)"
        if not all(0 <= x <= MAX_SALIENCY for x in row):
            return f"saliency_scores[{i}] is {row!r}, outside [0, {MAX_SALIENCY}]"
    return None


def parse_qvhighlights(path: Path, split: str, table: Table) -> None:
    """Fill ``table`` from a QVHighlights JSON-lines file (``split`` is unused)."""
    del split
    seen: set[str] = set()
    check_text(path, table.reader, _first_record_fits(path))
    for line_no, value in iter_json_lines(path):
        record = expect(value, dict, path, f"line {line_no}")
        vid, qid = record.get("vid"), record.get("qid")
        if not isinstance(vid, str) or qid is None:
            raise DataError(f"{path}: line {line_no}: needs a 'vid' string and a 'qid'")
        if str(qid) in seen:
            raise DataError(f"{path}: line {line_no}: duplicate qid {qid!r}")
        seen.add(str(qid))
        duration = as_number(record.get("duration"))
        pos = table.video(vid, duration)
        windows = record.get("relevant_windows", [])
        table.sentence(
            pos,
            record.get("query"),
            windows if isinstance(windows, list) else [windows],
            paragraph=len(table.video_rows[pos]),
            key=str(qid),
            extra={k: record[k] for k in EXTRA_FIELDS if k in record},
            multi=True,
            where=f"line {line_no}, qid {qid}",
        )
        # The sentence's own problem (text, windows) is reported first.
        table.s_problem[-1] = table.s_problem[-1] or saliency_problem(record, duration)
