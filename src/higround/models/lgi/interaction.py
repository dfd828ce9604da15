"""LGI's local-global video-text interactions (paper 3.3; ``LocalGlobalVideoTextInteractions``).

For each of the ``N`` phrases (every one with its own weights, as the official ``_make_modulelist``
deep copies): Hadamard fusion of every segment with the phrase, local context by a residual block
of 1-D convolutions; the ``N`` phrase-specific sequences are merged by attentive pooling over the
phrases, then global context by non-local blocks, giving the semantics-aware segments ``R`` (the
official code's comments call it eq. 12).

The per-phrase layers run for all phrases at once: ``N`` linear layers are one einsum over an
``(N, in, out)`` weight (:class:`PhraseLinear`), ``N`` convolutions one grouped convolution with
``groups=N`` over ``N * D`` channels, ``N`` batch norms one over ``N * D`` channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from higround.models.layers import attention_mask
from higround.models.lgi.config import LGIConfig
from higround.models.lgi.regression import AttentivePooling


class PhraseLinear(nn.Module):
    """``N`` independent linear layers, layer ``n`` applied to item ``n`` of axis -2.

    Initialised as ``nn.Linear`` initialises each (weight and bias uniform in ``+-1/sqrt(in)``).
    """

    def __init__(self, num: int, in_dim: int, out_dim: int) -> None:
        """``num`` layers from ``in_dim`` to ``out_dim``."""
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(num, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num, out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """``(..., N, in)`` to ``(..., N, out)``."""
        return torch.einsum("...ni,nio->...no", x, self.weight) + self.bias


class MaskedBatchNorm1d(nn.Module):
    """``nn.BatchNorm1d`` over ``(B, C, T)`` whose training statistics count real positions only.

    In evaluation it is the plain batch norm with the running statistics (position-wise, so padding
    cannot matter). In training the batch mean and variance are taken over the real positions
    (``mask``), so padded clips never enter them; on unpadded batches this is exactly
    ``nn.BatchNorm1d`` (the running variance is updated with the unbiased estimate, as there).
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        """A batch norm of ``channels`` features with PyTorch's defaults."""
        super().__init__()
        self.momentum = momentum
        self.norm = nn.BatchNorm1d(channels, eps=eps, momentum=momentum)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Normalise ``(B, C, T)`` ``x``; ``mask`` ``(B, T)`` marks the real positions."""
        if not self.training:
            return self.norm(x)
        norm = self.norm
        weights = mask[:, None, :].to(x.dtype)
        count = weights.sum().clamp_min(1.0)
        mean = (x * weights).sum(dim=(0, 2)) / count
        centred = x - mean[None, :, None]
        var = (centred.square() * weights).sum(dim=(0, 2)) / count
        assert norm.running_mean is not None and norm.running_var is not None
        assert norm.num_batches_tracked is not None
        with torch.no_grad():
            norm.running_mean.lerp_(mean, self.momentum)
            norm.running_var.lerp_(var * count / (count - 1).clamp_min(1.0), self.momentum)
            norm.num_batches_tracked.add_(1)
        scale = norm.weight / torch.sqrt(var + norm.eps)
        return centred * scale[None, :, None] + norm.bias[None, :, None]


class ResidualBlock(nn.Module):
    """One block ``ReLU(x + BN(conv(ReLU(BN(conv(x))))))`` for ``N`` phrases at once (grouped).

    Convolutions have kernel ``k``, padding ``k // 2``, no bias, and ``D`` channels in and out per
    phrase (the official ``basic_block(idim, odim)``: its configured hidden size, 256, is never
    used). Padded clips are zeroed before every convolution, so a real clip near the end of a short
    video sees the same zeros as without padding.
    """

    def __init__(self, num_phrases: int, dim: int, kernel: int) -> None:
        """A block over ``num_phrases`` phrase-specific ``dim``-wide sequences."""
        super().__init__()
        channels = num_phrases * dim
        self.conv1 = nn.Conv1d(
            channels, channels, kernel, padding=kernel // 2, groups=num_phrases, bias=False
        )
        self.norm1 = MaskedBatchNorm1d(channels)
        self.conv2 = nn.Conv1d(
            channels, channels, kernel, padding=kernel // 2, groups=num_phrases, bias=False
        )
        self.norm2 = MaskedBatchNorm1d(channels)

    def forward(self, h: Tensor, video_mask: Tensor) -> Tensor:
        """``(B, N * D, T)`` phrase-major channels to the same shape; ``video_mask`` ``(B, T)``."""
        keep = video_mask[:, None, :].to(h.dtype)
        y = F.relu(self.norm1(self.conv1(h * keep), video_mask))
        return F.relu(self.norm2(self.conv2(y * keep), video_mask) + h)


class LocalContext(nn.Module):
    """Local context: ``res_blocks`` :class:`ResidualBlock` s on every phrase-specific sequence."""

    def __init__(self, num_phrases: int, dim: int, kernel: int, blocks: int) -> None:
        """``blocks`` blocks (0: the identity) for ``num_phrases`` sequences of width ``dim``."""
        super().__init__()
        self.blocks = nn.ModuleList(ResidualBlock(num_phrases, dim, kernel) for _ in range(blocks))

    def forward(self, x: Tensor, video_mask: Tensor) -> Tensor:
        """``(B, T, N, D)`` phrase-specific segments to the same shape."""
        batch, length, num, dim = x.shape
        h = x.reshape(batch, length, num * dim).transpose(1, 2)  # (B, N*D, T), phrase-major channels
        for block in self.blocks:
            h = block(h, video_mask)
        return h.transpose(1, 2).reshape(batch, length, num, dim)


class NonLocalBlock(nn.Module):
    """Global context: ``Dropout(x + MultiHead(x))``, multi-head self-attention over the
    real segments on SDPA, scaled by ``1/sqrt(D / heads)``.

    The official ``NonLocalBlock`` projects queries, keys and values with biased linear layers,
    concatenates the heads and adds them to its input with **no output projection**: that is why it
    is not :class:`~higround.models.layers.MultiHeadAttention` (which has one). Dropout acts on the
    input of the projections and on the sum (official ``nl_drop_prob``, 0 in both recipes).
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        """A block of width ``dim`` with ``heads`` heads."""
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, video_mask: Tensor) -> Tensor:
        """``(B, T, D)`` segments to the same shape; padded segments are never attended to."""
        h = self.drop(x)
        out = F.scaled_dot_product_attention(
            self._split(self.query(h)),
            self._split(self.key(h)),
            self._split(self.value(h)),
            attn_mask=attention_mask(video_mask, None),
        )
        return self.drop(x + out.transpose(1, 2).reshape(x.shape))


