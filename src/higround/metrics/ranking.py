"""Ranked proposals: padding, non-maximum suppression and Rank n@m (2D-TAN-style R1/R5).

Every query's proposals are padded into one ``(Q, K, 2)`` array with a ``(Q, K)`` mask, so NMS and
the recalls run on whole arrays. Greedy NMS is sequential by nature (a proposal is suppressed only by
*kept* higher-ranked ones); it is computed here as the fixed point of
``keep[k] = valid[k] and not any(keep[j] and IoU(j, k) > t for j < k)``, iterated on the whole
``(Q, K, K)`` overlap tensor: after pass i the first i ranks are final, so the iteration stops at the
unique greedy solution, usually after a few passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from higround.metrics.grounding import best_window_iou, check_thresholds, hits, threshold_label
from higround.metrics.iou import as_spans, pairwise_temporal_iou

__all__ = ["RankedSpans", "nms_keep", "pad_ranked", "rank_recall"]

# Bound on the (chunk, K, K) overlap tensor NMS builds, in elements.
_NMS_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class RankedSpans:
    """Proposals of Q queries padded to K: ``spans (Q, K, 2)``, ``scores (Q, K)``, ``mask (Q, K)``.

    Row q holds query q's proposals in rank order (best first) followed by padding (``mask`` False,
    span (0, 0), whose IoU with anything is 0, score -inf).
    """

    spans: np.ndarray
    scores: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return self.spans.shape[0]

    @property
    def top1(self) -> np.ndarray:
        """``(Q, 2)`` each query's first-ranked span; a query without proposals has (0, 0) padding."""
        return self.spans[:, 0] if self.spans.shape[1] else np.zeros((len(self), 2))

    def sorted_by_score(self, limit: int | None = None) -> RankedSpans:
        """The first ``limit`` proposals of each query (all when None), re-ordered by descending score.

        The sort is stable, so equal scores keep their rank order; padding stays last.
        """
        spans, scores, mask = self.spans, self.scores, self.mask
        if limit is not None:
            spans, scores, mask = spans[:, :limit], scores[:, :limit], mask[:, :limit]
        order = np.argsort(-scores, axis=1, kind="stable")
        take = np.take_along_axis
        return RankedSpans(
            take(spans, order[..., None], axis=1), take(scores, order, axis=1), take(mask, order, axis=1)
        )


def _proposals(x: npt.ArrayLike) -> np.ndarray:
    """One query's ``(K, 2)`` proposals; an empty list is ``(0, 2)``."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2:
        raise ValueError(f"each query's proposals must be (K, 2), got shape {arr.shape}")
    return as_spans(arr)


def pad_ranked(spans: Sequence[npt.ArrayLike], scores: Sequence[npt.ArrayLike] | None = None) -> RankedSpans:
    """Pad per-query proposal lists ``(K_i, 2)`` (and scores ``(K_i,)``) into a :class:`RankedSpans`.

    Without ``scores`` each proposal scores minus its rank (0, -1, -2, ...), so a score sort keeps the
    given order.
    """
    arrays = [_proposals(s) for s in spans]
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    q, k = len(arrays), int(counts.max(initial=0))
    rows = np.repeat(np.arange(q), counts)
    cols = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    padded = np.zeros((q, k, 2))
    mask = np.zeros((q, k), dtype=bool)
    mask[rows, cols] = True
    if q and k:
        padded[rows, cols] = np.concatenate(arrays)
    flat_scores = -cols.astype(np.float64)
    if scores is not None:
        given = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
        if len(given) != q or any(len(g) != c for g, c in zip(given, counts, strict=True)):
            raise ValueError("scores must give one value per proposal of every query")
        flat_scores = np.concatenate(given) if given else flat_scores
    padded_scores = np.full((q, k), -np.inf)
    padded_scores[rows, cols] = flat_scores
    return RankedSpans(padded, padded_scores, mask)


def nms_keep(spans: npt.ArrayLike, mask: npt.ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """Greedy NMS over ranked proposals: ``(Q, K)`` True where a proposal survives.

    Proposal k is suppressed when a kept proposal ranked before it overlaps it with IoU > ``threshold``
    (2D-TAN and MMN suppress on a strict >).
    """
    s = as_spans(spans)
    valid = np.asarray(mask, dtype=bool)
    q, k = valid.shape
    keep = valid.copy()
    if k < 2:
        return keep
    earlier = np.triu(np.ones((k, k), dtype=bool), 1)  # earlier[j, k]: j is ranked before k
    step = max(1, _NMS_CHUNK_ELEMENTS // (k * k))
    for lo in range(0, q, step):  # chunks bound memory; every chunk is vectorised
        v = valid[lo : lo + step]
        # Only kept proposals suppress, and ``current`` never keeps padding.
        suppresses = (pairwise_temporal_iou(s[lo : lo + step], s[lo : lo + step]) > threshold) & earlier
        current = v.copy()
        while True:
            hit = np.einsum("qj,qjk->qk", current.astype(np.int32), suppresses.astype(np.int32)) > 0
            updated = v & ~hit
            if np.array_equal(updated, current):
                break
            current = updated
        keep[lo : lo + step] = current
    return keep


def rank_recall(
    ranked: RankedSpans | Sequence[npt.ArrayLike],
    gt: npt.ArrayLike,
    thresholds: Sequence[float],
    n_values: Sequence[int] = (1, 5),
    nms_threshold: float | None = 0.5,
    inclusive: bool = True,
    gt_mask: npt.ArrayLike | None = None,
    scores: Sequence[npt.ArrayLike] | None = None,
) -> dict[str, float]:
    """Rank n@m: fraction of queries with a hit among their top n proposals after NMS.

    Args:
        ranked: a :class:`RankedSpans`, or one ``(K_i, 2)`` array of proposals per query.
        gt: ``(Q, 2)`` or padded ``(Q, W, 2)`` ground truth (any window counts).
        thresholds: tIoU thresholds m.
        n_values: ranks n.
        nms_threshold: NMS IoU threshold (None: no NMS).
        inclusive: a hit is IoU >= m (default) or IoU > m.
        gt_mask: ``(Q, W)`` real windows of a padded ``gt``.
        scores: with a list ``ranked``, per-query scores to sort by (stable, descending) before NMS;
            without them the given order is the ranking.

    Returns:
        ``{"R{n}@{m}": fraction}`` for every n and m; a query without proposals is a miss.
    """
    thresholds = check_thresholds(thresholds)
    if isinstance(ranked, RankedSpans):
        padded = ranked
    else:
        padded = pad_ranked(ranked, scores)
        if scores is not None:
            padded = padded.sorted_by_score()
    keep = nms_keep(padded.spans, padded.mask, nms_threshold) if nms_threshold is not None else padded.mask
    order = np.cumsum(keep, axis=1)  # 1-based rank among kept proposals
    ious = best_window_iou(padded.spans, gt, gt_mask)  # (Q, K)
    hit = hits(ious, thresholds, inclusive) & keep[..., None]  # (Q, K, T)
    out = {}
    for n in n_values:
        found = (hit & (order <= n)[..., None]).any(axis=1)  # (Q, T)
        recall = found.mean(axis=0) if len(found) else np.zeros(len(thresholds))
        out.update({f"R{n}@{threshold_label(t)}": float(r) for t, r in zip(thresholds, recall, strict=True)})
    return out
