"""QVHighlights highlight detection: HL mAP and HIT@1 of predicted clip saliency, per minimum level.

The conventions are those of Moment-DETR's standalone evaluator (jayleicn/moment_detr,
``standalone_eval/eval.py`` ``eval_highlight``, AP from ``utils.py`` ``get_ap``), re-implemented on
padded arrays:

- a video is cut into ``int(duration / 2)`` clips of 2 s (QVHighlights' grid); three annotators
  scored every clip of ``relevant_clip_ids`` from 0 (Very Bad) to 4 (Very Good); every other clip
  scores 0 for all three;
- at minimum level m — ``HL-min-Fair`` m = 2, ``HL-min-Good`` m = 3, ``HL-min-VeryGood`` m = 4 — a
  clip is positive for an annotator whose score is >= m; each annotator's labels are scored on their
  own (three APs per query, never averaged scores);
- predicted score i belongs to clip i of the video (the clip grid, not the order of
  ``relevant_clip_ids``); for AP a prediction longer than the video's clips is cut to them and a
  shorter one is completed with score 0 (Moment-DETR's zero fill: the missing clips rank where a
  score of 0 ranks, they are not left out);
- AP of one annotator: 0 when none of the clips is positive, 1 when all are; otherwise the
  precision-recall curve at every distinct predicted score (tied clips enter together, as
  scikit-learn's ``precision_recall_curve`` builds it), precision interpolated (the highest
  precision at this recall or more), **averaged over the points where recall grows** — an unweighted
  mean, so with tied scores it differs from ``average_precision_score``, which weights each point by
  its recall step; without ties it is the mean precision at each positive clip;
- ``HL-min-*/mAP``: mean AP over queries and annotators;
- ``HL-min-*/Hit1`` (HIT@1): the clip of highest predicted score over the whole (uncut) prediction,
  the first on ties, is a hit when *some* annotator scored it >= m (the max over annotators); a top
  clip past the video's clips is a miss; mean over queries;
- a query without predicted scores (a missing prediction) scores AP 0 and no hit; it is counted.

Padding never changes a score: padded clips and padded queries are masked out of every sort, count
and mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "HL_LEVELS",
    "SaliencyInputs",
    "clip_labels",
    "highlight_metrics",
    "hit_at_one",
    "pad_rows",
    "saliency_average_precision",
    "saliency_inputs",
]

# Moment-DETR's names of the minimum saliency levels that make a clip positive.
HL_LEVELS: Mapping[str, int] = {"Fair": 2, "Good": 3, "VeryGood": 4}


@dataclass(frozen=True)
class SaliencyInputs:
    """Predicted and annotated clip saliency of Q queries, padded.

    Attributes:
        scores: ``(Q, P)`` predicted score per clip, clip i in column i (padding: anything).
        lengths: ``(Q,)`` number of predicted clips of each query; 0 for a query without prediction.
        labels: ``(Q, C, A)`` every annotator's score of every clip of the video (0 outside the
            relevant clips and in the padding).
        num_clips: ``(Q,)`` clips of each query's video (``C >= num_clips``).
    """

    scores: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    num_clips: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)


def pad_rows(
    rows: Sequence[npt.ArrayLike], dtype: npt.DTypeLike = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Pad per-query arrays ``(N_i, ...)`` into ``(Q, N, ...)`` (zeros after row i's ``N_i``).

    Args:
        rows: one array per query; trailing dimensions must agree.
        dtype: the padded array's type.

    Returns:
        The padded array and the ``(Q,)`` row lengths.

    Raises:
        ValueError: the rows' trailing dimensions differ.
    """
    arrays = [np.asarray(r, dtype=dtype) for r in rows]
    tails = {a.shape[1:] for a in arrays if a.size}
    if len(tails) > 1:
        raise ValueError(f"rows must share their trailing dimensions, got {sorted(tails)}")
    tail = tails.pop() if tails else ()
    lengths = np.array([len(a) if a.size else 0 for a in arrays], dtype=np.int64)
    q, n = len(arrays), int(lengths.max(initial=0))
    out = np.zeros((q, n, *tail), dtype=dtype)
    if n:
        row = np.repeat(np.arange(q), lengths)
        col = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[row, col] = np.concatenate([a.reshape(-1, *tail) for a in arrays if a.size])
    return out, lengths


