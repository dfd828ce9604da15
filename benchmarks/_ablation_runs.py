"""What the ablation scripts (``sscs_ablation.py``, ``shine_ablation.py``) share: a results file that
several processes fill run by run, the run loop that skips finished runs, and the command line they
record.

A results file holds one *setup* (what every run of it shares: family, recipe overrides, data) and
its runs; a run is identified by a key the script chooses (its settings and seed). After every run
the file is re-read and merged under an exclusive lock (``<file>.lock``), so processes given other
rows or seeds can share one file, and an interrupted script keeps what it finished. A file of
another setup is never merged into: its runs are ignored (and replaced at the next write).

The scripts are not a package: they load this file by its path (``importlib``), so they run from
anywhere and the tests can load them by path too.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from higround.io import atomic_write_text

Run = dict[str, Any]


def add_run_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The options every ablation script takes: seeds, folders, the smoke check, reuse, threads."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--out", default=out, help="data and run folders (default %(default)s)")
    parser.add_argument("--results", default="benchmarks/results", help="where the JSON and markdown go")
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny data, 1 epoch (a smoke check)")
    parser.add_argument(
        "--reuse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip runs already in the results file of the same setup (default on)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command a results file records: ``OMP_NUM_THREADS=1 python <script> <args>`` with the
    script's arguments (``sys.argv`` when ``argv`` is None, as ``main()`` reads them)."""
    given = sys.argv[1:] if argv is None else list(argv)
    return "OMP_NUM_THREADS=1 python " + shlex.join([script, *given])


@dataclass
class SharedResults:
    """A JSON results file (and its markdown) of one setup, merged under a lock after every run.

    Attributes:
        json_path: the results file.
        md_path: the markdown table rewritten with it.
        setup: what every run of the file shares; a file of another setup is not reused.
        identity: a run's key (e.g. its settings and seed): a new run replaces a stored one of the same key.
        payload: the JSON document of ``(runs, compute seconds)``.
        markdown: the markdown of ``(runs, compute seconds)``.
        reuse: read the runs already on disk (False: start afresh, dropping them at the first write).
    """

    json_path: Path
    md_path: Path
    setup: Mapping[str, Any]
    identity: Callable[[Run], Hashable]
    payload: Callable[[list[Run], float], Mapping[str, Any]]
    markdown: Callable[[list[Run], float], str]
    reuse: bool = True

    def __post_init__(self) -> None:
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        # Without reuse, the runs on disk are dropped once, at this process's first write; what it
        # (and any process sharing the file) writes after that is kept.
        self._fresh = not self.reuse

    @property
    def lock_path(self) -> Path:
        """The lock file beside the results file."""
        return self.json_path.with_name(self.json_path.name + ".lock")

    def load(self) -> list[Run]:
        """The runs on disk of the same setup (another process may be adding to the same file)."""
        if self._fresh or not self.json_path.is_file():
            return []
        previous = json.loads(self.json_path.read_text())
        return previous.get("runs", []) if all(previous.get(k) == v for k, v in self.setup.items()) else []

    def has(self, key: Hashable) -> bool:
        """Whether a run of ``key`` is on disk."""
        return any(self.identity(r) == key for r in self.load())

    def merge(self, new: Run | None) -> list[Run]:
        """Add ``new`` to the file's runs under the lock (replacing a run of its key), rewrite the JSON
        and the markdown; ``None`` only rewrites them. Returns every run."""
        with self.lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            runs = [r for r in self.load() if new is None or self.identity(r) != self.identity(new)]
            runs += [new] if new is not None else []
            compute = sum(float(r["seconds"]) for r in runs)
            atomic_write_text(self.json_path, json.dumps(dict(self.payload(runs, compute)), indent=1) + "\n")
            atomic_write_text(self.md_path, self.markdown(runs, compute) + "\n")
            self._fresh = False
        return runs


@dataclass(frozen=True)
class Job:
    """One run to do: its key in the results file, how to print it, and the function that trains
    and scores it (returning its JSON record, with ``seconds``)."""

    key: Hashable
    label: str
    run: Callable[[], Run]


def run_missing(
    jobs: Iterable[Job], results: SharedResults, summary: Callable[[Run], str], started: float
) -> list[Run]:
    """Run every job whose key is not in ``results`` yet, merging each record as soon as it is done
    and printing ``[minutes] <label>: <summary(record)>``; returns every run of the file."""
    for job in jobs:
        if results.has(job.key):
            continue
        record = job.run()
        results.merge(record)
        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] {job.label}: {summary(record)}", flush=True)
    return results.merge(None)


def print_report(results: SharedResults, runs: Sequence[Run], command: str, started: float) -> None:
    """The table as written, then the command, this process's wall time and where the files are."""
    print(results.md_path.read_text())
    wall = time.perf_counter() - started
    print(
        f"command: {command}\nthis process: {wall / 60:.1f} min; "
        f"{len(runs)} runs in {results.json_path}; wrote {results.md_path}"
    )
