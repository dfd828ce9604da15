"""benchmarks/families_speed.py measures any family's recipe: the parameter count of the model it
builds, positive timings, the recipe's unit, and the recipe list it covers by default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def speed(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("families_speed")


@pytest.mark.parametrize(
    ("family", "unit"),
    [("tan2d", "sentence"), ("lgi", "sentence"), ("hscnet", "paragraph"), ("prvg", "paragraph")],
)
def test_a_recipe_is_measured_at_its_shapes(speed: ModuleType, family: str, unit: str) -> None:
    row = speed.measure(
        CONFIGS / family / "synthetic.yaml", "cpu", steps=1, sentences=2, words=5, batch=2, warmup=0
    )
    assert row["unit"] == unit and row["clips"] == 64 and row["batch"] == 2
    assert row["parameters"] > 0 and row["step_ms"] > 0 and row["inference_ms"] > 0
    per_sample = 2 if unit == "paragraph" else 1
    assert row["sentences_per_s"] == pytest.approx(per_sample * row["samples_per_s"])
    assert f"| {row['recipe']} | " in speed.table([row])


def test_every_dataset_recipe_of_every_family_is_covered(speed: ModuleType) -> None:
    names = {str(p.relative_to(CONFIGS)) for p in speed.default_recipes()}
    assert {
        "hscnet/tacos.yaml",
        "tan2d/charades_sta.yaml",
        "tan2d/tacos.yaml",
        "lgi/charades_sta.yaml",
    } <= names
    assert not any(n.endswith(("base.yaml", "synthetic.yaml")) for n in names)


def test_bf16_runs_and_the_ratio_is_against_the_first_recipe(speed: ModuleType) -> None:
    rows = [
        speed.measure(CONFIGS / f / "synthetic.yaml", "cpu", 1, 2, 5, batch=2, warmup=0, precision="bf16")
        for f in ("hscnet", "prvg")
    ]
    assert [r["precision"] for r in rows] == ["bf16", "bf16"]
    text = speed.ratios(rows)
    expected = rows[0]["samples_per_s"] / rows[1]["samples_per_s"]
    assert f"| {rows[1]['recipe']} | {expected:.2f} |" in text
    assert "hse/" not in " ".join(str(p) for p in speed.default_recipes())  # retrieval: hse_speed.py


def test_the_training_flops_are_counted_per_sample(speed: ModuleType) -> None:
    """Per-sample work does not depend on the batch: the same GFLOP per sample at batch 1 and 3."""
    rows = [
        speed.measure(CONFIGS / "prvg" / "synthetic.yaml", "cpu", 1, 2, 5, batch=b, warmup=0) for b in (1, 3)
    ]
    assert rows[0]["train_gflop_per_sample"] > 0
    assert rows[1]["train_gflop_per_sample"] == pytest.approx(rows[0]["train_gflop_per_sample"], rel=1e-6)
    assert "train GFLOP/sample" in speed.table(rows)
