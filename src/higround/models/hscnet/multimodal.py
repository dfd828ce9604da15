"""HSCNet's multi-modal self-attention layer (Section 3.3, eq. 1-2), used at every level."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from higround.models.layers import MLP, MultiHeadAttention


class MultiModalLayer(nn.Module):
    """One layer ``k -> k+1`` of a visual-textual encoder.

    ``M = Linear([V; Q])`` (token-axis concatenation, one projection shared by both modalities),
    ``H = LayerNorm(M + MHA_cos(M))`` where the attention scores are the cosine similarities of
    ``phi(M_i)`` and ``rho(M_j)`` divided by the learned sharpness sigma (eq. 1) and the values are
    ``psi(M)`` (eq. 2); then two unshared MLPs, one per modality, give
    ``V' = LayerNorm(H_V + MLP_V(H_V))`` and ``Q' = LayerNorm(H_Q + MLP_Q(H_Q))``.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, sharpness: float) -> None:
        """A layer of width ``dim``; ``sharpness`` is sigma's initial value."""
        super().__init__()
        self.project = nn.Linear(dim, dim)
        self.attention = MultiHeadAttention(dim, num_heads, dropout, cosine=True, sharpness=sharpness)
        self.norm = nn.LayerNorm(dim)
        self.video_mlp = MLP(dim, ffn_dim, dim, dropout=dropout)
        self.text_mlp = MLP(dim, ffn_dim, dim, dropout=dropout)
        self.video_norm = nn.LayerNorm(dim)
        self.text_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, video: Tensor, text: Tensor, video_mask: Tensor, text_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Update ``(B, N_V, D)`` clips and ``(B, N_T, D)`` text tokens jointly; returns ``(V, Q)``."""
        m = self.project(torch.cat([video, text], dim=1))
        mask = torch.cat([video_mask, text_mask], dim=1)
        h = self.norm(m + self.drop(self.attention(m, m, m, key_mask=mask)))
        h_video, h_text = h.split([video.shape[1], text.shape[1]], dim=1)
        video = self.video_norm(h_video + self.drop(self.video_mlp(h_video)))
        text = self.text_norm(h_text + self.drop(self.text_mlp(h_text)))
        return video, text
