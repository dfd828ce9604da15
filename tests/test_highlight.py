"""Highlight detection (HL mAP, HIT@1) on hand-computed cases, against a textbook loop of Moment-DETR's
``get_ap``, under padding; the saliency fields of predictions files and of the QVHighlights reader;
the evaluator's rules for saliency that is partly given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from higround.data.readers import load_annotation_file
from higround.errors import DataError
from higround.metrics import (
    PredictionRecord,
    SaliencyInputs,
    evaluate,
    highlight_metrics,
    read_predictions,
    saliency_average_precision,
    saliency_inputs,
    write_predictions,
)
from higround.metrics.highlight import hit_at_one

# ---------------------------------------------------------------- AP of one annotator


def _ap(scores: list[float], positive: list[int]) -> float:
    return float(saliency_average_precision(scores, positive, np.ones(len(scores), dtype=bool)))


def test_ap_of_four_clips_by_hand() -> None:
    # Ranked: clip 0 (+), 1 (-), 2 (+), 3 (-): precision 1 at the first positive, 2/3 at the second.
    assert _ap([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    # Interpolated: the second positive comes at precision 2/4, raised to the 3/5 of the third.
    assert _ap([5, 4, 3, 2, 1], [1, 0, 0, 1, 1]) == pytest.approx((1 + 3 / 5 + 3 / 5) / 3)
    # The order of the given clips does not matter, only their scores.
    assert _ap([0.1, 0.3, 0.8, 0.9], [0, 1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)


def test_tied_clips_enter_together_and_count_once() -> None:
    # Distinct scores 0.5 (clips 0-2: 2 positives of 3) and 0.1 (clip 3, positive): precisions 2/3,
    # 3/4; both raise recall; interpolated 3/4 and 3/4. Ranked one by one it would be (1 + 1 + 3/4)/3.
    assert _ap([0.5, 0.5, 0.5, 0.1], [1, 1, 0, 1]) == pytest.approx(3 / 4)
    assert _ap([0.5, 0.4, 0.3, 0.1], [1, 1, 0, 1]) == pytest.approx((1 + 1 + 3 / 4) / 3)


def test_no_positive_is_zero_and_all_positive_is_one() -> None:
    assert _ap([0.2, 0.9, 0.1], [0, 0, 0]) == 0.0
    assert _ap([0.2, 0.9, 0.1], [1, 1, 1]) == 1.0
    assert _ap([0.0, 0.0, 0.0], [1, 1, 1]) == 1.0
    # Constant scores with a mix: one point, precision = the positive rate.
    assert _ap([0.0, 0.0, 0.0, 0.0], [1, 0, 0, 0]) == pytest.approx(1 / 4)


def _textbook_ap(scores: np.ndarray, positive: np.ndarray) -> float:
    """Moment-DETR's ``get_ap``, written as a loop over the distinct scores."""
    if not positive.any():
        return 0.0
    if positive.all():
        return 1.0
    thresholds = sorted(set(scores.tolist()), reverse=True)
    precision, recall = [], []
    for t in thresholds:
        chosen = scores >= t
        precision.append((positive & chosen).sum() / chosen.sum())
        recall.append((positive & chosen).sum() / positive.sum())
    points, last = [], 0.0
    for i, r in enumerate(recall):
        if r > last:
            points.append(max(precision[i:]))
            last = r
    return float(np.mean(points))


