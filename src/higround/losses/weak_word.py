"""Weakly supervised word-level decoder losses (HSCNet supplement eq. 6-7).

Words have no ground truth; their predictions are tied to their sentence's span: the union of a
sentence's word spans should cover it (eq. 6) and each word span should lie inside it (eq. 7).
Both are averaged over every real sentence of the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from higround.losses.span import EPS, hull_span, l1_loss, masked_mean, span_intersection


def word_union_loss(word_spans: Tensor, word_mask: Tensor, spans: Tensor, sentence_mask: Tensor) -> Tensor:
    """Supp. eq. 6: L1 between ``[min start, max end]`` of each sentence's word spans and its span.

    Args:
        word_spans: ``(B, N_S, M, 2)`` word predictions.
        word_mask: ``(B, N_S, M)`` real words.
        spans: ``(B, N_S, 2)`` sentence ground truth.
        sentence_mask: ``(B, N_S)`` real sentences.
    """
    valid = sentence_mask & word_mask.any(dim=-1)
    union = torch.where(valid[..., None], hull_span(word_spans, word_mask), spans)
    return l1_loss(union, spans, valid)


def word_subset_loss(word_spans: Tensor, word_mask: Tensor, spans: Tensor, sentence_mask: Tensor) -> Tensor:
    """Supp. eq. 7: ``1 - mean_i mean_j |word_ij ∩ gt_i| / |word_ij|`` (same arguments as the union loss).

    A word span's length is clamped to ``EPS`` below, so a point span gives a ratio in ``[0, 1]``.
    """
    intersection = span_intersection(word_spans, spans[:, :, None, :])
    length = (word_spans[..., 1] - word_spans[..., 0]).clamp_min(EPS)
    per_sentence = masked_mean(intersection / length, word_mask, dim=-1)
    return masked_mean(1.0 - per_sentence, sentence_mask & word_mask.any(dim=-1))
