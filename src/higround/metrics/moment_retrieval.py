"""QVHighlights-style moment retrieval: mAP over tIoU 0.5:0.05:0.95, R1, and moment-length buckets.

The conventions are those of Moment-DETR's standalone evaluator (jayleicn/moment_detr,
``standalone_eval/eval.py`` and ``utils.py``), re-implemented on padded arrays:

- a query may have several ground-truth windows; its AP counts each window as one positive;
- only the first ``max_predictions`` (10) predictions of each query, in the given order, are used for
  mAP; they are then sorted by descending score (stable);
- each prediction, in that order, is a true positive at threshold m when an unmatched window has
  IoU >= m; it takes the unmatched window of highest IoU (ties: the later window), which is then
  matched; otherwise it is a false positive;
- AP is the VOC-2011 interpolated area: precision made monotone from the right, summed over the
  recall steps; mAP@m averages AP over queries, ``mAP`` averages mAP@m over the thresholds;
- R1@m takes the *first* prediction (not the best-scored) and its best IoU over the windows;
- length buckets keep, per query, only the windows whose length l lies in (lo, hi] (short (0, 10],
  middle (10, 30], long (30, inf)); a query without such a window leaves the bucket; its predictions
  are all kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from higround.metrics.grounding import (
    MR_THRESHOLDS,
    best_window_iou,
    check_thresholds,
    hits,
    recall_at_iou,
    threshold_label,
)
from higround.metrics.iou import as_spans, pairwise_temporal_iou
from higround.metrics.ranking import RankedSpans

__all__ = ["LENGTH_BUCKETS", "MAX_PREDICTIONS", "average_precision", "moment_retrieval_metrics"]

MAX_PREDICTIONS = 10

# Moment-DETR's ranges are [0, 10], [10, 30], [30, 150] read as lo < l <= hi; 150 s is QVHighlights'
# longest video, so an open upper end gives the same buckets there and keeps longer windows elsewhere.
LENGTH_BUCKETS: Mapping[str, tuple[float, float]] = {
    "short": (0.0, 10.0),
    "middle": (10.0, 30.0),
    "long": (30.0, float("inf")),
}


def _greedy_match(eligible: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Greedy one-to-one matching of ranked predictions to windows: ``(B, K)`` matched flags.

    ``eligible (B, K, W)``: prediction k may match window w; ``priority (B, K, W)``: higher is
    preferred. Prediction k takes its preferred eligible window not taken by an earlier prediction.
    Computed as a fixed point (pass i settles rank i; see :mod:`higround.metrics.ranking`).
    """
    b, k, w = eligible.shape
    earlier = np.tril(np.ones((k, k), dtype=np.int32), -1)  # earlier[k, j]: j is ranked before k
    windows = np.arange(w)
    assign = np.full((b, k), -1)
    while True:
        taken = np.einsum("kj,bjw->bkw", earlier, (assign[..., None] == windows).astype(np.int32)) > 0
        free = eligible & ~taken
        updated = np.where(free.any(axis=-1), np.where(free, priority, -1).argmax(axis=-1), -1)
        if np.array_equal(updated, assign):
            return assign >= 0
        assign = updated


def _voc_ap(tp: np.ndarray, valid: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """VOC-2011 interpolated AP of ranked ``tp (..., K)`` flags with ``positives (...)`` windows."""
    tp_cum = np.cumsum(tp, axis=-1, dtype=np.float64)
    seen = np.cumsum(valid, axis=-1, dtype=np.float64)
    precision = np.divide(tp_cum, seen, out=np.zeros_like(tp_cum), where=seen > 0)
    recall = tp_cum / np.maximum(positives, 1)[..., None]
    edge = np.zeros((*tp.shape[:-1], 1))
    precision = np.concatenate([edge, precision, edge], axis=-1)
    recall = np.concatenate([edge, recall, edge + 1], axis=-1)
    envelope = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]
    # Padding repeats the last recall, so its steps add 0.
    return np.sum(np.diff(recall, axis=-1) * envelope[..., 1:], axis=-1)