class LocalGlobalInteraction(nn.Module):
    """Segments and phrases to the semantics-aware segment features ``R``.

    Fusion ``m^n_t = ReLU(W_m^(n) (ReLU(W_v^(n) s_t) * ReLU(W_e^(n) e_n)))`` (the official
    ``HadamardProduct``), then local context, phrase pooling and global context.
    """

    def __init__(self, config: LGIConfig) -> None:
        """The interaction module of ``config``."""
        super().__init__()
        num, dim, query = config.num_phrases, config.hidden_dim, config.query_dim
        self.num_phrases = num
        self.segment_maps = nn.Linear(dim, num * dim)  # W_v^(1..N)
        self.phrase_maps = PhraseLinear(num, query, dim)  # W_e^(n)
        self.fusion_maps = PhraseLinear(num, dim, dim)  # W_m^(n)
        self.local = LocalContext(num, dim, config.conv_kernel, config.res_blocks)
        # The official pooling also embeds the pooled phrase vector, which it then discards: only
        # its weights are used here, so no parameter is left without a gradient.
        self.phrase_pool = AttentivePooling(query, config.attention_dim)
        self.nonlocal_blocks = nn.ModuleList(
            NonLocalBlock(dim, config.nonlocal_heads, config.nonlocal_dropout)
            for _ in range(config.nonlocal_blocks)
        )

    def forward(self, segments: Tensor, video_mask: Tensor, phrases: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, D)`` segments, ``(B, T)`` mask and ``(B, N, Q)`` phrases to ``(B, T, D)`` ``R`` and the
        ``(B, N)`` phrase weights."""
        batch, length, dim = segments.shape
        video = F.relu(self.segment_maps(segments)).view(batch, length, self.num_phrases, dim)
        text = F.relu(self.phrase_maps(phrases))  # (B, N, D)
        fused = F.relu(self.fusion_maps(video * text[:, None]))  # (B, T, N, D)
        local = self.local(fused, video_mask)
        weights = self.phrase_pool.weights(phrases)  # (B, N)
        merged = torch.einsum("bn,btnd->btd", weights, local)
        for block in self.nonlocal_blocks:
            merged = block(merged, video_mask)
        return merged, weights
