"""Video and text feature encoders (Section 3.2): projection, positions, self-attention layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from higround.models.layers import AttentionLayer, sinusoidal_positions


class FeatureEncoder(nn.Module):
    """``Linear(in_dim, D)`` + optional sinusoidal positions + ``num_layers`` self-attention layers.

    Used for the clips (``F^V``, from C3D features) and for the words (``F^W``, from word vectors).
    Positions are the token's index in its sequence: the clip index, or the word's index in the
    whole paragraph (which also orders the sentences).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        positional_encoding: bool,
    ) -> None:
        """An encoder from ``in_dim`` inputs to ``dim`` channels."""
        super().__init__()
        self.project = nn.Linear(in_dim, dim)
        self.positional_encoding = positional_encoding
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            AttentionLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        # The position table of the last input length (clips: N^V, the same every batch). Rebuilding
        # it cost ~1 % of an inference at N^V = 256. Only an exact-length table is reused, never a
        # slice of a longer one: sin's vectorised and scalar (tail) kernels may differ in the last
        # bit. A plain attribute, not a buffer: it stays out of checkpoints and of the buffers DDP
        # broadcasts (whose shapes must agree across ranks).
        self._positions: Tensor | None = None

    def positions(self, length: int, dim: int, device: torch.device) -> Tensor:
        """``sinusoidal_positions(length, dim, device)``, computed once per new ``(length, dim, device)``."""
        table = self._positions
        if table is None or table.shape != (length, dim) or table.device != device:
            with torch.inference_mode(False):  # a normal tensor, usable by later training forwards
                table = sinusoidal_positions(length, dim, device)
            self._positions = table
        return table

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Encode ``(B, L, in_dim)`` inputs with ``(B, L)`` real-token ``mask`` into ``(B, L, D)``."""
        h = self.project(x)
        if self.positional_encoding:
            h = h + self.positions(h.shape[1], h.shape[2], h.device)
        h = self.drop(h)
        for layer in self.layers:
            h = layer(h, mask)
        return h
