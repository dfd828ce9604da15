"""Checkpoint vs. features compatibility, and the timeline picture of a grounded video.

A checkpoint trained on features written by ``higround extract`` records their
:class:`FeatureSettings` (its ``features`` config section plus ``model.video_dim``). Features of a
new video must match them: the same feature size always, and, when both sides are known, the same
backbone, clip length and clip step. A mismatch is a :class:`~higround.errors.ConfigError` saying
what differs, raised before any frame is decoded where possible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from higround.errors import ConfigError
from higround.video.backbones import backbone_spec
from higround.video.extract import settings_of
from higround.video.settings import ClipSampling, FeatureSettings
from higround.viz.timeline import TimelinePanel, TimelineRow


def plan_extraction(
    trained: FeatureSettings | None,
    video_dim: int,
    source: str,
    backbone: str | None = None,
    fps: float | None = None,
) -> FeatureSettings:
    """The settings to extract a new video with: the checkpoint's, with ``backbone`` / ``fps``
    overriding them (needed when the checkpoint records none); checked against the checkpoint.

    Raises:
        ConfigError: no settings known and no backbone given, or settings that do not fit the
            checkpoint (``source`` names it in the message).
    """
    if trained is None and backbone is None:
        raise ConfigError(
            f"{source}: the checkpoint records no feature extraction settings (trained on features not "
            "written by `higround extract`); pass --features STORE holding this video's features "
            "extracted like the training ones, or --backbone NAME (and --fps) to extract them"
        )
    name = backbone or (trained.backbone if trained is not None else "")
    spec = backbone_spec(name)
    if trained is not None and name == trained.backbone:
        sampling = trained.sampling
        if fps is not None:
            sampling = ClipSampling(fps, sampling.clip_frames, sampling.stride)
        planned = FeatureSettings(name, spec.dim, sampling)
    else:  # none recorded, or another backbone: its own clip, as `higround extract` defaults to
        planned = settings_of(spec, 1.0 if fps is None else fps)
    check_settings(trained, video_dim, planned, source)
    return planned


def check_settings(
    trained: FeatureSettings | None,
    video_dim: int,
    found: FeatureSettings | None,
    source: str,
    dim: int | None = None,
) -> None:
    """Raise unless features of ``found`` settings (or of size ``dim`` when unknown) fit a model
    trained on ``trained`` settings expecting ``video_dim``-d features.

    Raises:
        ConfigError: what differs (feature size, backbone, clip length or step), naming ``source``.
    """
    size = found.dim if found is not None else dim
    if size is not None and size != video_dim:
        what = found.describe() if found is not None else f"{size}-d features"
        raise ConfigError(
            f"{source}: the model expects {video_dim}-d clip features but got {what}; extract the video "
            "with the backbone the model was trained on"
            + (f" ({trained.describe()})" if trained is not None else "")
        )
    if trained is not None and found is not None:
        why = trained.mismatch(found)
        if why is not None:
            raise ConfigError(
                f"{source}: the model was trained on {trained.describe()}; these features have {why}"
            )


def grounding_panel(
    title: str,
    duration: float,
    sentences: Sequence[str],
    spans: Sequence[tuple[float, float]],
    paragraph_span: tuple[float, float] | None = None,
    thumbnails: Sequence[tuple[float, np.ndarray]] = (),
) -> TimelinePanel:
    """A timeline panel: the paragraph's span (when known), then one bar per sentence ``S1..Sn``
    labelled with its text, under a strip of the video's thumbnails."""
    rows = [TimelineRow("paragraph", [paragraph_span], "paragraph")] if paragraph_span is not None else []
    rows += [
        TimelineRow(f"S{i + 1}", [span], "final", text)
        for i, (text, span) in enumerate(zip(sentences, spans, strict=True))
    ]
    return TimelinePanel(title, duration, rows, tuple(thumbnails))
