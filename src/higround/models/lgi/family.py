"""LGI as a model family (:mod:`higround.models.family`): one regressed span per sentence."""

from __future__ import annotations

import torch
from torch import Tensor

from higround.data.batch import ParagraphBatch
from higround.data.dataset import SENTENCE
from higround.losses.lgi import LGILoss
from higround.models.family import GroundingPredictions, ModelFamily
from higround.models.lgi.config import LGIConfig
from higround.models.lgi.model import LGI, LGIOutput


def build_model(config: LGIConfig, word_vectors: Tensor) -> LGI:
    """LGI of ``config`` with ``word_vectors`` as its initial embedding."""
    return LGI(config, word_vectors)


def build_loss(config: LGIConfig) -> LGILoss:
    """Boundary SmoothL1 + TAG + DQA with the switches and weights of ``config``."""
    return LGILoss(config)


def ordered_spans(boundaries: Tensor) -> Tensor:
    """``(..., 2)`` raw ``(t_s, t_e)`` to ordered spans inside ``[0, 1]``.

    A ReLU head can regress past the video's end or an end before its start (the official code
    scores such raw values); the answer is ``[min, max]`` of the two, clamped to the video.
    """
    low, high = boundaries.min(dim=-1).values, boundaries.max(dim=-1).values
    return torch.stack([low, high], dim=-1).clamp(0.0, 1.0)


def predictions(output: LGIOutput, batch: ParagraphBatch) -> GroundingPredictions:
    """The regressed span as the one ranked span of the row's sentence (``(B, 1, 1, 2)``); no
    scores: LGI regresses, it ranks nothing."""
    return GroundingPredictions(spans=ordered_spans(output.boundaries)[:, None, None])


LGI_FAMILY: ModelFamily[LGIConfig, LGIOutput] = ModelFamily(
    name="lgi",
    title="LGI",
    config_class=LGIConfig,
    build_model=build_model,
    build_loss=build_loss,
    predictions=predictions,
    unit=SENTENCE,
)
