"""Column-wise staging table shared by every reader: parse, validate (vectorised), assemble.

A format parser only fills a :class:`Table` with what the file says (videos, then sentences with
their raw spans); the checks, the bad-record policy and the construction of the schema objects live
here once, so every benchmark obeys the same rules (docs/data.md, "Bad records").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from higround.data.schema import GroundingDataset, LoadReport, Paragraph, Sentence, SkippedRecord, Video
from higround.errors import DataError, Fix, FixableDataError

OnBad = Literal["error", "skip"]

# The fix every bad-record error suggests (spelled per command by the command line).
SKIP_BAD_RECORDS = Fix("on_bad", "skip", "data.on_bad", purpose="to skip bad records")

# Window problem codes, in the order they are reported when several apply.
_OK, _NONFINITE, _NEGATIVE, _REVERSED, _START_PAST, _END_PAST = range(6)


@dataclass(frozen=True)
class LoadOptions:
    """Options every reader takes (see :func:`higround.data.readers.load_dataset`)."""

    on_bad: OnBad
    max_sentences: int | None
    clamp_tolerance: float


def as_number(value: Any) -> float:
    """``value`` as a float, or NaN when it is not a real number (bools and strings included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def as_pair(value: Any) -> tuple[float, float] | None:
    """A released ``[start, end]`` as two floats (NaN where not a number); None when not a pair."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    return as_number(value[0]), as_number(value[1])


class Table:
    """What one annotation file says, one row per video, sentence and ground-truth window."""

    def __init__(self, source: str, reader: str) -> None:
        """An empty table for the file ``source``, read by the reader (dataset) named ``reader``."""
        self.source = source
        self.reader = reader
        self.video_ids: list[str] = []
        self.durations: list[float] = []
        self.video_problems: list[str | None] = []
        self.video_extra: list[dict[str, Any]] = []
        self.video_rows: list[list[int]] = []
        self._video_pos: dict[str, int] = {}
        # One entry per sentence row.
        self.s_video: list[int] = []
        self.s_paragraph: list[int] = []
        self.s_index: list[int] = []
        self.s_text: list[str] = []
        self.s_key: list[str | None] = []
        self.s_extra: list[dict[str, Any]] = []
        self.s_problem: list[str | None] = []
        self.s_where: list[str] = []
        self.s_multi: list[bool] = []
        self.s_windows: list[range] = []
        # One entry per window row (a sentence has one, QVHighlights' may have several).
        self.w_start: list[float] = []
        self.w_end: list[float] = []

    def video(self, video_id: str, duration: float, *, extra: Mapping[str, Any] | None = None) -> int:
        """Position of ``video_id``, added on first sight; a differing ``duration`` later is a problem."""
        pos = self._video_pos.get(video_id)
        if pos is None:
            pos = len(self.video_ids)
            self._video_pos[video_id] = pos
            self.video_ids.append(video_id)
            self.durations.append(duration)
            self.video_problems.append(None)
            self.video_extra.append(dict(extra or {}))
            self.video_rows.append([])
        elif not _same(duration, self.durations[pos]):
            self.flag_video(pos, f"inconsistent durations {self.durations[pos]!r} and {duration!r}")
        return pos

    def flag_video(self, pos: int, problem: str) -> None:
        """Mark a whole video bad (its video-level fields cannot be trusted); the first problem wins."""
        self.video_problems[pos] = self.video_problems[pos] or problem

    def sentence(
        self,
        video: int,
        text: Any,
        windows: Sequence[Any],
        *,
        paragraph: int = 0,
        key: str | None = None,
        extra: Mapping[str, Any] | None = None,
        multi: bool = False,
        scale: float = 1.0,
        where: str = "",
    ) -> None:
        """Add the next sentence of ``video``; ``windows`` are its raw ``[start, end]`` pairs.

        ``scale`` converts the release's time unit to seconds (1/fps for frame timestamps);
        ``multi`` keeps every window in :attr:`Sentence.windows`; ``where`` (e.g. ``"line 12"``)
        is added to error messages.
        """
        rows = self.video_rows[video]
        problem = None
        if not isinstance(text, str):
            problem, text = f"sentence is {type(text).__name__}, not a string", ""
        elif not text.strip():
            problem = "empty sentence"
        pairs = [as_pair(w) for w in windows]
        if not pairs:
            problem = problem or "no ground-truth window"
        elif any(p is None for p in pairs):
            problem = problem or f"malformed timestamp {list(windows)!r} (want [start, end])"
        first = len(self.w_start)
        for pair in pairs:
            start, end = pair or (math.nan, math.nan)
            self.w_start.append(start * scale)
            self.w_end.append(end * scale)
        rows.append(len(self.s_video))
        self.s_video.append(video)
        self.s_paragraph.append(paragraph)
        self.s_index.append(len(rows) - 1)
        self.s_text.append(text.strip())
        self.s_key.append(key)
        self.s_extra.append(dict(extra or {}))
        self.s_problem.append(problem)
        self.s_where.append(where)
        self.s_multi.append(multi)
        self.s_windows.append(range(first, len(self.w_start)))

    def build(self, name: str, split: str, options: LoadOptions) -> GroundingDataset:
        """Validate every row, apply the bad-record policy and assemble the dataset."""
        durations = np.asarray(self.durations, dtype=np.float64)
        video_bad = [
            p or ("unknown video duration" if not (math.isfinite(d) and d > 0) else None)
            for p, d in zip(self.video_problems, durations.tolist(), strict=True)
        ]
        window_sentence = np.repeat(np.arange(len(self.s_windows)), [len(r) for r in self.s_windows]).astype(
            np.intp
        )
        window_video = np.asarray(self.s_video, dtype=np.intp)[window_sentence]
        starts, ends, codes = self._check_windows(durations[window_video], options.clamp_tolerance)
        sentence_bad = self._sentence_problems(starts, ends, durations, codes, window_sentence)

        skipped: list[SkippedRecord] = []
        for pos, problem in enumerate(video_bad):
            if problem:
                skipped.append(SkippedRecord(self.video_ids[pos], None, problem))
            else:
                skipped.extend(
                    SkippedRecord(
                        self.video_ids[pos], self.s_index[row], sentence_bad[row] or "", self._key(row)
                    )
                    for row in self.video_rows[pos]
                    if sentence_bad[row]
                )
        if skipped and options.on_bad == "error":
            raise FixableDataError(self._describe(skipped[0], len(skipped) - 1), SKIP_BAD_RECORDS)

        # Only windows of kept records are clamped (and counted); the rest passed the tolerance check.
        video_ok = np.array([p is None for p in video_bad], dtype=bool)[window_video]
        sentence_ok = np.array([p is None for p in sentence_bad], dtype=bool)[window_sentence]
        limit = durations[window_video]
        clamped = (ends > limit) & video_ok & sentence_ok
        ends = np.where(clamped, limit, ends)
        report = LoadReport(source=self.source, clamped=int(clamped.sum()), skipped=skipped)
        videos = self._assemble(starts.tolist(), ends.tolist(), video_bad, sentence_bad, options)
        if skipped and not videos:
            # Skipping everything is never what was meant (a wrong reader, a broken file): say so.
            raise DataError(
                f"{self.source}: every record is bad, nothing is left after skipping {len(skipped)} bad "
                f"record(s) of {len(self.video_ids)} video(s); the first: {self._where(skipped[0])}: "
                f"{skipped[0].reason} (is this the right reader for this file?)"
            )
        return GroundingDataset(name=name, split=split, videos=videos, report=report)

    def _check_windows(
        self, duration: np.ndarray, tolerance: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window starts, ends and problem codes (``_OK`` or the first problem that applies).

        ``duration`` is the video duration of each window row.
        """
        starts = np.asarray(self.w_start, dtype=np.float64)
        ends = np.asarray(self.w_end, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            codes = np.select(
                [
                    ~(np.isfinite(starts) & np.isfinite(ends)),
                    starts < 0,
                    starts > ends,
                    starts > duration,
                    ends > duration + tolerance,
                ],
                [_NONFINITE, _NEGATIVE, _REVERSED, _START_PAST, _END_PAST],
                default=_OK,
            )
        return starts, ends, codes

    def _sentence_problems(
        self,
        starts: np.ndarray,
        ends: np.ndarray,
        durations: np.ndarray,
        codes: np.ndarray,
        window_sentence: np.ndarray,
    ) -> list[str | None]:
        """Per sentence row: the parse-time problem, else the first bad window's, else None."""
        problems = list(self.s_problem)
        for w in np.flatnonzero(codes).tolist():
            row = int(window_sentence[w])
            if problems[row]:
                continue
            s, e, d = float(starts[w]), float(ends[w]), float(durations[self.s_video[row]])
            problems[row] = {
                _NONFINITE: f"timestamp [{s!r}, {e!r}] is not finite",
                _NEGATIVE: f"negative start {s!r}",
                _REVERSED: f"start {s!r} after end {e!r}",
                _START_PAST: f"start {s!r} past the video duration {d!r}",
                _END_PAST: f"end {e!r} past the video duration {d!r} by more than the clamp tolerance",
            }[int(codes[w])]
        return problems

    def _key(self, row: int) -> str:
        """The key of sentence ``row``: the release's (QVHighlights' qid), else ``video_id#index``."""
        return self.s_key[row] or f"{self.video_ids[self.s_video[row]]}#{self.s_index[row]}"

    def _where(self, record: SkippedRecord) -> str:
        """The record as messages name it: ``video 'v1' sentence 3 (line 12)``."""
        where = f"video {record.video_id!r}"
        if record.sentence_index is not None:
            pos = self._video_pos[record.video_id]
            row = self.video_rows[pos][record.sentence_index]
            where += f" sentence {record.sentence_index}"
            if self.s_where[row]:
                where += f" ({self.s_where[row]})"
        return where

    def _describe(self, record: SkippedRecord, more: int) -> str:
        """Error message for the first bad record (without the fix, which the error carries)."""
        tail = f" (and {more} more bad record(s))" if more else ""
        return f"{self.source}: {self._where(record)}: {record.reason}{tail}"

    def _assemble(
        self,
        starts: list[float],
        ends: list[float],
        video_bad: list[str | None],
        sentence_bad: list[str | None],
        options: LoadOptions,
    ) -> list[Video]:
        """Schema objects for the good rows; paragraphs split into chunks of ``max_sentences``."""
        videos = []
        for pos, video_id in enumerate(self.video_ids):
            if video_bad[pos]:
                continue
            duration = self.durations[pos]
            groups: dict[int, list[Sentence]] = {}
            for row in self.video_rows[pos]:
                if sentence_bad[row]:
                    continue
                spans = tuple((starts[w], ends[w]) for w in self.s_windows[row])
                index = self.s_index[row]
                groups.setdefault(self.s_paragraph[row], []).append(
                    Sentence(
                        text=self.s_text[row],
                        start=spans[0][0],
                        end=spans[0][1],
                        index=index,
                        key=self._key(row),
                        windows=spans if self.s_multi[row] else (),
                        extra=self.s_extra[row],
                    )
                )
            chunks = [c for g in groups.values() for c in _chunks(g, options.max_sentences)]
            if chunks:  # a video whose every sentence was skipped is already in the report
                paragraphs = tuple(
                    Paragraph(video_id, duration, tuple(c), index=i) for i, c in enumerate(chunks)
                )
                videos.append(Video(video_id, duration, paragraphs, extra=self.video_extra[pos]))
        return videos


def _same(a: float, b: float) -> bool:
    """Equal durations, two unknown (NaN) durations included."""
    return a == b or (math.isnan(a) and math.isnan(b))


def _chunks(sentences: list[Sentence], size: int | None) -> list[list[Sentence]]:
    """Consecutive chunks of at most ``size`` sentences, order kept (one chunk when ``size`` is None)."""
    if size is None:
        return [sentences]
    return [sentences[i : i + size] for i in range(0, len(sentences), size)]


def paired_lists(table: Table, pos: int, record: Mapping[str, Any], what: str = "") -> list[tuple[Any, Any]]:
    """The (sentence, timestamp) pairs of an ActivityNet-style record, or [] with the video flagged.

    ``what`` prefixes the problem (e.g. ``"paragraph 3: "``) where a video has several records.
    """
    sentences, timestamps = record.get("sentences"), record.get("timestamps")
    if not isinstance(sentences, list) or not isinstance(timestamps, list):
        table.flag_video(pos, f"{what}missing or malformed 'sentences' / 'timestamps' lists")
        return []
    if len(sentences) != len(timestamps):
        table.flag_video(pos, f"{what}{len(timestamps)} timestamps for {len(sentences)} sentences")
        return []
    if not sentences:
        table.flag_video(pos, f"{what}no sentences")
    return list(zip(sentences, timestamps, strict=True))