def test_ap_equals_the_textbook_loop_with_ties_and_padding() -> None:
    rng = np.random.default_rng(0)
    q, c = 300, 12
    lengths = rng.integers(1, c + 1, q)
    scores = rng.integers(0, 5, (q, c)).astype(float)  # few values: many ties
    positive = rng.random((q, c)) < 0.3
    mask = np.arange(c) < lengths[:, None]
    # Padding holds anything: its scores and labels must not matter.
    scores = np.where(mask, scores, rng.normal(size=(q, c)) * 10)
    positive = np.where(mask, positive, rng.random((q, c)) < 0.5)
    got = saliency_average_precision(scores, positive, mask)
    expected = [_textbook_ap(scores[i, : lengths[i]], positive[i, : lengths[i]]) for i in range(q)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- HL mAP and HIT@1


def _one_query(predicted: list[float], duration: float = 9.0) -> SaliencyInputs:
    """A 4-clip video (int(9 / 2) = 4) whose clips 1 and 2 three annotators scored [4, 2, 0], [3, 3, 1]."""
    return saliency_inputs([predicted], [[1, 2]], [[[4, 2, 0], [3, 3, 1]]], [duration], 2.0)


def test_levels_and_annotators_by_hand() -> None:
    # Ranked: clip 1, 3, 2, 0.
    m = highlight_metrics(_one_query([0.1, 0.9, 0.4, 0.6]))
    # Fair (>= 2): annotators 0 and 1 mark clips {1, 2}: AP (1 + 2/3) / 2 each; annotator 2 none: 0.
    assert m["HL-min-Fair/mAP"] == pytest.approx((5 / 6 + 5 / 6 + 0) / 3)
    # Good (>= 3): annotator 0 {1, 2}: 5/6; annotator 1 {2}, ranked third: 1/3; annotator 2: 0.
    assert m["HL-min-Good/mAP"] == pytest.approx((5 / 6 + 1 / 3 + 0) / 3)
    # VeryGood (4): annotator 0 {1}, ranked first: 1; the others none.
    assert m["HL-min-VeryGood/mAP"] == pytest.approx(1 / 3)
    # The top clip (1) has an annotator score of 4: a hit at every level.
    assert [m[f"HL-min-{n}/Hit1"] for n in ("Fair", "Good", "VeryGood")] == [1.0, 1.0, 1.0]
    # Top clip 2 ([3, 3, 1]): a hit up to Good; top clip 3 (outside the relevant clips): no hit.
    m = highlight_metrics(_one_query([0.1, 0.2, 0.9, 0.6]))
    assert [m[f"HL-min-{n}/Hit1"] for n in ("Fair", "Good", "VeryGood")] == [1.0, 1.0, 0.0]
    m = highlight_metrics(_one_query([0.1, 0.2, 0.3, 0.6]))
    assert [m[f"HL-min-{n}/Hit1"] for n in ("Fair", "Good", "VeryGood")] == [0.0, 0.0, 0.0]


def test_hit_takes_the_first_of_tied_top_clips() -> None:
    positive = np.array([[False, True], [True, False]])
    assert hit_at_one([[0.9, 0.9], [0.9, 0.9]], [2, 2], positive).tolist() == [False, True]


def test_short_prediction_is_zero_filled_and_long_one_cut() -> None:
    # 3 scores for 4 clips: clip 3 scores 0, which ranks it between 0.2 and -1.0: order 0 (-), 2 (+),
    # 3 (-), 1 (+) for the Fair clips {1, 2} of annotators 0 and 1: precisions 1/2, 2/4 -> AP 1/2
    # (leaving clip 3 out instead would give (1/2 + 2/3) interpolated to 2/3).
    m = highlight_metrics(_one_query([0.5, -1.0, 0.2]))
    assert m["HL-min-Fair/mAP"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    # A fifth score is past the video: cut for AP (same AP as without it), a miss as the top clip.
    longer = highlight_metrics(_one_query([0.1, 0.9, 0.4, 0.6, 5.0]))
    assert longer["HL-min-Fair/mAP"] == pytest.approx((5 / 6 + 5 / 6) / 3)
    assert longer["HL-min-Fair/Hit1"] == 0.0


def test_missing_prediction_scores_zero_and_counts() -> None:
    both = saliency_inputs(
        [[0.1, 0.9, 0.4, 0.6], None],
        [[1, 2], [1, 2]],
        [[[4, 2, 0], [3, 3, 1]]] * 2,
        [9.0, 9.0],
        2.0,
    )
    m = highlight_metrics(both)
    assert m["HL-min-Fair/mAP"] == pytest.approx((5 / 6 + 5 / 6) / 3 / 2)
    assert m["HL-min-Fair/Hit1"] == 0.5


def test_padding_never_changes_a_score() -> None:
    rng = np.random.default_rng(3)
    durations = rng.uniform(20, 40, 6)
    clips = np.floor(durations / 2).astype(int)
    ids = [rng.choice(n, rng.integers(1, n), replace=False) for n in clips]
    scores = [rng.integers(0, 5, (len(i), 3)) for i in ids]
    predicted = [rng.integers(0, 6, n + int(rng.integers(-2, 3))).astype(float) for n in clips]
    whole = highlight_metrics(saliency_inputs(predicted, ids, scores, durations, 2.0))
    alone = [
        highlight_metrics(saliency_inputs([p], [i], [s], [d], 2.0))
        for p, i, s, d in zip(predicted, ids, scores, durations, strict=True)
    ]
    for key, value in whole.items():
        assert value == pytest.approx(np.mean([a[key] for a in alone]), abs=1e-12), key
    # Wider padding, filled with large scores and annotator scores: nothing changes.
    inputs = saliency_inputs(predicted, ids, scores, durations, 2.0)
    q = len(inputs)
    pad_scores = np.concatenate([inputs.scores, np.full((q, 7), 99.0)], axis=1)
    pad_scores[np.arange(pad_scores.shape[1]) >= inputs.lengths[:, None]] = 99.0
    labels = np.concatenate([inputs.labels, np.full((q, 5, 3), 4.0)], axis=1)
    labels[np.arange(labels.shape[1]) >= inputs.num_clips[:, None]] = 4.0
    padded = SaliencyInputs(pad_scores, inputs.lengths, labels, inputs.num_clips)
    assert highlight_metrics(padded) == pytest.approx(whole, abs=1e-12)


def test_bad_clip_ids_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, num_clips\)"):
        saliency_inputs([[0.1] * 4], [[4]], [[[1, 1, 1]]], [9.0], 2.0)
    with pytest.raises(ValueError, match="one row of annotator scores"):
        saliency_inputs([[0.1] * 4], [[1, 2]], [[[1, 1, 1]]], [9.0], 2.0)


# ---------------------------------------------------------------- predictions files


def test_saliency_round_trips_and_is_checked(tmp_path: Path) -> None:
    record = PredictionRecord(key="7", video_id="v", spans=((0.0, 2.0),), saliency=(0.5, -1.0, 2.0))
    path = tmp_path / "p.json"
    write_predictions(path, [record], dataset="qvhighlights")
    assert read_predictions(path).records[0].saliency == (0.5, -1.0, 2.0)
    bad = tmp_path / "bad.jsonl"
    line = {"qid": 7, "vid": "v", "pred_relevant_windows": [[0, 2, 0.9]], "pred_saliency_scores": [0.1, "x"]}
    bad.write_text(json.dumps(line) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl: line 1 \(qid 7, video v\): pred_saliency_scores\[1\]"):
        read_predictions(bad)
    bad.write_text(json.dumps({**line, "pred_saliency_scores": []}) + "\n")
    with pytest.raises(DataError, match="pred_saliency_scores must be a non-empty list"):
        read_predictions(bad)


# ---------------------------------------------------------------- the QVHighlights reader


def _qv_line(qid: int, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "qid": qid,
        "query": "a man talks",
        "vid": f"v{qid}_0.0_150.0",
        "duration": 9,
        "relevant_windows": [[2, 6]],
        "relevant_clip_ids": [1, 2],
        "saliency_scores": [[4, 2, 0], [3, 3, 1]],
    }
    return {**base, **fields}


def _qv_file(tmp_path: Path, *lines: dict[str, object]) -> Path:
    path = tmp_path / "highlight_val_release.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"saliency_scores": [[4, 2, 0]]}, "1 saliency_scores rows for 2 relevant_clip_ids"),
        (
            {"saliency_scores": [[4, 2, 0], [3, "3", 1]]},
            r"saliency_scores\[1\] is \[3, '3', 1\], not 3 numbers",
        ),
        ({"saliency_scores": [[4, 2, 0], [3, 3]]}, r"saliency_scores\[1\] is \[3, 3\], not 3 numbers"),
        ({"saliency_scores": [[4, 2, 0], [3, 5, 1]]}, r"outside \[0, 4\]"),
        ({"relevant_clip_ids": [1, "2"]}, r"relevant_clip_ids\[1\] is '2', not an integer"),
        ({"relevant_clip_ids": [1, 4]}, r"relevant_clip_ids\[1\] is 4, outside the 4 clips"),
        ({"relevant_clip_ids": [1, 1]}, r"relevant_clip_ids\[1\] repeats clip 1"),
        ({"relevant_clip_ids": None}, "must be lists"),
    ],
)
def test_reader_names_the_file_qid_and_problem(
    tmp_path: Path, fields: dict[str, object], problem: str
) -> None:
    path = _qv_file(tmp_path, _qv_line(1), _qv_line(2, **fields))
    with pytest.raises(DataError, match=problem) as err:
        load_annotation_file("qvhighlights", path)
    assert str(path) in str(err.value) and "line 2, qid 2" in str(err.value)
    skipped = load_annotation_file("qvhighlights", path, on_bad="skip")
    assert [s.key for _, s in skipped.sentences()] == ["1"]
    assert [r.key for r in skipped.report.skipped] == ["2"]


