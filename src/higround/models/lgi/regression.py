"""LGI's temporal attention based regression (paper 3.4, eq. 13-15; ``AttentionLocRegressor``), and
the attentive pooling it shares with the phrase aggregation of the interaction module."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from higround.models.layers import MLP
from higround.models.lgi.query_encoder import masked_softmax


class AttentivePooling(nn.Module):
    """Self-attentive pooling ``a = softmax(w^T tanh(W f_i))``, ``f = sum_i a_i f_i``.

    Both maps have no bias, as the official ``AttentivePooling``. With ``out_dim`` the pooled vector
    goes through one more linear layer (the official ``use_embedding``).
    """

    def __init__(self, dim: int, attention_dim: int, out_dim: int | None = None) -> None:
        """Pool ``dim``-wide items through ``attention_dim`` hidden units."""
        super().__init__()
        self.key = nn.Linear(dim, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1, bias=False)
        self.embed = nn.Linear(dim, out_dim) if out_dim is not None else None

    def weights(self, items: Tensor, mask: Tensor | None = None) -> Tensor:
        """``(B, A)`` attention over the ``(B, A, dim)`` items (0 where ``mask`` is False)."""
        logits = self.score(torch.tanh(self.key(items))).squeeze(-1)
        return logits.softmax(dim=-1) if mask is None else masked_softmax(logits, mask)

    def forward(self, items: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The pooled ``(B, dim or out_dim)`` vector and the ``(B, A)`` attention."""
        weights = self.weights(items, mask)
        pooled = torch.einsum("ba,bad->bd", weights, items)
        return (pooled if self.embed is None else self.embed(pooled)), weights


class BoundaryRegressor(nn.Module):
    """Temporal attentive pooling of the segments, then an MLP to ``(t_s, t_e)`` (eq. 13-15).

    ``o = softmax_t(w^T tanh(W r_t))`` (the regression attention that the TAG loss guides),
    ``v = W_e sum_t o_t r_t``, ``(t_s, t_e) = act(W_2 ReLU(W_1 v))`` with ``act`` ReLU (official
    Charades-STA) or Sigmoid (ActivityNet): raw normalised boundaries, not clamped nor ordered.
    """

    def __init__(self, dim: int, attention_dim: int, hidden: int, activation: str) -> None:
        """Regress from ``dim``-wide segments through ``hidden`` units; ``activation``: relu|sigmoid."""
        super().__init__()
        self.pool = AttentivePooling(dim, attention_dim, out_dim=dim)
        self.mlp = MLP(dim, hidden, 2, num_layers=2)
        self.activation: nn.Module = nn.ReLU() if activation == "relu" else nn.Sigmoid()

    def forward(self, segments: Tensor, video_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, D)`` segments to ``(B, 2)`` boundaries and the ``(B, T)`` temporal attention."""
        pooled, attention = self.pool(segments, video_mask)
        return self.activation(self.mlp(pooled)), attention
