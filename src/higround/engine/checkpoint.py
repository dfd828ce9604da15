"""Self-contained checkpoints: weights + config + vocabulary (+ word vectors, inside the weights).

A training checkpoint is a Lightning ``.ckpt`` (a ``torch.save`` dict) holding the usual Lightning
entries (``state_dict`` with keys ``model.<HSCNet key>``, optimiser and loop states for resuming)
plus one entry ``"higround"``: ``{"format_version", "model", "config", "vocab"}`` in plain
JSON-compatible types. The embedding matrix (the initial word vectors) is a weight of the model, so
a checkpoint loads with nothing else: no feature file, no GloVe file, no annotation file.

:func:`export_safetensors` writes the weights alone as ``.safetensors`` with a JSON sidecar holding
the same ``"higround"`` entry; :func:`load_checkpoint` reads either form. Every write is atomic
(temp file in the same folder + ``os.replace``): Lightning's own local save writes its temp file in
the system temp folder and *moves* it, which is a copy (not atomic) when that folder is on another
filesystem, so training uses :class:`higround.engine.trainer.AtomicCheckpointIO` instead.
This module does not import Lightning: loading a checkpoint to ground a video does not pay for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from higround.engine.config import Config
from higround.errors import ConfigError
from higround.io import atomic_path, atomic_write_text
from higround.models.hscnet import HSCNet, HSCNetConfig
from higround.text.vocab import Vocabulary

CHECKPOINT_KEY = "higround"
FORMAT_VERSION = 1
MODEL_NAME = "hscnet"
# Prefix of the model's weights in a Lightning state dict (the LightningModule's attribute name).
STATE_PREFIX = "model."


@dataclass
class LoadedCheckpoint:
    """What a checkpoint holds, ready to rebuild the model.

    Attributes:
        path: the file read.
        config: the training recipe (model dimensions filled in).
        model_config: the model's hyper-parameters.
        vocab: the vocabulary the model was trained with.
        state_dict: the model's weights (HSCNet keys, no ``model.`` prefix), word vectors included.
        epoch: the epoch the checkpoint was written after (``None`` for exported weights).
    """

    path: Path
    config: Config
    model_config: HSCNetConfig
    vocab: Vocabulary
    state_dict: dict[str, Tensor]
    epoch: int | None = None

    def build_model(self) -> HSCNet:
        """The model with these weights, in eval mode, on CPU."""
        vectors = self.state_dict.get("embedding.weight")
        if vectors is None:
            raise ConfigError(f"{self.path}: checkpoint weights have no embedding.weight")
        model = HSCNet(self.model_config, vectors)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as err:
            raise ConfigError(f"{self.path}: weights do not fit the model of its config: {err}") from err
        return model.eval()


def checkpoint_payload(config: Config, model_config: HSCNetConfig, vocab: Vocabulary) -> dict[str, Any]:
    """The ``"higround"`` entry of a checkpoint: format version, model name, config and vocabulary.

    The stored config has the model dimensions filled in, so it rebuilds the model without data.
    """
    full = config.to_dict()
    full["model"] = model_config.to_dict()
    return {
        "format_version": FORMAT_VERSION,
        "model": MODEL_NAME,
        "config": full,
        "vocab": vocab.to_dict(),
    }


def _parse_payload(payload: Any, path: Path) -> tuple[Config, HSCNetConfig, Vocabulary]:
    if not isinstance(payload, Mapping):
        raise ConfigError(f"{path}: not a higround checkpoint (no {CHECKPOINT_KEY!r} entry)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ConfigError(f"{path}: checkpoint format {version!r}, this version reads {FORMAT_VERSION}")
    if payload.get("model") != MODEL_NAME:
        raise ConfigError(f"{path}: checkpoint of model {payload.get('model')!r}, expected {MODEL_NAME!r}")
    config = Config.from_dict(payload["config"])
    return config, config.model_config(), Vocabulary.from_dict(payload["vocab"])


def _strip_prefix(state: Mapping[str, Tensor], path: Path) -> dict[str, Tensor]:
    weights = {k[len(STATE_PREFIX) :]: v for k, v in state.items() if k.startswith(STATE_PREFIX)}
    if not weights:
        raise ConfigError(f"{path}: checkpoint state_dict holds no '{STATE_PREFIX}*' weights")
    return weights


def sidecar_path(weights: str | Path) -> Path:
    """The JSON sidecar beside a ``.safetensors`` file (``model.safetensors`` -> ``model.json``)."""
    return Path(weights).with_suffix(".json")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Read a training checkpoint (``.ckpt``) or exported weights (``.safetensors`` + ``.json``).

    ``.ckpt`` files are read with ``torch.load(weights_only=True)``: no pickled code runs.

    Raises:
        FileNotFoundError: the file (or the sidecar of a .safetensors file) does not exist.
        ConfigError: the file is not a higround checkpoint or its format is unknown.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        side = sidecar_path(path)
        if not side.is_file():
            raise FileNotFoundError(f"{path}: its config/vocabulary sidecar {side} is missing")
        payload = json.loads(side.read_text(encoding="utf-8"))
        config, model_config, vocab = _parse_payload(payload, side)
        state = load_file(str(path), device=str(map_location))
        return LoadedCheckpoint(path, config, model_config, vocab, state)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise ConfigError(f"{path}: cannot read as a checkpoint: {err}") from err
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ConfigError(f"{path}: not a checkpoint (no state_dict)")
    config, model_config, vocab = _parse_payload(checkpoint.get(CHECKPOINT_KEY), path)
    state = _strip_prefix(checkpoint["state_dict"], path)
    epoch = checkpoint.get("epoch")
    return LoadedCheckpoint(path, config, model_config, vocab, state, epoch)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temp file in the destination folder, moved into place."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | Path, model: HSCNet, config: Config, vocab: Vocabulary) -> None:
    """Write a model (without training state) in the training-checkpoint layout, atomically."""
    state = {STATE_PREFIX + k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = checkpoint_payload(config, model.config, vocab)
    atomic_torch_save({"state_dict": state, CHECKPOINT_KEY: payload}, path)


def export_safetensors(checkpoint: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Export a checkpoint's weights to ``out`` (.safetensors) and its config + vocabulary to the
    ``.json`` sidecar beside it; both atomically. Returns the two paths."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"export: {out} must end in .safetensors")
    loaded = load_checkpoint(checkpoint)
    payload = checkpoint_payload(loaded.config, loaded.model_config, loaded.vocab)
    tensors = {k: v.contiguous() for k, v in loaded.state_dict.items()}
    with atomic_path(out) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt", "model": MODEL_NAME})
    side = sidecar_path(out)
    atomic_write_text(side, json.dumps(payload, indent=1))
    return out, side
