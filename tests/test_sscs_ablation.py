"""benchmarks/sscs_ablation.py: every row is a valid recipe switching what its label says, the tables
aggregate runs as documented (Table 2's V-SS + CA cell shares Table 1's "SS both" runs), and one
``--quick`` run trains, scores finite metrics, writes both files and is skipped when rerun."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from higround.engine.config import load_config
from higround.losses.sscs import AGGREGATES, SUPPORTS


@pytest.fixture(scope="module")
def sscs_ablation(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("sscs_ablation")


def switches(module: ModuleType, family: str, overrides: tuple[str, ...]) -> tuple[str, ...] | None:
    """The (contrast, caption, support, aggregate) a recipe with ``overrides`` trains; None: no branch."""
    config = load_config(module.recipe_path(family), list(overrides)).model_config(video_dim=64, word_dim=50)
    sscs = config.sscs_config
    return None if sscs is None else (sscs.contrast, sscs.caption, sscs.support, sscs.aggregate)


def test_table1_has_the_seven_supervision_rows(sscs_ablation: ModuleType) -> None:
    expected = {
        "base": None,
        "GTC contrast": ("gtc", "none", "video", "ca"),
        "GTC caption": ("none", "gtc", "video", "ca"),
        "GTC both": ("gtc", "gtc", "video", "ca"),
        "SS contrast": ("ss", "none", "video", "ca"),
        "SS caption": ("none", "ss", "video", "ca"),
        "SS both": ("ss", "ss", "video", "ca"),
    }
    assert [row.name for row in sscs_ablation.TABLE1] == list(expected)  # the paper's order
    for family in sscs_ablation.FAMILIES:
        for row in sscs_ablation.TABLE1:
            assert switches(sscs_ablation, family, row.overrides) == expected[row.name], (family, row.name)
    assert sscs_ablation.TABLE1[0].overrides == ("model.sscs=null",)


def test_table2_has_the_eighteen_cells_with_both_ss_objectives(sscs_ablation: ModuleType) -> None:
    cells = [switches(sscs_ablation, "tan2d", row.overrides) for row in sscs_ablation.TABLE2]
    assert cells == [("ss", "ss", s, a) for s, a in itertools.product(SUPPORTS, AGGREGATES)]
    names = [row.name for row in sscs_ablation.TABLE2]
    assert len(set(names)) == 18 and names[0] == "V-SS CA" and names[-1] == "Non-GT-SS AP"
    # The V-SS + CA cell is Table 1's "SS both": the same runs.
    assert sscs_ablation.TABLE2[0].key == sscs_ablation.TABLE1[-1].key


def test_markdown_mean_std_and_shared_cell(sscs_ablation: ModuleType) -> None:
    def run(row: Any, seed: int, miou: float) -> dict[str, object]:
        return {"key": row.key, "seed": seed, "metrics": dict.fromkeys(sscs_ablation.COLUMNS, miou)}

    base, ss_both = sscs_ablation.TABLE1[0], sscs_ablation.TABLE1[-1]
    runs = [run(base, 0, 0.2), run(base, 1, 0.4), run(ss_both, 0, 0.5)]
    prior = dict.fromkeys(sscs_ablation.COLUMNS, 0.1)
    one = sscs_ablation.markdown("tan2d", "1", runs, prior, "header")
    assert "| base | 2 | 30.00 ± 14.14 |" in one  # mean 0.3, sample std 0.1414
    assert "| SS both | 1 | 50.00 ± n/a |" in one
    assert "GTC contrast |" not in one  # rows without runs are left out
    assert one.index("| base |") < one.index("| SS both |") < one.index("| prior (i, n)")
    two = sscs_ablation.markdown("tan2d", "2", runs, prior, "header")
    assert "| V-SS CA | 1 | 50.00 ± n/a |" in two and "| base | 2 |" in two
    assert "| V-SS | 50.00 | - | - | - | - | - |" in two  # the support x function mIoU grid


def test_quick_run_of_one_row(
    sscs_ablation: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--family", "lgi", "--table", "1", "--quick", "--rows", "GTC both", "--seeds", "3"]
    argv += ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    assert sscs_ablation.main(argv) == 0
    record = json.loads((tmp_path / "results" / "sscs_ablation_lgi_quick.json").read_text())
    assert record["family"] == "lgi" and record["recipe"] == list(sscs_ablation.QUICK_RECIPE)
    [done] = record["runs"]
    assert done["row"] == "GTC both" and done["seed"] == 3
    assert done["sscs"] == {"contrast": "gtc", "caption": "gtc", "support": "video", "aggregate": "ca"}
    metrics = done["metrics"]
    assert set(sscs_ablation.COLUMNS) <= set(metrics)
    assert all(math.isfinite(metrics[c]) and 0 <= metrics[c] <= 1 for c in sscs_ablation.COLUMNS)
    table = (tmp_path / "results" / "sscs_ablation_lgi_quick_table1.md").read_text()
    assert "| GTC both | 1 |" in table and "| prior (i, n), text-blind |" in table
    assert "--rows 'GTC both'" in table  # the command
    assert "GTC both seed 3:" in capsys.readouterr().out
    # Rerun: the finished (row, seed) is kept, not trained again.
    assert sscs_ablation.main(argv) == 0
    assert "GTC both seed 3:" not in capsys.readouterr().out
    again = json.loads((tmp_path / "results" / "sscs_ablation_lgi_quick.json").read_text())
    assert again["runs"] == record["runs"]


def test_table2_is_the_2dtan_ablation(sscs_ablation: ModuleType) -> None:
    with pytest.raises(SystemExit):
        sscs_ablation.main(["--family", "lgi", "--table", "2", "--quick"])
    with pytest.raises(SystemExit):
        sscs_ablation.main(["--family", "tan2d", "--table", "1", "--rows", "V-SS SA"])


def test_runs_another_process_adds_to_the_file_are_kept(sscs_ablation: ModuleType, tmp_path: Path) -> None:
    argv = ["--family", "lgi", "--table", "1", "--quick", "--seeds", "0"]
    argv += ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    assert sscs_ablation.main([*argv, "--rows", "GTC both"]) == 0
    path = tmp_path / "results" / "sscs_ablation_lgi_quick.json"
    record = json.loads(path.read_text())
    # What a second process, given other rows, writes meanwhile: a finished run of another row.
    other = dict(record["runs"][0], row="SS both", key=sscs_ablation.TABLE1[-1].key, seconds=5.0)
    record["runs"].append(other)
    path.write_text(json.dumps(record))
    assert sscs_ablation.main([*argv, "--rows", "GTC both", "SS both"]) == 0  # both done: no training
    assert sscs_ablation.main([*argv, "--rows", "base"]) == 0
    runs = json.loads(path.read_text())["runs"]
    assert [r["row"] for r in runs] == ["GTC both", "SS both", "base"]
    assert json.loads(path.read_text())["compute_seconds"] == pytest.approx(sum(r["seconds"] for r in runs))
    table = (tmp_path / "results" / "sscs_ablation_lgi_quick_table1.md").read_text()
    assert "| SS both | 1 |" in table and "summed over 3 runs" in table
