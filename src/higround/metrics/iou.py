"""Temporal intersection-over-union of (start, end) spans.

``IoU(a, b) = |a ∩ b| / |hull(a, b)|`` where the intersection is positive and 0 otherwise. Where the
two spans overlap, the hull (``max(end) - min(start)``) *is* their union; where they do not, the
IoU is 0 whatever the union, so the hull form gives the standard IoU with one subtraction fewer
(and is what 2D-TAN, MMN, PRVG and Moment-DETR's R1 compute). Degenerate spans, documented rather
than rejected so a metric never raises mid-evaluation:

- a **zero-length** span (``start == end``) has an empty intersection with everything, so its IoU
  is 0, even with an identical point (0/0 is defined as 0: a point cannot be "found");
- a **reversed** span (``start > end``) is treated as empty: its IoU with anything is 0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["as_spans", "pairwise_temporal_iou", "temporal_iou"]


def as_spans(x: npt.ArrayLike, name: str = "spans") -> np.ndarray:
    """``x`` as a float64 array whose last axis is (start, end); raises ValueError otherwise."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must have a last axis of size 2 (start, end), got shape {arr.shape}")
    return arr


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of broadcast-compatible span arrays (last axis dropped)."""
    inter = np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0])
    hull = np.maximum(a[..., 1], b[..., 1]) - np.minimum(a[..., 0], b[..., 0])
    positive = inter > 0  # implies hull >= inter > 0: no division by zero below
    return np.divide(inter, hull, out=np.zeros_like(inter), where=positive)


def temporal_iou(pred: npt.ArrayLike, gt: npt.ArrayLike) -> np.ndarray:
    """Paired IoU: ``(N, 2)`` and ``(N, 2)`` spans -> ``(N,)`` (any broadcastable leading shape)."""
    return _iou(as_spans(pred, "pred"), as_spans(gt, "gt"))


def pairwise_temporal_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """Every pair: ``(..., N, 2)`` and ``(..., M, 2)`` -> ``(..., N, M)``.

    Leading axes broadcast, so ``(Q, K, 2)`` proposals against ``(Q, W, 2)`` ground-truth windows give
    ``(Q, K, W)`` in one call.
    """
    x, y = as_spans(a, "a"), as_spans(b, "b")
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"pairwise IoU needs (..., N, 2) and (..., M, 2), got {x.shape} and {y.shape}")
    return _iou(x[..., :, None, :], y[..., None, :, :])
