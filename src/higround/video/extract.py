"""Raw videos -> the HDF5 feature store the training readers use (``higround extract``).

Store layout (readable by :func:`higround.data.features.open_store` as-is, key ``{video_id}``):

* one float32 ``(T, D)`` dataset per video, named by the video file's stem (``v_abc.mp4`` -> ``v_abc``),
  with attributes ``clip_starts`` / ``clip_ends`` (seconds), ``duration`` (the decoded video's end),
  ``source`` (the file name) and the :class:`FeatureSettings` (``backbone``, ``dim``, ``fps``,
  ``clip_frames``, ``stride``, ``clip_seconds``);
* root attributes: the same settings and ``higround_features`` (layout version).

Progress is kept per video: each finished video is written atomically to its own small HDF5 file
in ``<store>.parts/``; when a process has gone through its videos it merges every part into the
store (under a file lock, through a temp file and a rename) and deletes the merged parts, and the
folder with its lock when nothing else is left in it. A rerun skips videos already in the store or
in a part, so an interrupted run resumes where it stopped (the temp files of the killed writes are
removed), and shards (``shard=(i, n)``) of one video list may run at the same time in separate
processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from higround.data.features import open_store, video_stem
from higround.errors import ConfigError, DataError
from higround.io import atomic_path, remove_stale_temps
from higround.video.backbones import Backbone, BackboneSpec
from higround.video.decode import ClipReader
from higround.video.settings import (
    STORE_FORMAT,
    STORE_FORMAT_ATTR,
    ClipSampling,
    FeatureSettings,
    read_store_settings,
)

LOCK_NAME = ".lock"


@dataclass
class VideoFeatures:
    """One video's clip features with their times.

    Attributes:
        video_id: the id (file stem, or the store entry's name).
        features: ``(T, D)`` float32.
        clip_times: ``(T, 2)`` start and end seconds of every clip.
        duration: the video's end in seconds.
        settings: how the features were extracted (``None`` when unknown, e.g. a released store).
    """

    video_id: str
    features: np.ndarray
    clip_times: np.ndarray
    duration: float
    settings: FeatureSettings | None


@dataclass
class ExtractionSummary:
    """What one extraction run did.

    Attributes:
        extracted: ids of the videos extracted now.
        skipped: ids already in the store (or in a finished part) and not extracted again.
        failed: video file -> why it could not be extracted.
        clips: clips extracted now.
        video_seconds: seconds of video extracted now.
        seconds: wall-clock time of the run.
    """

    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    clips: int = 0
    video_seconds: float = 0.0
    seconds: float = 0.0

    def line(self) -> str:
        """One summary line: counts and throughput."""
        seconds = max(self.seconds, 1e-9)
        return (
            f"{len(self.extracted)} extracted, {len(self.skipped)} skipped (already done), "
            f"{len(self.failed)} failed; {self.clips} clips from {self.video_seconds:.1f} s of video "
            f"in {self.seconds:.1f} s ({self.video_seconds / seconds:.2f} video-s/s, "
            f"{self.clips / seconds:.2f} clips/s)"
        )


def settings_of(
    backbone: Backbone | BackboneSpec, fps: float, clip_frames: int | None = None, stride: int | None = None
) -> FeatureSettings:
    """The settings of ``backbone`` (loaded, or its spec) at ``fps``; clip length and stride default
    to the backbone's clip (the stride to the clip length), as ``higround extract`` and
    :func:`~higround.video.grounding.plan_extraction` both take them."""
    spec = backbone if isinstance(backbone, BackboneSpec) else backbone.spec
    frames = clip_frames or spec.clip_frames
    return FeatureSettings(spec.name, spec.dim, ClipSampling(fps, frames, stride or frames))


def encode_batches(
    path: str | Path, backbone: Backbone, settings: FeatureSettings, batch_size: int
) -> tuple[ClipReader, Iterator[np.ndarray]]:
    """The clip reader of ``path`` and an iterator of ``(b, D)`` feature batches, in time order.

    Only ``batch_size`` clips are held at once. The reader's ``end`` is set once the iterator is done.
    """
    if settings.backbone != backbone.name or settings.dim != backbone.dim:
        raise ConfigError(
            f"settings of {settings.backbone} ({settings.dim}-d) used with backbone {backbone.name}"
        )
    reader = ClipReader(path, settings.sampling, backbone.size)

    def batches() -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        for clip in reader:
            pending.append(clip)
            if len(pending) == batch_size:
                yield backbone.encode(np.stack(pending))
                pending = []
        if pending:
            yield backbone.encode(np.stack(pending))

    return reader, batches()


def encode_video(
    path: str | Path,
    backbone: Backbone,
    settings: FeatureSettings,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> VideoFeatures:
    """All clip features of one video, in memory (``(T, D)`` is small; frames are streamed).

    Raises:
        FileNotFoundError: no such file.
        DataError: the file is not a decodable video.
    """
    reader, batches = encode_batches(path, backbone, settings, batch_size)
    parts = []
    for batch in batches:
        parts.append(batch)
        if on_batch is not None:
            on_batch(len(batch))
    assert reader.end is not None  # set when the reader is exhausted
    features = np.concatenate(parts)
    times = settings.sampling.clip_times(len(features), reader.end)
    return VideoFeatures(Path(path).stem, features, times, reader.end, settings)


def parts_dir(store: str | Path) -> Path:
    """The folder of finished-but-unmerged videos beside ``store`` (``<store>.parts``)."""
    store = Path(store)
    return store.with_name(store.name + ".parts")


def _entry_attrs(video: VideoFeatures, source: str) -> dict[str, object]:
    assert video.settings is not None
    return {
        **video.settings.to_attrs(),
        "clip_starts": video.clip_times[:, 0],
        "clip_ends": video.clip_times[:, 1],
        "duration": video.duration,
        "source": source,
    }


def _write_part(
    path: Path, backbone: Backbone, settings: FeatureSettings, batch_size: int, parts: Path, progress: bool
) -> tuple[int, float]:
    """Extract ``path`` into ``parts/<id>.h5`` atomically, appending batch by batch; (clips, end).

    ``progress``: show a bar counting the video's clips (nothing is printed without it).
    """
    from tqdm import tqdm

    reader, batches = encode_batches(path, backbone, settings, batch_size)
    with tqdm(desc=path.stem, unit="clip", leave=False, dynamic_ncols=True, disable=not progress) as bar:
        return _fill_part(path, reader, batches, settings, parts, bar.update)


def _fill_part(
    path: Path,
    reader: ClipReader,
    batches: Iterator[np.ndarray],
    settings: FeatureSettings,
    parts: Path,
    on_batch: Callable[[int], object],
) -> tuple[int, float]:
    video_id = path.stem
    with atomic_path(parts / f"{video_id}.h5") as tmp, h5py.File(tmp, "w") as f:
        data = f.create_dataset(
            video_id, shape=(0, settings.dim), maxshape=(None, settings.dim), dtype="float32",
            chunks=(64, settings.dim),
        )  # fmt: skip
        for batch in batches:
            data.resize(len(data) + len(batch), axis=0)
            data[-len(batch) :] = batch
            on_batch(len(batch))
        assert reader.end is not None
        times = settings.sampling.clip_times(len(data), reader.end)
        video = VideoFeatures(video_id, np.empty((0, 0)), times, reader.end, settings)
        data.attrs.update(_entry_attrs(video, path.name))
    return len(times), reader.end


def _check_store_settings(store: Path, settings: FeatureSettings) -> None:
    if not store.exists():
        return
    found = read_store_settings(store)
    if found is None:
        raise ConfigError(f"{store}: exists but was not written by higround extract; choose another --out")
    if found != settings:
        raise ConfigError(
            f"{store}: holds features of {found.describe()}; this run asks for {settings.describe()}. "
            "Use another --out (one store holds one kind of feature)."
        )


def _done_ids(store: Path, parts: Path) -> set[str]:
    done: set[str] = set()
    if store.exists():
        with h5py.File(store, "r") as f:
            done.update(f.keys())
    if parts.is_dir():
        done.update(p.stem for p in parts.glob("*.h5"))
    return done


@contextmanager
def _parts_lock(parts: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``parts`` (``<parts>/.lock``, created as needed).

    The lock file is removed by the run that leaves the folder empty (:func:`merge_parts`), so a
    process that waited on a lock file may find it unlinked once it holds it: it then takes the
    current one, so that two processes never both believe they hold the lock.
    """
    import fcntl  # POSIX only; imported here so that reading features works everywhere

    while True:
        parts.mkdir(parents=True, exist_ok=True)
        try:
            lock = (parts / LOCK_NAME).open("a")
        except FileNotFoundError:  # the folder went between mkdir and open
            continue
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held = os.fstat(lock.fileno())
            try:
                current = os.stat(parts / LOCK_NAME)
            except FileNotFoundError:
                continue
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                yield
                return


def merge_parts(store: str | Path, settings: FeatureSettings) -> int:
    """Merge every finished part in ``<store>.parts/`` into ``store`` (atomically, under a file
    lock so concurrent shards merge one after the other) and delete the merged parts.

    The folder and its lock file are removed when nothing else is left in them (no other shard's
    video in progress), so a complete run leaves only the store. Returns the number of videos merged.

    Raises:
        DataError: a part was extracted with other settings.
    """
    store, parts = Path(store), parts_dir(store)
    with _parts_lock(parts):
        files = sorted(parts.glob("*.h5"))
        if files:
            _merge_into(store, files, settings)
            for file in files:
                file.unlink()
        if [p.name for p in parts.iterdir()] == [LOCK_NAME]:
            # Unlinked while held: a process waiting on it re-takes the lock (see _parts_lock).
            (parts / LOCK_NAME).unlink()
            with suppress(OSError):  # a shard may have just started a part in it
                parts.rmdir()
    return len(files)


def _merge_into(store: Path, files: Sequence[Path], settings: FeatureSettings) -> None:
    with atomic_path(store) as tmp, h5py.File(tmp, "w") as out:
        out.attrs.update({STORE_FORMAT_ATTR: STORE_FORMAT, **settings.to_attrs()})
        if store.exists():
            with h5py.File(store, "r") as old:
                for name in old:
                    old.copy(old[name], out, name=name)  # copied dataset by dataset: bounded memory
        for file in files:
            with h5py.File(file, "r") as part:
                for name in part:
                    found = FeatureSettings.from_attrs(part[name].attrs, f"{file}:{name}")
                    if found != settings:
                        raise DataError(
                            f"{file}: extracted with {found.describe()}, not {settings.describe()}"
                        )
                    if name in out:
                        del out[name]
                    part.copy(part[name], out, name=name)


def shard_of(videos: Sequence[Path], shard: tuple[int, int]) -> list[Path]:
    """The videos of shard ``i`` of ``n``: every n-th video of the list sorted by id, from the i-th.

    Raises:
        ConfigError: a bad shard, or two files with the same id (stem).
    """
    index, count = shard
    if not (count >= 1 and 0 <= index < count):
        raise ConfigError(f"shard {index}/{count}: expected 0 <= i < n")
    by_id: dict[str, Path] = {}
    for video in videos:
        if video.stem in by_id and by_id[video.stem] != video:
            raise ConfigError(f"two videos have the id {video.stem!r}: {by_id[video.stem]} and {video}")
        by_id[video.stem] = video
    return [by_id[k] for k in sorted(by_id)][index::count]


def env_shard() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as set by torchrun / Lightning launchers; ``(0, 1)`` when unset."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def extract_store(
    videos: Sequence[str | Path],
    store: str | Path,
    backbone: Backbone,
    settings: FeatureSettings,
    *,
    batch_size: int = 16,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    report: Callable[[str], None] = print,
) -> ExtractionSummary:
    """Extract the features of ``videos`` (this process's shard of them) into ``store``.

    Videos already in the store or in a finished part are skipped. A video that cannot be
    decoded is reported through ``report`` by name, counted in :attr:`ExtractionSummary.failed`,
    and the others go on. At the end the finished parts are merged into the store.

    Raises:
        ConfigError: the store exists with other settings, a bad shard, or two videos share an id.
    """
    store = Path(store)
    summary = ExtractionSummary()
    started = time.perf_counter()
    _check_store_settings(store, settings)
    mine = shard_of([Path(v) for v in videos], shard)
    parts = parts_dir(store)
    # Leftovers of killed runs: their half-written parts and store copies (finished parts stay).
    remove_stale_temps(parts)
    remove_stale_temps(store.parent, store.name)
    done = _done_ids(store, parts)
    for path in mine:
        if path.stem in done:
            summary.skipped.append(path.stem)
            continue
        try:
            clips, end = _write_part(path, backbone, settings, batch_size, parts, progress)
        except (DataError, FileNotFoundError) as err:
            summary.failed[str(path)] = str(err)
            report(f"failed: {path}: {err}")
            continue
        summary.extracted.append(path.stem)
        summary.clips += clips
        summary.video_seconds += end
    merge_parts(store, settings)
    summary.seconds = time.perf_counter() - started
    return summary


