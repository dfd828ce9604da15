"""One typed schema for every benchmark.

A :class:`Video` (id, duration in seconds) holds ordered :class:`Paragraph` s; a paragraph holds
ordered :class:`Sentence` s, each with its text and its (start, end) span in seconds. Readers in
:mod:`higround.data.readers` turn every benchmark's release format into this schema, so nothing
downstream knows which benchmark it reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Span = tuple[float, float]


@dataclass(frozen=True)
class Sentence:
    """One grounded sentence (a query).

    ``index`` is the sentence's position in the video's annotation list as released (stable when
    paragraphs are split), ``key`` a dataset-unique id (``"<video_id>#<index>"``, or the release's
    own query id such as QVHighlights' ``qid``). ``windows`` holds every ground-truth window when a
    release gives several (QVHighlights); ``(start, end)`` is then the first of them.
    """

    text: str
    start: float
    end: float
    index: int
    key: str
    windows: tuple[Span, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def span(self) -> Span:
        """The (start, end) span in seconds."""
        return (self.start, self.end)

    @property
    def all_windows(self) -> tuple[Span, ...]:
        """Every ground-truth window; a single-window sentence gives ``(span,)``."""
        return self.windows or (self.span,)


@dataclass(frozen=True)
class Paragraph:
    """Ordered sentences describing one video; ``index`` is its position within the video."""

    video_id: str
    duration: float
    sentences: tuple[Sentence, ...]
    index: int = 0

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def union_span(self) -> Span:
        """Temporal union (hull) of the sentence spans: the paragraph's ground truth (HSCNet 3.4)."""
        return (min(s.start for s in self.sentences), max(s.end for s in self.sentences))


@dataclass(frozen=True)
class Video:
    """A video and its paragraphs. ``extra`` keeps release fields (e.g. Charades-CG ``news``)."""

    video_id: str
    duration: float
    paragraphs: tuple[Paragraph, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedRecord:
    """A record a reader left out because the user asked to skip bad records.

    ``sentence_index`` and ``key`` (the sentence's :attr:`Sentence.key`) are None when the whole
    video was left out.
    """

    video_id: str
    sentence_index: int | None
    reason: str
    key: str | None = None


@dataclass
class LoadReport:
    """What a reader changed or skipped; printed by the CLI so nothing is dropped silently."""

    source: str
    clamped: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)

    def summary(self) -> str:
        """One human-readable line."""
        line = f"{self.source}: clamped {self.clamped} span(s) to the video duration"
        if self.skipped:
            ids = ", ".join(
                f"{r.video_id}#{r.sentence_index}" if r.sentence_index is not None else r.video_id
                for r in self.skipped[:10]
            )
            more = " ..." if len(self.skipped) > 10 else ""
            line += f"; skipped {len(self.skipped)} bad record(s): {ids}{more}"
        return line


@dataclass
class GroundingDataset:
    """All videos of one split of one benchmark, with the reader's report."""

    name: str
    split: str
    videos: list[Video]
    report: LoadReport

    def paragraphs(self) -> list[Paragraph]:
        """Paragraph-grounding view: one sample per paragraph."""
        return [p for v in self.videos for p in v.paragraphs]

    def sentences(self) -> Iterator[tuple[Paragraph, Sentence]]:
        """Sentence-grounding view: one sample per sentence, with its paragraph."""
        for p in self.paragraphs():
            for s in p.sentences:
                yield p, s

    def sentence_count(self) -> int:
        """Number of sentences over all paragraphs."""
        return sum(len(p) for p in self.paragraphs())
