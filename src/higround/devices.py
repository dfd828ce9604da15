"""The one rule that turns a ``--device`` string into a torch device (models and backbones alike)."""

from __future__ import annotations

import os

import torch

from higround.errors import ConfigError


def resolve_device(device: str) -> torch.device:
    """``auto``: ``cuda:LOCAL_RANK`` under torchrun, else ``cuda`` when available, else CPU; any other
    name as given.

    Raises:
        ConfigError: a name torch does not know, or a CUDA device asked for on a machine without CUDA.
    """
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    try:
        resolved = torch.device(device)
    except RuntimeError:  # torch lists every backend it was built with: name the usual ones instead
        raise ConfigError(
            f"device {device!r} is not a device name (auto, cpu, cuda, cuda:1, mps, ...)"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available")
    return resolved