class MissingDurationError(ConfigError):
    """A store that records no duration for a video, read without one."""


def stored_duration(store: str | Path, video_id: str) -> float | None:
    """The duration in seconds that an HDF5 store records for ``video_id``, ``None`` when none.

    Any HDF5 store may record it: a ``duration`` attribute on the video's entry, or on the group
    holding it (the ActivityNet C3D layout ``{video_id}/c3d_features``), as ``higround extract``
    and :func:`higround.data.features.write_hdf5_store` (``attrs=``) write it. The entry is found
    as the store finds it: by the id, or by an id that differs only by a video-file extension.

    Raises:
        DataError: the recorded duration is not a positive number.
    """
    path = Path(store)
    if path.is_dir() or path.suffix.lower() not in (".h5", ".hdf5"):
        return None  # .npy / .npz folders hold arrays only
    with h5py.File(path, "r") as f:
        names = [video_id, video_stem(video_id)]
        names += [n for n in f if n not in names and video_stem(n) == video_id]
        node = next((f[n] for n in names if n in f), None)
        if node is None:
            return None
        holders = [node, *(node[c] for c in node)] if isinstance(node, h5py.Group) else [node]
        value = next((h.attrs["duration"] for h in holders if "duration" in h.attrs), None)
    if value is None:
        return None
    try:
        duration = float(value)
    except (TypeError, ValueError):
        duration = float("nan")
    if not (np.isfinite(duration) and duration > 0):
        raise DataError(f"{store}: video {video_id!r} records duration {value!r}, not a positive number")
    return duration


