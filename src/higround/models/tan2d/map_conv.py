"""2D-TAN's temporal adjacent network: stacked 2-D convolutions over the sparse map, each output
divided by the number of valid inputs under its kernel (microsoft/2D-TAN
``lib/models/map_modules/map_conv.py`` and ``get_padded_mask_and_weight`` in
``lib/models/map_modules/__init__.py``).

With ``L`` layers of kernel ``k``, the first pads ``p = L (k - 1) / 2`` cells on each side and the
others none (the released ``PADDINGS: [16, 0, ...]``: 8 x 4 / 2 on Charades/TACoS, 4 x 8 / 2 on
ActivityNet), so the last layer is ``N x N`` again, aligned with the map. The grid in between is
larger than the map; which of its positions count as valid grows layer by layer: a position is valid
when its kernel window holds at least one valid input of the layer before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mask_weights(mask: Tensor, kernel: int, layers: int, padding: int) -> list[Tensor]:
    """The released ``masked_weight`` of every layer: ``1 / #valid inputs`` under the kernel, 0 where none.

    Args:
        mask: ``(N, N)`` bool, the valid cells of the map (the first layer's inputs).
        kernel: ``k``.
        layers: ``L``.
        padding: zero cells the first layer pads on each side.

    Returns:
        ``L`` float tensors, one per layer output grid (``N + 2p - (k - 1)``, ..., ``N``); the positions
        with a nonzero weight are the valid inputs of the next layer. The count is rounded before the
        inverse, as the released code does (it is a float convolution of 0/1 values).
    """
    ones = torch.ones(1, 1, kernel, kernel)
    current = mask.float()[None, None]
    weights = []
    for index in range(layers):
        count = torch.round(F.conv2d(current, ones, padding=padding if index == 0 else 0))
        weights.append(torch.where(count > 0, 1.0 / count.clamp_min(1.0), torch.zeros_like(count))[0, 0])
        current = (count > 0).float()
    return weights


class MapConv(nn.Module):
    """``L`` masked ``Conv2d(H, H, k)`` + ReLU layers: ``(B, H, N, N) -> (B, H, N, N)``."""

    def __init__(self, mask: Tensor, hidden_dim: int, kernel: int, layers: int) -> None:
        """Convolutions over a map with valid cells ``mask``; ``layers * (kernel - 1)`` must be even."""
        super().__init__()
        padding = layers * (kernel - 1) // 2
        self.convs = nn.ModuleList(
            nn.Conv2d(hidden_dim, hidden_dim, kernel, padding=padding if index == 0 else 0)
            for index in range(layers)
        )
        # Fixed by the map's layout, so not saved in checkpoints.
        self.weight_names = [f"weight_{index}" for index in range(layers)]
        for name, weight in zip(self.weight_names, mask_weights(mask, kernel, layers, padding), strict=True):
            self.register_buffer(name, weight, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Apply every layer; each output is scaled by its layer's valid-input weight."""
        for conv, name in zip(self.convs, self.weight_names, strict=True):
            # In place: the convolution's backward needs its input, not its output (one map less held).
            x = torch.relu_(conv(x)) * self.get_buffer(name)
        return x
