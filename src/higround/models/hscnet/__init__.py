"""HSCNet (Tan et al., CVPR 2023): hierarchical encoder-decoder for video paragraph grounding."""

from higround.models.hscnet.config import LOSS_TERMS, HSCNetConfig
from higround.models.hscnet.model import HSCNet, HSCNetOutput

__all__ = ["LOSS_TERMS", "HSCNet", "HSCNetConfig", "HSCNetOutput"]
