"""``higround train``, ``evaluate --checkpoint`` and ``predict`` end to end on the real TACoS test
paragraphs with small features written in the release layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

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
