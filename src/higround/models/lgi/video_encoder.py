"""LGI's video encoder (paper 3.1, ``VideoEmbeddingWithPosition`` of the official code)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from higround.errors import ConfigError


class VideoEncoder(nn.Module):
    """Segment embedding plus a learned position embedding, both ``ReLU`` + dropout, added.

    ``s_t = Dropout(ReLU(W_v x_t + b)) + Dropout(ReLU(P[t]))`` for every real segment ``t``; padded
    segments are zeros (the official code multiplies both terms by the segment mask).
    """

    def __init__(self, video_dim: int, dim: int, num_clips: int, dropout: float) -> None:
        """``video_dim`` input channels to ``dim``; a position table of ``num_clips`` rows."""
        super().__init__()
        self.num_clips = num_clips
        self.segment = nn.Sequential(nn.Linear(video_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.position = nn.Embedding(num_clips, dim)
        self.position_out = nn.Sequential(nn.ReLU(), nn.Dropout(dropout))

    def forward(self, video: Tensor, video_mask: Tensor) -> Tensor:
        """``(B, T, D_v)`` clips and their ``(B, T)`` mask to ``(B, T, D)`` segment features."""
        length = video.shape[1]
        if length > self.num_clips:
            raise ConfigError(
                f"lgi: {length} clips per video, but the position table has num_clips={self.num_clips}"
            )
        mask = video_mask[..., None].to(video.dtype)
        positions = self.position_out(self.position(torch.arange(length, device=video.device)))
        return (self.segment(video) + positions[None]) * mask
