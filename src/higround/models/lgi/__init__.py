"""LGI (Mun et al., CVPR 2020): local-global video-text interactions for sentence grounding."""

from higround.models.lgi.config import LOSS_TERMS, LGIConfig
from higround.models.lgi.model import LGI, LGIOutput

__all__ = ["LGI", "LOSS_TERMS", "LGIConfig", "LGIOutput"]
