"""HSE / FSE as a model family (:mod:`higround.models.family`) of the ``retrieval`` task: a video
with its whole paragraph per row, L2-normalised embeddings out."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.losses.hse import HSELoss
from higround.models.family import RETRIEVAL, GroundingPredictions, ModelFamily, RetrievalPredictions
from higround.models.hse.config import HSEConfig
from higround.models.hse.model import HSE, HSEOutput


def build_model(config: HSEConfig, word_vectors: Tensor) -> HSE:
    """HSE (or FSE) of ``config`` with ``word_vectors`` as its initial embedding."""
    return HSE(config, word_vectors)


def build_loss(config: HSEConfig) -> HSELoss:
    """The switched-on terms H-1 ... H-7 of ``config`` and their weighted sum."""
    return HSELoss(config)


def embeddings(output: HSEOutput, batch: ParagraphBatch) -> RetrievalPredictions:
    """The video and paragraph embeddings, L2-normalised (the cosine of CMHSE's ``cosine_sim``)."""
    del batch
    return RetrievalPredictions(
        videos=None if output.videos is None else F.normalize(output.videos, dim=-1),
        paragraphs=None if output.paragraphs is None else F.normalize(output.paragraphs, dim=-1),
    )


def no_spans(output: HSEOutput, batch: ParagraphBatch) -> GroundingPredictions:
    """HSE grounds nothing: a one-line error for any path that asks it for spans."""
    del output, batch
    raise ConfigError(
        "model family hse is a retrieval model: it embeds videos and paragraphs, it predicts no spans "
        "(use higround retrieve, or evaluate --checkpoint for its retrieval metrics)"
    )


HSE_FAMILY: ModelFamily[HSEConfig, HSEOutput] = ModelFamily(
    name="hse",
    title="HSE",
    config_class=HSEConfig,
    build_model=build_model,
    build_loss=build_loss,
    predictions=no_spans,
    task=RETRIEVAL,
    embeddings=embeddings,
)
