"""QVHighlights ``highlight_{split}_release.jsonl``: one query a line.

``{qid, query, vid, duration, relevant_windows: [[s, e], ...], relevant_clip_ids, saliency_scores}``.
A video (``vid``) holds one single-sentence paragraph per query (the sentence-grounding view; the
queries of one video are independent, not a narrative). Every window is kept in
:attr:`Sentence.windows`, the first is ``(start, end)``; ``relevant_clip_ids`` and
``saliency_scores`` go to :attr:`Sentence.extra`; the key is ``str(qid)``.
"""

from __future__ import annotations

import json
from pathlib import Path

from higround.data.readers._io import expect, iter_json_lines
from higround.data.readers._layout import check_text
from higround.data.readers._table import Table, as_number
from higround.errors import DataError

EXTRA_FIELDS = ("relevant_clip_ids", "saliency_scores")


def _first_record_fits(path: Path) -> bool:
    """Whether the first non-blank line is a JSON object with the QVHighlights keys."""
    try:
        with path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        record = json.loads(first)
    except ValueError:  # not UTF-8, not JSON, or an integer longer than Python converts
        return False
    return isinstance(record, dict) and ("qid" in record or "vid" in record)


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
        pos = table.video(vid, as_number(record.get("duration")))
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
