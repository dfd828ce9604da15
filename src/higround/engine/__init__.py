"""Training engine (PyTorch Lightning), configs, checkpoints and the Python API (docs/training.md).

Names are imported on first use (PEP 562): grounding with a checkpoint (:class:`Grounder`) does not
import Lightning, which only training and split evaluation need (about 3 s of start-up on a CPU).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from higround.engine.api import Grounder, GroundingResult
    from higround.engine.checkpoint import (
        LoadedCheckpoint,
        export_safetensors,
        load_checkpoint,
        save_checkpoint,
    )
    from higround.engine.config import Config, load_config, save_config
    from higround.engine.datamodule import GroundingDataModule
    from higround.engine.module import GroundingModule
    from higround.engine.trainer import TrainResult, build_trainer, fit

_HOME = {
    "Grounder": "api",
    "GroundingResult": "api",
    "LoadedCheckpoint": "checkpoint",
    "export_safetensors": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "Config": "config",
    "load_config": "config",
    "save_config": "config",
    "GroundingDataModule": "datamodule",
    "GroundingModule": "module",
    "TrainResult": "trainer",
    "build_trainer": "trainer",
    "fit": "trainer",
}

__all__ = [
    "Config",
    "Grounder",
    "GroundingDataModule",
    "GroundingModule",
    "GroundingResult",
    "LoadedCheckpoint",
    "TrainResult",
    "build_trainer",
    "export_safetensors",
    "fit",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "save_config",
]


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module the first time it is asked for."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"higround.engine.{_HOME[name]}"), name)
