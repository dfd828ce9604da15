"""``higround evaluate``: the Moment-DETR reproduction on the real QVHighlights files, and the rules
for missing / unknown predictions, the hit rule and the JSON output on real and tiny annotations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from higround.cli.main import main
from higround.data.readers import load_annotation_file
from higround.metrics import PredictionRecord, write_predictions


def _table(out: str) -> dict[str, dict[str, str]]:
    """The printed metrics table: row -> column -> cell text (a line like ``mIoU`` fills column 1)."""
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(" "))  # the header line
    columns = lines[first].split()
    width = len(lines[first]) - 8 * len(columns)  # the name column; cells are 8 characters wide
    rows = {}
    for line in lines[first + 1 :]:
        if not line.startswith("wrote "):
            cells = [line[width + 8 * i : width + 8 * (i + 1)].strip() for i in range(len(columns))]
            rows[line[:width].strip()] = {c: v for c, v in zip(columns, cells, strict=True) if v}
    return rows


def test_reproduces_moment_detr_standalone_eval(shared_data: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    reference = shared_data / "eval_reference" / "moment_detr"
    out_json = tmp_path / "metrics.json"
    rc = main(
        [
            "evaluate",
            "--predictions",
            str(reference / "sample_val_preds.jsonl"),
            "--annotations",
            str(shared_data / "qvhighlights" / "highlight_val_release.jsonl"),
            "--json",
            str(out_json),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "qvhighlights val: 1550 sentences" in printed
    expected = json.loads((reference / "sample_val_preds_metrics_raw.json").read_text())
    table = _table(printed)
    saved = json.loads(out_json.read_text())
    assert (saved["sentences"], saved["missing"], saved["unknown"]) == (1550, 0, 0)
    metrics = saved["metrics"]
    checked = 0
    for bucket in ("full", "short", "middle", "long"):
        prefix = "" if bucket == "full" else f"{bucket}/"
        for section, row in (("MR-mAP", "mAP"), ("MR-R1", "R1")):
            for threshold, value in expected[bucket][section].items():
                column = "avg" if threshold == "average" else threshold
                key = prefix + (row if threshold == "average" else f"{row}@{threshold}")
                assert table[prefix + row][column] == f"{value:.2f}", key
                assert round(100 * metrics[key], 2) == pytest.approx(value, abs=1e-9), key
                checked += 1
    assert checked == 4 * (11 + 10)
    # Highlight detection from the lines' pred_saliency_scores: every HL-mAP and HL-Hit1 entry.
    for level in ("Fair", "Good", "VeryGood"):
        for section, suffix in (("HL-mAP", "mAP"), ("HL-Hit1", "Hit1")):
            key = f"HL-min-{level}/{suffix}"
            value = expected[f"HL-min-{level}"][section]
            assert list(table[key].values()) == [f"{value:.2f}"], key
            assert round(100 * metrics[key], 2) == pytest.approx(value, abs=1e-9), key
    # The headline numbers of the brief, spelled out.
    assert (table["R1"]["0.5"], table["R1"]["0.7"], table["mAP"]["avg"]) == ("53.94", "34.84", "32.20")
    assert (table["mAP"]["0.5"], table["mAP"]["0.75"]) == ("54.96", "31.01")
    buckets = (table["short/mAP"]["avg"], table["middle/mAP"]["avg"], table["long/mAP"]["avg"])
    assert buckets == ("3.28", "32.30", "41.11")
    highlights = [
        next(iter(table[f"HL-min-{level}/{suffix}"].values()))
        for level in ("Fair", "Good", "VeryGood")
        for suffix in ("mAP", "Hit1")
    ]
    assert highlights == ["67.77", "66.45", "58.09", "64.45", "35.65", "55.55"]


@pytest.fixture(scope="module")
def anet_val2(shared_data: Path) -> tuple[Path, list[PredictionRecord]]:
    """ActivityNet val_2 and perfect predictions for every sentence (the ground truth itself)."""
    path = shared_data / "activitynet_captions" / "val_2.json"
    dataset = load_annotation_file("activitynet_captions", path)
    records = [
        PredictionRecord(key=s.key, video_id=p.video_id, spans=(s.span,), sentence_index=s.index)
        for p, s in dataset.sentences()
    ]
    return path, records


def _run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(["evaluate", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_missing_predictions_error_then_counted(anet_val2, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    annotations, records = anet_val2
    preds = tmp_path / "preds.json"
    write_predictions(preds, records[3:], dataset="activitynet_captions", split="val_2")
    rc, out, err = _run(capsys, "--predictions", str(preds), "--annotations", str(annotations))
    assert rc == 2 and out == ""
    assert "no prediction for 3 of 17031 sentences" in err
    assert repr(records[0].key) in err and "--allow-missing" in err

    rc, out, _ = _run(
        capsys, "--predictions", str(preds), "--annotations", str(annotations), "--allow-missing"
    )
    assert rc == 0
    assert "note: 3 sentence(s) without a prediction scored as misses (IoU 0)" in out
    recall = f"{100 * 17028 / 17031:.2f}"
    assert _table(out)["R1"] == {"0.3": recall, "0.5": recall, "0.7": recall}


def test_unknown_keys_error_then_ignored(anet_val2, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    annotations, records = anet_val2
    stray = PredictionRecord(key="v_nothere#0", video_id="v_nothere", spans=((0.0, 1.0),))
    preds = tmp_path / "preds.json"
    write_predictions(preds, [*records, stray], dataset="activitynet_captions")
    rc, _, err = _run(capsys, "--predictions", str(preds), "--annotations", str(annotations))
    assert rc == 2 and "1 prediction(s) for keys not in" in err and "'v_nothere#0'" in err
    rc, out, _ = _run(
        capsys, "--predictions", str(preds), "--annotations", str(annotations), "--allow-unknown"
    )
    assert rc == 0 and "note: 1 prediction(s) for keys not in the annotations ignored: v_nothere#0" in out
    table = _table(out)
    assert table["R1"] == {"0.3": "100.00", "0.5": "100.00", "0.7": "100.00"}
    assert list(table["mIoU"].values()) == ["100.00"]


def _tiny(tmp_path: Path) -> tuple[Path, Path]:
    """An ActivityNet-layout annotation and predictions whose IoUs are exactly 0.5 and 1."""
    annotations = tmp_path / "val_2.json"
    annotations.write_text(
        json.dumps({"v1": {"duration": 100, "timestamps": [[0, 10], [20, 40]], "sentences": ["a", "b"]}})
    )
    preds = tmp_path / "preds.json"
    write_predictions(
        preds,
        [
            PredictionRecord(key="v1#0", video_id="v1", spans=((0.0, 5.0),), sentence_index=0),
            PredictionRecord(key="v1#1", video_id="v1", spans=((20.0, 40.0),), sentence_index=1),
        ],
        dataset="activitynet_captions",
    )
    return annotations, preds


def test_hit_rule_thresholds_and_json(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    annotations, preds = _tiny(tmp_path)
    common = ["--predictions", str(preds), "--annotations", str(annotations), "--thresholds", "0.5", "0.7"]
    rc, out, _ = _run(capsys, *common, "--json", str(tmp_path / "m.json"))
    assert rc == 0 and "hit: IoU >= m" in out
    assert _table(out)["R1"] == {"0.5": "100.00", "0.7": "50.00"}
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["format"] == "higround.metrics.v1"
    assert (saved["dataset"], saved["split"], saved["sentences"], saved["hit_rule"]) == (
        "activitynet_captions",
        "val_2",
        2,
        "IoU >= m",
    )
    assert saved["thresholds"] == [0.5, 0.7]
    assert saved["metrics"] == {"R1@0.5": 1.0, "R1@0.7": 0.5, "mIoU": 0.75}
    rc, out, _ = _run(capsys, *common, "--exclusive")
    assert rc == 0 and "hit: IoU > m" in out
    assert _table(out)["R1"] == {"0.5": "50.00", "0.7": "50.00"}


def test_saliency_without_highlight_labels_is_a_note(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    annotations, _ = _tiny(tmp_path)
    preds = tmp_path / "salient.json"
    write_predictions(
        preds,
        [
            PredictionRecord(
                key=f"v1#{i}", video_id="v1", spans=(span,), sentence_index=i, saliency=(0.1, 0.9)
            )
            for i, span in enumerate([(0.0, 5.0), (20.0, 40.0)])
        ],
        dataset="activitynet_captions",
    )
    rc, out, _ = _run(capsys, "--predictions", str(preds), "--annotations", str(annotations))
    assert rc == 0 and "HL-min" not in out
    assert (
        "note: the predictions' saliency scores are not scored: the annotations have no highlight labels"
        in out
    )


def test_usage_errors(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    annotations, preds = _tiny(tmp_path)
    untagged = tmp_path / "untagged.json"
    write_predictions(untagged, [PredictionRecord(key="v1#0", video_id="v1", spans=((0.0, 5.0),))])
    rc, _, err = _run(capsys, "--predictions", str(untagged), "--annotations", str(annotations))
    assert rc == 2 and "give --dataset" in err
    rc, _, err = _run(capsys, "--predictions", str(preds))
    assert rc == 2 and "--annotations FILE is required" in err
    rc, _, err = _run(
        capsys, "--predictions", str(preds), "--annotations", str(annotations), "--thresholds", "0"
    )
    assert rc == 2 and "IoU thresholds must be" in err
    with pytest.raises(SystemExit):  # --predictions (or, later, another source) is required
        main(["evaluate", "--annotations", str(annotations)])


def test_unwritable_json_fails_before_any_work(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    annotations, preds = _tiny(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "metrics.json"  # its parent is a regular file: never writable, even as root

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("predictions were read before the output was checked")

    monkeypatch.setattr("higround.cli.evaluate_cmd.read_predictions", no_work)
    rc, printed, err = _run(
        capsys, "--predictions", str(preds), "--annotations", str(annotations), "--json", str(out)
    )
    assert rc == 2 and printed == ""
    assert err.startswith(f"higround evaluate: error: --json output {out}") and err.count("\n") == 1
