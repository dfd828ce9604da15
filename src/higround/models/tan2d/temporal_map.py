"""2D-TAN's temporal map: clips pooled to ``N`` map clips, and the sparse ``N x N`` map of moment
candidates built from them (Zhang et al., AAAI 2020, Section 3.2).

Cell ``(s, e)`` (row ``s``, column ``e``, ``s <= e``) is the moment from map clip ``s`` to map clip
``e`` inclusive, the span ``[s / N, (e + 1) / N]`` of the video (:func:`cell_spans`; times are ``d``
times that, as the released ``get_proposal_results`` and the datasets' IoU maps compute them).

Not every cell is a candidate. The released ``SparsePropMaxPool`` (microsoft/2D-TAN
``lib/models/prop_modules/sparse.py``) fills the map with a stack of 1-D pooling layers: scale 0 is
``MaxPool1d(1, 1)`` then ``MaxPool1d(2, 1)`` x (n_0 - 1); every later scale starts with
``MaxPool1d(3, 2)`` and continues with ``MaxPool1d(2, 1)`` x (n_k - 1). Output ``j`` of a layer
covers clips ``j*S .. j*S + W - 1`` (``S``: the product of the strides so far, ``W``: the window),
which is the cell it fills; these cells are the valid ones (the map mask). :func:`sparse_layout`
follows that index arithmetic: 136 cells for ``(N=16, [16])``, 1104 for ``(64, [16, 8, 8])`` (all
durations 1-16 clips, then 18, 20, ..., 32 from even starts, then 36, 40, ..., 64 from starts that are
multiples of 4) and 2548 for ``(128, [16, 8, 8, 8])``. The "Conv" variant (``SparsePropConv``) has the
same layout with ``Conv1d`` layers of the same kernels and strides (no activation between them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from higround.errors import ConfigError


@dataclass(frozen=True)
class SparseLayout:
    """The cells of a sparse 2D map of ``size`` clips and the layers that fill them.

    Attributes:
        size: ``N``.
        layers: ``(kernel, stride)`` of every pooling (or convolution) layer, in order.
        starts, ends: the cell of every layer output, in layer order (clip indices, inclusive).
    """

    size: int
    layers: tuple[tuple[int, int], ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @property
    def count(self) -> int:
        """Number of valid cells."""
        return len(self.starts)


def sparse_layout(size: int, num_scale_layers: list[int]) -> SparseLayout:
    """The released valid-cell rule of ``SparsePropMaxPool`` for a map of ``size`` clips.

    Raises:
        ConfigError: a layer would have no output (the scales need more clips than the map has).
    """
    layers: list[tuple[int, int]] = []
    for scale, count in enumerate(num_scale_layers):
        layers.append((1, 1) if scale == 0 else (3, 2))
        layers += [(2, 1)] * (count - 1)
    starts: list[int] = []
    ends: list[int] = []
    length, stride, window = size, 1, 1  # outputs of the previous layer, their stride and window
    for index, (kernel, step) in enumerate(layers):
        length = (length - kernel) // step + 1
        if length < 1:
            raise ConfigError(
                f"tan2d config: num_scale_layers {num_scale_layers} do not fit a map of {size} clips "
                f"(layer {index} has no output)"
            )
        window += (kernel - 1) * stride
        stride *= step
        starts += [j * stride for j in range(length)]
        ends += [j * stride + window - 1 for j in range(length)]
    return SparseLayout(size, tuple(layers), tuple(starts), tuple(ends))


def valid_cell_mask(size: int, num_scale_layers: list[int]) -> Tensor:
    """``(N, N)`` bool, True at the candidate cells of :func:`sparse_layout`."""
    layout = sparse_layout(size, num_scale_layers)
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[list(layout.starts), list(layout.ends)] = True
    return mask


def cell_spans(starts: Tensor, ends: Tensor, size: int) -> Tensor:
    """``(..., 2)`` normalised spans ``[s / N, (e + 1) / N]`` of cells ``(s, e)`` of an ``N``-clip map."""
    return torch.stack([starts.float() / size, (ends.float() + 1.0) / size], dim=-1)


class FramePool(nn.Module):
    """``FrameAvgPool``: ``Conv1d(D_v, H, 1)`` + ReLU per clip, then the mean of every ``stride``
    consecutive clips (``AvgPool1d(stride, stride)``): ``(B, T, D_v) -> (B, H, T / stride)``."""

    def __init__(self, video_dim: int, hidden_dim: int, stride: int) -> None:
        """A pool from ``video_dim`` features to ``hidden_dim`` channels, ``stride`` clips per map clip."""
        super().__init__()
        self.proj = nn.Linear(video_dim, hidden_dim)  # the 1x1 Conv1d
        self.stride = stride

    def forward(self, video: Tensor) -> Tensor:
        """``(B, T, D_v)`` clips (``T`` a multiple of the stride) to ``(B, H, N)`` map clips."""
        batch, length, _ = video.shape
        clips = torch.relu(self.proj(video))
        pooled = clips.view(batch, length // self.stride, self.stride, -1).mean(dim=2)
        return pooled.transpose(1, 2)


class SparseTemporalMap(nn.Module):
    """Fills the valid cells of the sparse map from ``(B, H, N)`` map clips.

    ``proposal="pool"``: the cell ``(s, e)`` holds the channel-wise max over clips ``s..e``, as the
    stacked max-pools compute it; ``"conv"``: each layer is a learned ``Conv1d`` of the same kernel
    and stride. Cells are kept in row-major ``(s, e)`` order: :attr:`starts`, :attr:`ends`,
    :attr:`flat_index` (``s * N + e``) and :attr:`spans` say which cell each entry is.
    """

    def __init__(
        self, size: int, num_scale_layers: list[int], hidden_dim: int, proposal: str = "pool"
    ) -> None:
        """The map of ``size`` clips with the released layout of ``num_scale_layers``."""
        super().__init__()
        layout = sparse_layout(size, num_scale_layers)
        self.size = size
        self.proposal = proposal
        self.layers = layout.layers
        self.convs = (
            nn.ModuleList(nn.Conv1d(hidden_dim, hidden_dim, k, s) for k, s in layout.layers)
            if proposal == "conv"
            else None
        )
        starts = torch.tensor(layout.starts)
        ends = torch.tensor(layout.ends)
        flat = starts * size + ends
        order = flat.argsort()  # layer order -> row-major order
        # Derived from the config, so not saved in checkpoints (non-persistent buffers).
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("starts", starts[order], persistent=False)
        self.register_buffer("ends", ends[order], persistent=False)
        self.register_buffer("flat_index", flat[order], persistent=False)
        self.register_buffer("spans", cell_spans(starts[order], ends[order], size), persistent=False)
        mask = torch.zeros(size * size, dtype=torch.bool)
        mask[flat] = True
        self.register_buffer("mask", mask.view(size, size), persistent=False)

    @property
    def count(self) -> int:
        """Number of valid cells ``C``."""
        return int(self.get_buffer("flat_index").numel())

    def forward(self, clips: Tensor) -> Tensor:
        """``(B, H, N)`` map clips to ``(B, H, C)`` cell features, row-major cell order."""
        outputs = []
        x = clips
        for index, (kernel, stride) in enumerate(self.layers):
            x = F.max_pool1d(x, kernel, stride) if self.convs is None else self.convs[index](x)
            outputs.append(x)
        return torch.cat(outputs, dim=2)[:, :, self.get_buffer("order")]

    def to_map(self, cells: Tensor) -> Tensor:
        """``(B, H, C)`` cell values to the dense ``(B, H, N, N)`` map, zero off the valid cells."""
        batch, channels, _ = cells.shape
        dense = cells.new_zeros(batch, channels, self.size * self.size)
        dense = dense.index_copy(2, self.get_buffer("flat_index"), cells)
        return dense.view(batch, channels, self.size, self.size)
