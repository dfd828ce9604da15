"""1-D span regression losses on normalised ``(start, end)``: L1 and GIoU (Rezatofighi et al.)."""

from __future__ import annotations

import torch
from torch import Tensor

# Guards divisions by a union/hull/length that can be 0 for degenerate (point) spans.
EPS = 1e-6


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``values`` where ``mask`` (same shape) over ``dim`` (None: over everything).

    A mean over nothing masked in is 0.
    """
    mask = mask.to(values.dtype)
    return (values * mask).sum(dim=dim) / mask.sum(dim=dim).clamp_min(1.0)


def span_intersection(pred: Tensor, target: Tensor) -> Tensor:
    """Overlap length of ``(..., 2)`` spans (broadcast), element-wise; 0 for disjoint spans."""
    start = pred[..., 0].maximum(target[..., 0])
    end = pred[..., 1].minimum(target[..., 1])
    return (end - start).clamp_min(0.0)


def span_iou_terms(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Intersection, union and hull lengths of ``(..., 2)`` spans, element-wise."""
    intersection = span_intersection(pred, target)
    union = (pred[..., 1] - pred[..., 0]) + (target[..., 1] - target[..., 0]) - intersection
    hull = pred[..., 1].maximum(target[..., 1]) - pred[..., 0].minimum(target[..., 0])
    return intersection, union, hull


def span_giou(pred: Tensor, target: Tensor) -> Tensor:
    """Generalised IoU ``IoU - (hull - union) / hull`` of ``(..., 2)`` spans, in ``[-1, 1]``."""
    intersection, union, hull = span_iou_terms(pred, target)
    return intersection / union.clamp_min(EPS) - (hull - union) / hull.clamp_min(EPS)


def l1_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``|s - s'| + |e - e'|`` averaged over the spans where ``mask`` (``pred.shape[:-1]``)."""
    return masked_mean((pred - target).abs().sum(dim=-1), mask)


def giou_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``1 - GIoU`` averaged over the spans where ``mask`` (``pred.shape[:-1]``)."""
    return masked_mean(1.0 - span_giou(pred, target), mask)


def hull_span(spans: Tensor, mask: Tensor) -> Tensor:
    """``[min start, max end]`` over the masked spans of axis -2: ``(..., K, 2)`` -> ``(..., 2)``.

    The temporal union hull: the paragraph's ground truth from its sentences (Section 3.4) and the
    union of a sentence's word predictions (supp. eq. 6). Rows with no masked span give
    ``(inf, -inf)``; callers mask them out.
    """
    start = spans[..., 0].masked_fill(~mask, float("inf")).amin(dim=-1)
    end = spans[..., 1].masked_fill(~mask, float("-inf")).amax(dim=-1)
    return torch.stack([start, end], dim=-1)
