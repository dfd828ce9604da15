"""benchmarks/demo_seeds.py: the demo's rows summarised over seeds as documented (mean ± sample
std in percent, per-seed mIoU), and --reuse reads a seed's metrics.json instead of training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def demo_seeds(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("demo_seeds")


def _metrics(miou: float, r3: float, name: str = "HSCNet final") -> dict[str, object]:
    row = {"R1@0.3": r3, "R1@0.5": 0.5, "R1@0.7": 0.25, "mIoU": miou}
    prior = {"R1@0.3": 0.3, "R1@0.5": 0.2, "R1@0.7": 0.1, "mIoU": 0.2}
    rows = [{"name": "prior (i, n)", "metrics": prior}, {"name": name, "metrics": row}]
    return {"rows": rows, "seconds": {"train": 12.0}}


def test_reused_seeds_are_summarised_as_mean_and_sample_std(
    demo_seeds: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for seed, (miou, r3) in {0: (0.40, 0.6), 1: (0.50, 0.7), 2: (0.60, 0.8)}.items():
        (tmp_path / "hscnet" / f"seed{seed}").mkdir(parents=True)
        (tmp_path / "hscnet" / f"seed{seed}" / "metrics.json").write_text(json.dumps(_metrics(miou, r3)))
    assert demo_seeds.main(["--seeds", "0", "1", "2", "--out", str(tmp_path), "--reuse"]) == 0
    out = capsys.readouterr().out
    # mean 50 %, sample std of (40, 50, 60) = 10; R1@0.3 mean 70, std 10; constant columns std 0.
    assert "| HSCNet final | 70.00 ± 10.00 | 50.00 ± 0.00 | 25.00 ± 0.00 | 50.00 ± 10.00 |" in out
    assert "| 40.00 | 50.00 | 60.00 |" in out
    assert "seeds 0 1 2;" in out and "training seconds per seed: hscnet 12, 12, 12" in out


def test_several_models_share_one_prior_block_and_keep_their_own_rows(
    demo_seeds: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for model, name, miou in (("hscnet", "HSCNet final", 0.5), ("tan2d", "2D-TAN", 0.3)):
        for seed in (0, 1):
            folder = tmp_path / model / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps(_metrics(miou, 0.6, name)))
    args = ["--models", "hscnet", "tan2d", "--seeds", "0", "1", "--out", str(tmp_path), "--reuse"]
    assert demo_seeds.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split("|")[1].strip() for line in lines[2:] if line.startswith("| ")]
    assert names == ["prior (i, n)", "HSCNet final", "2D-TAN"]
    assert "| 2D-TAN | 60.00 ± 0.00 | 50.00 ± 0.00 | 25.00 ± 0.00 | 30.00 ± 0.00 | 30.00 | 30.00 |" in lines
    assert any("hscnet 12, 12; tan2d 12, 12" in line for line in lines)
