"""2D-TAN as a model family (:mod:`higround.models.family`): one sentence per row, the top-K valid
cells of its score map after non-maximum suppression as ranked spans with their scores."""

from __future__ import annotations

import torch
from torch import Tensor

from higround.data.batch import ParagraphBatch
from higround.data.dataset import SENTENCE
from higround.losses.span import EPS, span_iou_terms
from higround.losses.tan2d import Tan2DLoss
from higround.models.family import GroundingPredictions, ModelFamily
from higround.models.tan2d.config import Tan2DConfig
from higround.models.tan2d.model import Tan2D, Tan2DOutput


def build_model(config: Tan2DConfig, word_vectors: Tensor) -> Tan2D:
    """2D-TAN of ``config`` with ``word_vectors`` as its initial embedding."""
    return Tan2D(config, word_vectors)


def build_loss(config: Tan2DConfig) -> Tan2DLoss:
    """The rescaled-IoU BCE of ``config``."""
    return Tan2DLoss(config)


def rank_cells(scores: Tensor, spans: Tensor, top_k: int, threshold: float) -> tuple[Tensor, Tensor]:
    """Greedy NMS over the cells of every row, best score first, keeping ``top_k``.

    Args:
        scores: ``(B, C)`` one score per cell.
        spans: ``(C, 2)`` the cells' spans (shared by every row).
        top_k: ``K``, spans kept per row.
        threshold: a cell whose IoU with a kept, better cell is ``> threshold`` is suppressed (the
            released ``nms`` keeps ``IoU <= thresh``, microsoft/2D-TAN ``lib/core/eval.py``).

    Returns:
        ``(B, K, 2)`` spans and ``(B, K)`` scores, best first. A row with fewer than ``K`` survivors is
        padded with its best span at score 0 (below every sigmoid score), so the ``K`` ranks always
        exist and the scores never increase. The loop runs over the ``K`` ranks only: each step keeps
        the best surviving cell of every row at once and suppresses its neighbours.
    """
    ordered_scores, order = scores.sort(dim=1, descending=True)
    ordered = spans[order]  # (B, C, 2)
    alive = torch.ones_like(ordered_scores, dtype=torch.bool)
    rows = torch.arange(scores.shape[0], device=scores.device)
    kept_spans, kept_scores = [], []
    for _ in range(top_k):
        found = alive.any(dim=1)
        first = alive.int().argmax(dim=1)  # the first (best) surviving cell of each row
        span = ordered[rows, first]  # (B, 2)
        kept_spans.append(torch.where(found[:, None], span, ordered[:, 0]))
        kept_scores.append(torch.where(found, ordered_scores[rows, first], 0.0))
        intersection, union, _ = span_iou_terms(ordered, span[:, None])
        alive = alive & ~(intersection / union.clamp_min(EPS) > threshold)
        alive[rows, first] = False
    return torch.stack(kept_spans, dim=1), torch.stack(kept_scores, dim=1)


def predictions(output: Tan2DOutput, batch: ParagraphBatch) -> GroundingPredictions:
    """The ``top_k`` cells after NMS at ``nms_threshold`` (the model's config) as ranked spans
    ``(B, 1, K, 2)`` with their sigmoid scores ``(B, 1, K)``."""
    del batch  # every row is one sentence: its map says all
    spans, scores = rank_cells(output.scores, output.cell_spans, output.top_k, output.nms_threshold)
    return GroundingPredictions(spans=spans[:, None], scores=scores[:, None])


TAN2D_FAMILY: ModelFamily[Tan2DConfig, Tan2DOutput] = ModelFamily(
    name="tan2d",
    title="2D-TAN",
    config_class=Tan2DConfig,
    build_model=build_model,
    build_loss=build_loss,
    predictions=predictions,
    unit=SENTENCE,
)