def read_video_features(store: str | Path, video_id: str, duration: float | None = None) -> VideoFeatures:
    """One video's features from a store, with its clip times and duration.

    Stores written by ``higround extract`` record both (``duration`` is then not used). Any other store
    (a released feature file, a folder of .npy files) gives ``settings=None``; its clips are taken to
    cover the video in equal spans, as the readers resample them, over the duration the store records
    (:func:`stored_duration`) or, when it records none, ``duration`` in seconds.

    Raises:
        MissingDurationError: the store records no duration for the video and ``duration`` is not given.
        DataError: the video is not in the store (nearest ids named), or its entry is malformed.
    """
    features = open_store(store).get(video_id)
    settings = read_store_settings(store)
    if settings is None:
        given = stored_duration(store, video_id)
        given = duration if given is None else given
        if given is None:
            raise MissingDurationError(
                f"{store} records no duration for video {video_id!r}: give its duration in seconds "
                "(duration=)"
            )
        seconds = float(given)
        if not (np.isfinite(seconds) and seconds > 0):
            raise DataError(f"video {video_id!r}: duration {seconds} is not a positive number of seconds")
        edges = np.linspace(0.0, seconds, len(features) + 1)
        times = np.stack([edges[:-1], edges[1:]], axis=1)
        return VideoFeatures(video_id, features, times, seconds, None)
    with h5py.File(store, "r") as f:
        attrs = f[video_id if video_id in f else video_stem(video_id)].attrs
        times = np.stack([attrs["clip_starts"], attrs["clip_ends"]], axis=1).astype(np.float64)
        recorded = float(attrs["duration"])
    return VideoFeatures(video_id, features, times, recorded, settings)
