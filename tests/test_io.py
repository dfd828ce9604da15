"""Atomic writes: all or nothing, nothing left behind, the mode a plain open() would give; the
temp files of killed writes cleaned by the next write; output paths checked before the work."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from higround.errors import OutputError
from higround.io import atomic_path, atomic_write_text, check_writable, remove_stale_temps


def test_write_replaces_whole_file_with_umask_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_temp_files_name_their_writer(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "out.json") as tmp:
        host, _, rest = tmp.name.removeprefix(".out.json.").partition("-")
        assert rest.startswith(f"{os.getpid()}.") and tmp.name.endswith(".tmp")
        assert host == re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())


def test_next_write_removes_only_the_temp_files_of_dead_writers(tmp_path: Path) -> None:
    host = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())
    dead = tmp_path / f".out.json.{host}-{_dead_pid()}.abcdefgh.tmp"  # a killed write of out.json
    live = tmp_path / f".out.json.{host}-{os.getpid()}.ijklmnop.tmp"  # a write in progress
    remote = tmp_path / f".out.json.otherhost-{_dead_pid()}.qrstuvwx.tmp"  # another machine's writer
    other = tmp_path / f".other.json.{host}-{_dead_pid()}.abcdefgh.tmp"  # a killed write of another file
    old = tmp_path / ".out.json.k2j4h5g6.tmp"  # an older version's name: no writer in it
    fresh = tmp_path / ".out.json.a1b2c3d4.tmp"
    for path in (dead, live, remote, other, old, fresh):
        path.write_text("half")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    atomic_write_text(tmp_path / "out.json", "done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.json", live.name, remote.name, other.name, fresh.name]
    )
    assert remove_stale_temps(tmp_path) == [other]  # without a target: of any file
    assert live.exists() and remote.exists()


def test_check_writable_names_what_blocks_the_path(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputError, match=r"^--out .*/afile/sub/x.json: .*/afile is a file, not a folder$"):
        check_writable(tmp_path / "afile" / "sub" / "x.json", "--out")
    with pytest.raises(OutputError, match="is a folder, not a file"):
        check_writable(tmp_path, "--png")
    assert check_writable(tmp_path / "new" / "x.json") == tmp_path / "new" / "x.json"
    assert (tmp_path / "new").is_dir()
