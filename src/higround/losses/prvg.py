"""PRVG's training objective (official ``final_loss``, ``lib/models/loss.py`` of MCG-NJU/PRVG):
the attention loss that guides the decoder's cross-attention onto the annotated clips, L1 on the
boundaries and the IoU loss, as vectorised functions of the whole paragraph batch and the
:class:`PRVGLoss` module that weighs them (official weights 1, LAMBDA = 2, BETA = 2).

Every term is a mean over all real sentences of the batch pooled (upstream sums over the sentences
of every video and divides by their total count), so a padded sentence never counts.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.losses.span import EPS, giou_loss, l1_loss, masked_mean
from higround.models.prvg.config import PRVGConfig
from higround.models.prvg.model import PRVGOutput
from higround.models.prvg.regression import ordered_spans

# Added to the attention mass inside the log of the attention loss (official ``attention_loss``).
ATTENTION_EPS = 1e-10


def clips_inside(spans: Tensor, video_mask: Tensor) -> Tensor:
    """``(B, N_S, N_V)`` bool: the clips of each row inside each sentence's ground-truth span.

    The official rule (``attention_loss``): with ``T_b`` real clips, clip ``k`` is inside when its
    start time ``k / T_b`` satisfies ``s <= k / T_b <= e``, both ends inclusive. Padded clips never
    are. A span between two clip starts has no clip inside (its attention loss is then the constant
    ``-log2(1e-10)``, as upstream).

    Args:
        spans: ``(B, N_S, 2)`` normalised ground-truth spans.
        video_mask: ``(B, N_V)`` real clips (a prefix of each row).
    """
    clips = video_mask.sum(dim=1).clamp_min(1).to(spans.dtype)  # (B,)
    index = torch.arange(video_mask.shape[1], device=spans.device, dtype=spans.dtype)
    start_time = (index[None, :] / clips[:, None])[:, None, :]  # (B, 1, N_V)
    inside = (spans[..., :1] <= start_time) & (start_time <= spans[..., 1:])
    return inside & video_mask[:, None, :]


def attention_loss(attention: Tensor, inside: Tensor, mask: Tensor) -> Tensor:
    """``L_att = -log2(sum_k a_k [k inside] + 1e-10)``, averaged over the sentences where ``mask``.

    Args:
        attention: ``(B, N_S, N_V)`` head-averaged cross-attention of each sentence over the clips.
        inside: ``(B, N_S, N_V)`` bool, :func:`clips_inside`.
        mask: ``(B, N_S)`` real sentences.
    """
    mass = (attention * inside.to(attention.dtype)).sum(dim=-1)
    return masked_mean(-torch.log2(mass + ATTENTION_EPS), mask)


def boundary_iou(pred: Tensor, target: Tensor) -> Tensor:
    """``inter / hull`` of raw ``(..., 2)`` pairs, upstream's "giou" (``giou_loss``, and its
    evaluation's ``iou``): ``inter = max(0, min(e, e') - max(s, s'))`` over
    ``hull = max(0, max(e, e') - min(s, s'))``.

    For ordered spans this is the IoU (two overlapping spans' union is their hull; disjoint ones
    overlap 0). A reversed prediction (``s > e``) overlaps nothing: IoU 0, no gradient, left to the
    L1 term to turn around.
    """
    inter = (pred[..., 1].minimum(target[..., 1]) - pred[..., 0].maximum(target[..., 0])).clamp_min(0.0)
    hull = (pred[..., 1].maximum(target[..., 1]) - pred[..., 0].minimum(target[..., 0])).clamp_min(0.0)
    return inter / hull.clamp_min(EPS)


def iou_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``1 - IoU`` (:func:`boundary_iou`) averaged over the spans where ``mask`` (``pred.shape[:-1]``)."""
    return masked_mean(1.0 - boundary_iou(pred, target), mask)


class PRVGLoss(nn.Module):
    """``w_att L_att + w_l1 L1 + w_iou (1 - IoU)``, official weights 1, 2, 2.

    Terms: ``"attention"`` (when ``config.attention_loss``), ``"l1"`` (``|s - s'| + |e - e'|`` on the
    raw pair), ``"iou"`` (on the raw pair), or ``"giou"`` instead with ``generalized_iou`` (GIoU of
    the ordered span, the answer the family gives), and ``"total"``, their sum weighted by
    :meth:`PRVGConfig.weight`.
    """

    def __init__(self, config: PRVGConfig) -> None:
        """The objective of the model built from ``config``."""
        super().__init__()
        self.config = config

    def forward(self, output: PRVGOutput, batch: ParagraphBatch) -> dict[str, Tensor]:
        """Every active term (unweighted) and ``"total"``, their weighted sum."""
        config = self.config
        spans, mask = batch.spans, batch.sentence_mask
        pred = output.boundaries
        terms: dict[str, Tensor] = {}
        if config.attention_loss:
            terms["attention"] = attention_loss(output.attention, clips_inside(spans, batch.video_mask), mask)
        terms["l1"] = l1_loss(pred, spans, mask)
        if config.generalized_iou:
            terms["giou"] = giou_loss(ordered_spans(pred), spans, mask)
        else:
            terms["iou"] = iou_loss(pred, spans, mask)
        total = sum((config.weight(name) * value for name, value in terms.items()), spans.new_zeros(()))
        return {**terms, "total": total}
