"""Grounding metrics: R1@m (recall of the top prediction at tIoU m) and mIoU.

Both are averaged over *all sentences* of a split (not per paragraph first), as the video paragraph
grounding papers report them. A sentence with several ground-truth windows (QVHighlights) is scored
with its best-matching window, as Moment-DETR's R1 does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from higround.errors import ConfigError
from higround.metrics.iou import as_spans, pairwise_temporal_iou

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MR_THRESHOLDS",
    "best_window_iou",
    "check_thresholds",
    "grounding_metrics",
    "hits",
    "mean_iou",
    "recall_at_iou",
    "threshold_label",
    "thresholds_for",
]

# Moment-DETR's 0.5:0.05:0.95, rounded to two decimals as its evaluator does (so 0.55 is the double
# nearest 0.55, not 0.5 + 0.05 with its rounding error).
MR_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

# The tIoU columns each benchmark's papers report (MMN's evaluator: ActivityNet 0.3/0.5/0.7, TACoS
# 0.1/0.3/0.5, Charades 0.5/0.7; QVHighlights: Moment-DETR's ten thresholds).
DEFAULT_THRESHOLDS: Mapping[str, tuple[float, ...]] = {
    "activitynet_captions": (0.3, 0.5, 0.7),
    "activitynet_cg": (0.3, 0.5, 0.7),
    "tacos": (0.1, 0.3, 0.5),
    "tacos_paragraphs": (0.1, 0.3, 0.5),
    "charades_sta": (0.5, 0.7),
    "charades_cg": (0.5, 0.7),
    "qvhighlights": MR_THRESHOLDS,
    # No grounding recipe uses DiDeMo (HSE retrieves with it); its moments are 5-s segments.
    "didemo": (0.5, 0.7),
}


def thresholds_for(dataset: str) -> tuple[float, ...]:
    """The default tIoU thresholds of benchmark ``dataset``; ConfigError for an unknown name."""
    try:
        return DEFAULT_THRESHOLDS[dataset]
    except KeyError:
        known = ", ".join(sorted(DEFAULT_THRESHOLDS))
        raise ConfigError(f"no default IoU thresholds for dataset {dataset!r} (known: {known})") from None


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """``thresholds`` as a tuple; ConfigError unless non-empty and each in (0, 1]."""
    out = tuple(float(t) for t in thresholds)
    if not out or not all(0 < t <= 1 for t in out):
        raise ConfigError(f"IoU thresholds must be a non-empty list of values in (0, 1], got {list(out)}")
    return out


def threshold_label(t: float) -> str:
    """How a threshold appears in metric keys: ``0.5`` -> ``"0.5"``, ``0.55`` -> ``"0.55"``."""
    return f"{t:g}"


def hits(ious: npt.ArrayLike, thresholds: Sequence[float], inclusive: bool = True) -> np.ndarray:
    """``(..., T)`` booleans: IoU >= m (``inclusive``) or IoU > m, for each threshold m."""
    values = np.asarray(ious, dtype=np.float64)[..., None]
    t = np.asarray(thresholds, dtype=np.float64)
    return values >= t if inclusive else values > t


def recall_at_iou(ious: npt.ArrayLike, thresholds: Sequence[float], inclusive: bool = True) -> np.ndarray:
    """``(T,)`` fraction of the ``(N,)`` IoUs that hit each threshold (0 for N = 0)."""
    h = hits(np.asarray(ious, dtype=np.float64).reshape(-1), thresholds, inclusive)
    return h.mean(axis=0) if len(h) else np.zeros(len(thresholds))


def mean_iou(ious: npt.ArrayLike) -> float:
    """Mean of the ``(N,)`` IoUs (0 for N = 0)."""
    values = np.asarray(ious, dtype=np.float64).reshape(-1)
    return float(values.mean()) if len(values) else 0.0


def best_window_iou(
    pred: npt.ArrayLike, windows: npt.ArrayLike, window_mask: npt.ArrayLike | None = None
) -> np.ndarray:
    """IoU of each prediction with its best ground-truth window.

    Args:
        pred: ``(N, 2)`` one span per sentence, or ``(N, K, 2)`` several.
        windows: ``(N, 2)`` one window per sentence, or ``(N, W, 2)`` padded windows.
        window_mask: ``(N, W)``, True for real windows (default: all real). A sentence without a real
            window scores 0.

    Returns:
        ``(N,)`` or ``(N, K)``: the largest IoU over the sentence's real windows.
    """
    p, w = as_spans(pred, "pred"), as_spans(windows, "windows")
    single = p.ndim == 2
    p = p[:, None] if single else p
    w = w[:, None] if w.ndim == 2 else w
    if p.shape[0] != w.shape[0]:
        raise ValueError(f"{p.shape[0]} predictions for {w.shape[0]} ground truths")
    mask = np.ones(w.shape[:2], bool) if window_mask is None else np.asarray(window_mask, bool)
    ious = np.where(mask[:, None, :], pairwise_temporal_iou(p, w), 0.0)  # (N, K, W)
    best = ious.max(axis=-1, initial=0.0)
    return best[:, 0] if single else best


def grounding_metrics(
    pred: npt.ArrayLike,
    gt: npt.ArrayLike,
    thresholds: Sequence[float],
    inclusive: bool = True,
    gt_mask: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """``R1@m`` for each threshold and ``mIoU`` (fractions in [0, 1]) of top-1 predictions.

    Args:
        pred: ``(N, 2)`` the top prediction of each sentence, in seconds.
        gt: ``(N, 2)`` or padded ``(N, W, 2)`` ground truth (best window counts).
        thresholds: tIoU thresholds m.
        inclusive: a hit is IoU >= m (default) or, if False, IoU > m.
        gt_mask: ``(N, W)`` real windows of a padded ``gt``.
    """
    ious = best_window_iou(pred, gt, gt_mask)
    recalls = recall_at_iou(ious, check_thresholds(thresholds), inclusive)
    out = {f"R1@{threshold_label(t)}": float(r) for t, r in zip(thresholds, recalls, strict=True)}
    out["mIoU"] = mean_iou(ious)
    return out
