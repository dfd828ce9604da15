"""benchmarks/hse_seeds.py: the recipes it compares are the three retrieval variants, and its table
is the mean and sample std over seeds of what ``higround evaluate --json`` wrote."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from higround.engine.config import load_config


@pytest.fixture(scope="module")
def seeds(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("hse_seeds")


def test_the_recipes_are_fse_hse_tau0_and_hse(seeds: ModuleType) -> None:
    models = {name: load_config(path).model for name, path in seeds.RECIPES.items()}
    assert not models["FSE"]["hierarchical"] and not models["FSE"]["reconstruct"]
    tau0, hse = models["HSE[tau=0]"], models["HSE"]
    assert tau0["hierarchical"] and not tau0["reconstruct"] and not tau0["reconstruct_low"]
    assert hse["hierarchical"] and hse["reconstruct"]
    assert float(hse["loss_weights"]["reconstruction"]) == pytest.approx(5e-4)


def test_markdown_mean_and_sample_std_both_directions(seeds: ModuleType) -> None:
    def run(recipe: str, seed: int, r1: float, rank: float) -> dict[str, object]:
        metrics = {f"{d}/{c}": r1 for d in seeds.DIRECTIONS for c in seeds.COLUMNS}
        metrics |= {f"{d}/mean_rank": rank for d in seeds.DIRECTIONS}
        return {"recipe": recipe, "seed": seed, "metrics": metrics, "seconds": 10.0 * (seed + 1)}

    runs = [run("HSE", 0, 0.2, 3.0), run("HSE", 1, 0.4, 5.0), run("FSE", 0, 0.5, 2.0)]
    text = seeds.markdown(runs, "header")
    hse = next(line for line in text.splitlines() if line.startswith("| HSE |"))
    assert hse.startswith("| HSE | 2 | 30.00 ± 14.14 |")  # mean 0.3, sample std 0.1414
    assert hse.endswith("| 4.00 ± 1.41 | 4.00 ± 1.41 | 15 |")  # mean ranks as ranks; mean seconds
    assert "| HSE[tau=0] |" not in text  # rows without runs are left out
    assert text.index("| FSE |") < text.index("| HSE |")
