"""``higround train``, ``evaluate --checkpoint`` and ``predict`` end to end on the real TACoS test
paragraphs with small features written in the release layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from higround.cli.main import main
from higround.data.readers import load_dataset
from higround.metrics import read_predictions, temporal_iou
from higround.text.tokenizer import tokenize

REPO = Path(__file__).resolve().parents[1]
LIMIT = 8  # paragraphs of paragraphs_test.json used


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path, tacos_features: Path, tiny_model: list[str]
) -> dict[str, object]:
    """One epoch of `higround train` on the first 8 real TACoS test paragraphs (train = val = test)."""
    tmp = tmp_path_factory.mktemp("cli_train")
    records = json.loads((shared_data / "tacos" / "paragraphs_test.json").read_text())
    args = [
        "train",
        "--config",
        str(REPO / "configs" / "hscnet" / "tacos.yaml"),
        f"data.root={shared_data / 'tacos'}",
        f"data.features={tacos_features}",
        "data.train_split=test",
        "data.val_split=test",
        f"data.limit={LIMIT}",
        "data.batch_size=4",
        "data.num_workers=0",
        *tiny_model,
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output_dir={tmp / 'runs'}",
    ]
    assert main(args) == 0
    sentences = sum(len(r["sentences"]) for r in records[:LIMIT])
    return {
        "run": tmp / "runs" / "hscnet_tacos",
        "features": tacos_features,
        "sentences": sentences,
        "tmp": tmp,
    }


def test_train_writes_checkpoints_logs_and_weights(trained: dict[str, object]) -> None:
    run = trained["run"]
    assert isinstance(run, Path)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.ckpt", "epoch=000.ckpt", "last.ckpt"]
    assert (run / "config.yaml").is_file() and (run / "model.safetensors").is_file()
    assert (run / "model.json").is_file()
    assert list((run / "tensorboard").glob("version_0/events.out.tfevents.*"))
    rows = list(csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"train/loss", "val/loss", "val/mIoU", "train/grounding_giou"} <= logged


def test_evaluate_checkpoint_reproduces_the_validation_row(
    trained: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained["run"]
    assert isinstance(run, Path)
    rows = list(csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open()))
    val_miou = float(next(r["val/mIoU"] for r in rows if r.get("val/mIoU")))
    capsys.readouterr()
    tmp = trained["tmp"]
    assert isinstance(tmp, Path)
    code = main(
        [
            *("evaluate", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), "--split", "test"),
            *("--limit", str(LIMIT), "--device", "cpu", "--json", str(tmp / "metrics.json")),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp / "metrics.json").read_text())
    # The same paragraphs, the same weights, the same evaluator as the validation during training.
    assert result["sentences"] == trained["sentences"]
    assert result["dataset"] == "tacos_paragraphs" and result["thresholds"] == [0.1, 0.3, 0.5]
    metrics = result["metrics"]
    assert set(metrics) == {"R1@0.1", "R1@0.3", "R1@0.5", "mIoU"}
    assert metrics["mIoU"] == pytest.approx(val_miou, abs=1e-6)
    # The printed table is Table 1's TACoS row: R1 at 0.1 / 0.3 / 0.5 and mIoU, in percent.
    assert f"{100 * metrics['mIoU']:8.2f}" in printed and "0.1     0.3     0.5" in printed


def test_predict_writes_every_sentence_in_seconds(trained: dict[str, object], shared_data: Path) -> None:
    run, tmp = trained["run"], trained["tmp"]
    assert isinstance(run, Path) and isinstance(tmp, Path)
    out = tmp / "preds.json"
    code = main(
        [
            *("predict", "--checkpoint", str(run / "model.safetensors"), "--split", "test"),
            *("--out", str(out), "--limit", str(LIMIT), "--device", "cpu"),
        ]
    )
    assert code == 0
    assert out.is_file() and not list(tmp.glob(".preds.json*"))
    predictions = read_predictions(out)
    assert (predictions.dataset, predictions.split) == ("tacos_paragraphs", "test")
    assert len(predictions) == trained["sentences"]
    records = json.loads((shared_data / "tacos" / "paragraphs_test.json").read_text())[:LIMIT]
    durations = {r["video"]: r["duration"] for r in records}
    for record in predictions.records:
        ((start, end),) = record.spans
        assert 0.0 <= start <= end <= durations[record.video_id] + 1e-6
        assert record.paragraph_span is not None and record.word_spans is not None
        assert record.sentence_span is not None and record.sentence_span[0] <= record.sentence_span[1]
    # The first sentence of the file: its key, and one word span per word token.
    first = predictions.records[0]
    assert (first.key, first.video_id, first.sentence_index) == ("s30-d40.avi#0", "s30-d40.avi", 0)
    assert len(first.word_spans or ()) == len(tokenize(records[0]["sentences"][0]))
    assert len({(r.video_id, r.paragraph_index) for r in predictions.records}) == LIMIT
    # Scored against the real annotation spans, the written spans give the training run's val mIoU
    # (model.safetensors holds the best = only epoch's weights).
    dataset = load_dataset("tacos_paragraphs", shared_data / "tacos", "test")
    truth = {s.key: s.span for _, s in dataset.sentences()}
    pred = np.array([r.spans[0] for r in predictions.records])
    gt = np.array([truth[r.key] for r in predictions.records])
    rows = list(csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open()))
    val_miou = float(next(r["val/mIoU"] for r in rows if r.get("val/mIoU")))
    assert temporal_iou(pred, gt).mean() == pytest.approx(val_miou, abs=1e-6)


def _train_args(shared_data: Path, features: Path, model: list[str], out: Path) -> list[str]:
    return [
        "train",
        "--config",
        str(REPO / "configs" / "hscnet" / "tacos.yaml"),
        f"data.root={shared_data / 'tacos'}",
        f"data.features={features}",
        "data.train_split=test",
        "data.val_split=null",
        "data.limit=2",
        "data.num_workers=0",
        *model,
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output_dir={out}",
    ]


def test_train_checks_its_run_folder_before_any_work(
    tmp_path: Path, tacos_features: Path, tiny_model: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    # The annotation folder does not exist either: the run folder is checked first.
    args = _train_args(tmp_path / "missing", tacos_features, tiny_model, blocker / "runs")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    folder = blocker / "runs" / "hscnet_tacos"
    assert err.startswith(f"higround train: error: run folder (output_dir/name) {folder}")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("role", ["train", "val"])
def test_train_refuses_a_split_without_paragraphs(
    tmp_path: Path,
    shared_data: Path,
    tacos_features: Path,
    tiny_model: list[str],
    capsys: pytest.CaptureFixture[str],
    role: str,
) -> None:
    root = tmp_path / "tacos"
    root.mkdir()
    (root / "paragraphs_test.json").symlink_to(shared_data / "tacos" / "paragraphs_test.json")
    (root / "paragraphs_empty.json").write_text("[]")
    args = _train_args(tmp_path, tacos_features, tiny_model, tmp_path / "runs")
    args += ["data.train_split=empty"] if role == "train" else ["data.val_split=empty"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("higround train: error:") and err.count("\n") == 1
    assert "'empty'" in err or "paragraphs_empty.json" in err
    assert not list(tmp_path.glob("runs/*/checkpoints/*.ckpt"))


def test_evaluate_names_the_checkpoint_a_missing_path_came_from(
    trained: dict[str, object],
    tmp_path: Path,
    shared_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = trained["run"]
    assert isinstance(run, Path)
    # Training stored absolute paths.
    recorded = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert recorded["root"] == str(shared_data / "tacos") and Path(recorded["features"]).is_absolute()
    # A checkpoint of an older version, with relative paths.
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["higround"]["config"]["data"].update(root="data/tacos", features="data/feats.hdf5")
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    evaluate = ["evaluate", "--checkpoint", str(old), "--split", "test", "--limit", "2", "--device", "cpu"]
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    capsys.readouterr()
    assert main(evaluate) == 2
    err = capsys.readouterr().err
    assert err == (
        f"higround evaluate: error: data/tacos (relative: read against {empty}) not found: it is "
        f"data.root of the checkpoint {old}'s recipe; pass --annotations-root DIR to read it from elsewhere\n"
    )
    assert main([*evaluate, "--annotations-root", str(shared_data / "tacos")]) == 2
    err = capsys.readouterr().err
    assert "data/feats.hdf5" in err and "data.features of the checkpoint" in err and "--features FILE" in err
    # Read against the current folder, the old checkpoint's relative paths still work.
    (empty / "data").mkdir()
    (empty / "data" / "tacos").symlink_to(shared_data / "tacos")
    features = trained["features"]
    assert isinstance(features, Path)
    (empty / "data" / "feats.hdf5").symlink_to(features)
    assert main(evaluate) == 0