def test_reader_wants_both_fields_or_none(tmp_path: Path) -> None:
    line = _qv_line(1)
    del line["saliency_scores"]
    with pytest.raises(DataError, match="'saliency_scores' is missing while 'relevant_clip_ids' is given"):
        load_annotation_file("qvhighlights", _qv_file(tmp_path, line))
    del line["relevant_clip_ids"]
    assert load_annotation_file("qvhighlights", _qv_file(tmp_path, line)).sentence_count() == 1


# ---------------------------------------------------------------- the evaluator


def _records(*saliency: tuple[float, ...] | None) -> list[PredictionRecord]:
    return [
        PredictionRecord(key=str(i + 1), video_id=f"v{i + 1}_0.0_150.0", spans=((2.0, 6.0),), saliency=s)
        for i, s in enumerate(saliency)
    ]


def test_evaluate_scores_highlights_from_an_annotation_file(tmp_path: Path) -> None:
    data = load_annotation_file("qvhighlights", _qv_file(tmp_path, _qv_line(1), _qv_line(2)))
    metrics = evaluate(_records((0.1, 0.9, 0.4, 0.6), (0.1, 0.2, 0.9, 0.6)), data)
    # Query 2 ranks clip 2 (+), 3, 1 (+), 0: AP 5/6 for annotators 0 and 1, as query 1.
    assert metrics["HL-min-Fair/mAP"] == pytest.approx((5 / 6 + 5 / 6) / 3)
    assert metrics["HL-min-VeryGood/Hit1"] == 0.5
    assert "HL-min-Fair/mAP" not in evaluate(_records(None, None), data)


def test_evaluate_refuses_saliency_that_is_partly_given(tmp_path: Path) -> None:
    data = load_annotation_file("qvhighlights", _qv_file(tmp_path, _qv_line(1), _qv_line(2)))
    with pytest.raises(
        DataError, match=r"1 of 2 predictions carry saliency scores but 1 do not \(keys '2'\)"
    ):
        evaluate(_records((0.1, 0.9, 0.4, 0.6), None), data)
    bare = _qv_line(2)
    del bare["relevant_clip_ids"], bare["saliency_scores"]
    data = load_annotation_file("qvhighlights", _qv_file(tmp_path, _qv_line(1), bare))
    with pytest.raises(DataError, match=r"highlight_val_release.jsonl: .*1 of 2 sentences have no"):
        evaluate(_records((0.1, 0.9, 0.4, 0.6), (0.1, 0.2, 0.9, 0.6)), data)
