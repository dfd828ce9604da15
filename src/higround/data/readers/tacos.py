"""TACoS: the 2D-TAN release (frame timestamps) and the VPG paragraph files (seconds).

2D-TAN ``{split}.json``: ``{video_id: {timestamps: [[s, e], ...] in frames, sentences, fps,
num_frames}}``; times become seconds by dividing by ``fps`` and the duration is
``num_frames / fps``. A video is one paragraph of all its sentences (~130 on average) in released
order: the release is a sentence-grounding set; use ``tacos_paragraphs`` for paragraph grounding.

``paragraphs_{split}.json``: a list of ``{video, duration, sentences, timestamps}`` records, one per
paragraph; a video's paragraphs keep file order and its sentences are indexed across them.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from higround.data.readers._io import expect
from higround.data.readers._layout import read_json
from higround.data.readers._table import Table, as_number, paired_lists
from higround.errors import DataError


def parse_tacos_frames(path: Path, split: str, table: Table) -> None:
    """Fill ``table`` from a 2D-TAN TACoS file (``split`` is unused)."""
    del split
    data = expect(read_json(path, table.reader), dict, path, "the top level")
    for video_id, record in data.items():
        if not isinstance(record, dict):
            table.flag_video(table.video(video_id, math.nan), "record is not a JSON object")
            continue
        fps, frames = as_number(record.get("fps")), as_number(record.get("num_frames"))
        known = fps > 0 and math.isfinite(fps) and frames > 0 and math.isfinite(frames)
        extra = {"fps": record.get("fps"), "num_frames": record.get("num_frames")}
        pos = table.video(video_id, frames / fps if known else math.nan, extra=extra)
        if not known:
            given = f"fps {extra['fps']!r}, num_frames {extra['num_frames']!r}"
            table.flag_video(pos, f"unknown video duration ({given})")
            continue
        for text, span in paired_lists(table, pos, record):
            table.sentence(pos, text, [span], scale=1.0 / fps)


def parse_tacos_paragraphs(path: Path, split: str, table: Table) -> None:
    """Fill ``table`` from a ``paragraphs_{split}.json`` list (``split`` is unused)."""
    del split
    data = expect(read_json(path, table.reader), list, path, "the top level")
    paragraphs_seen: Counter[str] = Counter()
    for n, record in enumerate(data):
        video_id = record.get("video") if isinstance(record, dict) else None
        if not isinstance(video_id, str):
            # Without a video id the record cannot be named, skipped or reported: always an error.
            raise DataError(f"{path}: paragraph record {n} has no 'video' id")
        paragraph = paragraphs_seen[video_id]
        paragraphs_seen[video_id] += 1
        pos = table.video(video_id, as_number(record.get("duration")))
        for text, span in paired_lists(table, pos, record, what=f"paragraph {paragraph}: "):
            table.sentence(pos, text, [span], paragraph=paragraph)
