"""Predictions files: one documented JSON format for every model, and Moment-DETR's JSON lines.

``higround.predictions.v1`` (docs/evaluation.md has the full specification)::

    {"format": "higround.predictions.v1", "dataset": "activitynet_captions", "split": "val_2",
     "meta": {...},
     "predictions": [
       {"key": "v_abc#0", "video_id": "v_abc", "sentence_index": 0,
        "spans": [[12.5, 30.1], [10.0, 31.0]], "scores": [0.9, 0.4],
        "paragraph_index": 0, "paragraph_span": [10.0, 80.0], "word_spans": [[12.0, 14.0], ...],
        "saliency": [0.1, 0.7, ...]},
       ...]}

``key`` matches :attr:`higround.data.schema.Sentence.key`; ``spans`` are seconds, ranked best first
(the first is the prediction R1 and mIoU score); everything after ``spans`` is optional; other record
fields are kept in :attr:`PredictionRecord.extra` and written back. ``saliency`` is a score per clip
of the annotation's clip grid (QVHighlights: clip i covers [2i, 2i + 2) s), scored by the highlight
metrics. Moment-DETR's ``{qid, vid, pred_relevant_windows: [[s, e, score], ...],
pred_saliency_scores: [...]}`` lines read into the same records (key ``str(qid)``; saliency from
``pred_saliency_scores`` when the line has it).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from higround.data.readers._io import iter_json_lines
from higround.data.schema import Span
from higround.errors import DataError
from higround.io import atomic_write_text

__all__ = [
    "FORMAT",
    "PredictionFormat",
    "PredictionRecord",
    "Predictions",
    "read_moment_detr",
    "read_predictions",
    "write_predictions",
]

FORMAT = "higround.predictions.v1"
PredictionFormat = Literal["auto", "higround", "moment_detr"]

_KNOWN = (
    "key",
    "video_id",
    "sentence_index",
    "spans",
    "scores",
    "paragraph_index",
    "paragraph_span",
    "sentence_span",
    "word_spans",
    "saliency",
)
_REQUIRED = ("key", "video_id", "spans")
_TOP_LEVEL = ("format", "dataset", "split", "meta", "predictions")


@dataclass(frozen=True)
class PredictionRecord:
    """One sentence's predictions (seconds).

    Attributes:
        key: the sentence's :attr:`~higround.data.schema.Sentence.key` (``"<video_id>#<index>"``, or
            QVHighlights' ``qid``).
        video_id: its video.
        spans: predicted (start, end) spans ranked best first; at least one.
        scores: one confidence per span (higher is better), or None; mAP sorts by them.
        sentence_index: the sentence's index in its video's annotation, when known.
        paragraph_index: its paragraph within the video, when known.
        paragraph_span: the paragraph-level prediction (HSCNet's paragraph decoder), if any.
        sentence_span: the sentence-level prediction (HSCNet's sentence decoder), if any.
        word_spans: word-level predictions, one per word, if any.
        saliency: a score per clip of the annotation's clip grid (clip i first; higher is more
            salient), if any; the highlight metrics score it.
        extra: any other JSON fields of the record, kept verbatim.
    """

    key: str
    video_id: str
    spans: tuple[Span, ...]
    scores: tuple[float, ...] | None = None
    sentence_index: int | None = None
    paragraph_index: int | None = None
    paragraph_span: Span | None = None
    sentence_span: Span | None = None
    word_spans: tuple[Span, ...] | None = None
    saliency: tuple[float, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """The record as an error message names it."""
        where = f"key {self.key!r}, video {self.video_id}"
        return where + (f", sentence {self.sentence_index}" if self.sentence_index is not None else "")

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object of the v1 format (optional fields only when set)."""
        out: dict[str, Any] = {"key": self.key, "video_id": self.video_id}
        if self.sentence_index is not None:
            out["sentence_index"] = self.sentence_index
        out["spans"] = [list(s) for s in self.spans]
        if self.scores is not None:
            out["scores"] = list(self.scores)
        if self.paragraph_index is not None:
            out["paragraph_index"] = self.paragraph_index
        if self.paragraph_span is not None:
            out["paragraph_span"] = list(self.paragraph_span)
        if self.sentence_span is not None:
            out["sentence_span"] = list(self.sentence_span)
        if self.word_spans is not None:
            out["word_spans"] = [list(s) for s in self.word_spans]
        if self.saliency is not None:
            out["saliency"] = list(self.saliency)
        out.update(self.extra)
        return out


@dataclass
class Predictions:
    """A predictions file's content: records in file order, and what the file says about them."""

    records: list[PredictionRecord]
    dataset: str | None = None
    split: str | None = None
    source: str = "<memory>"
    format: str = FORMAT
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)


class _Bad(Exception):
    """A field-level problem; the caller adds the file and the record to the message."""


# In-memory records may carry numpy values (the engine's outputs); files carry plain JSON.
def _listed(x: Any) -> Any:
    return x.tolist() if isinstance(x, np.ndarray) else x


