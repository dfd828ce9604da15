"""Self-contained checkpoints: weights + config + vocabulary (+ word vectors, inside the weights).

A training checkpoint is a Lightning ``.ckpt`` (a ``torch.save`` dict) holding the usual Lightning
entries (``state_dict`` with keys ``model.<the model's key>``, optimiser and loop states for
resuming) plus one entry ``"higround"``: ``{"format_version", "model", "config", "vocab"}`` in plain
JSON-compatible types. ``"model"`` is the model family's name (:mod:`higround.models.registry`) and
``config["model"]`` its config with ``"family"`` first; a checkpoint whose ``config["model"]`` has no
``"family"`` (written before families, always HSCNet's) is read as the family ``"model"`` names.
The embedding matrix (the initial word vectors) is a weight of the model, so a checkpoint loads
with nothing else: no feature file, no GloVe file, no annotation file.

:func:`export_safetensors` writes the weights alone as ``.safetensors`` with a JSON sidecar holding
the same ``"higround"`` entry; :func:`load_checkpoint` reads either form. Every write is atomic
(temp file in the same folder + ``os.replace``): Lightning's own local save writes its temp file in
the system temp folder and *moves* it, which is a copy (not atomic) when that folder is on another
filesystem, so training uses :class:`higround.engine.trainer.AtomicCheckpointIO` instead.
This module does not import Lightning: loading a checkpoint to ground a video does not pay for it.
"""

from __future__ import annotations

import json
import pickle
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import Tensor

from higround.engine.config import Config
from higround.errors import ConfigError
from higround.io import atomic_path, atomic_write_bytes, atomic_write_text
from higround.models.family import EMBEDDING_KEY, FamilyConfig, ModelFamily
from higround.models.registry import FAMILIES, family_names
from higround.text.vocab import Vocabulary

CHECKPOINT_KEY = "higround"
FORMAT_VERSION = 1
# Prefix of the model's weights in a Lightning state dict (the LightningModule's attribute name).
STATE_PREFIX = "model."
# How torch's safe loader names a class it refuses to unpickle.
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


@dataclass
class LoadedCheckpoint:
    """What a checkpoint holds, ready to rebuild the model.

    Attributes:
        path: the file read.
        config: the training recipe (model dimensions filled in).
        model_config: the model's hyper-parameters (its family's config class).
        vocab: the vocabulary the model was trained with.
        state_dict: the model's weights (no ``model.`` prefix), word vectors included.
        epoch: the epoch the checkpoint was written after (``None`` for exported weights).
    """

    path: Path
    config: Config
    model_config: FamilyConfig
    vocab: Vocabulary
    state_dict: dict[str, Tensor]
    epoch: int | None = None

    @property
    def family(self) -> ModelFamily[Any, Any]:
        """The model family of the checkpoint."""
        return self.config.family

    def build_model(self) -> torch.nn.Module:
        """The model with these weights, in eval mode, on CPU."""
        vectors = self.state_dict.get(EMBEDDING_KEY)
        if vectors is None:
            raise ConfigError(f"{self.path}: checkpoint weights have no {EMBEDDING_KEY}")
        try:
            model = self.family.build_model(self.model_config, vectors)
            model.load_state_dict(self.state_dict, strict=True)
        except (RuntimeError, ValueError) as err:
            # One line: torch lists every mismatched key on lines of its own.
            why = " ".join(str(err).split())
            raise ConfigError(f"{self.path}: weights do not fit the model of its config: {why}") from err
        return model.eval()


def checkpoint_payload(config: Config, model_config: FamilyConfig, vocab: Vocabulary) -> dict[str, Any]:
    """The ``"higround"`` entry of a checkpoint: format version, model family, config and vocabulary.

    The stored config has the model dimensions filled in, so it rebuilds the model without data.
    """
    full = config.with_model(model_config)
    return {
        "format_version": FORMAT_VERSION,
        "model": full.family.name,
        "config": full.to_dict(),
        "vocab": vocab.to_dict(),
    }


def _parse_payload(payload: Any, path: Path) -> tuple[Config, FamilyConfig, Vocabulary]:
    """The config, model config and vocabulary of a ``"higround"`` entry read from ``path``.

    Raises:
        ConfigError: a missing or malformed entry, named with ``path``.
    """
    if not isinstance(payload, Mapping):
        found = "no" if payload is None else f"a {type(payload).__name__} as its"
        raise ConfigError(f"{path}: not a higround checkpoint ({found} {CHECKPOINT_KEY!r} entry)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ConfigError(f"{path}: checkpoint format {version!r}, this version reads {FORMAT_VERSION}")
    name = payload.get("model")
    if not isinstance(name, str) or name not in FAMILIES:
        raise ConfigError(
            f"{path}: checkpoint of model {name!r}, which this version does not know "
            f"(model families: {', '.join(family_names())})"
        )
    missing = [key for key in ("config", "vocab") if not isinstance(payload.get(key), Mapping)]
    if missing:
        raise ConfigError(f"{path}: malformed checkpoint: no {' or '.join(map(repr, missing))} mapping")
    stored = payload["config"]
    model = stored.get("model")
    if isinstance(model, Mapping) and "family" not in model:
        # Written before families: the payload's "model" names the family.
        stored = {**stored, "model": {"family": name, **model}}
    try:
        config = Config.from_dict(stored)
        model_config = config.model_config()
        vocab = Vocabulary.from_dict(payload["vocab"])
    except (ValueError, TypeError, KeyError, AttributeError) as err:  # ConfigError is a ValueError
        raise ConfigError(f"{path}: malformed checkpoint: {err}") from err
    if config.family.name != name:
        raise ConfigError(
            f"{path}: malformed checkpoint: model {name!r} but its config's model.family is "
            f"{config.family.name!r}"
        )
    return config, model_config, vocab


def _strip_prefix(state: Any, path: Path) -> dict[str, Tensor]:
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path}: malformed checkpoint: its state_dict is a {type(state).__name__}")
    weights = {k[len(STATE_PREFIX) :]: v for k, v in state.items() if str(k).startswith(STATE_PREFIX)}
    if not weights:
        raise ConfigError(f"{path}: checkpoint state_dict holds no '{STATE_PREFIX}*' weights")
    bad = next((k for k, v in weights.items() if not isinstance(v, Tensor)), None)
    if bad is not None:
        raise ConfigError(f"{path}: malformed checkpoint: weight {bad!r} is not a tensor")
    return weights


