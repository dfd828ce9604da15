"""PRVG's encoder, the CRE: one transformer encoder over the clips and one over the sentences
(official ``ParallelRegression.visual_cre`` / ``text_cre`` built from ``CRELayer``,
``lib/models/parallel_regression_modules/parallel_regression.py``).

The two stacks never look at each other: the clips are contextualised among themselves (the memory
the decoder reads), the sentences among the other sentences of their paragraph (the decoder's
queries). Cross-modal interaction happens in the decoder only.
"""

from __future__ import annotations

from torch import Tensor, nn

from higround.models.layers import AttentionLayer


class RelationEncoder(nn.Module):
    """``num_layers`` post-norm self-attention layers, then a LayerNorm (the official ``CRE`` with
    its ``norm``).

    Each layer is :class:`~higround.models.layers.AttentionLayer`: ``x = LN(x + Drop(MHA(x)))``,
    ``x = LN(x + Drop(W_2 Drop(ReLU(W_1 x))))``, attention weights dropped out too, which is
    ``CRELayer`` (nn.MultiheadAttention with ``dropout``, ``dropout``/``dropout1``/``dropout2``,
    ``norm1``/``norm2``). Padded tokens are hidden as keys; their own rows are never read.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, num_layers: int) -> None:
        """A stack of width ``dim``; ``num_layers`` may be 0 (the final LayerNorm alone)."""
        super().__init__()
        self.layers = nn.ModuleList(
            AttentionLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Contextualise ``(B, L, d)`` tokens of which ``mask`` ``(B, L)`` marks the real ones."""
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)