def _number(x: Any, what: str) -> float:
    try:  # an integer too large for a float overflows
        finite = not isinstance(x, bool | np.bool_) and isinstance(x, numbers.Real) and math.isfinite(x)
    except OverflowError:
        finite = False
    if not finite:
        raise _Bad(f"{what} must be a finite number, got {x!r}")
    return float(x)


def _span(x: Any, what: str) -> Span:
    x = _listed(x)
    if not isinstance(x, list | tuple) or len(x) != 2:
        raise _Bad(f"{what} must be [start, end], got {x!r}")
    start, end = _number(x[0], f"{what} start"), _number(x[1], f"{what} end")
    if end < start:
        raise _Bad(f"{what} ends before it starts: [{start}, {end}]")
    return (start, end)


def _span_list(x: Any, what: str, *, allow_empty: bool) -> tuple[Span, ...]:
    x = _listed(x)
    if not isinstance(x, list | tuple):
        raise _Bad(f"{what} must be a list of [start, end], got {type(x).__name__}")
    if not x and not allow_empty:
        raise _Bad(f"{what} is empty: every sentence needs at least one predicted span")
    return tuple(_span(s, f"{what}[{i}]") for i, s in enumerate(x))


def _saliency(x: Any, what: str) -> tuple[float, ...] | None:
    """Per-clip scores: a non-empty list of finite numbers (raises _Bad), or None."""
    x = _listed(x)
    if x is None:
        return None
    if not isinstance(x, list | tuple) or not x:
        raise _Bad(f"{what} must be a non-empty list of numbers (one per clip), got {x!r}")
    return tuple(_number(s, f"{what}[{i}]") for i, s in enumerate(x))


def _index(x: Any, what: str) -> int | None:
    if x is None:
        return None
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Integral) or x < 0:
        raise _Bad(f"{what} must be an integer >= 0, got {x!r}")
    return int(x)


def _check(record: PredictionRecord) -> PredictionRecord:
    """``record`` after checking every field (raises _Bad)."""
    if not isinstance(record.key, str) or not record.key:
        raise _Bad(f"key must be a non-empty string, got {record.key!r}")
    if not isinstance(record.video_id, str) or not record.video_id:
        raise _Bad(f"video_id must be a non-empty string, got {record.video_id!r}")
    clash = sorted(set(record.extra) & set(_KNOWN))
    if clash:
        raise _Bad(f"extra fields may not reuse the names of known fields: {clash}")
    spans = _span_list(record.spans, "spans", allow_empty=False)
    scores, given = None, _listed(record.scores)
    if given is not None:
        if not isinstance(given, list | tuple) or len(given) != len(spans):
            raise _Bad(f"scores must be a list of {len(spans)} numbers (one per span), got {given!r}")
        scores = tuple(_number(s, f"scores[{i}]") for i, s in enumerate(given))
    paragraph, words = record.paragraph_span, record.word_spans
    return PredictionRecord(
        key=record.key,
        video_id=record.video_id,
        spans=spans,
        scores=scores,
        sentence_index=_index(record.sentence_index, "sentence_index"),
        paragraph_index=_index(record.paragraph_index, "paragraph_index"),
        paragraph_span=None if paragraph is None else _span(paragraph, "paragraph_span"),
        sentence_span=None if record.sentence_span is None else _span(record.sentence_span, "sentence_span"),
        word_spans=None if words is None else _span_list(words, "word_spans", allow_empty=True),
        saliency=_saliency(record.saliency, "saliency"),
        extra=dict(record.extra),
    )


def _require(obj: Any, names: Iterable[str]) -> dict[str, Any]:
    """``obj`` when it is a JSON object holding every one of ``names`` (raises _Bad)."""
    if not isinstance(obj, dict):
        raise _Bad(f"must be a JSON object, got {type(obj).__name__}")
    for name in names:
        if name not in obj:
            raise _Bad(f"has no {name!r}")
    return obj


def _from_json(obj: Any) -> PredictionRecord:
    obj = _require(obj, _REQUIRED)
    known = {name: obj.get(name) for name in _KNOWN}
    return _check(PredictionRecord(**known, extra={k: v for k, v in obj.items() if k not in _KNOWN}))


def _describe_raw(obj: Any) -> str:
    """What a raw record calls itself (best effort, for messages about malformed records)."""
    if not isinstance(obj, dict):
        return ""
    parts = [
        f"key {obj['key']!r}" if "key" in obj else "",
        f"video {obj['video_id']}" if "video_id" in obj else "",
    ]
    if isinstance(obj.get("sentence_index"), int):
        parts.append(f"sentence {obj['sentence_index']}")
    named = ", ".join(p for p in parts if p)
    return f" ({named})" if named else ""


def _unique(records: list[PredictionRecord], where: list[str], path: str) -> None:
    """DataError naming both places when two records share a key."""
    first: dict[str, int] = {}
    for i, r in enumerate(records):
        if r.key in first:
            raise DataError(f"{path}: {where[i]}: duplicate key {r.key!r} (first at {where[first[r.key]]})")
        first[r.key] = i