def sidecar_path(weights: str | Path) -> Path:
    """The JSON sidecar beside a ``.safetensors`` file (``model.safetensors`` -> ``model.json``)."""
    return Path(weights).with_suffix(".json")


def _corrupt(path: Path, what: str, reader: str) -> ConfigError:
    """The error for a file that does not read as a ``reader`` (``torch.load`` / safetensors failed).

    The reader's own text is not passed on: it is a parser's detail (``Unsupported operand 168``)
    and torch's advice to retry with ``weights_only=False`` would run whatever code the file holds.
    """
    size = path.stat().st_size
    why = "the file is empty (0 bytes)" if size == 0 else f"its {size} bytes do not read as a {reader}"
    return ConfigError(f"{path}: not a {what}, or truncated or corrupt: {why}")


def safe_torch_load(path: str | Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, no pickled code runs.

    ``what`` names the kind of file in the errors (``"checkpoint"``, ``"weights file"``).

    Raises:
        ConfigError: one line naming the file: not a torch file (truncated, corrupt, empty), or one
            holding other Python objects (named; never loaded another way).
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # A real torch file holding objects the safe loader refuses names the first of them.
        refused = _REFUSED_GLOBAL.search(str(err))
        if refused is None:
            raise _corrupt(path, what, "torch file") from err
        raise ConfigError(
            f"{path}: holds a Python object of type {refused.group(1)}, which higround does not load "
            f"(a {what} is read without running pickled code)"
        ) from err
    except Exception as err:  # torch raises many types for a file that is not a torch file
        raise _corrupt(path, what, "torch file") from err


def _read_sidecar(side: Path) -> Any:
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{side}: checkpoint sidecar is not UTF-8 text (byte {err.start})") from err
    except OSError as err:
        raise ConfigError(f"{side}: cannot read the checkpoint sidecar: {err.strerror or err}") from err
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{side}: checkpoint sidecar is not JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Read a training checkpoint (``.ckpt``) or exported weights (``.safetensors`` + ``.json``).

    ``.ckpt`` files are read with ``torch.load(weights_only=True)``: no pickled code runs; a file
    holding other Python objects is refused, never loaded another way.

    Raises:
        FileNotFoundError: the file (or the sidecar of a .safetensors file) does not exist.
        ConfigError: the file is not a higround checkpoint, is truncated or corrupt, or its format is
            unknown; one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        side = sidecar_path(path)
        if not side.is_file():
            raise FileNotFoundError(f"{path}: its config/vocabulary sidecar {side} is missing")
        config, model_config, vocab = _parse_payload(_read_sidecar(side), side)
        try:
            state = load_file(str(path), device=str(map_location))
        except Exception as err:  # safetensors raises its own error type (and OSError) for a bad file
            raise _corrupt(path, "checkpoint", "safetensors file") from err
        return LoadedCheckpoint(path, config, model_config, vocab, state)
    checkpoint = safe_torch_load(path, "checkpoint", map_location)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ConfigError(f"{path}: not a checkpoint (no state_dict)")
    config, model_config, vocab = _parse_payload(checkpoint.get(CHECKPOINT_KEY), path)
    state = _strip_prefix(checkpoint["state_dict"], path)
    epoch = checkpoint.get("epoch")
    return LoadedCheckpoint(
        path, config, model_config, vocab, state, epoch if isinstance(epoch, int) else None
    )


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temp file in the destination folder, moved into place."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: Config, vocab: Vocabulary) -> None:
    """Write a model of ``config``'s family (without training state) in the training-checkpoint
    layout, atomically; the model's hyper-parameters are its ``.config``."""
    state = {STATE_PREFIX + k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = checkpoint_payload(config, typing.cast(FamilyConfig, model.config), vocab)
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
    # Serialised in memory, then written like every other output: safetensors' save_file would
    # recreate the temp file and lose the mode atomic_path gives it (0600 instead of the umask's).
    atomic_write_bytes(out, save(tensors, metadata={"format": "pt", "model": loaded.family.name}))
    side = sidecar_path(out)
    atomic_write_text(side, json.dumps(payload, indent=1))
    return out, side
