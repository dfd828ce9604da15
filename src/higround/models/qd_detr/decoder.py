"""QD-DETR's anchor decoder (DAB-DETR style; wjun0830/QD-DETR ``qd_detr/transformer.py``
``TransformerDecoder`` and ``TransformerDecoderLayer``).

Each moment query is a learned 2-d anchor ``(c, w)`` (``Embedding(Q, 2)``, sigmoid). Per layer:
the anchor's sine embedding (``d/2`` channels for the centre, ``d/2`` for the width) gives the
query position ``P = MLP(sine)``; the sine query is scaled by ``MLP(state)`` after the first layer
(``cond_elewise``) and, width-modulated, by ``sigmoid(MLP(state)) / w``; the cross-attention
compares content with content and the sine query with the clips' positions, per head, on
concatenated ``2d/h`` channels (conditional DETR). After every layer but the last the anchor moves by
``sigmoid(MLP(state) + inverse_sigmoid(anchor))``, detached for the next layer's input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from higround.models.detr import AttentionBlock, FeedForwardBlock, inverse_sigmoid, sine_embedding
from higround.models.layers import MLP, attention_mask
from higround.models.qd_detr.config import QDDETRConfig


def anchor_sine(anchors: Tensor, dim: int) -> Tensor:
    """``(..., 2)`` anchors ``(c, w)`` to ``(..., dim)``: the sine embeddings of ``c`` and of ``w``,
    ``dim / 2`` channels each (``gen_sineembed_for_position``)."""
    return torch.cat(
        [sine_embedding(anchors[..., 0], dim // 2), sine_embedding(anchors[..., 1], dim // 2)], -1
    )


class ConditionalCrossAttention(nn.Module):
    """Cross-attention of conditional DETR: per head, ``[content; sine query] . [content; position]``.

    Queries ``[W_qc t (+ W_qp P, first layer); W_qs sine]`` and keys ``[W_kc m (+ W_kp p, first
    layer); W_kp p]`` are concatenated per head (``2d / h`` channels, scaled by ``(2d / h)^-1/2``),
    values ``W_v m`` (``d / h``), then the output projection.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, first: bool) -> None:
        """A cross-attention of width ``dim``; ``first``: the first layer, which adds the positions."""
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query_content = nn.Linear(dim, dim)
        self.query_pos = nn.Linear(dim, dim) if first else None  # keep_query_pos false
        self.query_sine = nn.Linear(dim, dim)
        self.key_content = nn.Linear(dim, dim)
        self.key_pos = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _heads(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(
        self,
        target: Tensor,
        query_pos: Tensor,
        query_sine: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        memory_mask: Tensor,
    ) -> Tensor:
        """``(B, Q, d)`` query states attend over the ``(B, N, d)`` memory (``(B, N)`` real keys)."""
        query, key, key_pos = self.query_content(target), self.key_content(memory), self.key_pos(memory_pos)
        if self.query_pos is not None:
            query, key = query + self.query_pos(query_pos), key + key_pos
        q = torch.cat([self._heads(query), self._heads(self.query_sine(query_sine))], dim=-1)
        k = torch.cat([self._heads(key), self._heads(key_pos)], dim=-1)
        out = F.scaled_dot_product_attention(
            q,
            k,
            self._heads(self.value(memory)),
            attn_mask=attention_mask(memory_mask, None),
            dropout_p=self.dropout if self.training else 0.0,
        )
        batch, _, length, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(batch, length, -1))


class AnchorDecoderLayer(nn.Module):
    """Self-attention of the queries (positions ``P`` projected onto queries and keys), conditional
    cross-attention, FFN; post-norm."""

    def __init__(
        self, dim: int, num_heads: int, ffn_dim: int, dropout: float, activation: str, first: bool
    ) -> None:
        """A layer of width ``dim``."""
        super().__init__()
        # DAB's self-attention projects content and position apart (W_c t + W_p P); here the
        # attention's own projection reads t + W'_p P, the same family of maps.
        self.self_query_pos = nn.Linear(dim, dim)
        self.self_key_pos = nn.Linear(dim, dim)
        self.self_attention = AttentionBlock(dim, num_heads, dropout)
        self.cross_attention = ConditionalCrossAttention(dim, num_heads, dropout, first)
        self.cross_drop = nn.Dropout(dropout)
        self.cross_norm = nn.LayerNorm(dim)
        self.ffn = FeedForwardBlock(dim, ffn_dim, dropout, activation)

    def forward(
        self,
        target: Tensor,
        query_pos: Tensor,
        query_sine: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        memory_mask: Tensor,
    ) -> Tensor:
        """Update ``(B, Q, d)`` query states from the ``(B, N, d)`` clip memory."""
        target = self.self_attention(
            target,
            target + self.self_query_pos(query_pos),
            target + self.self_key_pos(query_pos),
            target,
            None,
        )
        attended = self.cross_attention(target, query_pos, query_sine, memory, memory_pos, memory_mask)
        return self.ffn(self.cross_norm(target + self.cross_drop(attended)))


class AnchorDecoder(nn.Module):
    """``decoder_layers`` anchor decoder layers with the anchor updates between them."""

    def __init__(self, config: QDDETRConfig) -> None:
        """The decoder of ``config`` (width, heads, layers, ``modulate_width``)."""
        super().__init__()
        dim = config.hidden_dim
        self.dim = dim
        self.layers = nn.ModuleList(
            AnchorDecoderLayer(
                dim, config.num_heads, config.ffn_dim, config.dropout, config.activation, i == 0
            )
            for i in range(config.decoder_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.position_head = MLP(dim, dim, dim, num_layers=2)  # ref_point_head
        self.query_scale = MLP(dim, dim, dim, num_layers=2)  # cond_elewise
        self.width_head = MLP(dim, dim, 1, num_layers=2) if config.modulate_width else None  # ref_anchor_head
        self.anchor_head = MLP(dim, dim, 2, num_layers=3)  # bbox_embed

    def forward(
        self, anchors: Tensor, memory: Tensor, memory_pos: Tensor, memory_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Decode ``(Q, 2)`` unsigmoided anchors against the ``(B, N, d)`` clip memory.

        Returns:
            ``(L, B, Q, d)`` every layer's normalised states and ``(L, B, Q, 2)`` the anchor each
            layer read (the first the learned one; later ones the previous layer's update, not
            detached, so the span loss of layer ``l + 1`` trains the update of layer ``l``).
        """
        reference = anchors.sigmoid()[None].expand(memory.shape[0], -1, -1)
        used = reference
        target = memory.new_zeros(*reference.shape[:2], self.dim)
        states, references = [], []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            sine = anchor_sine(reference, self.dim)
            query_pos = self.position_head(sine)
            if i > 0:
                sine = sine * self.query_scale(target)
            if self.width_head is not None:
                sine = sine * (self.width_head(target).sigmoid() / reference[..., 1:])
            target = layer(target, query_pos, sine, memory, memory_pos, memory_mask)
            states.append(self.norm(target))
            references.append(used)
            if i < last:
                used = (self.anchor_head(target) + inverse_sigmoid(reference)).sigmoid()
                reference = used.detach()
        return torch.stack(states), torch.stack(references)
