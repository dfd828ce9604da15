"""2D-TAN's training objective: binary cross-entropy against rescaled IoU targets (Zhang et al.,
AAAI 2020, eq. 3; the released ``bce_rescale_loss``, microsoft/2D-TAN ``lib/models/loss.py``), plus
the terms of the optional Sscs branch (Ding et al., ICCV 2021, eq. 1)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.losses.span import EPS, span_iou_terms
from higround.models.tan2d.config import Tan2DConfig
from higround.models.tan2d.model import Tan2DOutput


def cell_iou(cell_spans: Tensor, target: Tensor) -> Tensor:
    """``(B, C)`` temporal IoU of every cell span ``(C, 2)`` with each row's target span ``(B, 2)``."""
    intersection, union, _ = span_iou_terms(cell_spans[None], target[:, None])
    return intersection / union.clamp_min(EPS)


def rescaled_targets(iou: Tensor, min_iou: float, max_iou: float) -> Tensor:
    """``y = clip((IoU - t_min) / (t_max - t_min), 0, 1)``: 0 up to ``t_min``, 1 from ``t_max``."""
    return ((iou - min_iou) / (max_iou - min_iou)).clamp(0.0, 1.0)


def masked_bce(logits: Tensor, targets: Tensor, rows: Tensor) -> Tensor:
    """BCE of ``sigmoid(logits)`` against ``targets`` ``(B, C)``, summed over the cells of the real
    ``rows`` ``(B,)`` and divided by their number of cells (the released ``sum(loss) / sum(mask)``)."""
    weight = rows.to(logits.dtype)[:, None].expand_as(logits)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


class Tan2DLoss(nn.Module):
    """``bce``: BCE over the valid cells of every sentence's map (``L^vg`` of Sscs eq. 1), and the
    Sscs terms the model put in its output (``sscs_contrast``, ``sscs_caption``: training only, with
    an ``sscs`` section); ``total`` is their sum weighted by ``loss_weights`` (Sscs's lambda_1 and
    lambda_2 for its terms). In eval mode the output holds no Sscs term, so ``total`` (the
    validation loss) is the weighted BCE alone."""

    def __init__(self, config: Tan2DConfig) -> None:
        """The objective of the model built from ``config`` (``min_iou``, ``max_iou``, weights)."""
        super().__init__()
        self.config = config

    def forward(self, output: Tan2DOutput, batch: ParagraphBatch) -> dict[str, Tensor]:
        """``{"bce": ..., ["sscs_contrast": ..., "sscs_caption": ...,] "total": ...}`` for the one
        sentence of each row of ``batch`` (terms unweighted, ``total`` weighted)."""
        config = self.config
        targets = rescaled_targets(
            cell_iou(output.cell_spans, batch.spans[:, 0]), config.min_iou, config.max_iou
        )
        terms = {"bce": masked_bce(output.cell_logits, targets, batch.sentence_mask[:, 0]), **output.sscs}
        total = sum((config.weight(name) * value for name, value in terms.items()), targets.new_zeros(()))
        return {**terms, "total": total}
