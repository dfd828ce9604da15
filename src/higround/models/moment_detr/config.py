"""Every Moment-DETR hyper-parameter, serialisable for checkpoints (defaults: the official
QVHighlights recipe, jayleicn/moment_detr ``moment_detr/config.py``; docs/detr.md cites every one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from higround.models.detr import DEFAULT_WEIGHTS, DETRConfig

# Names of the loss terms of :class:`higround.losses.detr.DETRLoss` (besides "total").
LOSS_TERMS = tuple(DEFAULT_WEIGHTS)


@dataclass
class MomentDETRConfig(DETRConfig):
    """Moment-DETR (Lei, Berg and Bansal, NeurIPS 2021): the fields of :class:`DETRConfig`, with
    its defaults (ReLU feed-forward blocks, 2 + 2 layers, 10 queries)."""

    LABEL: ClassVar[str] = "moment_detr config"
    LOSS_TERMS: ClassVar[tuple[str, ...]] = LOSS_TERMS
