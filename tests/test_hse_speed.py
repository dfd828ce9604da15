"""benchmarks/hse_speed.py: the retrieval benchmark runs at a recipe's shapes and reports each size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def speed(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("hse_speed")


@pytest.mark.parametrize("recipe", ["synthetic.yaml", "synthetic_fse.yaml"])
def test_embedding_and_ranking_are_measured(speed: ModuleType, recipe: str) -> None:
    retriever = speed.build(CONFIGS / "hse" / recipe, ["model.embed_dim=16"])
    row = speed.measure(retriever, embed_videos=3, frames=12, sentences=2, words=4, videos=[5, 50], steps=1)
    assert row["embed_dim"] == 16 and row["parameters"] > 0
    assert row["videos_per_s"] > 0 and row["paragraphs_per_s"] > 0
    assert [r["videos"] for r in row["ranking"]] == [5, 50]
    assert row["ranking"][1]["index_mib"] == pytest.approx(50 * 16 * 4 / 2**20)
    assert all(r["ms"] >= r["score_ms"] > 0 for r in row["ranking"])
