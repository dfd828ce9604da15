"""The text-blind position prior: where does the i-th of n sentences usually lie?

Fitted on a training split, :class:`PositionPrior` predicts for the i-th sentence (0-based) of an
n-sentence paragraph the mean duration-normalised (start, end) of all training sentences at the same
(i, n); an (i, n) never seen in training falls back to the mean of position i over every paragraph
length, and an unseen i to the mean of all training sentences. ``keyed_by="position"`` keys by i
alone (then the global mean). It never reads the text or the video, so it is the floor a grounding
model must clear: whatever it scores comes from the annotation's temporal statistics alone.

>>> train = load_dataset("activitynet_captions", root, "train", on_bad="skip")  # doctest: +SKIP
>>> records, levels = PositionPrior.fit(train).predict(load_dataset(..., "val_2"))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast, get_args

import numpy as np

from higround.data.schema import GroundingDataset
from higround.errors import ConfigError, DataError
from higround.metrics.predictions import PredictionRecord

__all__ = [
    "FALLBACK_LEVELS",
    "KEYED_BY",
    "KeyedBy",
    "PositionPrior",
    "SentenceTable",
    "sentence_table",
]

KeyedBy = Literal["position-and-count", "position"]
KEYED_BY: tuple[str, ...] = get_args(KeyedBy)
# What a prediction was keyed by, most specific first (indices of PositionPrior.levels).
FALLBACK_LEVELS = ("position-and-count", "position", "global")

# (i, n) pairs are packed into one int64 code so that numpy can group and look them up.
_SHIFT = np.int64(1 << 32)


@dataclass(frozen=True)
class SentenceTable:
    """A split's sentences as flat arrays, in ``dataset.sentences()`` order.

    Attributes:
        position: ``(N,)`` int64, the sentence's 0-based position in its paragraph.
        count: ``(N,)`` int64, the number of sentences of its paragraph.
        spans: ``(N, 2)`` float64 (start, end) divided by the video duration.
        durations: ``(N,)`` float64 video duration in seconds.
    """

    position: np.ndarray
    count: np.ndarray
    spans: np.ndarray
    durations: np.ndarray

    def __len__(self) -> int:
        return len(self.position)


def sentence_table(dataset: GroundingDataset) -> SentenceTable:
    """Read ``dataset`` into a :class:`SentenceTable` (the only loop over sentences)."""
    paragraphs = dataset.paragraphs()
    count = np.array([len(p) for p in paragraphs], dtype=np.int64)
    durations = np.array([p.duration for p in paragraphs], dtype=np.float64)
    # Position within the paragraph: running index minus the paragraph's first row.
    first = np.repeat(np.cumsum(count) - count, count)
    position = np.arange(int(count.sum()), dtype=np.int64) - first
    spans = np.array([s.span for p in paragraphs for s in p.sentences], dtype=np.float64).reshape(-1, 2)
    per_sentence = np.repeat(durations, count)
    return SentenceTable(position, np.repeat(count, count), spans / per_sentence[:, None], per_sentence)


def _pair_codes(position: np.ndarray, count: np.ndarray) -> np.ndarray:
    return count.astype(np.int64) * _SHIFT + position.astype(np.int64)


def _group_means(codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique ``codes``, the mean ``(K, 2)`` of ``values`` per code, and each code's size."""
    keys, inverse = np.unique(codes, return_inverse=True)
    support = np.bincount(inverse, minlength=len(keys))
    sums = np.zeros((len(keys), values.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, values)
    return keys, sums / support[:, None], support


def _lookup(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each ``query`` code in the sorted ``keys`` (clipped) and whether it is there."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=np.int64), np.zeros(len(query), dtype=bool)
    row = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return row, keys[row] == query


@dataclass(frozen=True)
class PositionPrior:
    """Mean normalised spans of training sentences by (position, count), by position, and overall.

    Attributes:
        keyed_by: ``"position-and-count"`` (i, n) -> i -> global, or ``"position"`` i -> global.
        pair_codes: ``(K,)`` sorted (i, n) codes (``n * 2**32 + i``) seen in training.
        pair_means: ``(K, 2)`` their mean normalised (start, end); ``pair_support`` ``(K,)`` sizes.
        position_keys: ``(P,)`` sorted positions i seen in training.
        position_means: ``(P, 2)``; ``position_support`` ``(P,)`` sizes.
        global_mean: ``(2,)`` mean over every training sentence.
        source: the training annotation file.
    """

    keyed_by: KeyedBy
    pair_codes: np.ndarray
    pair_means: np.ndarray
    pair_support: np.ndarray
    position_keys: np.ndarray
    position_means: np.ndarray
    position_support: np.ndarray
    global_mean: np.ndarray
    source: str = ""

    @classmethod
    def fit(cls, dataset: GroundingDataset, keyed_by: str = "position-and-count") -> PositionPrior:
        """Group the training sentences of ``dataset`` (vectorised).

        Raises:
            ConfigError: ``keyed_by`` is not one of :data:`KEYED_BY`.
            DataError: ``dataset`` holds no sentence.
        """
        if keyed_by not in KEYED_BY:
            raise ConfigError(f"keyed_by must be one of {', '.join(KEYED_BY)}, not {keyed_by!r}")
        table = sentence_table(dataset)
        if len(table) == 0:
            raise DataError(f"{dataset.report.source}: no sentence to fit the position prior on")
        pairs = _group_means(_pair_codes(table.position, table.count), table.spans)
        positions = _group_means(table.position, table.spans)
        return cls(
            cast(KeyedBy, keyed_by),
            *pairs,
            *positions,
            table.spans.mean(axis=0),
            dataset.report.source,
        )

    def predict_normalised(self, position: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 2)`` normalised spans for positions i and paragraph lengths n, and ``(N,)`` the level
        each came from (an index into :data:`FALLBACK_LEVELS`)."""
        position = np.asarray(position, dtype=np.int64)
        level = np.full(len(position), 2, dtype=np.int64)
        spans = np.broadcast_to(self.global_mean, (len(position), 2)).copy()
        row, found = _lookup(self.position_keys, position)
        spans[found], level[found] = self.position_means[row[found]], 1
        if self.keyed_by == "position-and-count":
            row, found = _lookup(self.pair_codes, _pair_codes(position, np.asarray(count)))
            spans[found], level[found] = self.pair_means[row[found]], 0
        return spans, level

    def predict(self, dataset: GroundingDataset) -> tuple[list[PredictionRecord], np.ndarray]:
        """One prediction per sentence of ``dataset`` (seconds), and ``(N,)`` each one's fallback level."""
        table = sentence_table(dataset)
        normalised, level = self.predict_normalised(table.position, table.count)
        seconds = (normalised * table.durations[:, None]).tolist()
        records = [
            PredictionRecord(
                key=s.key,
                video_id=p.video_id,
                spans=((start, end),),
                sentence_index=s.index,
                paragraph_index=p.index,
            )
            for (p, s), (start, end) in zip(dataset.sentences(), seconds, strict=True)
        ]
        return records, level

    def describe(self) -> dict[str, object]:
        """The fitted prior as JSON-ready numbers (recorded in a predictions file's ``meta``)."""
        return {
            "keyed_by": self.keyed_by,
            "train": self.source,
            "train_sentences": int(self.position_support.sum()),
            "positions_seen": len(self.position_keys),
            "position_count_pairs_seen": len(self.pair_codes),
            "global_mean": self.global_mean.tolist(),
        }
