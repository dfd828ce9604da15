"""QD-DETR (Moon et al., CVPR 2023): query-dependent DETR for moment retrieval and highlight detection."""

from higround.models.qd_detr.config import LOSS_TERMS, QDDETRConfig
from higround.models.qd_detr.model import QDDETR

__all__ = ["LOSS_TERMS", "QDDETR", "QDDETRConfig"]
