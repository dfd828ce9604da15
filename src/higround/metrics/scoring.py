"""One evaluator for every model: predictions matched to an annotation file by sentence key, scored.

>>> preds = read_predictions("preds.json")  # doctest: +SKIP
>>> data = load_annotation_file("activitynet_captions", "val_2.json")  # doctest: +SKIP
>>> print(format_metrics(evaluate(preds, data)))  # doctest: +SKIP

Nothing is dropped silently: a sentence without a prediction is an error unless ``allow_missing``
(then it is scored as a miss, IoU 0, and counted); a prediction for a key the annotation does not
have is an error unless ``allow_unknown`` (then it is ignored and counted); a prediction whose video
(or sentence index) disagrees with the annotation's is always an error. Predictions carrying per-clip
saliency, against an annotation with highlight labels (QVHighlights' ``relevant_clip_ids`` and
``saliency_scores``), are also scored by the highlight metrics (:mod:`higround.metrics.highlight`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from higround.data.readers.qvhighlights import ANNOTATORS, CLIP_SECONDS
from higround.data.schema import GroundingDataset, Paragraph, Sentence
from higround.errors import ConfigError, DataError
from higround.metrics.grounding import (
    MR_THRESHOLDS,
    check_thresholds,
    grounding_metrics,
    thresholds_for,
)
from higround.metrics.highlight import SaliencyInputs, highlight_metrics, saliency_inputs
from higround.metrics.moment_retrieval import MAX_PREDICTIONS, moment_retrieval_metrics
from higround.metrics.predictions import PredictionRecord, Predictions
from higround.metrics.ranking import RankedSpans, pad_ranked, rank_recall

__all__ = ["Alignment", "align_predictions", "evaluate", "format_metrics", "score_alignment"]

# Keys listed in error messages (the count is always given in full).
_SHOWN_KEYS = 10


@dataclass(frozen=True)
class Alignment:
    """Predictions laid out in the annotation's sentence order.

    Attributes:
        dataset: the benchmark's name (picks default thresholds and metrics).
        keys: ``(Q,)`` sentence keys in annotation order.
        ranked: ``(Q, K)`` padded predictions in rank order with scores; a missing sentence's row is
            all padding.
        gt: ``(Q, W, 2)`` padded ground-truth windows; ``gt_mask (Q, W)`` marks the real ones.
        missing: keys of sentences without a prediction (scored as misses).
        unknown: prediction keys the annotation does not have (ignored).
        saliency: predicted and annotated clip saliency, when the predictions carry saliency and
            the annotation has highlight labels; else None.
    """

    dataset: str
    keys: list[str]
    ranked: RankedSpans
    gt: np.ndarray
    gt_mask: np.ndarray
    missing: list[str]
    unknown: list[str]
    saliency: SaliencyInputs | None = None

    def __len__(self) -> int:
        return len(self.keys)


def _some(keys: Sequence[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_SHOWN_KEYS])
    return shown + (", ..." if len(keys) > _SHOWN_KEYS else "")


def align_predictions(
    predictions: Predictions | Sequence[PredictionRecord],
    dataset: GroundingDataset,
    *,
    allow_missing: bool = False,
    allow_unknown: bool = False,
) -> Alignment:
    """Match predictions to ``dataset``'s sentences by key; DataError on missing or unknown keys.

    Args:
        predictions: a read predictions file, or records.
        dataset: the annotation the predictions are scored against.
        allow_missing: score sentences without a prediction as misses instead of raising.
        allow_unknown: ignore predictions for keys ``dataset`` does not have instead of raising.

    Raises:
        DataError: ``dataset`` holds no sentence, or a key is missing, unknown or names another video
            or sentence index than the annotation; some predictions carry saliency and others not; the
            predictions carry saliency and only some sentences have highlight labels.
    """
    source = predictions.source if isinstance(predictions, Predictions) else "predictions"
    records = predictions.records if isinstance(predictions, Predictions) else list(predictions)
    annotation = dataset.report.source
    by_key = {r.key: r for r in records}
    pairs = list(dataset.sentences())
    sentences = [(p.video_id, s) for p, s in pairs]
    keys = [s.key for _, s in sentences]
    if not keys:  # every metric of an empty set would read 0, as if every prediction missed
        skipped = len(dataset.report.skipped)
        why = f" ({skipped} bad record(s) skipped)" if skipped else ""
        raise DataError(f"{annotation}: no sentence to score{why}")
    known = set(keys)
    missing = [k for k in keys if k not in by_key]
    unknown = [r.key for r in records if r.key not in known]
    if missing and not allow_missing:
        raise DataError(
            f"{source}: no prediction for {len(missing)} of {len(keys)} sentences of {annotation} "
            f"(keys {_some(missing)}); allow missing predictions (--allow-missing) to score them as misses"
        )
    if unknown and not allow_unknown:
        raise DataError(
            f"{source}: {len(unknown)} prediction(s) for keys not in {annotation} (keys {_some(unknown)}); "
            "wrong annotation file or split? allow unknown keys (--allow-unknown) to ignore them"
        )
    found = [(video, s, by_key[s.key]) for video, s in sentences if s.key in by_key]
    wrong = [(video, s, r) for video, s, r in found if r.video_id != video]
    if wrong:
        video, s, r = wrong[0]
        raise DataError(
            f"{source}: {len(wrong)} prediction(s) name another video than {annotation}; e.g. key "
            f"{s.key!r} is predicted for video {r.video_id!r}, annotated in {video!r}"
        )
    wrong_index = [
        (s, r) for _, s, r in found if r.sentence_index is not None and r.sentence_index != s.index
    ]
    if wrong_index:
        s, r = wrong_index[0]
        raise DataError(
            f"{source}: {len(wrong_index)} prediction(s) give another sentence index than {annotation}; "
            f"e.g. key {s.key!r}: sentence_index {r.sentence_index}, annotated as {s.index}"
        )
    rows = [by_key.get(k) for k in keys]
    no_span = np.zeros((0, 2))
    ranked = pad_ranked(
        [r.spans if r is not None else no_span for r in rows],
        [_scores(r) if r is not None else () for r in rows],
    )
    windows = pad_ranked([s.all_windows for _, s in sentences])
    saliency = _saliency(rows, pairs, source, annotation)
    return Alignment(dataset.name, keys, ranked, windows.spans, windows.mask, missing, unknown, saliency)


# The fields of a QVHighlights sentence's highlight labels (Sentence.extra, checked by its reader).
_CLIP_IDS, _CLIP_SCORES = "relevant_clip_ids", "saliency_scores"


def _saliency(
    rows: Sequence[PredictionRecord | None],
    pairs: Sequence[tuple[Paragraph, Sentence]],
    source: str,
    annotation: str,
) -> SaliencyInputs | None:
    """The highlight inputs of aligned ``rows``, or None when there is nothing to score.

    Nothing to score: no prediction carries saliency, or no sentence has highlight labels (e.g.
    Charades-STA). A mix is an error: scoring part of the queries would read as the whole split.
    """
    given = [r for r in rows if r is not None]
    bare = [r.key for r in given if r.saliency is None]
    if len(bare) == len(given):
        return None
    if bare:
        raise DataError(
            f"{source}: {len(given) - len(bare)} of {len(given)} predictions carry saliency scores but "
            f"{len(bare)} do not (keys {_some(bare)}): give every prediction its clip scores, or none"
        )
    unlabelled = [s.key for _, s in pairs if _CLIP_IDS not in s.extra]
    if len(unlabelled) == len(pairs):
        return None
    if unlabelled:
        raise DataError(
            f"{annotation}: the predictions carry saliency scores but {len(unlabelled)} of {len(pairs)} "
            f"sentences have no {_CLIP_IDS!r} / {_CLIP_SCORES!r} (keys {_some(unlabelled)})"
        )
    return saliency_inputs(
        [r.saliency if r is not None else None for r in rows],
        [s.extra[_CLIP_IDS] for _, s in pairs],
        [np.reshape(s.extra[_CLIP_SCORES], (-1, ANNOTATORS)) for _, s in pairs],
        [p.duration for p, _ in pairs],
        CLIP_SECONDS,
    )


def _scores(record: PredictionRecord) -> Sequence[float]:
    """The record's scores, or minus the rank when it has none (the given order is the ranking)."""
    return record.scores if record.scores is not None else [-float(i) for i in range(len(record.spans))]


