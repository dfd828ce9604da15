"""Lazy stores of pre-extracted clip features, and resampling to a fixed number of clips.

A :class:`FeatureStore` maps a video id to its ``(T, D)`` float32 clip features, read from disk on
each :meth:`~FeatureStore.get` call: nothing holds a whole dataset in memory. Two layouts are
supported: one HDF5 file with one entry per video (:class:`HDF5Store`), and a folder with one
``.npy`` / ``.npz`` file per video (:class:`NpyFolderStore`). :func:`open_store` picks one from a
path. Where an entry lives is given by a *key template* holding ``{video_id}`` once, e.g.
``"{video_id}/c3d_features"`` for the ActivityNet C3D release. See docs/features.md.
"""

from __future__ import annotations

import difflib
import os
import string
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from higround.errors import ConfigError, DataError, HigroundError
from higround.io import atomic_path

# Suffixes stripped when an annotation id and a store id differ only by the video file's extension
# (TACoS annotations say "s13-d21.avi"; self-extracted features are often saved as "s13-d21").
# Only these: ids such as QVHighlights' "NUVyDFn8fUY_360.0_510.0" contain dots of their own.
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")

# What h5py raises on a damaged file (a corrupt B-tree, a truncated chunk, an unsupported type), which
# may surface only when an entry is looked up or read, long after the file opened fine.
_HDF5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)
_NPY_MAGIC = b"\x93NUMPY"


class FeatureStore(Protocol):
    """Per-video ``(T, D)`` clip features, read lazily from disk."""

    @property
    def name(self) -> str:
        """The store's path, as shown in error messages."""
        ...

    @property
    def dim(self) -> int:
        """Feature dimension ``D`` (read from one entry on first use)."""
        ...

    def __contains__(self, video_id: object) -> bool:
        """Whether the store holds features for ``video_id``."""
        ...

    def get(self, video_id: str) -> np.ndarray:
        """float32 ``(T, D)`` features of ``video_id``, read from disk now."""
        ...

    def video_ids(self) -> list[str]:
        """Every video id the store holds, sorted."""
        ...


def video_stem(video_id: str) -> str:
    """``video_id`` without a trailing video-file extension (see :data:`VIDEO_SUFFIXES`)."""
    lower = video_id.lower()
    for suffix in VIDEO_SUFFIXES:
        if lower.endswith(suffix) and len(video_id) > len(suffix):
            return video_id[: -len(suffix)]
    return video_id


