"""PRVG's language-modulated decoder, the LMD: the sentences of a paragraph are the decoder's
queries and read the encoded clips by cross-attention (official ``LMD`` / ``LMDLayer``,
``lib/models/parallel_regression_modules/parallel_regression.py``).

The official layer also builds a self-attention over the queries (``LMDLayer.self_attn``, with its
``norm1``) that ``forward`` never calls; the sentences already met in the sentence encoder. It is
not built here (docs/prvg.md, "Parameters").

The attention loss needs the cross-attention weights, which ``scaled_dot_product_attention`` does
not return. The decoder's cross-attention therefore computes them explicitly
(:class:`WeightedCrossAttention`): its score matrix is ``(B, h, N_S, N_V)`` with a handful of
sentences, as cheap as the fused kernel at these shapes and linear in ``N_V``. The encoders keep
SDPA (:class:`~higround.models.layers.AttentionLayer`).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from higround.models.layers import MLP


class WeightedCrossAttention(nn.Module):
    """Multi-head scaled dot-product attention that also returns its head-averaged weights.

    ``A_h = softmax(Q_h K_h^T / sqrt(d / h))`` over the real keys; the output is
    ``W_o [Drop(A_1) V_1; ...; Drop(A_h) V_h]`` as ``nn.MultiheadAttention(dropout=p)`` computes it;
    the weights returned are ``mean_h A_h`` *before* dropout (the attention distribution; upstream's
    ``nn.MultiheadAttention`` returns the dropped-out weights, see docs/prvg.md).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        """Attention of width ``dim`` over ``num_heads`` heads, weights dropped out with ``dropout``."""
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, memory: Tensor, memory_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, L_q, d)`` queries over ``(B, L_k, d)`` memory with ``(B, L_k)`` real keys.

        Returns:
            ``(B, L_q, d)`` outputs and ``(B, L_q, L_k)`` head-averaged weights, exactly 0 on padded
            keys (a row without any real key, padding only, is spread over every key instead of NaN).
        """
        q, k, v = (
            self._split(self.q_proj(query)),
            self._split(self.k_proj(memory)),
            self._split(self.v_proj(memory)),
        )
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, h, L_q, L_k)
        keys = memory_mask | ~memory_mask.any(dim=1, keepdim=True)
        weights = scores.masked_fill(~keys[:, None, None, :], float("-inf")).softmax(dim=-1)
        dropped = F.dropout(weights, self.dropout, self.training)
        out = (dropped @ v).transpose(1, 2).flatten(2)
        return self.out_proj(out), weights.mean(dim=1)


class DecoderLayer(nn.Module):
    """``y = LN(s + Drop(CrossAttn(s, v)))``, ``y = LN(y + Drop(W_2 Drop(ReLU(W_1 y))))``: the
    official ``LMDLayer.forward`` (``multihead_attn``, ``norm2``, ``linear1/2``, ``norm3``)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        """A post-norm cross-attention layer of width ``dim`` with an ``ffn_dim`` FFN."""
        super().__init__()
        self.attention = WeightedCrossAttention(dim, num_heads, dropout)
        self.ffn = MLP(dim, ffn_dim, dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, sentences: Tensor, clips: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, N_S, d)`` sentence queries over ``(B, N_V, d)`` clips; returns the updated queries
        and the ``(B, N_S, N_V)`` head-averaged cross-attention."""
        attended, weights = self.attention(sentences, clips, clip_mask)
        x = self.norm1(sentences + self.drop(attended))
        return self.norm2(x + self.drop(self.ffn(x))), weights


class LanguageModulatedDecoder(nn.Module):
    """``num_layers`` :class:`DecoderLayer` s, then a LayerNorm (the official ``LMD`` and its
    ``norm``). The sentences are the queries, as many as the paragraph has, all at once."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, num_layers: int) -> None:
        """A decoder of ``num_layers >= 1`` layers of width ``dim``."""
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, sentences: Tensor, clips: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The decoded ``(B, N_S, d)`` sentences and the last layer's ``(B, N_S, N_V)`` cross-attention
        averaged over heads (what the attention loss guides; the official code returns the last
        layer's too)."""
        x, weights = sentences, sentences.new_zeros(0)
        for layer in self.layers:
            x, weights = layer(x, clips, clip_mask)
        return self.norm(x), weights