def clip_labels(
    clip_ids: npt.ArrayLike, clip_scores: npt.ArrayLike, counts: npt.ArrayLike, num_clips: npt.ArrayLike
) -> np.ndarray:
    """``(Q, C, A)`` annotators' scores over every clip of the video (0 outside the relevant clips).

    Args:
        clip_ids: ``(Q, R)`` padded ``relevant_clip_ids``; ``counts (Q,)`` how many are real.
        clip_scores: ``(Q, R, A)`` the annotators' scores of those clips (``saliency_scores``).
        num_clips: ``(Q,)`` clips of each video; ``C = max(num_clips)``.

    Raises:
        ValueError: a real clip id lies outside ``[0, num_clips)`` of its video.
    """
    ids, scores = np.asarray(clip_ids, dtype=np.int64), np.asarray(clip_scores, dtype=np.float64)
    count, clips = np.asarray(counts, dtype=np.int64), np.asarray(num_clips, dtype=np.int64)
    real = np.arange(ids.shape[1]) < count[:, None]
    if ((ids < 0) | (ids >= clips[:, None]))[real].any():
        raise ValueError("relevant clip ids must lie in [0, num_clips) of their video")
    out = np.zeros((len(count), int(clips.max(initial=0)), scores.shape[-1]))
    rows = np.broadcast_to(np.arange(len(count))[:, None], ids.shape)
    out[rows[real], ids[real]] = scores[real]
    return out


def saliency_average_precision(
    scores: npt.ArrayLike, positive: npt.ArrayLike, mask: npt.ArrayLike
) -> np.ndarray:
    """AP of each row of clip scores against binary labels, as Moment-DETR's ``get_ap``.

    ``AP = (1/|S|) Σ_{k∈S} max_{j≥k} P_j`` over the distinct scores, highest first: ``P_j`` is the
    precision of the clips scoring at least the j-th distinct score, ``S`` the scores whose clips hold
    a positive (where recall grows). No positive gives 0; all positive gives 1.

    Args:
        scores: ``(..., C)`` predicted scores; positive: ``(..., C)`` labels; mask: ``(..., C)``
            the real clips (the three broadcast together).

    Returns:
        ``(...)`` AP of each row.
    """
    s, y, m = np.broadcast_arrays(
        np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool), np.asarray(mask, dtype=bool)
    )
    # Highest score first, padding last (its key is +inf whatever it holds).
    order = np.argsort(np.where(m, -s, np.inf), axis=-1, kind="stable")
    s, y, m = (np.take_along_axis(a, order, axis=-1) for a in (s, y & m, m))
    tp = np.cumsum(y, axis=-1, dtype=np.float64)
    seen = np.cumsum(m, axis=-1, dtype=np.float64)
    # A threshold's point is the last clip of its score: tied clips enter the curve together.
    last = np.ones((*s.shape[:-1], 1), dtype=bool)
    ends = m & np.concatenate([~m[..., 1:] | (s[..., 1:] != s[..., :-1]), last], axis=-1)
    # Clips that are no point hold precision 0, which never raises the envelope max_{j>=k} P_j.
    precision = np.where(ends, tp / np.maximum(seen, 1), 0.0)
    envelope = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]
    # Recall grows at a point whose tp exceeds the previous point's; tp only grows along the ranking,
    # so the previous point's tp is the running max of the points' tp before this clip.
    point_tp = np.where(ends, tp, 0.0)
    shifted = np.concatenate([np.zeros(last.shape), point_tp[..., :-1]], axis=-1)
    grows = ends & (tp > np.maximum.accumulate(shifted, axis=-1))
    return np.where(grows, envelope, 0.0).sum(axis=-1) / np.maximum(grows.sum(axis=-1), 1)