def score_alignment(
    alignment: Alignment,
    *,
    thresholds: Sequence[float] | None = None,
    inclusive: bool = True,
    moment_retrieval: bool | None = None,
    n_values: Sequence[int] = (1, 5),
    nms_threshold: float = 0.5,
    max_predictions: int = MAX_PREDICTIONS,
) -> dict[str, float]:
    """The flat metrics dict of aligned predictions (fractions in [0, 1]).

    Keys: ``R1@m`` (top prediction, every sentence) and ``mIoU``; ``R{n}@m`` for each n > 1 in
    ``n_values`` (after NMS at ``nms_threshold``) when some sentence has several predictions; with
    ``moment_retrieval`` (default: for QVHighlights) ``mAP@m`` over 0.5:0.05:0.95, ``mAP``, and
    ``short/``, ``middle/``, ``long/`` ``mAP@m``, ``mAP``, ``R1@m``; with saliency inputs
    (:attr:`Alignment.saliency`) ``HL-min-{Fair,Good,VeryGood}/mAP`` and ``/Hit1``.

    Raises:
        ConfigError: a threshold outside (0, 1], or ``nms_threshold`` outside [0, 1].
    """
    m = check_thresholds(thresholds if thresholds is not None else thresholds_for(alignment.dataset))
    if not 0 <= nms_threshold <= 1:  # NaN fails too; checked even when no sentence needs NMS
        raise ConfigError(f"the NMS IoU threshold must lie in [0, 1], got {nms_threshold}")
    ranked, gt, gt_mask = alignment.ranked, alignment.gt, alignment.gt_mask
    out = grounding_metrics(ranked.top1, gt, m, inclusive, gt_mask)
    ranks = [n for n in n_values if n > 1]
    if ranks and (ranked.mask.sum(axis=1) > 1).any():
        out.update(rank_recall(ranked, gt, m, ranks, nms_threshold, inclusive, gt_mask))
    if moment_retrieval if moment_retrieval is not None else alignment.dataset == "qvhighlights":
        mr = moment_retrieval_metrics(
            ranked, gt, gt_mask, MR_THRESHOLDS, inclusive, max_predictions, r1_thresholds=m
        )
        out.update({k: v for k, v in mr.items() if k not in out})
    if alignment.saliency is not None:
        out.update(highlight_metrics(alignment.saliency))
    return out


