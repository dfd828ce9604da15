"""Atomic file writes: every output and checkpoint goes through a temp file and a rename.

A reader (or a crash) never sees a half-written file: the data goes to a temp file in the
destination folder (same file system, so :func:`os.replace` is atomic) and is moved into place.

A write that is killed leaves its temp file behind. Temp files are named
``.<name>.<host>-<pid>.<random>.tmp`` after their writer, so the next write to the same path removes
those whose writer is gone (a process of this host that no longer runs); a live writer's file, or one
of another host sharing the folder, is never touched (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from higround.errors import OutputError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_writable", "remove_stale_temps"]

# Read once: os.umask can only be read by setting it, which is not thread-safe later on.
_UMASK = os.umask(0)
os.umask(_UMASK)
# The writer's host in temp names: letters, digits and "_" only, so that names parse back.
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
_TEMP = re.compile(r"\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[a-z0-9_]+\.tmp")
# Temp names of versions before the writer was named (mkstemp's 8 random characters): they are
# removed once unmodified for a day, as no writer keeps a temp file that long without writing.
_OLD_TEMP = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")
_OLD_TEMP_AGE = 24 * 3600.0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a process of another user counts as running)."""
    if os.name != "posix" or pid <= 0:
        return True  # os.kill(pid, 0) tests only on POSIX (elsewhere it ends the process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _stale(name: str, target: str | None, now: float, entry: os.DirEntry[str]) -> bool:
    match = _TEMP.fullmatch(name)
    if match is not None:
        if target is not None and match["target"] != target:
            return False
        return match["host"] == _HOST and not _alive(int(match["pid"]))
    match = _OLD_TEMP.fullmatch(name)
    if match is None or (target is not None and match["target"] != target):
        return False
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > _OLD_TEMP_AGE
    except OSError:
        return False


def remove_stale_temps(folder: str | Path, target: str | None = None) -> list[Path]:
    """Remove the temp files of interrupted atomic writes in ``folder``: of writes to ``target``
    (a file name) only, or of any file when ``target`` is None. Returns the files removed.

    A temp file is stale when its writer, a process of this host, no longer runs (or, for a name
    without a writer, it was left unmodified for a day). A folder that cannot be listed is skipped.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")) or not entry.is_file(follow_symlinks=False):
            continue
        if _stale(name, target, now, entry):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success move it onto ``path``, on error delete it.

    Stale temp files of earlier writes to ``path`` are removed first (see :func:`remove_stale_temps`).
    """
    path = Path(path)
    prefix = f".{path.name}.{_HOST}-{os.getpid()}."
    for attempt in range(2):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent, path.name)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
            break
        except FileNotFoundError:  # the folder was removed meanwhile (a finished run cleaning up)
            if attempt:
                raise
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_writable(path: str | Path, what: str = "output", *, directory: bool = False) -> Path:
    """Fail early, before any work, when ``path`` cannot be written; returns it as a Path.

    ``path`` is a file to (over)write, or with ``directory=True`` a folder to write into. Missing
    parent folders are created (as the atomic writes would). The check is the one that an atomic
    write needs: a writable folder and, for a file, no directory in its place.

    Raises:
        OutputError: naming ``what`` and the path, with the reason.
    """
    path = Path(path)
    folder = path if directory else path.parent
    if not directory and path.is_dir():
        raise OutputError(f"{what} {path} is a folder, not a file")
    if directory and path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder")
    blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise OutputError(f"{what} {path}: {blocking} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{what} {path}: cannot create the folder {folder}: {err.strerror or err}") from err
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: the folder {folder} is not writable")
    return path