class _KeyTemplate:
    """A ``/``-separated key template holding ``{video_id}`` exactly once, in one path component.

    Splits into the parent path (listed to enumerate ids), the component's prefix and suffix around
    the id, and the sub-path below it (e.g. ``c3d_features``).
    """

    def __init__(self, template: str) -> None:
        try:
            parsed = [
                (f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None
            ]
        except ValueError as e:
            raise ConfigError(f"feature key template {template!r} is not a valid format string: {e}") from e
        fields = [f for f, _, _ in parsed]
        if fields != ["video_id"]:
            raise ConfigError(
                f"feature key template {template!r} must contain '{{video_id}}' exactly once and no "
                f"other field (found {fields})"
            )
        if parsed[0][1] or parsed[0][2]:  # "{video_id!r}", "{video_id:>5}": ids are used verbatim
            raise ConfigError(
                f"feature key template {template!r} must hold a plain '{{video_id}}' (no conversion or "
                "format spec)"
            )
        self.template = template
        parts = template.strip("/").split("/")
        at = next(i for i, p in enumerate(parts) if "{video_id}" in p)
        self.parent = "/".join(parts[:at])
        self.prefix, self.suffix = parts[at].split("{video_id}")
        self.below = "/".join(parts[at + 1 :])

    def format(self, video_id: str) -> str:
        return self.template.format(video_id=video_id).strip("/")

    def ids_from_names(self, names: list[str]) -> list[str]:
        """Ids encoded in the names of the parent's children that fit the prefix/suffix."""
        lo, hi = len(self.prefix), len(self.suffix)
        return sorted(
            n[lo : len(n) - hi]
            for n in names
            if len(n) > lo + hi and n.startswith(self.prefix) and n.endswith(self.suffix)
        )


def _check_features(array: np.ndarray, store: str, video_id: str) -> np.ndarray:
    """``array`` as float32 ``(T, D)``; a wrong shape, dtype or a non-finite value raises DataError.

    Singleton axes between time and channels are dropped: LGI's released Charades I3D files are
    ``(T, 1, 1, 1024)`` and its loader squeezes them (``JonghwanMun/LGI4temporalgrounding``
    ``src/dataset/charades.py``).
    """
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DataError(f"{store}: features of video {video_id!r} have non-numeric dtype {array.dtype}")
    if array.ndim > 2 and all(size == 1 for size in array.shape[1:-1]):
        array = array.reshape(array.shape[0], array.shape[-1])
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(
            f"{store}: features of video {video_id!r} have shape {array.shape}, expected (T >= 1, D >= 1)"
        )
    features = np.asarray(array, dtype=np.float32)
    finite = np.isfinite(features)
    if not finite.all():
        row = int(np.argmin(finite.all(axis=1)))
        raise DataError(f"{store}: features of video {video_id!r} hold NaN or inf (first at clip {row})")
    return features


def l2_normalize(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Each row (last axis) divided by its L2 norm; rows with norm below ``eps`` are divided by ``eps``."""
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, eps).astype(features.dtype, copy=False)


class _TemplateStore:
    """Shared lookup logic: key template, id-suffix matching, error messages, ``dim``, ``get``."""

    def __init__(self, path: str | Path, key: str, normalize: bool, match_stem: bool) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.template = _KeyTemplate(key)
        self.normalize = normalize
        self.match_stem = match_stem
        self._dim: int | None = None
        self._stems: dict[str, str] | None = None  # stem -> store id, built on the first miss

    # Backend hooks.
    def _has(self, store_id: str) -> bool:
        raise NotImplementedError

    def _read(self, store_id: str) -> np.ndarray:
        raise NotImplementedError

    def _shape(self, store_id: str) -> tuple[int, ...]:
        raise NotImplementedError

    def _hint(self, video_id: str) -> str:
        return ""

    def video_ids(self) -> list[str]:
        """Every video id the store holds, sorted (names listed; no entry is read)."""
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        # The id index is rebuilt on demand: pickles (sent to DataLoader workers) stay small.
        return {k: v for k, v in self.__dict__.items() if k != "_stems"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stems = None

    def _resolve(self, video_id: str) -> str | None:
        """The store id holding ``video_id``: itself, else (``match_stem``) the same id up to a suffix."""
        if self._has(video_id):
            return video_id
        if not self.match_stem:
            return None
        stem = video_stem(video_id)
        if stem != video_id:
            return stem if self._has(stem) else None
        if self._stems is None:
            self._stems = {video_stem(i): i for i in self.video_ids() if video_stem(i) != i}
        return self._stems.get(video_id)

    def __contains__(self, video_id: object) -> bool:
        return isinstance(video_id, str) and self._resolve(video_id) is not None

    def _missing(self, video_id: str) -> DataError:
        ids = self.video_ids()
        near = difflib.get_close_matches(video_id, ids, n=3, cutoff=0.6)
        message = (
            f"{self.name}: no features for video {video_id!r} (key template "
            f"{self.template.template!r}, {len(ids)} video(s) in the store)"
        )
        if near:
            message += f"; nearest ids: {', '.join(near)}"
        return DataError(message + self._hint(video_id))

    def get(self, video_id: str) -> np.ndarray:
        """float32 ``(T, D)`` features of ``video_id``, read from disk now (L2-normalised if asked).

        Raises:
            DataError: the video is not in the store, or its entry is unreadable or not a finite
                non-empty 2-D array.
        """
        store_id = self._resolve(video_id)
        if store_id is None:
            raise self._missing(video_id)
        features = _check_features(self._read(store_id), self.name, video_id)
        return l2_normalize(features) if self.normalize else features

    @property
    def dim(self) -> int:
        """Feature dimension ``D``, from the first entry's shape (read once)."""
        if self._dim is None:
            ids = self.video_ids()
            if not ids:
                raise DataError(
                    f"{self.name}: feature store holds no video (key template {self.template.template!r})"
                )
            shape = self._shape(ids[0])
            if len(shape) < 2 or any(size != 1 for size in shape[1:-1]):  # (T, 1, 1, D) reads as (T, D)
                raise DataError(
                    f"{self.name}: features of video {ids[0]!r} have shape {shape}, expected (T, D)"
                )
            self._dim = int(shape[-1])
        return self._dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, key={self.template.template!r})"


class HDF5Store(_TemplateStore):
    """One HDF5 file, one dataset per video at ``key.format(video_id=...)``.

    The file is opened on first use and re-opened in any other process (tracked by ``os.getpid()``),
    so a store created before DataLoader workers fork is safe to use in them; pickling drops the handle.

    Args:
        path: the ``.h5`` / ``.hdf5`` file.
        key: dataset path template, e.g. ``"{video_id}"`` (TACoS ``tall_c3d_features.hdf5``) or
            ``"{video_id}/c3d_features"`` (ActivityNet ``sub_activitynet_v1-3.c3d.hdf5``).
        normalize: L2-normalise each clip in :meth:`get`.
        match_stem: also find an id that differs only by a video-file extension (``s13-d21.avi`` vs
            ``s13-d21``).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ConfigError: ``key`` is not a template holding ``{video_id}`` once.
    """

    def __init__(
        self, path: str | Path, key: str = "{video_id}", normalize: bool = False, match_stem: bool = True
    ) -> None:
        super().__init__(path, key, normalize, match_stem)
        if not self.path.is_file():
            raise FileNotFoundError(f"feature file not found: {self.path}")
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_file"], state["_pid"] = None, None  # a handle never crosses processes
        return state

    def _h5(self) -> h5py.File:
        # An HDF5 handle must not be shared across fork: open a fresh one in each process.
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as e:
                raise DataError(f"{self.name}: cannot open as HDF5: {e}") from e
            self._pid = os.getpid()
        return self._file

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """h5py's errors on a damaged file, raised while reading ``what``, as a DataError naming both."""
        try:
            yield
        except HigroundError:
            raise
        except _HDF5_ERRORS as e:
            raise DataError(
                f"{self.name}: cannot read {what}: {e} (is the file damaged or truncated?)"
            ) from e

    def close(self) -> None:
        """Close this process's file handle (it is re-opened on next use)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def _has(self, store_id: str) -> bool:
        key = self.template.format(store_id)
        with self._reading(f"entry {key!r}"):
            return self._h5().get(key, getclass=True) is h5py.Dataset

    def _read(self, store_id: str) -> np.ndarray:
        key = self.template.format(store_id)
        with self._reading(f"entry {key!r} (features of video {store_id!r})"):
            return np.asarray(self._h5()[key][()])

    def _shape(self, store_id: str) -> tuple[int, ...]:
        key = self.template.format(store_id)
        with self._reading(f"entry {key!r}"):
            node = self._h5().get(key)
            shape = tuple(node.shape) if isinstance(node, h5py.Dataset) else None
        if shape is None:
            raise self._missing(store_id)
        return shape

    def _hint(self, video_id: str) -> str:
        key = self.template.format(video_id)
        with self._reading(f"entry {key!r}"):
            node = self._h5().get(key)
        if isinstance(node, h5py.Group):
            with self._reading(f"group {key!r}"):
                inside = ", ".join(sorted(node)[:5])
            return (
                f"; {self.template.format(video_id)!r} is a group holding [{inside}], not a dataset: "
                f"pass key='{self.template.template}/<name>' (ActivityNet C3D: '{{video_id}}/c3d_features')"
            )
        return ""

    def video_ids(self) -> list[str]:
        """Every video id the store holds, sorted (names listed; no entry is read)."""
        where = repr(self.template.parent) if self.template.parent else "the root group"
        with self._reading(f"the entries of {where}"):
            f = self._h5()
            parent = f.get(self.template.parent) if self.template.parent else f
            names = list(parent.keys()) if isinstance(parent, h5py.Group) else []
        return self.template.ids_from_names(names)


class NpyFolderStore(_TemplateStore):
    """A folder of per-video ``.npy`` or ``.npz`` files at ``root / pattern.format(video_id=...)``.

    The pattern's suffix picks the format: ``.npy`` holds the ``(T, D)`` array itself (Charades I3D
    style), ``.npz`` holds it under ``npz_field`` (Moment-DETR / QVHighlights: ``features``).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ConfigError: the pattern does not hold ``{video_id}`` once or does not end in .npy / .npz.
    """

    def __init__(
        self,
        root: str | Path,
        pattern: str = "{video_id}.npy",
        npz_field: str = "features",
        normalize: bool = False,
        match_stem: bool = True,
    ) -> None:
        super().__init__(root, pattern, normalize, match_stem)
        if not self.path.is_dir():
            raise FileNotFoundError(f"feature folder not found: {self.path}")
        self.suffix = Path(pattern).suffix.lower()
        if self.suffix not in (".npy", ".npz"):
            raise ConfigError(
                f"{self.path}: feature file pattern {pattern!r} must end in .npy or .npz "
                "(e.g. '{video_id}.npy'; an HDF5 key template does not fit a folder)"
            )
        self.npz_field = npz_field

    def _file_of(self, store_id: str) -> Path:
        return self.path / self.template.format(store_id)

    def _has(self, store_id: str) -> bool:
        return self._file_of(store_id).is_file()

    def _load(self, store_id: str, header_only: bool = False) -> np.ndarray:
        """The video's array (``header_only``: memory-mapped, for a .npy's shape); a file that is not a
        .npy/.npz, is cut short or holds Python objects raises DataError naming it."""
        path = self._file_of(store_id)
        cannot = f"{path}: cannot read features of video {store_id!r}"
        array: np.ndarray | None = None
        try:
            with path.open("rb") as f:
                head = f.read(len(_NPY_MAGIC))
            # Checked first: without the header numpy falls back to unpickling and says so.
            if self.suffix == ".npy" and head != _NPY_MAGIC:
                raise DataError(f"{cannot}: not a .npy file (no NumPy header)")
            if self.suffix == ".npz" and not zipfile.is_zipfile(path):
                raise DataError(f"{cannot}: not a .npz file (not a zip archive)")
            if self.suffix == ".npy":
                return np.asarray(np.load(path, mmap_mode="r" if header_only else None, allow_pickle=False))
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if self.npz_field in names:
                    array = np.asarray(archive[self.npz_field])
        except HigroundError:
            raise
        except ValueError as e:
            if "allow_pickle" in str(e):  # numpy's advice to unpickle is not passed on
                raise DataError(f"{cannot}: it holds Python objects, not a numeric array") from e
            raise DataError(f"{cannot}: {e}") from e
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{cannot}: {e}") from e
        if array is None:
            raise DataError(
                f"{path}: video {store_id!r} has no array {self.npz_field!r} (arrays: {', '.join(names)})"
            )
        return array

    def _read(self, store_id: str) -> np.ndarray:
        return self._load(store_id)

    def _shape(self, store_id: str) -> tuple[int, ...]:
        return tuple(self._load(store_id, header_only=self.suffix == ".npy").shape)

    def video_ids(self) -> list[str]:
        """Every video id the folder holds, sorted (file names listed; no file is read)."""
        parent = self.path / self.template.parent
        if not parent.is_dir():
            return []
        return self.template.ids_from_names([e.name for e in os.scandir(parent)])


def _detect_hdf5_key(path: Path) -> str:
    """``"{video_id}"`` when the file's first entry is a dataset; ``"{video_id}/<name>"`` when it is a
    group holding one dataset ``<name>`` (the ActivityNet C3D layout)."""
    try:
        with h5py.File(path, "r") as f:
            first = next(iter(f), None)
            node = f[first] if first is not None else None
            if isinstance(node, h5py.Group):
                children = [n for n in node if isinstance(node[n], h5py.Dataset)]
                if len(children) == 1:
                    return "{video_id}/" + children[0]
    except _HDF5_ERRORS as e:
        raise DataError(f"{path}: cannot open as HDF5: {e}") from e
    return "{video_id}"


def open_store(
    path: str | Path,
    key: str | None = None,
    *,
    normalize: bool = False,
    npz_field: str = "features",
) -> FeatureStore:
    """The feature store at ``path``: :class:`HDF5Store` for a ``.h5``/``.hdf5`` file,
    :class:`NpyFolderStore` for a folder.

    With ``key=None`` the layout is detected: for HDF5, ``"{video_id}"`` or, when entries are groups
    holding one dataset, ``"{video_id}/<that dataset>"``; for a folder, ``"{video_id}.npy"`` or
    ``"{video_id}.npz"`` from the files it holds.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: ``path`` is neither an HDF5 file nor a folder of .npy/.npz files.
        ConfigError: a folder holds both .npy and .npz files and no ``key`` was given.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"feature store not found: {path}")
    if path.is_dir():
        if key is None:
            suffixes = {Path(e.name).suffix.lower() for e in os.scandir(path) if e.is_file()}
            found = sorted(suffixes & {".npy", ".npz"})
            if not found:
                raise DataError(f"{path}: folder holds no .npy or .npz feature files")
            if len(found) > 1:
                raise ConfigError(f"{path}: folder holds both .npy and .npz files; pass a key pattern")
            key = "{video_id}" + found[0]
        return NpyFolderStore(path, key, npz_field=npz_field, normalize=normalize)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return HDF5Store(path, key if key is not None else _detect_hdf5_key(path), normalize=normalize)
    raise DataError(f"{path}: not a feature store (expected a .h5/.hdf5 file or a folder of .npy/.npz)")


