"""Streaming video decoding with PyAV: frames sampled at a fixed rate and grouped into clips.

A video is decoded once, front to back. Sample ``k`` (time ``k / fps``) is the decoded frame whose
timestamp is nearest that time; samples continue while their time is before the video's end (the
last frame's timestamp plus one frame period). Each sampled frame is resized (shorter side to
``size``, centre crop to ``size x size``) as soon as it is chosen, and only the frames of the clip
being assembled are kept, so memory does not depend on the video's length.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from higround.errors import ConfigError, DataError
from higround.video.settings import ClipSampling

INSTALL_HINT = "pip install 'higround[video]' (PyAV)"
# Frames ending this much before the stream's stated duration mean a truncated file (a cut mp4
# whose index survives decodes without error up to the cut); the larger of the two counts.
TRUNCATION_SECONDS = 1.0
TRUNCATION_FRACTION = 0.05


def _av() -> Any:
    """The ``av`` module, or a ConfigError naming the install command."""
    try:
        import av
    except ImportError as err:
        raise ConfigError(f"decoding video needs PyAV: {INSTALL_HINT}") from err
    return av


def _open(path: Path) -> tuple[Any, Any]:
    """The open container and its first video stream; unreadable input raises DataError."""
    av = _av()
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot open as a video: {err}") from err
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame- and slice-threaded decoding; output order is unchanged
    return container, stream


def to_rgb(frame: Any, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8 RGB: shorter side scaled to ``size``, then a centre crop."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    w2, h2 = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.reformat(width=w2, height=h2, format="rgb24").to_ndarray()
    top, left = (h2 - size) // 2, (w2 - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


class FrameSampler:
    """Frames of one video at ``k / fps`` seconds, ``k = 0, 1, ...``, as ``(size, size, 3)`` uint8.

    Iterate once; afterwards :attr:`end` is the video's end time in seconds (last frame's time plus
    one frame period).

    Raises (while iterating):
        FileNotFoundError: the file does not exist.
        DataError: the file is not a decodable video, holds no decodable frame, or its frames stop
            well before the duration its video stream states (a truncated file; checked at the end).
    """

    def __init__(self, path: str | Path, fps: float, size: int) -> None:
        """Sample ``path`` at ``fps`` frames per second, each resized to ``size``."""
        self.path = Path(path)
        self.fps = fps
        self.size = size
        self.end: float | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        av = _av()
        container, stream = _open(self.path)
        rate = float(stream.average_rate) if stream.average_rate else None
        stated = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        k = 0
        prev: Any = None
        prev_time = prev_gap = 0.0
        # The last converted frame and its picture (reused when fps is high). The frame itself is
        # held and compared by identity: an ``id`` alone could be reused by a later frame once the
        # earlier one is freed, which would hand back a stale picture.
        cache: tuple[Any, np.ndarray] | None = None

        def convert(frame: Any) -> np.ndarray:
            nonlocal cache
            if cache is None or cache[0] is not frame:
                cache = (frame, to_rgb(frame, self.size))
            return cache[1]

        try:
            for frame in container.decode(stream):
                time = frame.time
                if time is None or (prev is not None and time <= prev_time):
                    continue  # untimed or out-of-order frames cannot be placed on the time axis
                while k / self.fps <= time:
                    target = k / self.fps
                    nearest = frame if prev is None or time - target < target - prev_time else prev
                    yield convert(nearest)
                    k += 1
                if prev is not None:
                    prev_gap = time - prev_time
                prev, prev_time = frame, time
        except av.FFmpegError as err:
            raise DataError(f"{self.path}: decoding failed after {k} sampled frame(s): {err}") from err
        finally:
            container.close()
        if prev is None:
            raise DataError(f"{self.path}: holds no decodable video frame")
        self.end = prev_time + (1.0 / rate if rate else prev_gap)
        if stated is not None and self.end < stated - max(TRUNCATION_SECONDS, TRUNCATION_FRACTION * stated):
            raise DataError(
                f"{self.path}: frames stop at {self.end:.2f} s but the video stream states {stated:.2f} s "
                "(truncated or corrupt file)"
            )
        while k / self.fps < self.end:
            yield convert(prev)
            k += 1


class ClipReader:
    """The clips of one video as ``(clip_frames, size, size, 3)`` uint8 arrays, in time order.

    Follows :meth:`ClipSampling.num_clips`: a clip is yielded as soon as its last frame is sampled;
    after the last frame, one clip padded with repeats of the last frame covers any samples the
    full clips missed. Iterate once; afterwards :attr:`end` is the video's end time in seconds.
    """

    def __init__(self, path: str | Path, sampling: ClipSampling, size: int) -> None:
        """Clips of ``path`` cut by ``sampling``, frames resized to ``size``."""
        self.sampling = sampling
        self.frames = FrameSampler(path, sampling.fps, size)

    @property
    def end(self) -> float | None:
        """The video's end time in seconds, once iterated."""
        return self.frames.end

    def __iter__(self) -> Iterator[np.ndarray]:
        length, stride = self.sampling.clip_frames, self.sampling.stride
        window: collections.deque[np.ndarray] = collections.deque(maxlen=length)
        start = 0  # sample index where the next clip starts
        count = 0
        for k, frame in enumerate(self.frames):
            window.append(frame)
            count = k + 1
            if k == start + length - 1:
                yield np.stack(window)
                start += stride
        # The padded tail clip: only when its start exists and the previous clip did not reach the end.
        if start < count and (start == 0 or start - stride + length < count):
            have = list(window)[-(count - start) :]  # fewer than clip_frames samples, all in the window
            yield np.stack(have + [have[-1]] * (length - len(have)))


def probe_duration(path: str | Path) -> float:
    """The duration in seconds from the container's metadata (no frame is decoded).

    Raises:
        DataError: the file is not a video or states no duration.
    """
    path = Path(path)
    container, stream = _open(path)
    try:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return float(container.duration) / 1_000_000  # AV_TIME_BASE units
    finally:
        container.close()
    raise DataError(f"{path}: the container states no duration")


def thumbnails(path: str | Path, times: np.ndarray, height: int = 96) -> list[tuple[float, np.ndarray]]:
    """One ``(height, W, 3)`` uint8 RGB frame near each of ``times`` (seconds), found by seeking.

    Each time seeks to the keyframe before it and decodes forward to the first frame at or past it,
    so the cost does not depend on the video's length. Times past the last frame get the last frame.

    Raises:
        DataError: the file is not a decodable video.
    """
    av = _av()
    path = Path(path)
    container, stream = _open(path)
    out: list[tuple[float, np.ndarray]] = []
    try:
        for t in np.asarray(times, dtype=np.float64):
            container.seek(max(0, int(t / stream.time_base)), stream=stream, backward=True)
            chosen = None
            for frame in container.decode(stream):
                chosen = frame
                if frame.time is not None and frame.time >= t:
                    break
            if chosen is not None:
                width = max(1, round(chosen.width * height / chosen.height))
                out.append(
                    (float(t), chosen.reformat(width=width, height=height, format="rgb24").to_ndarray())
                )
    except av.FFmpegError as err:
        raise DataError(f"{path}: decoding thumbnails failed: {err}") from err
    finally:
        container.close()
    return out
