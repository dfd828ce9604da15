"""Moment-DETR as a model family (:mod:`higround.models.family`): ``Q`` scored spans per sentence and a
saliency score per clip."""

from __future__ import annotations

from torch import Tensor

from higround.data.dataset import SENTENCE
from higround.losses.detr import DETRLoss
from higround.models.detr import DETROutput, detr_predictions
from higround.models.family import ModelFamily
from higround.models.moment_detr.config import MomentDETRConfig
from higround.models.moment_detr.model import MomentDETR


def build_model(config: MomentDETRConfig, word_vectors: Tensor) -> MomentDETR:
    """Moment-DETR of ``config`` with ``word_vectors`` as its word embedding."""
    return MomentDETR(config, word_vectors)


def build_loss(config: MomentDETRConfig) -> DETRLoss:
    """Matched span L1 + GIoU, class CE, on every decoder layer, and the saliency hinge."""
    return DETRLoss(config)


MOMENT_DETR_FAMILY: ModelFamily[MomentDETRConfig, DETROutput] = ModelFamily(
    name="moment_detr",
    title="Moment-DETR",
    config_class=MomentDETRConfig,
    build_model=build_model,
    build_loss=build_loss,
    predictions=detr_predictions,
    unit=SENTENCE,
)