def average_precision(
    ranked: RankedSpans,
    gt: npt.ArrayLike,
    gt_mask: npt.ArrayLike,
    thresholds: Sequence[float] = MR_THRESHOLDS,
    inclusive: bool = True,
) -> np.ndarray:
    """``(Q, T)`` AP of each query at each threshold, predictions scored in the order given.

    Args:
        ranked: predictions already in scoring order (e.g. ``ranked.sorted_by_score(10)``).
        gt: ``(Q, W, 2)`` padded ground-truth windows; ``gt_mask (Q, W)`` marks the real ones.
        thresholds: tIoU thresholds m; inclusive: a match needs IoU >= m (default) or IoU > m.
    """
    windows, mask = as_spans(gt, "gt"), np.asarray(gt_mask, dtype=bool)
    ious = pairwise_temporal_iou(ranked.spans, windows)  # (Q, K, W)
    # Rank of each window by IoU, ascending and stable: ties favour the later window.
    priority = np.argsort(np.argsort(ious, axis=-1, kind="stable"), axis=-1, kind="stable")
    pair_ok = ranked.mask[:, :, None] & mask[:, None, :]
    eligible = hits(ious, check_thresholds(thresholds), inclusive) & pair_ok[..., None]  # (Q, K, W, T)
    eligible = np.moveaxis(eligible, -1, 0)  # (T, Q, K, W)
    t, q, k, w = eligible.shape
    matched = _greedy_match(
        eligible.reshape(t * q, k, w), np.broadcast_to(priority, eligible.shape).reshape(t * q, k, w)
    )
    ap = _voc_ap(matched.reshape(t, q, k), np.broadcast_to(ranked.mask, (t, q, k)), mask.sum(axis=-1))
    return ap.T


def moment_retrieval_metrics(
    ranked: RankedSpans,
    gt: npt.ArrayLike,
    gt_mask: npt.ArrayLike,
    thresholds: Sequence[float] = MR_THRESHOLDS,
    inclusive: bool = True,
    max_predictions: int = MAX_PREDICTIONS,
    buckets: Mapping[str, tuple[float, float]] | None = LENGTH_BUCKETS,
    r1_thresholds: Sequence[float] | None = None,
) -> dict[str, float]:
    """mAP@m, mAP and R1@m over all queries, and the same per length bucket (fractions in [0, 1]).

    Args:
        ranked: every query's predictions in rank order (R1 takes the first), with scores for mAP.
        gt, gt_mask: ``(Q, W, 2)`` padded windows and ``(Q, W)`` mask; every query needs one window.
        thresholds: tIoU thresholds of mAP (default 0.5:0.05:0.95).
        inclusive: hits are IoU >= m (Moment-DETR) or IoU > m.
        max_predictions: predictions per query used for mAP.
        buckets: name -> (lo, hi] window-length range in seconds; None for no buckets.
        r1_thresholds: tIoU thresholds of R1 (default: ``thresholds``).

    Returns:
        ``mAP@m``, ``mAP``, ``R1@m``; for each bucket ``{name}/mAP@m``, ``{name}/mAP``, ``{name}/R1@m``
        (a bucket without queries is left out).
    """
    thresholds = check_thresholds(thresholds)
    r1 = check_thresholds(r1_thresholds) if r1_thresholds is not None else thresholds
    windows, mask = as_spans(gt, "gt"), np.asarray(gt_mask, dtype=bool)
    if not mask.any(axis=1).all():
        raise ValueError("every query needs at least one ground-truth window")
    scored = ranked.sorted_by_score(max_predictions)
    lengths = windows[..., 1] - windows[..., 0]
    selections = {"": mask}
    for name, (lo, hi) in (buckets or {}).items():
        selections[f"{name}/"] = mask & (lengths > lo) & (lengths <= hi)
    # A query without predictions has a (0, 0) padding span here: zero length, IoU 0.
    top1 = ranked.top1
    out: dict[str, float] = {}
    for prefix, selected in selections.items():  # a few subsets, each scored on whole arrays
        rows = selected.any(axis=1)
        if not rows.any():
            continue
        sub = RankedSpans(scored.spans[rows], scored.scores[rows], scored.mask[rows])
        ap = average_precision(sub, windows[rows], selected[rows], thresholds, inclusive).mean(axis=0)
        out.update(
            {f"{prefix}mAP@{threshold_label(t)}": float(v) for t, v in zip(thresholds, ap, strict=True)}
        )
        out[f"{prefix}mAP"] = float(ap.mean())
        ious = best_window_iou(top1[rows], windows[rows], selected[rows])
        recall = recall_at_iou(ious, r1, inclusive)
        out.update({f"{prefix}R1@{threshold_label(t)}": float(r) for t, r in zip(r1, recall, strict=True)})
    return out
