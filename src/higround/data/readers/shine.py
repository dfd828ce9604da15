"""SHINE's hierarchical negatives (``charades_cg_gpt_train.jsonl``), joined to a loaded split by ``qid``.

One JSON object a line, Moment-DETR style, as ``zxccade/SHINE`` releases them::

    {"qid": "IGDIE_train_0", "query": "person starts watching television.", "duration": 33.12,
     "vid": "IGDIE", "relevant_windows": [[22.7, 34.0]],
     "masked_queries": ["person <mask> watching television.", ...],       # 3, rule-masked, nested
     "recomposed_queries": ["person stops watching television.", ...]}    # 3, the masks refilled

``qid`` is ``<video_id>_<tag>_<index>``: ``index`` is the sentence's position in the video's list of
the annotation file (:attr:`~higround.data.schema.Sentence.index`), ``tag`` names the split
(:func:`qid_tag`). :func:`load_negatives` maps every sentence of a
:class:`~higround.data.schema.GroundingDataset` to its :class:`QueryNegatives`, level 1 (least edited)
first. Bad rows follow the readers' policy (docs/data.md, "Bad records"): ``on_bad="error"`` raises on
the first one, naming the file, the line and the qid; ``"skip"`` leaves it out and lists it in the
report, with the sentences left without negatives. docs/shine.md describes the format and the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from higround.data.readers._io import iter_json_lines
from higround.data.readers._table import SKIP_BAD_RECORDS, OnBad
from higround.data.schema import GroundingDataset, Sentence
from higround.errors import ConfigError, DataError, FixableDataError
from higround.text.tokenizer import tokenize
from higround.text.vocab import Vocabulary

__all__ = [
    "KINDS",
    "LEVELS",
    "MASK",
    "NegativeSkip",
    "Negatives",
    "NegativesReport",
    "QueryNegatives",
    "load_negatives",
    "negative_qid",
    "qid_tag",
]

# Hard negatives per query in the released files (SHINE's hn_num) and the marker of a masked word.
LEVELS = 3
MASK = "<mask>"
# The two hierarchies a row holds: the rule-masked templates and the refilled (recomposed) queries.
# The released code trains on "recomposed" (spec shine.md 5.8); "masked" is kept for ablations.
KINDS = ("recomposed", "masked")
Kind = Literal["recomposed", "masked"]
_FIELDS = {"masked": "masked_queries", "recomposed": "recomposed_queries"}
# The split tag inside SHINE's qids for the compositional splits (charades_cg_{split}.jsonl).
_CG_TAGS = {
    "train": "train",
    "test_trivial": "test",
    "novel_composition": "composition",
    "novel_word": "word",
}


def qid_tag(dataset: str, split: str) -> str:
    """The split tag of SHINE's qids: ``train``/``test``/``composition``/``word`` for the CG splits,
    ``STA_<split>`` for Charades-STA (``STA_test``), the split name itself for any other dataset."""
    if dataset == "charades_sta":
        return f"STA_{split}"
    if dataset in ("charades_cg", "activitynet_cg"):
        return _CG_TAGS.get(split, split)
    return split


def negative_qid(video_id: str, tag: str, index: int) -> str:
    """``<video_id>_<tag>_<index>``, the qid of sentence ``index`` of ``video_id``."""
    return f"{video_id}_{tag}_{index}"


@dataclass(frozen=True)
class QueryNegatives:
    """The hierarchy of hard negatives of one training query.

    Attributes:
        key: the sentence's :attr:`~higround.data.schema.Sentence.key` (``"<video_id>#<index>"``).
        qid: the row's qid.
        query: the positive query as the negatives file writes it.
        masked: the rule-masked templates, level 1 (fewest masks) first; masked words are ``<mask>``.
        recomposed: the same templates with every mask refilled, level 1 first: hard negatives
            ``hn^1 .. hn^L`` of the fine-grained ranking (least edited first).
    """

    key: str
    qid: str
    query: str
    masked: tuple[str, ...]
    recomposed: tuple[str, ...]

    def hierarchy(self, kind: Kind = "recomposed") -> tuple[str, ...]:
        """The negatives of ``kind`` (:data:`KINDS`), level 1 first.

        Raises:
            ConfigError: an unknown ``kind``.
        """
        if kind == "recomposed":
            return self.recomposed
        if kind == "masked":
            return self.masked
        raise ConfigError(f"shine negatives: kind must be one of {KINDS}, got {kind!r}")

    def encode(self, vocab: Vocabulary, kind: Kind = "recomposed") -> list[list[int]]:
        """Token ids of each negative of ``kind`` (level 1 first), as the model's vocabulary reads them.

        ``<mask>`` of a masked template tokenises as the word ``mask`` (the tokenizer drops ``<>``).
        """
        return [vocab.encode_text(text) for text in self.hierarchy(kind)]


@dataclass(frozen=True)
class NegativeSkip:
    """A row left out with ``on_bad="skip"``: its line (from 1), its qid (None when it has none), why."""

    line: int
    qid: str | None
    reason: str


@dataclass
class NegativesReport:
    """What the join found besides the joined rows; nothing is dropped silently.

    Attributes:
        source: the negatives file.
        annotations: the annotation file joined to.
        rows: non-blank lines read.
        joined: rows joined to a sentence.
        skipped: bad rows left out (``on_bad="skip"``).
        missing: qids of annotated sentences with no (good) row, in annotation order (``"skip"``).
        text_differs: keys whose row ``query`` differs from the annotation's text (kept: the
            Charades-STA release corrects 12 typos).
        identical: keys with a recomposed negative whose tokens equal the positive's (a false
            negative; kept as released).
        annotation_skipped: rows of sentences the annotation reader skipped as bad (left out).
    """

    source: str
    annotations: str
    rows: int = 0
    joined: int = 0
    skipped: list[NegativeSkip] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    text_differs: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    annotation_skipped: int = 0

    def summary(self) -> str:
        """One human-readable line."""
        line = (
            f"{self.source}: {self.joined} of {self.rows} row(s) joined to {self.annotations}; "
            f"{len(self.text_differs)} with another query text, {len(self.identical)} with a "
            "recomposed negative equal to the positive"
        )
        if self.annotation_skipped:
            line += f"; {self.annotation_skipped} of sentences the annotation reader skipped"
        if self.skipped:
            first = ", ".join(f"line {s.line}" for s in self.skipped[:5])
            line += (
                f"; skipped {len(self.skipped)} bad row(s): {first}{' ...' if len(self.skipped) > 5 else ''}"
            )
        if self.missing:
            line += f"; {len(self.missing)} sentence(s) without negatives: {', '.join(self.missing[:5])}"
            line += " ..." if len(self.missing) > 5 else ""
        return line


@dataclass(frozen=True)
class Negatives:
    """Every joined query's negatives by sentence key (annotation order), with the join's report."""

    queries: dict[str, QueryNegatives]
    report: NegativesReport
    levels: int = LEVELS

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, key: str) -> QueryNegatives:
        return self.queries[key]

    def __contains__(self, key: object) -> bool:
        return key in self.queries


def _text_list(row: Mapping[str, Any], name: str, levels: int) -> str | None:
    """What is wrong with the row's list ``name`` of ``levels`` non-empty strings, or None."""
    value = row.get(name)
    if value is None:
        return f"no {name!r} list"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"{name!r} is not a list of strings"
    if len(value) != levels:
        return f"{name!r} has {len(value)} queries, expected {levels} (one per level)"
    if not all(v.strip() for v in value):
        return f"{name!r} holds an empty query"
    return None


