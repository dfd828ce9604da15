"""HSCNet as a model family (:mod:`higround.models.family`): one span per sentence, three levels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from higround.data.batch import ParagraphBatch
from higround.losses.hscnet import HSCNetLoss
from higround.models.family import GroundingPredictions, ModelFamily
from higround.models.hscnet.config import HSCNetConfig
from higround.models.hscnet.model import HSCNet, HSCNetOutput


def build_model(config: HSCNetConfig, word_vectors: Tensor) -> HSCNet:
    """HSCNet of ``config`` with ``word_vectors`` as its initial embedding."""
    return HSCNet(config, word_vectors)


def build_loss(config: HSCNetConfig) -> HSCNetLoss:
    """eq. 11 with the switches and weights of ``config``."""
    return HSCNetLoss(config)


# The smallest D at which a bf16-autocast training step beat float32 on a CPU with AVX512-BF16
# (benchmarks/hscnet_profile.py over D, docs/benchmarks.md); below it the casts cost more than the
# bf16 matmuls save (the procedural recipe, D = 64: 45-50 s a run against 34-42 s in fp32).
CPU_BF16_MIN_HIDDEN = 128


def cpu_bf16(model: Mapping[str, Any]) -> bool:
    """Whether ``trainer.precision: auto`` trains a ``model`` section in bf16-mixed on a CPU with
    BF16 instructions: from ``hidden_dim`` :data:`CPU_BF16_MIN_HIDDEN` up, where it is faster; its
    accuracy held within one std of float32 over 3 seeds on the procedural benchmark
    (docs/ablation.md, "Speed settings")."""
    return int(model["hidden_dim"]) >= CPU_BF16_MIN_HIDDEN


def predictions(output: HSCNetOutput, batch: ParagraphBatch) -> GroundingPredictions:
    """The final span as the one ranked span (no scores: HSCNet regresses, it ranks nothing), with
    the sentence decoder's span, and the paragraph's and the words' where those levels are on."""
    return GroundingPredictions(
        spans=output.spans.unsqueeze(2),
        sentence_spans=output.sentence_spans,
        paragraph_span=output.paragraph_span,
        word_spans=output.word_spans,
        word_span_mask=output.word_span_mask,
    )


HSCNET_FAMILY: ModelFamily[HSCNetConfig, HSCNetOutput] = ModelFamily(
    name="hscnet",
    title="HSCNet",
    config_class=HSCNetConfig,
    build_model=build_model,
    build_loss=build_loss,
    predictions=predictions,
    cpu_bf16=cpu_bf16,
)
