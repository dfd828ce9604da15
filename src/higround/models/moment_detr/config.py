"""Every Moment-DETR hyper-parameter, serialisable for checkpoints (defaults: the official
QVHighlights recipe, jayleicn/moment_detr ``moment_detr/config.py``; docs/detr.md cites every one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from higround.models.detr import DEFAULT_WEIGHTS, SHINE_LOSS_TERMS, DETRConfig

# Names of the loss terms of :class:`higround.losses.detr.DETRLoss` (besides "total"): the base's,
# then SHINE's L_neg, L_cr and L_fr (returned in training with a ``shine`` section).
LOSS_TERMS = (*DEFAULT_WEIGHTS, *SHINE_LOSS_TERMS)


@dataclass
class MomentDETRConfig(DETRConfig):
    """Moment-DETR (Lei, Berg and Bansal, NeurIPS 2021): the fields of :class:`DETRConfig`, with
    its defaults (ReLU feed-forward blocks, 2 + 2 layers, 10 queries); with ``shine`` it also trains
    on SHINE's negatives (the easy negative is ``shine.easy_negative``'s)."""

    LABEL: ClassVar[str] = "moment_detr config"
    LOSS_TERMS: ClassVar[tuple[str, ...]] = LOSS_TERMS
