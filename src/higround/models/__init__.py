"""Grounding models (pure PyTorch) and the blocks they share (:mod:`higround.models.layers`)."""

from higround.models.hscnet import HSCNet, HSCNetConfig, HSCNetOutput
from higround.models.layers import count_parameters

__all__ = ["HSCNet", "HSCNetConfig", "HSCNetOutput", "count_parameters"]
