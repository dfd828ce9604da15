"""DiDeMo as HSE's code (CMHSE) releases it: ``{split}_data_bwzhang.json``.

``{video_id: {duration (s), feature_leng, times: [[f0, f1], ...], description: [...], num_segments}}``.
``times`` are indices into the video's ``feature_leng`` feature frames, which cover the whole video
uniformly, so frame ``f`` is at ``f * duration / feature_leng`` seconds (~30 a second); a time is
DiDeMo's 5-s segments ``s..e`` as frames ``floor(5 s fps), min(floor(5 (e + 1) fps), feature_leng)``
with ``fps = feature_leng / duration``, so a span starts and ends at most one frame before the 5-s
grid. Each description has one time: the segments marked by the most of its four annotators
(docs/data.md, "DiDeMo"). A video is one paragraph of its descriptions in file order.

A time that starts past the last feature frame (the annotators marked segments beyond a 12-15 s
video's end: 7 train descriptions) is the whole video, as CMHSE's loader takes it; its released
frames are kept in ``Sentence.extra["released_frames"]``. Every sentence keeps the frames its span
stands for in ``Sentence.extra["frames"]`` (``[f0, f1]`` inclusive, CMHSE slices ``f0 : f1 + 1``), so
a consumer can index the features exactly; ``feature_leng`` and ``num_segments`` go to
:attr:`Video.extra`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from higround.data.readers._io import expect
from higround.data.readers._layout import read_json
from higround.data.readers._table import Table, as_number, as_pair
from higround.errors import DataError

_CORE_FIELDS = ("duration", "times", "description")


def _is_index(x: float) -> bool:
    """A finite whole number (a JSON integer, or a float with no fraction)."""
    return math.isfinite(x) and x == int(x)


def _time(time: Any, length: int, duration: float) -> tuple[list[Any], dict[str, Any], str | None]:
    """One released time as (its window in seconds for the table, the sentence's extra, a problem).

    A malformed or non-numeric time is passed on as released: the table names its problem.
    """
    pair = as_pair(time)
    if pair is None or not all(map(math.isfinite, pair)):
        return [time], {}, None
    if not all(map(_is_index, pair)):
        return [time], {}, "frame indices are not whole numbers"
    f0, f1 = int(pair[0]), int(pair[1])
    extra: dict[str, Any] = {"frames": (f0, f1)}
    if f0 > length:  # CMHSE: a segment past the features is the whole video
        extra = {"frames": (0, length), "released_frames": (f0, f1)}
        f0, f1 = 0, length
    # duration * (f / length): exactly the duration when f == length (no float overshoot to clamp).
    return [[duration * (f0 / length), duration * (f1 / length)]], extra, None


def _not_a_list(name: str, record: dict[str, Any]) -> str | None:
    """Why field ``name`` of a video's record is not a list, or None when it is."""
    if name not in record:
        return f"no {name!r} field"
    value = record[name]
    return None if isinstance(value, list) else f"{name!r} is {type(value).__name__}, not a list"


def parse_didemo(path: Path, split: str, table: Table) -> None:
    """Fill ``table`` from a CMHSE DiDeMo file (``split`` is unused).

    Raises:
        DataError: the file is not JSON, or not a ``{video_id: record}`` object (DiDeMo's own
            release, a list of records with 5-s segment indices, is named as such).
    """
    del split
    data = read_json(path, table.reader)
    if isinstance(data, list):
        raise DataError(
            f"{path}: the top level is a list, as in DiDeMo's own release (5-s segment indices from four "
            "annotators); the didemo reader reads CMHSE's *_data_bwzhang.json ({video: {duration, "
            "feature_leng, times in feature frames, description}})"
        )
    data = expect(data, dict, path, "the top level")
    for video_id, record in data.items():
        if not isinstance(record, dict):
            table.flag_video(table.video(video_id, math.nan), "record is not a JSON object")
            continue
        duration = as_number(record.get("duration"))
        extra = {k: v for k, v in record.items() if k not in _CORE_FIELDS}
        pos = table.video(video_id, duration, extra=extra)
        length = as_number(record.get("feature_leng"))
        if not (length > 0 and _is_index(length)):
            table.flag_video(
                pos, f"feature_leng {record.get('feature_leng')!r} is not a positive frame count"
            )
            continue
        bad = [_not_a_list(name, record) for name in ("description", "times")]
        if any(bad):
            table.flag_video(pos, "; ".join(b for b in bad if b))
            continue
        descriptions, times = record["description"], record["times"]
        if len(descriptions) != len(times):
            table.flag_video(pos, f"{len(times)} times for {len(descriptions)} descriptions")
            continue
        if not descriptions:
            table.flag_video(pos, "no descriptions")
        for text, time in zip(descriptions, times, strict=True):
            window, frames, problem = _time(time, int(length), duration)
            table.sentence(pos, text, window, extra=frames, where=f"times {time!r} in feature frames")
            # The sentence's own problem (its text) is reported first.
            table.s_problem[-1] = table.s_problem[-1] or problem