def _row_problem(row: Any, sentence: tuple[str, Sentence] | None, levels: int) -> str | None:
    """What is wrong with a parsed row whose qid joined to ``(video_id, sentence)``, or None."""
    if sentence is not None and "vid" in row and row["vid"] != sentence[0]:
        return f"vid {row['vid']!r} is not the qid's video {sentence[0]!r}"
    if not isinstance(row.get("query"), str) or not row["query"].strip():
        return "no query text"
    return _text_list(row, "masked_queries", levels) or _text_list(row, "recomposed_queries", levels)


def _unjoinable(qid: str, tag: str, videos: Mapping[str, int], source: str) -> str:
    """Why ``qid`` names no sentence of the annotations, with the qid form expected."""
    video, _, rest = qid.rpartition(f"_{tag}_")
    hint = f"expected '<video_id>_{tag}_<index>'"
    if video and video in videos:
        hint = f"video {video!r} has {videos[video]} sentence(s), indices 0..{videos[video] - 1}"
        if not rest.isdigit():
            hint = f"{rest!r} is not a sentence index"
    return f"qid {qid!r} names no sentence of {source} ({hint})"


def load_negatives(
    path: str | Path,
    dataset: GroundingDataset,
    *,
    tag: str | None = None,
    levels: int = LEVELS,
    on_bad: OnBad = "error",
) -> Negatives:
    """Read a SHINE negatives file and join it to ``dataset`` (the split it was made for) by qid.

    Args:
        path: the ``.jsonl`` file (released, or written by
            :func:`higround.data.negatives.write_negatives`).
        dataset: the loaded annotation split; every sentence must have exactly one row.
        tag: the split tag inside the qids; default :func:`qid_tag` of the dataset's name and split.
        levels: negatives per kind and row (3 in the releases).
        on_bad: ``"error"`` raises on the first bad row or missing sentence; ``"skip"`` leaves bad
            rows out and lists them, and the sentences without a row, in the report.

    Returns:
        The negatives of every joined sentence by :attr:`Sentence.key`, in annotation order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: ``on_bad`` or ``levels`` out of range.
        FixableDataError: (``on_bad="error"``) a row that is not an object, has no string qid, a qid
            that names no sentence, a qid seen on an earlier line, a ``vid`` other than the qid's
            video, a missing or malformed query list; or a sentence without a row. The message names
            the file, the line and the qid (or the first missing qid), and suggests ``on_bad='skip'``.
        DataError: bad JSON or UTF-8 (naming the line), a folder given as ``path``, or (``"skip"``)
            no sentence left with negatives.
    """
    if on_bad not in ("error", "skip"):
        raise ConfigError(f"on_bad must be 'error' or 'skip', not {on_bad!r}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ConfigError(f"shine negatives: levels must be an integer >= 1, got {levels!r}")
    file = Path(path)
    if file.is_dir():
        raise DataError(f"negatives file {file} is a folder, not a file")
    if not file.is_file():
        raise FileNotFoundError(f"negatives file not found: {file}")
    tag = qid_tag(dataset.name, dataset.split) if tag is None else tag
    source = dataset.report.source
    by_qid: dict[str, tuple[str, Sentence]] = {}
    videos: dict[str, int] = {}
    for paragraph, sentence in dataset.sentences():
        by_qid[negative_qid(paragraph.video_id, tag, sentence.index)] = (paragraph.video_id, sentence)
        videos[paragraph.video_id] = videos.get(paragraph.video_id, 0) + 1
    # Sentences the annotation reader skipped: their rows are expected, and left out without a fuss.
    skipped_by_reader = {
        negative_qid(r.video_id, tag, r.sentence_index)
        for r in dataset.report.skipped
        if r.sentence_index is not None
    }
    skipped_videos = {r.video_id for r in dataset.report.skipped if r.sentence_index is None}

    report = NegativesReport(str(file), source)
    problems: list[NegativeSkip] = []
    seen: dict[str, int] = {}
    joined: dict[str, QueryNegatives] = {}
    for line, row in iter_json_lines(file):
        report.rows += 1
        qid = row.get("qid") if isinstance(row, dict) else None
        if not isinstance(row, dict):
            problems.append(NegativeSkip(line, None, f"row is {type(row).__name__}, not a JSON object"))
            continue
        if not isinstance(qid, str):
            problems.append(NegativeSkip(line, None, "no string 'qid'"))
            continue
        if qid in seen:
            problems.append(NegativeSkip(line, qid, f"qid {qid!r} repeats line {seen[qid]}"))
            continue
        seen[qid] = line
        target = by_qid.get(qid)
        if target is None:
            if qid in skipped_by_reader or qid.rpartition(f"_{tag}_")[0] in skipped_videos:
                report.annotation_skipped += 1
            else:
                problems.append(NegativeSkip(line, qid, _unjoinable(qid, tag, videos, source)))
            continue
        problem = _row_problem(row, target, levels)
        if problem:
            problems.append(NegativeSkip(line, qid, problem))
            continue
        sentence = target[1]
        negatives = QueryNegatives(
            sentence.key,
            qid,
            row["query"].strip(),
            tuple(q.strip() for q in row[_FIELDS["masked"]]),
            tuple(q.strip() for q in row[_FIELDS["recomposed"]]),
        )
        joined[qid] = negatives
        if negatives.query != sentence.text:
            report.text_differs.append(sentence.key)
        positive = tokenize(negatives.query)
        if any(tokenize(q) == positive for q in negatives.recomposed):
            report.identical.append(sentence.key)

    missing = [qid for qid in by_qid if qid not in joined]
    if on_bad == "error" and (problems or missing):
        if problems:
            first = problems[0]
            more = len(problems) - 1 + len(missing)
            message = f"{file}: line {first.line}: {first.reason}"
        else:
            video_id, sentence = by_qid[missing[0]]
            more = len(missing) - 1
            message = (
                f"{file}: no row for qid {missing[0]!r} (video {video_id!r} sentence {sentence.index} of "
                f"{source})"
            )
        tail = f" (and {more} more bad row(s) or sentence(s) without negatives)" if more else ""
        raise FixableDataError(message + tail, SKIP_BAD_RECORDS)
    report.skipped = problems
    report.missing = missing
    report.joined = len(joined)
    if by_qid and not joined:
        raise DataError(
            f"{file}: no sentence of {source} is left with negatives ({len(problems)} bad row(s), "
            f"{report.rows} row(s) read; qids are expected as '<video_id>_{tag}_<index>')"
        )
    # Annotation order, whatever the file's order.
    queries = {by_qid[q][1].key: joined[q] for q in by_qid if q in joined}
    return Negatives(queries, report, levels)
