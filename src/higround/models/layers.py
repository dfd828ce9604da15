"""Blocks shared by every model family: multi-head attention on SDPA, a transformer layer, an MLP,
masked group pooling, a span head, and packed LSTMs (:func:`run_lstm`, :func:`encode_lstm`).

"Share the block, vary the head": a model builds its encoders from :class:`AttentionLayer`, its
predictors from :class:`MLP`, regresses normalised spans with :class:`SpanHead` and pools tokens
by group (words into sentences) with :func:`group_mean`; HSCNet's cosine-similarity attention
(its eq. 1-2) is the same :class:`MultiHeadAttention` with ``cosine=True``.

Masks are boolean and ``True`` for real entries, as in :class:`higround.data.batch.ParagraphBatch`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# Knee of the learned cosine-attention sharpness sigma (see MultiHeadAttention.sharpness): above it
# sigma = exp(log_sigma) exactly; below it sigma bends smoothly towards SHARPNESS_KNEE / 2, so the
# attention logits (cosine / sigma) stay within +-2 / SHARPNESS_KNEE and the gradient never vanishes.
SHARPNESS_KNEE = 0.01


def attention_mask(key_mask: Tensor | None, pair_mask: Tensor | None) -> Tensor | None:
    """The ``(B, 1, L_q or 1, L_k)`` boolean SDPA mask (True: may attend) of key and pair masks.

    Args:
        key_mask: ``(B, L_k)`` True for real keys.
        pair_mask: ``(B, L_q, L_k)`` True where query ``i`` may look at key ``j``.

    A query row left with no key (a padded query, or a padded sentence restricted to its own words)
    is opened to every key instead: SDPA would return NaN for it, and NaN survives being masked out
    later (``0 * nan``). Such rows are padding by construction, so their value is never used.
    """
    if key_mask is None and pair_mask is None:
        return None
    if pair_mask is None:
        assert key_mask is not None
        mask = key_mask[:, None, :]
    else:
        mask = pair_mask if key_mask is None else pair_mask & key_mask[:, None, :]
    mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask[:, None]


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al.) on ``torch.nn.functional.scaled_dot_product_attention``.

    With ``cosine=True`` the score of query ``i`` and key ``j`` is the cosine similarity of their
    per-head projections divided by a learned per-layer sharpness ``sigma`` (HSCNet eq. 1): queries
    and keys are L2-normalised per head, queries pre-scaled by ``1/sigma`` and SDPA runs with
    ``scale=1``. The query/key/value projections are HSCNet's ``phi``, ``rho`` and ``psi`` (eq. 2).
    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float = 0.0, cosine: bool = False, sharpness: float = 0.1
    ) -> None:
        """``dim`` channels split over ``num_heads``; ``sharpness`` is sigma's initial value (cosine)."""
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.cosine = cosine
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        # sigma is kept as its log so that it stays positive under gradient steps.
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sharpness))) if cosine else None

    @property
    def sharpness(self) -> Tensor | None:
        """The learned sigma of eq. 1 (``None`` for dot-product attention).

        ``e = exp(log_sigma)`` where ``e >= k`` (``k`` = :data:`SHARPNESS_KNEE`), else
        ``(k^2 + e^2) / (2k)``: the same value and slope at ``k``, bounded below by ``k / 2``, and a
        gradient ``e^2 / k > 0`` (a hard ``clamp_min(k)`` would stop it for good once below ``k``).
        """
        if self.log_sigma is None:
            return None
        e = self.log_sigma.exp()
        below = e.clamp_max(SHARPNESS_KNEE)  # keeps the branch that torch.where drops finite
        return torch.where(e >= SHARPNESS_KNEE, e, (SHARPNESS_KNEE**2 + below**2) / (2 * SHARPNESS_KNEE))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Read checkpoints from before the soft knee, which stored ``log_sharpness`` (log sigma too).

        That code clamped sigma at the knee, so a stored value below ``log(k)`` meant sigma = k: it is
        raised to ``log(k)`` (``exp`` of which is ``k`` exactly in float32), keeping those forwards
        unchanged. The new name tells the two apart (the values below ``log(k)`` differ in meaning).
        """
        old = state_dict.pop(prefix + "log_sharpness", None)
        if old is not None:
            state_dict[prefix + "log_sigma"] = old.clamp_min(math.log(SHARPNESS_KNEE))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _split(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_mask: Tensor | None = None,
        pair_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend ``(B, L_q, D)`` queries over ``(B, L_k, D)`` keys/values; returns ``(B, L_q, D)``.

        ``key_mask`` ``(B, L_k)`` hides padded keys; ``pair_mask`` ``(B, L_q, L_k)`` restricts which
        keys each query may see (see :func:`attention_mask`).
        """
        q = self._split(self.q_proj(query))
        k = self._split(self.k_proj(key))
        v = self._split(self.v_proj(value))
        scale = None
        if self.cosine:
            sharpness = self.sharpness
            assert sharpness is not None
            q = F.normalize(q, dim=-1) / sharpness
            k = F.normalize(k, dim=-1)
            scale = 1.0
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attention_mask(key_mask, pair_mask),
            dropout_p=self.dropout if self.training else 0.0,
            scale=scale,
        )
        batch, _, length, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU and dropout between them (none after the last)."""

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, dropout: float = 0.0
    ) -> None:
        """``in_dim -> hidden_dim -> ... -> out_dim``; ``num_layers >= 1``."""
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            if i:
                layers += [nn.ReLU(), nn.Dropout(dropout)]
            layers.append(nn.Linear(a, b))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP on the last axis."""
        return self.net(x)


