"""PRVG (Shi et al.): dense video grounding by parallel regression, a paragraph's sentences as queries."""

from higround.models.prvg.config import LOSS_TERMS, PRVGConfig
from higround.models.prvg.model import PRVG, PRVGOutput

__all__ = ["LOSS_TERMS", "PRVG", "PRVGConfig", "PRVGOutput"]
