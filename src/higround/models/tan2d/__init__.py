"""2D-TAN (Zhang et al., AAAI 2020): moment candidates on a sparse 2D temporal map, scored by
stacked masked convolutions after a Hadamard fusion with the sentence (docs/tan2d.md)."""

from higround.models.tan2d.config import LOSS_TERMS, PROPOSALS, Tan2DConfig
from higround.models.tan2d.model import Tan2D, Tan2DOutput
from higround.models.tan2d.temporal_map import cell_spans, sparse_layout, valid_cell_mask

__all__ = [
    "LOSS_TERMS",
    "PROPOSALS",
    "Tan2D",
    "Tan2DConfig",
    "Tan2DOutput",
    "cell_spans",
    "sparse_layout",
    "valid_cell_mask",
]