def hit_at_one(scores: npt.ArrayLike, lengths: npt.ArrayLike, positive: npt.ArrayLike) -> np.ndarray:
    """``(Q,)`` whether each query's top-scored clip is positive (HIT@1 before the mean).

    Args:
        scores: ``(Q, P)`` predicted scores; lengths: ``(Q,)`` how many are real (0: no prediction).
        positive: ``(Q, C)`` clips some annotator scored at or above the level, False past the video.

    Returns:
        ``(Q,)`` booleans; the top clip is the first of the highest score, and a top clip at or past
        column ``C`` (past every video) is a miss.
    """
    s = np.asarray(scores, dtype=np.float64)
    n = np.asarray(lengths, dtype=np.int64)
    pos = np.asarray(positive, dtype=bool)
    if s.shape[1] == 0 or pos.shape[1] == 0:
        return np.zeros(len(n), dtype=bool)
    top = np.argmax(np.where(np.arange(s.shape[1]) < n[:, None], s, -np.inf), axis=1)
    inside = top < pos.shape[1]
    hit = np.take_along_axis(pos, np.minimum(top, pos.shape[1] - 1)[:, None], axis=1)[:, 0]
    return (n > 0) & inside & hit


def highlight_metrics(inputs: SaliencyInputs, levels: Mapping[str, int] = HL_LEVELS) -> dict[str, float]:
    """HL mAP and HIT@1 at each minimum level (fractions in [0, 1]).

    Args:
        inputs: padded predicted scores and annotated labels (:func:`saliency_inputs`).
        levels: name -> minimum annotator score of a positive clip (default Fair 2, Good 3,
            VeryGood 4).

    Returns:
        ``HL-min-{name}/mAP`` and ``HL-min-{name}/Hit1`` for each level.

    Raises:
        ValueError: no query.
    """
    if not len(inputs):
        raise ValueError("highlight metrics need at least one query")
    scores, lengths, labels = inputs.scores, inputs.lengths, inputs.labels
    q, c, _ = labels.shape
    clip = np.arange(c)
    # For AP the prediction is cut to the video's clips, or completed with 0 (Moment-DETR's alignment).
    k = min(c, scores.shape[1])
    aligned = np.zeros((q, c))
    aligned[:, :k] = np.where(clip[:k] < lengths[:, None], scores[:, :k], 0.0)
    in_video = clip < inputs.num_clips[:, None]  # (Q, C)
    minimum = np.asarray(list(levels.values()), dtype=np.float64)
    positive = (labels[None] >= minimum[:, None, None, None]) & in_video[None, :, :, None]  # (L, Q, C, A)
    ap = saliency_average_precision(
        aligned[None, :, None, :], np.moveaxis(positive, -1, -2), in_video[None, :, None, :]
    )  # (L, Q, A)
    ap = np.where(lengths[None, :, None] > 0, ap, 0.0)
    out: dict[str, float] = {}
    for i, name in enumerate(levels):  # a few levels, each over whole arrays
        out[f"HL-min-{name}/mAP"] = float(ap[i].mean())
        out[f"HL-min-{name}/Hit1"] = float(hit_at_one(scores, lengths, positive[i].any(axis=-1)).mean())
    return out


def saliency_inputs(
    predicted: Sequence[npt.ArrayLike | None],
    clip_ids: Sequence[npt.ArrayLike],
    clip_scores: Sequence[npt.ArrayLike],
    durations: npt.ArrayLike,
    clip_seconds: float,
) -> SaliencyInputs:
    """Pad every query's predicted and annotated saliency into :class:`SaliencyInputs`.

    Args:
        predicted: per query, the predicted score of each clip (clip i at index i), or None when
            the query has no prediction.
        clip_ids: per query, its ``relevant_clip_ids``; clip_scores: per query, ``(R_i, A)`` the
            annotators' scores of those clips (``saliency_scores``).
        durations: ``(Q,)`` video durations in seconds; the video has ``int(duration / clip_seconds)``
            clips.
        clip_seconds: the annotation's clip length (QVHighlights: 2).

    Raises:
        ValueError: the queries' annotator counts differ, or a clip id lies outside its video.
    """
    scores, lengths = pad_rows([() if p is None else p for p in predicted])
    ids, counts = pad_rows(clip_ids, dtype=np.int64)
    annotated, scored = pad_rows(clip_scores)
    if not np.array_equal(scored, counts):
        raise ValueError("every relevant clip needs one row of annotator scores")
    if annotated.ndim == 2 and not annotated.size:  # no query has a relevant clip
        annotated = annotated[..., None]
    if annotated.ndim != 3:
        raise ValueError("saliency scores must be (clips, annotators) per query")
    num_clips = np.floor(np.asarray(durations, dtype=np.float64) / clip_seconds).astype(np.int64)
    labels = clip_labels(ids, annotated, counts, num_clips)
    return SaliencyInputs(scores, lengths, labels, num_clips)
