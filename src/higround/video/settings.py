"""How clips are cut from a video, and the extraction settings a feature store records.

Frames are sampled at ``fps`` (sample ``k`` at ``k / fps`` seconds); clip ``j`` is the ``clip_frames``
samples from index ``j * stride``. :class:`FeatureSettings` adds the backbone and its feature size;
``higround extract`` writes them as attributes of the store's root and of every entry, training
records them in the checkpoint's ``features`` config section, and ``higround ground`` compares the
two. This module needs neither PyAV nor a backbone: the engine reads store settings through it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from higround.errors import ConfigError, DataError

if TYPE_CHECKING:
    from higround.engine.config import Config

# Root attribute marking a store written by ``higround extract`` (value: layout version).
STORE_FORMAT_ATTR = "higround_features"
STORE_FORMAT = 1
# Two clip lengths closer than this (seconds) are the same: fps survives a float32/YAML round trip.
_TIME_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ClipSampling:
    """Frame rate, clip length and clip step, in sampled frames.

    Attributes:
        fps: frames sampled per second of video.
        clip_frames: sampled frames per clip (1: one frame per clip, for image backbones).
        stride: sampled frames from one clip's start to the next one's.
    """

    fps: float = 1.0
    clip_frames: int = 1
    stride: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"clip sampling: fps must be > 0, got {self.fps}")
        if self.clip_frames < 1 or self.stride < 1:
            raise ConfigError(
                f"clip sampling: clip_frames and stride must be >= 1, got {self.clip_frames}, {self.stride}"
            )

    @property
    def clip_seconds(self) -> float:
        """Length of one clip in seconds."""
        return self.clip_frames / self.fps

    @property
    def step_seconds(self) -> float:
        """Seconds between consecutive clip starts."""
        return self.stride / self.fps

    def num_samples(self, end: float) -> int:
        """Sample times ``k / fps`` that fall before ``end`` seconds (at least 1)."""
        return max(1, math.ceil(end * self.fps - 1e-9))

    def num_clips(self, end: float) -> int:
        """Clips cut from a video ending at ``end`` seconds.

        Clips start every ``stride`` samples while they start before the last sample and the clip
        before them did not already reach it; a last clip that runs past the end repeats the last frame.
        """
        samples = self.num_samples(end)
        covering = 1 + math.ceil(max(samples - self.clip_frames, 0) / self.stride)
        return min(math.ceil(samples / self.stride), covering)

    def clip_times(self, num_clips: int, end: float) -> np.ndarray:
        """``(num_clips, 2)`` float64 start and end seconds of each clip, ends clipped to ``end``."""
        starts = np.arange(num_clips, dtype=np.float64) * self.step_seconds
        return np.stack([starts, np.minimum(starts + self.clip_seconds, end)], axis=1)


@dataclass(frozen=True)
class FeatureSettings:
    """What a feature store's clips are: the backbone, its feature size and the clip sampling."""

    backbone: str
    dim: int
    sampling: ClipSampling

    def to_attrs(self) -> dict[str, Any]:
        """HDF5 attributes (plain scalars) describing these settings."""
        return {
            "backbone": self.backbone,
            "dim": self.dim,
            **asdict(self.sampling),
            "clip_seconds": self.sampling.clip_seconds,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str) -> FeatureSettings:
        """Settings from attributes written by :meth:`to_attrs`.

        Raises:
            DataError: an attribute is missing or of the wrong type (``where`` names the file/entry).
        """
        try:
            return cls(
                backbone=str(attrs["backbone"]),
                dim=int(attrs["dim"]),
                sampling=ClipSampling(float(attrs["fps"]), int(attrs["clip_frames"]), int(attrs["stride"])),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{where}: extraction settings are incomplete or malformed: {err!r}") from err

    def describe(self) -> str:
        """One line for messages: backbone, dimension, clip length and rate."""
        s = self.sampling
        return (
            f"backbone {self.backbone} ({self.dim}-d), {s.clip_frames} frame(s) per clip at {s.fps:g} fps "
            f"({s.clip_seconds:g} s clips every {s.step_seconds:g} s)"
        )

    def mismatch(self, other: FeatureSettings) -> str | None:
        """Why features of ``other`` cannot stand in for features of these settings (``None``: they can)."""
        if self.backbone != other.backbone:
            return f"backbone {other.backbone!r} instead of {self.backbone!r}"
        if self.dim != other.dim:
            return f"{other.dim}-d features instead of {self.dim}-d"
        a, b = self.sampling, other.sampling
        if abs(a.clip_seconds - b.clip_seconds) > _TIME_TOLERANCE:
            return f"{b.clip_seconds:g} s clips instead of {a.clip_seconds:g} s"
        if abs(a.step_seconds - b.step_seconds) > _TIME_TOLERANCE:
            return f"a clip every {b.step_seconds:g} s instead of every {a.step_seconds:g} s"
        return None


def read_store_settings(path: str | Path) -> FeatureSettings | None:
    """The settings of an HDF5 store written by ``higround extract``; ``None`` for any other store
    (a released feature file, a folder of .npy files), whose settings are unknown.

    Raises:
        DataError: the file is not readable HDF5, or its settings are malformed.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() not in (".h5", ".hdf5"):
        return None
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
    except OSError as err:
        raise DataError(f"{path}: cannot open as HDF5: {err}") from err
    if STORE_FORMAT_ATTR not in attrs:
        return None
    if int(attrs[STORE_FORMAT_ATTR]) != STORE_FORMAT:
        raise DataError(
            f"{path}: feature store layout {attrs[STORE_FORMAT_ATTR]}, this version reads {STORE_FORMAT}"
        )
    return FeatureSettings.from_attrs(attrs, str(path))


def settings_from_config(config: Config) -> FeatureSettings | None:
    """The feature settings a training recipe records (``None`` when its ``features`` section or
    ``model.video_dim`` is not filled in, e.g. a model trained on released features)."""
    f, dim = config.features, config.model.get("video_dim")
    if f.backbone is None or f.fps is None or f.clip_frames is None or f.stride is None or dim is None:
        return None
    return FeatureSettings(f.backbone, int(dim), ClipSampling(f.fps, f.clip_frames, f.stride))


def record_store_settings(config: Config, store: str | Path) -> Config:
    """``config`` with its ``features`` section filled from ``store``'s extraction settings (unchanged
    for a store without them), so that checkpoints carry the backbone and the clip sampling.

    Raises:
        ConfigError: the recipe sets a ``features`` value that differs from the store's.
    """
    from higround.engine.config import FeaturesConfig  # the engine imports this module

    stored = read_store_settings(store)
    if stored is None:
        return config
    found = FeaturesConfig(
        stored.backbone, stored.sampling.fps, stored.sampling.clip_frames, stored.sampling.stride
    )
    for name in ("backbone", "fps", "clip_frames", "stride"):
        given, actual = getattr(config.features, name), getattr(found, name)
        if given is not None and given != actual and not (name == "fps" and math.isclose(given, actual)):
            raise ConfigError(
                f"config: features.{name}={given!r} but the store {store} was extracted with {actual!r}"
            )
    return replace(config, features=found)