def evaluate(
    predictions: Predictions | Sequence[PredictionRecord],
    dataset: GroundingDataset,
    thresholds: Sequence[float] | None = None,
    inclusive: bool = True,
    *,
    allow_missing: bool = False,
    allow_unknown: bool = False,
    moment_retrieval: bool | None = None,
    n_values: Sequence[int] = (1, 5),
    nms_threshold: float = 0.5,
    max_predictions: int = MAX_PREDICTIONS,
) -> dict[str, float]:
    """Score ``predictions`` against ``dataset``: :func:`align_predictions` then :func:`score_alignment`.

    ``thresholds`` default to the benchmark's (:data:`~higround.metrics.grounding.DEFAULT_THRESHOLDS`);
    ``inclusive`` makes a hit IoU >= m (default) rather than IoU > m.
    """
    alignment = align_predictions(
        predictions, dataset, allow_missing=allow_missing, allow_unknown=allow_unknown
    )
    return score_alignment(
        alignment,
        thresholds=thresholds,
        inclusive=inclusive,
        moment_retrieval=moment_retrieval,
        n_values=n_values,
        nms_threshold=nms_threshold,
        max_predictions=max_predictions,
    )


_GRID_KEY = re.compile(r"^(?P<row>.+)@(?P<col>\d+(?:\.\d+)?)$")


def format_metrics(metrics: Mapping[str, float]) -> str:
    """A table of ``metrics`` in percent (2 decimals).

    ``name@m`` keys form a grid (a row per name, a column per threshold); a key equal to a row's name
    (``mAP``) fills that row's ``avg`` column; any other key (``mIoU``) gets its own line.
    """
    grid: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        match = _GRID_KEY.match(key)
        if match:
            grid.setdefault(match["row"], {})[match["col"]] = value
    singles = {}
    for key, value in metrics.items():
        if key in grid:
            grid[key]["avg"] = value
        elif not _GRID_KEY.match(key):
            singles[key] = value
    columns = sorted({c for row in grid.values() for c in row if c != "avg"}, key=float)
    if any("avg" in row for row in grid.values()):
        columns.append("avg")
    width = max([len(k) for k in (*grid, *singles)] + [4])
    lines = []
    if grid:
        lines.append(" " * width + "".join(f"{c:>8}" for c in columns))
        for name, row in grid.items():
            cells = "".join(f"{100 * row[c]:8.2f}" if c in row else " " * 8 for c in columns)
            lines.append(f"{name:<{width}}{cells}".rstrip())
    lines.extend(f"{name:<{width}}{100 * value:8.2f}" for name, value in singles.items())
    return "\n".join(lines)
