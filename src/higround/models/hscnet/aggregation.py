"""Visual-to-textual semantic aggregation (Section 3.3, eq. 5-6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def aggregate(text: Tensor, video: Tensor, video_mask: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Grounding features ``g`` and the similarity matrix ``A`` of one level.

    Args:
        text: ``(B, N_T, D)`` text tokens ``Q^{VL(d)}``.
        video: ``(B, N_V, D)`` clips ``V^{VL(d)}``.
        video_mask: ``(B, N_V)`` real clips.
        temperature: ``tau``.

    Returns:
        ``g = [Qbar; softmax(A) Vbar]`` ``(B, N_T, 2D)`` (eq. 6, the softmax over real clips only) and
        ``A = Qbar Vbar^T / tau`` ``(B, N_T, N_V)`` (eq. 5) as computed, padded clips included: the
        alignment losses mask them themselves.
    """
    q = F.normalize(text, dim=-1)
    v = F.normalize(video, dim=-1)
    similarity = q @ v.transpose(1, 2) / temperature
    weights = similarity.masked_fill(~video_mask[:, None, :], float("-inf")).softmax(dim=-1)
    return torch.cat([q, weights @ v], dim=-1), similarity
