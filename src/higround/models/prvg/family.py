"""PRVG as a model family (:mod:`higround.models.family`): a paragraph per row, one regressed span
per sentence."""

from __future__ import annotations

from torch import Tensor

from higround.data.batch import ParagraphBatch
from higround.losses.prvg import PRVGLoss
from higround.models.family import GroundingPredictions, ModelFamily
from higround.models.prvg.config import PRVGConfig
from higround.models.prvg.model import PRVG, PRVGOutput
from higround.models.prvg.regression import ordered_spans


def build_model(config: PRVGConfig, word_vectors: Tensor) -> PRVG:
    """PRVG of ``config`` with ``word_vectors`` as its initial embedding."""
    return PRVG(config, word_vectors)


def build_loss(config: PRVGConfig) -> PRVGLoss:
    """Attention loss + L1 + IoU with the weights of ``config``."""
    return PRVGLoss(config)


def predictions(output: PRVGOutput, batch: ParagraphBatch) -> GroundingPredictions:
    """The ordered regressed span as the one ranked span of each sentence (``(B, N_S, 1, 2)``); no
    scores: PRVG regresses, it ranks nothing."""
    del batch  # every sentence's span is in the output
    return GroundingPredictions(spans=ordered_spans(output.boundaries)[:, :, None])


PRVG_FAMILY: ModelFamily[PRVGConfig, PRVGOutput] = ModelFamily(
    name="prvg",
    title="PRVG",
    config_class=PRVGConfig,
    build_model=build_model,
    build_loss=build_loss,
    predictions=predictions,
)