class AttentionLayer(nn.Module):
    """A post-norm transformer layer: attention + residual + LayerNorm, then FFN + residual + LayerNorm.

    Without ``context`` it is a self-attention encoder layer; with it, a cross-attention layer whose
    queries are the input tokens (Vaswani et al., whom HSCNet cites for both).
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        """A layer of width ``dim`` with an FFN of ``ffn_dim`` hidden units."""
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads, dropout)
        self.ffn = MLP(dim, ffn_dim, dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pair_mask: Tensor | None = None,
    ) -> Tensor:
        """Update ``(B, L, D)`` tokens ``x``.

        Args:
            x: the query tokens.
            mask: ``(B, L)`` real tokens of ``x`` (the key mask when there is no ``context``).
            context: ``(B, L_c, D)`` tokens to attend over (default: ``x`` itself).
            context_mask: ``(B, L_c)`` real tokens of ``context``.
            pair_mask: ``(B, L, L_c)`` which context tokens each query may see.
        """
        if context is None:
            context, context_mask = x, mask
        x = self.norm1(x + self.drop(self.attention(x, context, context, context_mask, pair_mask)))
        return self.norm2(x + self.drop(self.ffn(x)))


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """``(length, dim)`` sine/cosine position encodings of Vaswani et al. (``dim`` even)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


def group_mean(x: Tensor, group: Tensor, mask: Tensor, num_groups: int) -> Tensor:
    """Mean of the real tokens of each group (eq. 3 word pooling; sentence pooling with one group).

    Args:
        x: ``(B, N, D)`` tokens.
        group: ``(B, N)`` long group index of each token in ``[0, num_groups)`` where ``mask``.
        mask: ``(B, N)`` real tokens.
        num_groups: ``G``.

    Returns:
        ``(B, G, D)``; a group with no token gets zeros. One ``index_add`` over the flattened
        ``(B * G)`` groups, no loop.
    """
    batch, _, dim = x.shape
    flat = (torch.arange(batch, device=x.device)[:, None] * num_groups + group)[mask]
    sums = x.new_zeros(batch * num_groups, dim).index_add(0, flat, x[mask])
    counts = x.new_zeros(batch * num_groups).index_add(0, flat, x.new_ones(flat.shape[0]))
    return (sums / counts.clamp_min(1.0)[:, None]).view(batch, num_groups, dim)


def spans_from_logits(logits: Tensor) -> Tensor:
    """Map ``(..., 2)`` logits to ordered ``(start, end)`` spans inside ``[0, 1]``.

    ``w = sigmoid(logits[..., 1])`` is the width and ``c = sigmoid(logits[..., 0])`` the place of the
    span within the room ``1 - w`` that the width leaves: ``start = c (1 - w)``, ``end = start + w``.
    Every output is a valid span and the map is smooth everywhere (no clamping that would cut
    gradients at the video borders).
    """
    place, width = torch.sigmoid(logits).unbind(dim=-1)
    start = place * (1.0 - width)
    return torch.stack([start, start + width], dim=-1)


class SpanHead(nn.Module):
    """A two-layer MLP predictor (HSCNet Section 3.4) followed by :func:`spans_from_logits`."""

    def __init__(self, in_dim: int, hidden_dim: int, dropout: float) -> None:
        """A head from ``in_dim`` features."""
        super().__init__()
        self.mlp = MLP(in_dim, hidden_dim, 2, num_layers=2, dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in_dim)`` features to ``(..., 2)`` spans."""
        return spans_from_logits(self.mlp(x))


def run_lstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> Tensor:
    """Run a batch-first ``lstm`` on ``(N, L, F)`` sequences of ``lengths`` ``(N,)`` (all >= 1).

    Sequences are packed so padding never enters the recurrence; outputs past a sequence's length
    are zeros. Returns ``(N, L, H)`` (``H``: hidden size times directions).
    """
    return encode_lstm(lstm, x, lengths)[0]


def encode_lstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`run_lstm` with the final state: ``(N, L, H)`` outputs and ``(N, H)`` the last layer's
    state after each sequence's last real step (bidirectional: ``[forward after the last step;
    backward after the first]``, the sentence vector of 2D-TAN and LGI)."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, (h_n, _) = lstm(packed)
    padded, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    directions = 2 if lstm.bidirectional else 1
    final = h_n[-directions:].transpose(0, 1).reshape(x.shape[0], -1)  # (N, H * directions)
    return padded, final


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` unless told otherwise)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