def write_hdf5_store(
    path: str | Path,
    items: Mapping[str, np.ndarray],
    key: str = "{video_id}",
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Write ``items`` (video id -> ``(T, D)`` features) as one HDF5 store, atomically.

    Each array is stored as float32 at ``key.format(video_id=...)``; ``attrs[video_id]`` (optional)
    becomes that dataset's attributes. The file is written next to ``path`` and moved into place, so
    readers never see a half-written store.

    Raises:
        DataError: an array is not a finite non-empty 2-D numeric array.
        ConfigError: ``key`` is not a template holding ``{video_id}`` once.
    """
    path = Path(path)
    template = _KeyTemplate(key)
    checked = {vid: _check_features(np.asarray(a), str(path), vid) for vid, a in items.items()}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for vid, features in checked.items():
            dataset = f.create_dataset(template.format(vid), data=features)
            for name, value in (attrs or {}).get(vid, {}).items():
                dataset.attrs[name] = value


def resample(features: np.ndarray, num_clips: int) -> np.ndarray:
    """Resample ``(T, D)`` features to ``(num_clips, D)`` float32.

    With ``N = num_clips``, output clip ``i`` covers the span ``[i*T/N, (i+1)*T/N)`` of the input.

    * ``T >= N`` (pooling): output ``i`` is the mean of input rows ``s_i .. s_{i+1} - 1`` where
      ``s_i = floor(i*T/N)`` and ``s_N = T``. Every input row is used exactly once, each output averages
      ``floor(T/N)`` or ``ceil(T/N)`` rows; ``T == N`` is the identity.
    * ``T < N`` (interpolation): output ``i`` is the input linearly interpolated at the span's centre,
      row coordinate ``p_i = (i + 0.5)*T/N - 0.5`` clipped to ``[0, T-1]`` (input row ``j`` sits at ``j``,
      as ``align_corners=False`` interpolation does).

    Raises:
        ValueError: ``features`` is not a non-empty 2-D array or ``num_clips < 1``.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"resample expects (T >= 1, D) features, got shape {features.shape}")
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    t = features.shape[0]
    if t >= num_clips:
        starts = np.arange(num_clips, dtype=np.int64) * t // num_clips
        counts = np.diff(starts, append=t)
        sums = np.add.reduceat(features, starts, axis=0, dtype=np.float64)
        return (sums / counts[:, None]).astype(np.float32)
    pos = np.clip((np.arange(num_clips) + 0.5) * t / num_clips - 0.5, 0.0, t - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo)[:, None]
    x = features.astype(np.float64, copy=False)
    return ((1.0 - w) * x[lo] + w * x[hi]).astype(np.float32)
