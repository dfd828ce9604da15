"""Training engine (PyTorch Lightning), configs, checkpoints and the Python API (docs/training.md)."""

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
