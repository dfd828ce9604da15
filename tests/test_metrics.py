"""Metrics on hand-computed cases; the predictions file format; matching predictions to annotations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from higround.data.schema import GroundingDataset, LoadReport, Paragraph, Sentence, Video
from higround.errors import DataError
from higround.metrics import (
    DEFAULT_THRESHOLDS,
    MR_THRESHOLDS,
    PredictionRecord,
    average_precision,
    evaluate,
    format_metrics,
    grounding_metrics,
    mean_iou,
    moment_retrieval_metrics,
    nms_keep,
    pad_ranked,
    pairwise_temporal_iou,
    rank_recall,
    read_predictions,
    recall_at_iou,
    retrieval_metrics,
    temporal_iou,
    write_predictions,
)

# ---------------------------------------------------------------- IoU


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        ((0, 10), (5, 15), 5 / 15),  # overlap
        ((0, 5), (6, 10), 0.0),  # disjoint
        ((2, 4), (0, 10), 0.2),  # nested
        ((0, 5), (5, 10), 0.0),  # touching
        ((3, 9), (3, 9), 1.0),  # identical
        ((3, 3), (0, 10), 0.0),  # zero-length inside
        ((3, 3), (3, 3), 0.0),  # identical points: 0/0 defined as 0
        ((5, 3), (0, 10), 0.0),  # reversed: empty
        ((0, 5), (0, 10), 0.5),  # exactly one half
    ],
)
def test_temporal_iou_hand_cases(pred: tuple, gt: tuple, expected: float) -> None:
    assert temporal_iou([pred], [gt])[0] == pytest.approx(expected, abs=1e-12)
    assert temporal_iou([gt], [pred])[0] == pytest.approx(expected, abs=1e-12)  # symmetric


def test_pairwise_iou_matches_paired_and_broadcasts() -> None:
    a = np.array([[0, 10], [5, 15], [2, 4]], dtype=float)
    b = np.array([[0, 10], [6, 8]], dtype=float)
    table = pairwise_temporal_iou(a, b)
    assert table.shape == (3, 2)
    expected = [[temporal_iou(x[None], y[None])[0] for y in b] for x in a]
    np.testing.assert_allclose(table, expected)
    np.testing.assert_allclose(table[:, 1], [0.2, 2 / 10, 0.0])
    batched = pairwise_temporal_iou(np.stack([a, a]), np.stack([b, b]))  # (Q, K, 2) x (Q, W, 2)
    assert batched.shape == (2, 3, 2)
    np.testing.assert_allclose(batched[1], table)
    with pytest.raises(ValueError, match="last axis"):
        temporal_iou([[0, 1, 2]], [[0, 1, 2]])


# ---------------------------------------------------------------- grounding


def test_hit_rule_at_exact_boundary() -> None:
    iou = temporal_iou([[0, 5]], [[0, 10]])
    assert iou[0] == 0.5
    assert recall_at_iou(iou, [0.5], inclusive=True)[0] == 1.0
    assert recall_at_iou(iou, [0.5], inclusive=False)[0] == 0.0
    assert grounding_metrics([[0, 5]], [[0, 10]], [0.5])["R1@0.5"] == 1.0
    assert grounding_metrics([[0, 5]], [[0, 10]], [0.5], inclusive=False)["R1@0.5"] == 0.0


def test_recall_and_miou_tiny_case() -> None:
    gt = [[0, 10]] * 4
    pred = [[4, 6], [0, 5], [1, 9], [20, 30]]  # IoUs 0.2, 0.5, 0.8, 0
    np.testing.assert_allclose(temporal_iou(pred, gt), [0.2, 0.5, 0.8, 0.0])
    metrics = grounding_metrics(pred, gt, DEFAULT_THRESHOLDS["activitynet_captions"])
    assert metrics == pytest.approx({"R1@0.3": 0.5, "R1@0.5": 0.5, "R1@0.7": 0.25, "mIoU": 0.375})
    assert mean_iou([]) == 0.0
    np.testing.assert_array_equal(recall_at_iou([], [0.5]), [0.0])


def test_best_window_counts_for_multi_window_sentences() -> None:
    gt = [[[0, 10], [20, 30]], [[0, 10], [0, 0]]]
    mask = [[True, True], [True, False]]
    metrics = grounding_metrics([[20, 30], [0, 5]], gt, [0.5, 0.7], gt_mask=mask)
    assert metrics == pytest.approx({"R1@0.5": 1.0, "R1@0.7": 0.5, "mIoU": 0.75})


def test_default_thresholds_are_the_papers_columns() -> None:
    assert DEFAULT_THRESHOLDS["tacos"] == (0.1, 0.3, 0.5)
    assert DEFAULT_THRESHOLDS["charades_sta"] == (0.5, 0.7)
    assert MR_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    from higround.data.readers import available_datasets

    assert set(DEFAULT_THRESHOLDS) == set(available_datasets())


# ---------------------------------------------------------------- NMS and Rank n@m


def test_nms_is_greedy_over_kept_proposals_only() -> None:
    # P2 overlaps P1 (IoU 0.67) and is suppressed; P3 overlaps P2 (0.67) but not P1 (0.43): kept,
    # because only kept proposals suppress. Padding is never kept.
    ranked = pad_ranked([[[0, 10], [2, 12], [4, 14]], [[0, 10], [0, 9], [20, 30], [25, 35]], []])
    keep = nms_keep(ranked.spans, ranked.mask, 0.5)
    np.testing.assert_array_equal(
        keep, [[True, False, True, False], [True, False, True, True], [False, False, False, False]]
    )


def test_rank_recall_hand_case() -> None:
    proposals = [[[0, 10], [2, 12], [4, 14]], [[0, 5]], np.zeros((0, 2))]
    gt = [[4, 14], [0, 10], [0, 10]]
    # q1: IoUs 0.43, 0.67, 1.0; after NMS the top two are P1 and P3. q2: IoU 0.5. q3: no proposal.
    with_nms = rank_recall(proposals, gt, [0.5, 0.7], n_values=(1, 2))
    assert with_nms == pytest.approx({"R1@0.5": 1 / 3, "R1@0.7": 0.0, "R2@0.5": 2 / 3, "R2@0.7": 1 / 3})
    without = rank_recall(proposals, gt, [0.5, 0.7], n_values=(2,), nms_threshold=None)
    assert without["R2@0.7"] == 0.0  # P2 (0.67) takes rank 2
    exclusive = rank_recall(proposals, gt, [0.5], n_values=(1,), inclusive=False)
    assert exclusive["R1@0.5"] == 0.0  # q2's IoU is exactly 0.5
    by_score = rank_recall(proposals, gt, [0.7], n_values=(1,), scores=[[0.1, 0.2, 0.9], [1.0], []])
    assert by_score["R1@0.7"] == pytest.approx(1 / 3)  # P3 now ranks first


# ---------------------------------------------------------------- moment retrieval (mAP)


def test_average_precision_hand_case() -> None:
    # Query 1: two windows; predictions by score: exact g1 (TP), near-copy of g1 (FP: g1 taken),
    # exact g2 (TP) -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 + 1/2 * 2/3 = 5/6.
    # Query 2: a miss then a hit -> AP = 1/2.
    ranked = pad_ranked([[[0, 10], [1, 10], [20, 30]], [[50, 60], [0, 10]]], [[0.9, 0.8, 0.7], [0.9, 0.1]])
    gt = pad_ranked([[[0, 10], [20, 30]], [[0, 10]]])
    ap = average_precision(ranked, gt.spans, gt.mask, [0.5])
    np.testing.assert_allclose(ap[:, 0], [5 / 6, 1 / 2])
    metrics = moment_retrieval_metrics(ranked, gt.spans, gt.mask, [0.5], buckets=None)
    assert metrics == pytest.approx({"mAP@0.5": 2 / 3, "mAP": 2 / 3, "R1@0.5": 1 / 2})


def test_map_truncates_in_given_order_then_sorts_by_score() -> None:
    # The first prediction (low score) is exact, the second (high score) misses: with one prediction
    # per query kept, truncation before sorting keeps the exact one.
    ranked = pad_ranked([[[0, 10], [50, 60]]], [[0.1, 0.9]])
    gt = pad_ranked([[[0, 10]]])
    one = moment_retrieval_metrics(ranked, gt.spans, gt.mask, [0.5], max_predictions=1, buckets=None)
    assert one["mAP"] == 1.0
    two = moment_retrieval_metrics(ranked, gt.spans, gt.mask, [0.5], max_predictions=2, buckets=None)
    assert two["mAP"] == 0.5  # the miss is scored first
    assert two["R1@0.5"] == 1.0  # R1 takes the first prediction, not the best-scored


def test_length_buckets_keep_windows_in_range() -> None:
    # Windows of 10 s (short: (0, 10]) and 20 s (middle); the prediction hits only the 20 s one.
    ranked = pad_ranked([[[20, 40]]], [[1.0]])
    gt = pad_ranked([[[0, 10], [20, 40]]])
    metrics = moment_retrieval_metrics(ranked, gt.spans, gt.mask, [0.5])
    assert metrics["mAP"] == 0.5 and metrics["R1@0.5"] == 1.0  # one of two windows found
    assert metrics["short/mAP"] == 0.0 and metrics["short/R1@0.5"] == 0.0
    assert metrics["middle/mAP"] == 1.0 and metrics["middle/R1@0.5"] == 1.0
    assert "long/mAP" not in metrics  # no window over 30 s: the bucket is empty


# ---------------------------------------------------------------- retrieval


def test_retrieval_ranks_hand_case() -> None:
    similarity = [[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.4, 0.4, 0.1]]
    # Ranks: 1; 2 (0.8 beats 0.3); 2 (a tie counts against the query).
    metrics = retrieval_metrics(similarity, [0, 1, 0], ks=(1, 2, 5))
    assert metrics == pytest.approx(
        {"R@1": 1 / 3, "R@2": 1.0, "R@5": 1.0, "median_rank": 2.0, "mean_rank": 5 / 3}
    )
    constant = retrieval_metrics(np.ones((3, 3)), [0, 1, 2])
    assert constant["R@1"] == 0.0 and constant["median_rank"] == 3.0
    with pytest.raises(ValueError, match="gt_index"):
        retrieval_metrics(similarity, [0, 1, 3])


# ---------------------------------------------------------------- predictions files


def _records() -> list[PredictionRecord]:
    return [
        PredictionRecord(
            key="v1#0",
            video_id="v1",
            spans=((0.0, 5.5), (1.0, 9.0)),
            scores=(0.9, 0.25),
            sentence_index=0,
            paragraph_index=0,
            paragraph_span=(0.0, 30.0),
            word_spans=((0.0, 1.0), (1.0, 2.5)),
            extra={"sentence_spans": [[0.0, 6.0]]},
        ),
        PredictionRecord(key="v1#1", video_id="v1", spans=((20.0, 30.0),), sentence_index=1),
    ]


def test_predictions_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "preds.json"
    write_predictions(path, _records(), dataset="activitynet_captions", split="val_2", meta={"model": "x"})
    text = path.read_text()
    assert text.count("\n") == 4  # header line, one line per record, closing line
    assert [p.name for p in path.parent.iterdir()] == ["preds.json"]  # no temp file left
    back = read_predictions(path)
    assert back.records == _records()
    assert (back.dataset, back.split, back.format, back.meta) == (
        "activitynet_captions",
        "val_2",
        "higround.predictions.v1",
        {"model": "x"},
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["predictions"][1].pop("spans"),
            r"record 1 \(key 'v1#1', video v1, sentence 1\): has no 'spans'",
        ),
        (
            lambda d: d["predictions"][1].update(spans=[[5, 1]]),
            r"record 1 .*spans\[0\] ends before it starts",
        ),
        (lambda d: d["predictions"][1].update(spans=[]), r"record 1 .*spans is empty"),
        (lambda d: d["predictions"][0].update(scores=[1.0]), r"record 0 .*scores must be a list of 2"),
        (
            lambda d: d["predictions"][1].update(key="v1#0"),
            r"record 1: duplicate key 'v1#0' \(first at record 0\)",
        ),
        (lambda d: d.update(format="other.v9"), r"format is 'other.v9'"),
        (lambda d: d["predictions"][0].update(sentence_index=-1), r"record 0 .*sentence_index must be"),
    ],
)
def test_corrupted_predictions_name_file_and_record(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "preds.json"
    write_predictions(path, _records())
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as err:
        read_predictions(path)
    assert str(path) in str(err.value)


def test_non_finite_and_bad_json_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "preds.json"
    record = '{"key": "a", "video_id": "v", "spans": [[0, NaN]]}'
    path.write_text('{"format": "higround.predictions.v1", "predictions": [' + record + "]}")
    with pytest.raises(DataError, match=r"record 0 \(key 'a', video v\): spans\[0\] end must be a finite"):
        read_predictions(path)
    path.write_text('{"format": "higround.predictions.v1", "predictions": [')
    with pytest.raises(DataError, match="not valid JSON"):
        read_predictions(path)


def test_write_validates_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "preds.json"
    bad = PredictionRecord(key="v#0", video_id="v", spans=((3.0, 1.0),), sentence_index=0)
    with pytest.raises(
        DataError, match=r"record 0 \(key 'v#0', video v, sentence 0\): spans\[0\] ends before"
    ):
        write_predictions(path, [bad])
    assert not path.exists()


def test_moment_detr_lines_are_read_and_detected(tmp_path: Path) -> None:
    lines = [
        {"qid": 7, "vid": "a_0.0_150.0", "pred_relevant_windows": [[0, 4, 0.9], [2, 8, 0.5]]},
        {
            "qid": 9,
            "vid": "b_0.0_150.0",
            "pred_relevant_windows": [[10, 20, 0.7]],
            "pred_saliency_scores": [0.1],
        },
    ]
    for name in ("preds.jsonl", "preds.json"):  # by suffix, and by content
        path = tmp_path / name
        path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        got = read_predictions(path)
        assert got.format == "moment_detr"
        assert [r.key for r in got.records] == ["7", "9"]
        assert got.records[0].spans == ((0.0, 4.0), (2.0, 8.0)) and got.records[0].scores == (0.9, 0.5)
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps(lines[0])
        + "\n"
        + json.dumps({"qid": 9, "vid": "b", "pred_relevant_windows": [[1, 2, 3], [1, 2]]})
    )
    with pytest.raises(
        DataError, match=r"bad.jsonl: line 2 \(qid 9, video b\): pred_relevant_windows must be all"
    ):
        read_predictions(path)


# ---------------------------------------------------------------- matching predictions to annotations


def _dataset() -> GroundingDataset:
    sentences = tuple(
        Sentence(text=f"s{i}", start=s, end=e, index=i, key=f"v1#{i}")
        for i, (s, e) in enumerate([(0.0, 10.0), (20.0, 40.0), (50.0, 60.0)])
    )
    video = Video("v1", 100.0, (Paragraph("v1", 100.0, sentences),))
    return GroundingDataset("activitynet_captions", "val_2", [video], LoadReport("ann.json"))


def _record(i: int, *spans: tuple[float, float], video: str = "v1") -> PredictionRecord:
    return PredictionRecord(key=f"v1#{i}", video_id=video, spans=spans, sentence_index=i)


def test_evaluate_scores_every_sentence() -> None:
    records = [_record(0, (0, 5)), _record(1, (20, 40)), _record(2, (0, 10), (50, 60))]
    metrics = evaluate(records, _dataset())
    # IoUs of the top spans: 0.5, 1, 0 -> R1@0.3 = R1@0.5 = 2/3, R1@0.7 = 1/3; R5 finds sentence 2.
    assert metrics == pytest.approx(
        {
            "R1@0.3": 2 / 3,
            "R1@0.5": 2 / 3,
            "R1@0.7": 1 / 3,
            "mIoU": 0.5,
            "R5@0.3": 1.0,
            "R5@0.5": 1.0,
            "R5@0.7": 2 / 3,
        }
    )
    table = format_metrics(metrics)
    assert table.splitlines()[1].split() == ["R1", "66.67", "66.67", "33.33"]
    assert table.splitlines()[-1].split() == ["mIoU", "50.00"]


def test_missing_predictions_are_an_error_or_counted_misses() -> None:
    records = [_record(0, (0, 10)), _record(2, (50, 60))]
    with pytest.raises(DataError, match=r"no prediction for 1 of 3 sentences of ann.json \(keys 'v1#1'\)"):
        evaluate(records, _dataset())
    metrics = evaluate(records, _dataset(), allow_missing=True)
    assert metrics["R1@0.5"] == pytest.approx(2 / 3) and metrics["mIoU"] == pytest.approx(2 / 3)


def test_unknown_keys_and_wrong_videos() -> None:
    records = [_record(0, (0, 10)), _record(1, (20, 40)), _record(2, (50, 60))]
    stray = PredictionRecord(key="v9#0", video_id="v9", spans=((0.0, 1.0),))
    with pytest.raises(DataError, match=r"1 prediction\(s\) for keys not in ann.json \(keys 'v9#0'\)"):
        evaluate([*records, stray], _dataset())
    assert evaluate([*records, stray], _dataset(), allow_unknown=True)["R1@0.7"] == 1.0
    with pytest.raises(DataError, match="key 'v1#1' is predicted for video 'v2', annotated in 'v1'"):
        evaluate([records[0], _record(1, (20, 40), video="v2"), records[2]], _dataset())


def test_nms_matches_a_sequential_greedy_reference() -> None:
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 50, (40, 12))
    spans = np.stack([starts, starts + rng.uniform(1, 30, (40, 12))], axis=-1)
    mask = rng.uniform(size=(40, 12)) < 0.9
    keep = nms_keep(spans, mask, 0.5)
    for q in range(40):  # the textbook loop, as a reference
        kept: list[int] = []
        for k in np.flatnonzero(mask[q]):
            if all(temporal_iou(spans[q, j][None], spans[q, k][None])[0] <= 0.5 for j in kept):
                kept.append(int(k))
        assert np.flatnonzero(keep[q]).tolist() == kept
