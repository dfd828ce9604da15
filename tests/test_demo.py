"""``higround demo`` end to end on a tiny set, its data reuse rule, and its override routing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fake_family import FAKE_FAMILY
from higround.cli.main import main
from higround.data.readers import load_dataset
from higround.data.synthetic import SyntheticConfig
from higround.demo import (
    DEFAULT_CONFIG,
    MetricsRow,
    demo_recipe,
    ensure_dataset,
    format_table,
    run_demo,
    split_overrides,
)
from higround.errors import ConfigError
from higround.metrics import read_predictions
from higround.models import registry

TINY = [
    "synthetic.train_videos=12",
    "synthetic.val_videos=3",
    "synthetic.test_videos=4",
    "synthetic.num_clips=16",
    "trainer.max_epochs=1",
    "model.num_clips=16",
    "model.hidden_dim=16",
    "model.num_heads=2",
]
ROWS = ["prior (i, n)", "prior (i)", "HSCNet final", "HSCNet sentence-level", "HSCNet paragraph-level*"]


def _table_rows(out: str) -> dict[str, list[float]]:
    """``{method: [R1@0.3, R1@0.5, R1@0.7, mIoU]}`` from the printed markdown table."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("method",) and not cells[0].startswith("-"):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


def test_tiny_demo_writes_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-progress-bar", "--paragraphs", "2", *TINY]) == 0
    printed = capsys.readouterr().out
    rows = _table_rows(printed)
    assert list(rows) == ROWS
    assert all(len(v) == 4 and all(0 <= x <= 100 for x in v) for v in rows.values())

    test = load_dataset("activitynet_captions", out / "data", "test")
    sentences = sum(len(p) for p in test.paragraphs())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sentences"] == sentences and metrics["paragraphs"] == 4
    assert [r["name"] for r in metrics["rows"]] == ROWS
    assert metrics["synthetic"]["train_videos"] == 12 and metrics["seconds"]["train"] > 0
    # The printed table and the JSON agree (percent, 2 decimals).
    for row in metrics["rows"]:
        got = [row["metrics"][k] * 100 for k in ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")]
        np.testing.assert_allclose(got, rows[row["name"]], atol=0.006)
    assert (out / "table.md").read_text().splitlines()[0].startswith("| method")

    hscnet = read_predictions(out / "predictions" / "hscnet_test.json")
    assert len(hscnet.records) == sentences and hscnet.split == "test"
    assert all(r.paragraph_span is not None and r.word_spans for r in hscnet.records)
    for name in ("prior_position-and-count_test.json", "prior_position_test.json"):
        assert len(read_predictions(out / "predictions" / name).records) == sentences
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "train" / "checkpoints" / "best.ckpt").is_file()
    assert (out / "train" / "model.safetensors").is_file()

    # A second demo in the same folder keeps the data and replaces the training run.
    features = out / "data" / "features.h5"
    stamp = features.stat().st_mtime_ns
    assert main(["demo", "--out", str(out), "--no-progress-bar", "--paragraphs", "1", *TINY]) == 0
    assert features.stat().st_mtime_ns == stamp
    assert list(_table_rows(capsys.readouterr().out)) == ROWS


def test_dataset_reused_only_when_the_manifest_matches(tmp_path: Path) -> None:
    config = SyntheticConfig(train_videos=4, val_videos=2, test_videos=2, num_clips=8)
    _, written = ensure_dataset(tmp_path, config)
    assert written
    _, written = ensure_dataset(tmp_path, config)
    assert not written
    other = SyntheticConfig(train_videos=4, val_videos=2, test_videos=2, num_clips=8, noise=2.0)
    _, written = ensure_dataset(tmp_path, other)
    assert written
    assert json.loads((tmp_path / "synthetic.json").read_text())["config"]["noise"] == 2.0
    (tmp_path / "val.json").unlink()  # a missing file forces a rewrite too
    _, written = ensure_dataset(tmp_path, other)
    assert written and (tmp_path / "val.json").is_file()


def test_overrides_are_routed_and_checked() -> None:
    knobs, recipe = split_overrides(
        ["synthetic.noise=2", "synthetic.sentences=[1, 3]", "trainer.max_epochs=1"]
    )
    assert knobs == {"noise": 2, "sentences": [1, 3]} and recipe == ["trainer.max_epochs=1"]
    with pytest.raises(ConfigError, match=r"synthetic\.nosie=2"):
        split_overrides(["synthetic.nosie=2"])
    with pytest.raises(ConfigError, match="paragraphs must be >= 1"):
        run_demo("unused", paragraphs=0)


def test_missing_recipe_fails_before_writing_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml not found"):
        run_demo(tmp_path / "out", config_path=tmp_path / "nope.yaml")
    assert not (tmp_path / "out").exists()


def test_the_model_picks_its_family_recipe_and_must_agree_with_a_given_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert demo_recipe(None, None) == DEFAULT_CONFIG
    assert demo_recipe("hscnet", None) == DEFAULT_CONFIG
    with pytest.raises(ConfigError, match=r"demo --model: 'tan9d' is not a model family.*known: .*hscnet"):
        run_demo(tmp_path / "out", model="tan9d")
    monkeypatch.setitem(registry.FAMILIES, "fake", FAKE_FAMILY)
    with pytest.raises(ConfigError, match=r"configs/fake/synthetic\.yaml not found"):
        run_demo(tmp_path / "out", model="fake")
    with pytest.raises(ConfigError, match=r"--model fake but the recipe .* trains model\.family=hscnet"):
        run_demo(tmp_path / "out", model="fake", config_path=DEFAULT_CONFIG)
    assert not (tmp_path / "out").exists()


def test_table_format() -> None:
    rows = [MetricsRow("a", {"R1@0.3": 0.5, "R1@0.5": 0.25, "mIoU": 0.125})]
    lines = format_table(rows, (0.3, 0.5)).splitlines()
    assert lines[0].split("|")[1:-1] == [" method ", "  R1@0.3 ", "  R1@0.5 ", "    mIoU "]
    assert lines[2] == "| a |   50.00 |   25.00 |   12.50 |"


def test_bad_run_folder_is_not_deleted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train").mkdir()
    keep = tmp_path / "train" / "mine.txt"
    keep.write_text("x")
    assert main(["demo", "--out", str(tmp_path), "--no-progress-bar", *TINY]) == 2
    assert "not a training run folder" in capsys.readouterr().err and keep.is_file()
