"""The text-blind position prior: hand-computed means, fallback rules, the CLI, and its real figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from higround.baselines import PositionPrior, sentence_table
from higround.cli.main import main
from higround.data.readers import load_dataset
from higround.data.schema import GroundingDataset, LoadReport, Paragraph, Sentence, Video
from higround.data.synthetic import generate_dataset
from higround.errors import ConfigError, DataError
from higround.metrics import evaluate, read_predictions

Spans = list[tuple[float, float]]


def _dataset(videos: list[tuple[str, float, list[Spans]]]) -> GroundingDataset:
    """Videos given as (id, duration, paragraphs of spans); sentence indices run across paragraphs."""
    out = []
    for vid, duration, paragraphs in videos:
        built, index = [], 0
        for p, spans in enumerate(paragraphs):
            sentences = []
            for start, end in spans:
                sentences.append(Sentence(f"s{index}", start, end, index, f"{vid}#{index}"))
                index += 1
            built.append(Paragraph(vid, duration, tuple(sentences), p))
        out.append(Video(vid, duration, tuple(built)))
    return GroundingDataset("activitynet_captions", "x", out, LoadReport("memory"))


# Normalised: A (0, .2) (.2, .6); B (.2, .4) (.5, 1); C (0, 1).
TRAIN = _dataset(
    [
        ("A", 100.0, [[(0, 20), (20, 60)]]),
        ("B", 50.0, [[(10, 20), (25, 50)]]),
        ("C", 10.0, [[(0, 10)]]),
    ]
)
EVAL = _dataset([("E", 20.0, [[(0, 5), (5, 10), (10, 20)]]), ("F", 10.0, [[(0, 2), (2, 10)]])])


def test_hand_computed_means() -> None:
    prior = PositionPrior.fit(TRAIN)
    pairs = {
        (int(c % 2**32), int(c // 2**32)): m.tolist()
        for c, m in zip(prior.pair_codes, prior.pair_means, strict=True)
    }
    assert pairs.keys() == {(0, 2), (1, 2), (0, 1)}
    np.testing.assert_allclose(pairs[(0, 2)], [0.1, 0.3])
    np.testing.assert_allclose(pairs[(1, 2)], [0.35, 0.8])
    np.testing.assert_allclose(pairs[(0, 1)], [0.0, 1.0])
    assert prior.position_keys.tolist() == [0, 1] and prior.position_support.tolist() == [3, 2]
    np.testing.assert_allclose(prior.position_means, [[0.2 / 3, 1.6 / 3], [0.35, 0.8]])
    np.testing.assert_allclose(prior.global_mean, [0.9 / 5, 3.2 / 5])


def test_fallback_from_position_and_count_to_position_to_global() -> None:
    records, level = PositionPrior.fit(TRAIN).predict(EVAL)
    # E: (0, 3) and (1, 3) unseen -> position 0 and 1; position 2 unseen -> global. F: (i, 2) seen.
    assert level.tolist() == [1, 1, 2, 0, 0]
    expected: list[tuple[float, float]] = [(4 / 3, 32 / 3), (7.0, 16.0), (3.6, 12.8), (1.0, 3.0), (3.5, 8.0)]
    np.testing.assert_allclose([r.spans[0] for r in records], expected)
    assert [r.key for r in records] == ["E#0", "E#1", "E#2", "F#0", "F#1"]
    assert [r.sentence_index for r in records] == [0, 1, 2, 0, 1]


def test_keyed_by_position_ignores_the_count() -> None:
    records, level = PositionPrior.fit(TRAIN, "position").predict(EVAL)
    assert level.tolist() == [1, 1, 2, 1, 1]
    np.testing.assert_allclose(records[3].spans[0], (0.2 / 3 * 10, 1.6 / 3 * 10))
    np.testing.assert_allclose(records[4].spans[0], (3.5, 8.0))


def test_positions_restart_in_every_paragraph() -> None:
    table = sentence_table(_dataset([("G", 10.0, [[(0, 1), (1, 2)], [(2, 3)]]), ("H", 5.0, [[(0, 5)]])]))
    assert table.position.tolist() == [0, 1, 0, 0]
    assert table.count.tolist() == [2, 2, 1, 1]
    np.testing.assert_allclose(table.spans, [[0.0, 0.1], [0.1, 0.2], [0.2, 0.3], [0.0, 1.0]])


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="keyed_by"):
        PositionPrior.fit(TRAIN, "count")
    with pytest.raises(DataError, match="memory: no sentence"):
        PositionPrior.fit(_dataset([]))


def _metrics(out: str) -> dict[str, float]:
    """``R1@m`` and ``mIoU`` from the printed table (percent)."""
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith(" ")).split()
    r1 = next(line for line in lines if line.startswith("R1 ")).split()[1:]
    values = {f"R1@{m}": float(v) for m, v in zip(header, r1, strict=True)}
    values["mIoU"] = float(next(line for line in lines if line.startswith("mIoU")).split()[1])
    return values


def test_command_writes_predictions_and_scores_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for split, data in (
        ("train", {"A": {"duration": 100, "timestamps": [[0, 20], [20, 60]], "sentences": ["a", "b"]}}),
        ("test", {"F": {"duration": 10, "timestamps": [[0, 2], [2, 10]], "sentences": ["c", "d"]}}),
    ):
        (tmp_path / f"{split}.json").write_text(json.dumps(data))
    preds, metrics = tmp_path / "preds.json", tmp_path / "metrics.json"
    args = ["baseline", "prior", "--dataset", "activitynet_captions", "--root", str(tmp_path)]
    args += ["--train-split", "train", "--eval-split", "test", "--out", str(preds), "--json", str(metrics)]
    assert main(args) == 0
    out = capsys.readouterr().out
    read = read_predictions(preds)
    assert read.dataset == "activitynet_captions" and read.split == "test"
    assert [r.spans for r in read.records] == [((0.0, 2.0),), ((2.0, 6.0),)]
    assert read.meta["keyed"] == {"position-and-count": 2, "position": 0, "global": 0}
    # F#1 predicted (2, 6) against (2, 10): IoU 0.5; F#0 exact.
    assert _metrics(out) == {"R1@0.3": 100.0, "R1@0.5": 100.0, "R1@0.7": 50.0, "mIoU": 75.0}
    written = json.loads(metrics.read_text())["metrics"]
    test = load_dataset("activitynet_captions", tmp_path, "test")
    assert written == pytest.approx(evaluate(read, test))


def test_reversed_span_needs_skip(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["baseline", "prior", "--dataset", "activitynet_captions", "--root", str(shared_data)]
    assert main([*args, "--train-split", "train", "--eval-split", "val_2"]) == 2
    assert "v_0bosp4-pyTM" in capsys.readouterr().err


# The figures recorded in docs/baselines.md (percent), computed once with the command there.
REAL = [
    ("activitynet_captions", "train", "val_2", "position-and-count", [72.34, 46.06, 26.23], 47.33),
    ("activitynet_captions", "train", "val_2", "position", [57.30, 28.28, 14.45], 35.72),
    ("tacos_paragraphs", "train", "test", "position-and-count", [31.11, 18.30, 8.55], 12.31),
    ("tacos", "train", "test", "position-and-count", [14.00, 6.55, 2.50], 4.69),
]


@pytest.mark.parametrize(("dataset", "train", "test", "keyed_by", "r1", "miou"), REAL)
def test_real_figures(
    shared_data: Path,
    capsys: pytest.CaptureFixture[str],
    dataset: str,
    train: str,
    test: str,
    keyed_by: str,
    r1: list[float],
    miou: float,
) -> None:
    args = ["baseline", "prior", "--dataset", dataset, "--root", str(shared_data), "--train-split", train]
    assert main([*args, "--eval-split", test, "--keyed-by", keyed_by, "--on-bad", "skip"]) == 0
    out = capsys.readouterr().out
    got = _metrics(out)
    assert got["mIoU"] == pytest.approx(miou, abs=0.01)
    assert [v for k, v in got.items() if k != "mIoU"] == pytest.approx(r1, abs=0.01)
    if dataset == "activitynet_captions":
        assert "skipped 2 bad record(s): v_0bosp4-pyTM#3, v_rhOtqArO-3Y#5" in out


def test_synthetic_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default procedural set's priors, as recorded in docs/baselines.md."""
    generate_dataset(tmp_path)
    args = ["baseline", "prior", "--dataset", "activitynet_captions", "--root", str(tmp_path)]
    args += ["--train-split", "train", "--eval-split", "test"]
    expected = {
        "position-and-count": {"R1@0.3": 36.18, "R1@0.5": 23.24, "R1@0.7": 8.82, "mIoU": 25.26},
        "position": {"R1@0.3": 29.71, "R1@0.5": 18.24, "R1@0.7": 9.41, "mIoU": 20.90},
    }
    for keyed_by, figures in expected.items():
        assert main([*args, "--keyed-by", keyed_by]) == 0
        assert _metrics(capsys.readouterr().out) == pytest.approx(figures, abs=0.01)


@pytest.mark.parametrize("option", ["--out", "--json"])
def test_unwritable_output_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "out.json"  # its parent is a regular file: never writable, even as root

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("a split was read before the output was checked")

    monkeypatch.setattr("higround.cli.baseline_cmd.load_dataset", no_work)
    args = ["baseline", "prior", "--dataset", "tacos", "--root", str(tmp_path), "--train-split", "train"]
    assert main([*args, "--eval-split", "test", option, str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"higround baseline prior: error: {option} ")
    assert str(out) in captured.err
