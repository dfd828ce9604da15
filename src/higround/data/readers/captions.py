"""ActivityNet-Captions layout: ActivityNet-Captions itself and the Charades-CG / ActivityNet-CG splits.

``{video_id: {duration, timestamps: [[start, end], ...] (seconds), sentences: [...]}}``; one video is
one paragraph, its sentences in released order (not sorted: see docs/data.md). The CG splits add
per-sentence lists ``novels`` (novel_composition) and ``news`` (novel_word), kept per sentence in
:attr:`Sentence.extra`; any other field is kept in :attr:`Video.extra`.
"""

from __future__ import annotations

import math
from pathlib import Path

from higround.data.readers._io import expect
from higround.data.readers._layout import read_json
from higround.data.readers._table import Table, as_number, paired_lists

# Lists with one entry per sentence in the compositional-grounding releases.
PER_SENTENCE_FIELDS = ("news", "novels")
_CORE_FIELDS = ("duration", "timestamps", "sentences")


def parse_captions(path: Path, split: str, table: Table) -> None:
    """Fill ``table`` from an ActivityNet-Captions-layout file (``split`` is unused)."""
    del split
    data = expect(read_json(path, table.reader), dict, path, "the top level")
    for video_id, record in data.items():
        if not isinstance(record, dict):
            table.flag_video(table.video(video_id, math.nan), "record is not a JSON object")
            continue
        sentences = record.get("sentences")
        count = len(sentences) if isinstance(sentences, list) else -1
        per_sentence = {
            k: record[k]
            for k in PER_SENTENCE_FIELDS
            if isinstance(record.get(k), list) and len(record[k]) == count
        }
        extra = {k: v for k, v in record.items() if k not in _CORE_FIELDS and k not in per_sentence}
        pos = table.video(video_id, as_number(record.get("duration")), extra=extra)
        for i, (text, span) in enumerate(paired_lists(table, pos, record)):
            table.sentence(pos, text, [span], extra={k: v[i] for k, v in per_sentence.items()})
