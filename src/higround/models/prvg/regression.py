"""PRVG's parallel regression head: one ``(start, end)`` per decoded sentence, all sentences at once
(official ``bbox_embed = MLP(d, d, 2, 3)`` and ``.sigmoid()``, ``lib/models/prvg.py``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from higround.models.layers import MLP


class RegressionHead(nn.Module):
    """``(s, e) = sigmoid(MLP(y))``: ``num_layers`` linear layers with ReLU between them (no
    dropout), then a sigmoid, giving a normalised pair per sentence.

    Nothing makes ``s <= e``, as upstream: the loss reads the raw pair, the family's predictions
    order it (docs/prvg.md, "Spans whose start is after their end").
    """

    def __init__(self, dim: int, num_layers: int) -> None:
        """A head on ``dim``-wide decoded sentences."""
        super().__init__()
        self.mlp = MLP(dim, dim, 2, num_layers=num_layers)

    def forward(self, decoded: Tensor) -> Tensor:
        """``(..., d)`` decoded sentences to ``(..., 2)`` raw ``(s, e)`` in ``(0, 1)``."""
        return torch.sigmoid(self.mlp(decoded))


def ordered_spans(boundaries: Tensor) -> Tensor:
    """``(..., 2)`` raw ``(s, e)`` to ``[min, max]``: the span between the two regressed boundaries.

    The sigmoid keeps both inside ``[0, 1]``, but nothing orders them; upstream scores the raw pair,
    where a reversed one overlaps nothing (IoU 0). The family answers this always valid span.
    """
    return boundaries.sort(dim=-1).values
