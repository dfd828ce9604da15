"""Shared fixtures: the real benchmark files in ``../shared/data`` beside the checkout, features in
the TACoS release layout for them, and a model small enough to train in a second on a CPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from higround.data.features import write_hdf5_store
from higround.data.readers import OnBad, load_annotation_file
from higround.data.schema import GroundingDataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The tests' models are tiny: one intra-op thread runs them about as fast as several, and it keeps
# the suite from slowing ten-fold when another process holds a core (OpenMP threads then wait on
# each other at every small op: a 6-epoch tiny fit took 41 s instead of 3 s on a loaded 2-core box).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; CI always has it beside the checkout."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real benchmark files not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def read_once() -> Callable[[str, Path, OnBad], GroundingDataset]:
    """``load_annotation_file(reader, path, on_bad=on_bad)``, parsed once per session for tests that
    only read the result of a real file (ActivityNet's train.json takes ~0.7 s to parse)."""
    cache: dict[tuple[str, Path, OnBad], GroundingDataset] = {}

    def read(reader: str, path: Path, on_bad: OnBad) -> GroundingDataset:
        key = (reader, path, on_bad)
        if key not in cache:
            cache[key] = load_annotation_file(reader, path, on_bad=on_bad)
        return cache[key]

    return read


@pytest.fixture(scope="session")
def tacos_features(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Random 24-d clip features for every video of the real TACoS test paragraphs, in the release
    layout (``tall_c3d_features.hdf5``: one ``(T, D)`` dataset per video id such as ``s30-d40.avi``;
    D is 24 instead of 4096 to keep the tests fast)."""
    records = json.loads((shared_data / "tacos" / "paragraphs_test.json").read_text())
    rng = np.random.default_rng(0)
    videos = sorted({r["video"] for r in records})
    path = tmp_path_factory.mktemp("features") / "tall_c3d_features.hdf5"
    write_hdf5_store(path, {v: rng.standard_normal((int(rng.integers(20, 60)), 24)) for v in videos})
    return path


@pytest.fixture(scope="session")
def tiny_model() -> list[str]:
    """Overrides of a model small enough to train in a second on a CPU (with ``tacos_features``)."""
    return [
        "model.video_dim=24",
        "model.hidden_dim=16",
        "model.num_heads=2",
        "model.feature_layers=1",
        "model.word_layers=1",
        "model.sentence_layers=1",
        "model.paragraph_layers=1",
        "model.num_clips=16",
    ]


@pytest.fixture(scope="session")
def corrupted_tacos(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A folder holding a copy of the real TACoS ``paragraphs_test.json`` whose first paragraph's
    sentence 1 is reversed (one bad record: ``s30-d40.avi#1``)."""
    root = tmp_path_factory.mktemp("corrupted_tacos")
    records = json.loads((shared_data / "tacos" / "paragraphs_test.json").read_text())
    records[0]["timestamps"][1] = records[0]["timestamps"][1][::-1]
    (root / "paragraphs_test.json").write_text(json.dumps(records))
    return root


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Loads ``benchmarks/<name>.py`` as a module (benchmarks are scripts, not a package)."""
    return _load_script


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
