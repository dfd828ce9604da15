"""Moment-DETR (Lei et al., NeurIPS 2021): DETR-style moment retrieval and highlight detection."""

from higround.models.moment_detr.config import LOSS_TERMS, MomentDETRConfig
from higround.models.moment_detr.model import MomentDETR

__all__ = ["LOSS_TERMS", "MomentDETR", "MomentDETRConfig"]
