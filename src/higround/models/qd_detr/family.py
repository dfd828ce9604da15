"""QD-DETR as a model family (:mod:`higround.models.family`): ``Q`` scored spans per sentence and a
saliency score per clip."""

from __future__ import annotations

from torch import Tensor

from higround.data.dataset import SENTENCE
from higround.losses.detr import QDDETRLoss
from higround.models.detr import DETROutput, detr_predictions
from higround.models.family import ModelFamily
from higround.models.qd_detr.config import QDDETRConfig
from higround.models.qd_detr.model import QDDETR


def build_model(config: QDDETRConfig, word_vectors: Tensor) -> QDDETR:
    """QD-DETR of ``config`` with ``word_vectors`` as its word embedding."""
    return QDDETR(config, word_vectors)


def build_loss(config: QDDETRConfig) -> QDDETRLoss:
    """Moment-DETR's objective plus the negative-pair and rank-contrastive saliency terms."""
    return QDDETRLoss(config)


QD_DETR_FAMILY: ModelFamily[QDDETRConfig, DETROutput] = ModelFamily(
    name="qd_detr",
    title="QD-DETR",
    config_class=QDDETRConfig,
    build_model=build_model,
    build_loss=build_loss,
    predictions=detr_predictions,
    unit=SENTENCE,
)