def _read_higround(path: Path, data: Any) -> Predictions:
    if data.get("format") != FORMAT:
        raise DataError(f"{path}: format is {data.get('format')!r}; this version reads {FORMAT!r}")
    items = data.get("predictions")
    if not isinstance(items, list):
        raise DataError(f"{path}: 'predictions' must be a list of records")
    records, where = [], []
    for i, obj in enumerate(items):
        try:
            records.append(_from_json(obj))
        except _Bad as err:
            raise DataError(f"{path}: record {i}{_describe_raw(obj)}: {err}") from None
        where.append(f"record {i}")
    _unique(records, where, str(path))
    for name in ("dataset", "split"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise DataError(f"{path}: {name!r} must be a string or null, got {data[name]!r}")
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataError(f"{path}: 'meta' must be a JSON object")
    meta = {**meta, **{k: v for k, v in data.items() if k not in _TOP_LEVEL}}
    return Predictions(records, data.get("dataset"), data.get("split"), str(path), FORMAT, meta)


def _moment_detr_record(obj: Any) -> PredictionRecord:
    obj = _require(obj, ("qid", "vid", "pred_relevant_windows"))
    windows = obj["pred_relevant_windows"]
    if not isinstance(windows, list) or not windows:
        raise _Bad("pred_relevant_windows must be a non-empty list of [start, end, score]")
    widths = {len(w) if isinstance(w, list) else -1 for w in windows}
    if widths not in ({2}, {3}):
        raise _Bad("pred_relevant_windows must be all [start, end] or all [start, end, score]")
    scored = widths == {3}
    return _check(
        PredictionRecord(
            key=str(obj["qid"]),
            video_id=obj["vid"],
            spans=tuple(w[:2] for w in windows),
            scores=tuple(w[2] for w in windows) if scored else None,
            saliency=_saliency(obj.get("pred_saliency_scores"), "pred_saliency_scores"),
        )
    )


def read_moment_detr(path: str | Path) -> Predictions:
    """Read Moment-DETR JSON lines (``qid``, ``vid``, ``pred_relevant_windows``, optionally
    ``pred_saliency_scores``) as records."""
    file = Path(path)
    records, where = [], []
    # A key repeated inside a line is not an error here: the last one wins, as in the v1 format.
    for line_no, obj in iter_json_lines(file, unique_keys=False):
        qid = f" (qid {obj['qid']}, video {obj.get('vid')})" if isinstance(obj, dict) and "qid" in obj else ""
        try:
            records.append(_moment_detr_record(obj))
        except _Bad as err:
            raise DataError(f"{file}: line {line_no}{qid}: {err}") from None
        where.append(f"line {line_no}")
    _unique(records, where, str(file))
    return Predictions(records, None, None, str(file), "moment_detr")


def read_predictions(path: str | Path, fmt: PredictionFormat = "auto") -> Predictions:
    """Read and validate a predictions file; DataError names the file, the record and the problem.

    ``fmt="auto"`` reads ``.jsonl`` files and JSON-lines content as Moment-DETR predictions, and a
    JSON object as the ``higround.predictions.v1`` format.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"predictions file not found: {file}")
    if fmt == "moment_detr" or (fmt == "auto" and file.suffix == ".jsonl"):
        return read_moment_detr(file)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(f"{file}: not UTF-8 text: {err}") from None
    except json.JSONDecodeError as err:
        if fmt == "auto" and err.msg == "Extra data":  # several JSON values: JSON lines
            return read_moment_detr(file)
        raise DataError(f"{file}: not valid JSON: {err}") from None
    except ValueError as err:  # an integer literal longer than Python converts
        raise DataError(f"{file}: not valid JSON: {err}") from None
    if fmt == "auto" and isinstance(data, dict) and "pred_relevant_windows" in data:
        return read_moment_detr(file)  # a one-line Moment-DETR file
    if not isinstance(data, dict):
        raise DataError(f"{file}: a predictions file is a JSON object with 'format' and 'predictions'")
    return _read_higround(file, data)


def write_predictions(
    path: str | Path,
    records: Iterable[PredictionRecord],
    *,
    dataset: str | None = None,
    split: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write ``records`` as a ``higround.predictions.v1`` file, atomically, one record a line.

    Every record is validated first (DataError naming the record); nothing is written on error.
    """
    file = Path(path)
    checked = []
    for i, record in enumerate(records):
        try:
            checked.append(_check(record))
        except _Bad as err:
            raise DataError(f"{file}: record {i} ({record.describe()}): {err}") from None
    _unique(checked, [f"record {i}" for i in range(len(checked))], str(file))
    head = {"format": FORMAT, "dataset": dataset, "split": split, "meta": dict(meta or {})}
    try:
        lines = ",\n".join(json.dumps(r.to_json(), allow_nan=False) for r in checked)
        header = json.dumps(head, allow_nan=False)
    except (TypeError, ValueError) as err:  # only ``extra`` or ``meta`` can hold such values
        raise DataError(f"{file}: extra or meta fields are not JSON-serialisable: {err}") from None
    body = header[:-1] + ', "predictions": [\n' + lines + ("\n" if lines else "") + "]}\n"
    atomic_write_text(file, body)
