"""benchmarks/shine_ablation.py: the novel-composition subset is exactly the sentences with ``novels``
and is scored by the one evaluator, the table aggregates seeds as documented, and one ``--quick`` run
generates the negatives, trains the three rows, scores finite metrics on both subsets, writes both files
and is skipped when rerun."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from higround.data.readers import load_dataset
from higround.data.synthetic import SyntheticConfig, generate_dataset
from higround.engine.config import load_config
from higround.metrics import PredictionRecord, temporal_iou


@pytest.fixture(scope="module")
def shine_ablation(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("shine_ablation")


def test_the_rows_are_the_base_recipe_and_its_shine_recipe(shine_ablation: ModuleType) -> None:
    for family in shine_ablation.FAMILIES:
        base = load_config(shine_ablation.recipe_path(family, "base"))
        shine = load_config(shine_ablation.recipe_path(family, "shine"))
        assert base.model.get("shine") is None and shine.model.get("shine") is not None
        assert base.family.name == shine.family.name == family
        light = load_config(
            shine_ablation.recipe_path(family, "shine_light"),
            list(shine_ablation.ROW_OVERRIDES["shine_light"]),
        )
        assert light.model["loss_weights"]["shine_coarse"] == light.model["loss_weights"]["shine_fine"] == 0.1
        assert shine.model["loss_weights"]["shine_coarse"] == shine.model["loss_weights"]["shine_fine"] == 1.0


def test_the_novel_subset_is_scored_by_the_evaluator(shine_ablation: ModuleType, tmp_path: Path) -> None:
    paths = generate_dataset(tmp_path, SyntheticConfig(seed=0, train_videos=4, val_videos=2, test_videos=12))
    test = load_dataset("activitynet_captions", paths.root, "test")
    novel = shine_ablation.novel_subset(test)
    expected = [s.key for _, s in test.sentences() if s.extra.get("novels")]
    assert [s.key for _, s in novel.sentences()] == expected and 0 < len(expected) < test.sentence_count()
    # Spans shifted by a known amount: the novel mIoU is the mean IoU of those sentences alone.
    rng = np.random.default_rng(0)
    records = []
    for paragraph, sentence in test.sentences():
        shift = float(rng.uniform(0, 5))
        span = (sentence.start + shift, sentence.end + shift)
        records.append(
            PredictionRecord(sentence.key, paragraph.video_id, (span,), sentence_index=sentence.index)
        )
    metrics = shine_ablation.subset_metrics(records, test)
    by_key = {r.key: r.spans[0] for r in records}
    truth = {s.key: s.span for _, s in test.sentences()}
    ious = temporal_iou(np.array([by_key[k] for k in expected]), np.array([truth[k] for k in expected]))
    assert metrics["novel"]["mIoU"] == pytest.approx(float(ious.mean()), abs=1e-6)
    assert metrics["novel"]["R1@0.5"] == pytest.approx(float((ious >= 0.5).mean()))
    assert metrics["all"]["mIoU"] != metrics["novel"]["mIoU"]


def test_markdown_mean_std_per_subset(shine_ablation: ModuleType) -> None:
    def run(family: str, row: str, seed: int, value: float) -> dict[str, object]:
        subset = dict.fromkeys(shine_ablation.COLUMNS, value)
        return {
            "family": family,
            "row": row,
            "seed": seed,
            "metrics": {"all": subset, "novel": dict.fromkeys(shine_ablation.COLUMNS, value / 2)},
            "sentences": {"all": 40, "novel": 9},
        }

    runs = [
        run("qd_detr", "shine", 0, 0.2),
        run("qd_detr", "shine", 1, 0.4),
        run("moment_detr", "base", 0, 0.5),
    ]
    prior = {k: dict.fromkeys(shine_ablation.COLUMNS, 0.1) for k in ("all", "novel")}
    table = shine_ablation.markdown(runs, prior, "header")
    assert "| QD-DETR + SHINE | 2 | 30.00 ± 14.14 |" in table  # mean 0.3, sample std 0.1414
    assert "| QD-DETR + SHINE | 2 | 15.00 ± 7.07 |" in table  # the novel subset
    assert "| Moment-DETR | 1 | 50.00 ± n/a |" in table and "| QD-DETR | " not in table
    assert "(40 sentences)" in table and "(9 sentences)" in table
    assert table.index("| Moment-DETR |") < table.index("| QD-DETR + SHINE |") < table.index("| prior")


def test_quick_run(shine_ablation: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--quick", "--families", "qd_detr", "--seeds", "3"]
    argv += ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    assert shine_ablation.main(argv) == 0
    negatives = tmp_path / "runs" / "quick" / "data" / "negatives.jsonl"
    assert len(negatives.read_text().splitlines()) == 87  # every training query of the quick set
    record = json.loads((tmp_path / "results" / "shine_ablation_quick.json").read_text())
    assert record["recipe"] == list(shine_ablation.QUICK_RECIPE)
    assert [(r["family"], r["row"], r["seed"]) for r in record["runs"]] == [
        ("qd_detr", "base", 3),
        ("qd_detr", "shine", 3),
        ("qd_detr", "shine_light", 3),
    ]
    light = record["runs"][2]["overrides"]
    assert "model.loss_weights.shine_coarse=0.1" in light and "model.loss_weights.shine_fine=0.1" in light
    for done in record["runs"]:
        assert done["sentences"] == {"all": 20, "novel": 3}
        for subset in ("all", "novel"):
            values = [done["metrics"][subset][c] for c in shine_ablation.COLUMNS]
            assert all(math.isfinite(v) and 0 <= v <= 1 for v in values)
        assert 0 < done["train_seconds"] <= done["seconds"]
    assert record["train_seconds"] == pytest.approx(sum(r["train_seconds"] for r in record["runs"]))
    table = (tmp_path / "results" / "shine_ablation_quick.md").read_text()
    assert "| QD-DETR | 1 |" in table and "| QD-DETR + SHINE | 1 |" in table and "| prior (i, n)" in table
    assert "| QD-DETR + SHINE (λ_cr = λ_fr = 0.1) | 1 |" in table
    assert "--families qd_detr" in table  # the command
    assert "QD-DETR + SHINE seed 3:" in capsys.readouterr().out
    # Rerun: the runs are kept, not trained again.
    assert shine_ablation.main(argv) == 0
    assert "seed 3:" not in capsys.readouterr().out
    again = json.loads((tmp_path / "results" / "shine_ablation_quick.json").read_text())
    assert again["runs"] == record["runs"]
    assert all(r["resumed_after_epochs"] is None for r in record["runs"])
    # Without reuse, each run goes on from its run folder's last.ckpt (after its one epoch): nothing
    # is left to train and the scores are the same.
    assert shine_ablation.main([*argv, "--no-reuse"]) == 0
    resumed = json.loads((tmp_path / "results" / "shine_ablation_quick.json").read_text())["runs"]
    assert [r["resumed_after_epochs"] for r in resumed] == [1, 1, 1]
    assert [r["metrics"] for r in resumed] == [r["metrics"] for r in record["runs"]]
