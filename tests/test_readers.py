"""Annotation readers: real counts of every real file, format details, and the bad-record policy."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from higround.data.readers import (
    DATASETS,
    DEFAULT_CLAMP_TOLERANCE,
    LayoutError,
    available_datasets,
    load_annotation_file,
    load_dataset,
)
from higround.data.schema import GroundingDataset, SkippedRecord
from higround.errors import ConfigError, DataError, FixableDataError

ANET_TRAIN_BAD = [("v_0bosp4-pyTM", 3), ("v_rhOtqArO-3Y", 5)]
CHARADES_TRAIN_BAD = [("LEOL6", 0), ("IOL8Q", 0), ("AKKWU", 0), ("AKKWU", 1)]

# name, split, on_bad, videos, paragraphs, sentences, clamped, skipped (video, sentence index)
REAL = [
    ("activitynet_captions", "train", "skip", 10009, 10009, 37419, 261, ANET_TRAIN_BAD),
    ("activitynet_captions", "val_1", "error", 4917, 4917, 17505, 134, []),
    ("activitynet_captions", "val_2", "error", 4885, 4885, 17031, 111, []),
    ("tacos", "train", "error", 75, 75, 9790, 43, []),
    ("tacos", "val", "error", 27, 27, 4436, 0, []),
    ("tacos", "test", "error", 25, 25, 4001, 5, []),
    ("tacos_paragraphs", "train", "error", 75, 1526, 9732, 0, []),
    ("tacos_paragraphs", "val", "error", 27, 688, 4398, 0, []),
    ("tacos_paragraphs", "test", "error", 25, 673, 3989, 0, []),
    # LEOL6 and IOL8Q have one (reversed) sentence each: 5338 videos in the file, 5336 kept.
    ("charades_sta", "train", "skip", 5336, 5336, 12404, 1802, CHARADES_TRAIN_BAD),
    ("charades_sta", "test", "error", 1334, 1334, 3720, 562, []),
    ("charades_cg", "train", "error", 3555, 3555, 8281, 1255, []),
    ("charades_cg", "test_trivial", "error", 1689, 1689, 3096, 412, []),
    ("charades_cg", "novel_composition", "error", 2480, 2480, 3442, 452, []),
    ("charades_cg", "novel_word", "error", 580, 580, 695, 109, []),
    ("activitynet_cg", "train", "skip", 9659, 9659, 36722, 248, ANET_TRAIN_BAD),
    ("activitynet_cg", "test_trivial", "error", 4775, 4775, 15712, 123, []),
    ("activitynet_cg", "novel_composition", "error", 4202, 4202, 12028, 66, []),
    ("activitynet_cg", "novel_word", "error", 1991, 1991, 3920, 34, []),
    ("qvhighlights", "val", "error", 1519, 1550, 1550, 0, []),
    ("didemo", "train", "error", 8395, 8395, 33005, 0, []),
    ("didemo", "val", "error", 1065, 1065, 4180, 0, []),
    ("didemo", "test", "error", 1004, 1004, 4021, 0, []),
]


@pytest.mark.parametrize(
    ("name", "split", "on_bad", "videos", "paragraphs", "sentences", "clamped", "skipped"),
    REAL,
    ids=[f"{r[0]}-{r[1]}" for r in REAL],
)
def test_real_file_counts(
    shared_data: Path,
    name: str,
    split: str,
    on_bad: Any,
    videos: int,
    paragraphs: int,
    sentences: int,
    clamped: int,
    skipped: list[tuple[str, int]],
) -> None:
    ds = load_dataset(name, shared_data, split, on_bad=on_bad)
    assert (ds.name, ds.split) == (name, split)
    assert len(ds.videos) == videos
    assert len(ds.paragraphs()) == paragraphs
    assert ds.sentence_count() == sentences
    assert ds.report.clamped == clamped
    assert [(r.video_id, r.sentence_index) for r in ds.report.skipped] == skipped
    keys = [s.key for _, s in ds.sentences()]
    assert len(set(keys)) == len(keys)
    # Clamping leaves every span inside its video.
    assert all(0 <= s.start <= s.end <= p.duration for p, s in ds.sentences())


def test_every_dataset_has_a_real_file_in_the_table() -> None:
    assert {r[0] for r in REAL} == set(available_datasets()) == set(DATASETS)


@pytest.mark.parametrize(("name", "split"), [("activitynet_captions", "train"), ("charades_sta", "train")])
def test_real_files_with_reversed_spans_raise_by_default(shared_data: Path, name: str, split: str) -> None:
    with pytest.raises(DataError, match="after end"):
        load_dataset(name, shared_data, split)


def test_anet_keeps_released_order_and_text(shared_data: Path) -> None:
    ds = load_dataset("activitynet_captions", shared_data / "activitynet_captions", "val_2")
    video = next(v for v in ds.videos if v.video_id == "v_aPjbJ4ZNcVQ")
    starts = [s.start for s in video.paragraphs[0].sentences]
    # As released: 60.76 precedes 46.13 (the file is not time-sorted).
    assert starts[:6] == [1.13, 39.38, 40.5, 60.76, 46.13, 69.76]
    assert [s.index for s in video.paragraphs[0].sentences] == list(range(15))
    assert video.paragraphs[0].sentences[4].key == "v_aPjbJ4ZNcVQ#4"


def test_max_sentences_splits_in_order(shared_data: Path) -> None:
    whole = load_dataset("activitynet_captions", shared_data, "val_2")
    split = load_dataset("activitynet_captions", shared_data, "val_2", max_sentences=8)
    assert len(split.videos) == 4885 and split.sentence_count() == 17031
    assert len(split.paragraphs()) == 4929
    for a, b in zip(whole.videos, split.videos, strict=True):
        assert [p.index for p in b.paragraphs] == list(range(len(b.paragraphs)))
        assert all(len(p) == 8 for p in b.paragraphs[:-1]) and 1 <= len(b.paragraphs[-1]) <= 8
        assert [s for p in b.paragraphs for s in p.sentences] == list(a.paragraphs[0].sentences)
    video = next(v for v in split.videos if v.video_id == "v_aPjbJ4ZNcVQ")
    assert [len(p) for p in video.paragraphs] == [8, 7]
    assert [s.index for s in video.paragraphs[1].sentences] == list(range(8, 15))


def test_split_aliases_and_root_forms(shared_data: Path) -> None:
    ds = load_dataset("activitynet_captions", shared_data, "test")
    assert ds.split == "val_2" and ds.sentence_count() == 17031
    assert load_dataset("activitynet_captions", shared_data, "val").split == "val_1"
    with pytest.raises(FileNotFoundError, match="known splits"):
        load_dataset("tacos", shared_data, "val_9")
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("kinetics", shared_data, "train")
    with pytest.raises(ConfigError, match="max_sentences"):
        load_dataset("tacos", shared_data, "test", max_sentences=0)


def test_tacos_frames_become_seconds(shared_data: Path) -> None:
    ds = load_dataset("tacos", shared_data, "test")
    video = next(v for v in ds.videos if v.video_id == "s30-d52.avi")
    first = video.paragraphs[0].sentences[0]
    # Released: timestamps [141, 354] frames, fps 29.4, num_frames 7346.
    assert first.text == "She took out kiwi"
    assert first.start == pytest.approx(141 / 29.4) and first.end == pytest.approx(354 / 29.4)
    assert video.duration == pytest.approx(7346 / 29.4)
    assert video.extra == {"fps": 29.4, "num_frames": 7346}


def test_tacos_paragraph_files_index_sentences_across_paragraphs(shared_data: Path) -> None:
    ds = load_dataset("tacos_paragraphs", shared_data, "test")
    video = next(v for v in ds.videos if v.video_id == "s30-d40.avi")
    first, second = video.paragraphs[:2]
    assert first.sentences[0].text == "Girl takes out lime" and len(first) == 8
    assert second.sentences[0].text == "She gets out a lime, cutting board, and juicer."
    assert [s.index for s in (*first.sentences, *second.sentences)] == list(range(8 + len(second)))
    assert video.duration == pytest.approx(166.49659863945578)


def test_charades_duration_from_csv(shared_data: Path) -> None:
    path = shared_data / "charades_sta" / "charades_sta_test.txt"
    ds = load_annotation_file("charades_sta", path)
    assert ds.split == "test"
    video = ds.videos[0]
    # 3MSZA: length 30.96 in Charades_v1_test.csv; four sentences, all 24.3-30.4 s.
    assert (video.video_id, video.duration) == ("3MSZA", 30.96)
    assert [s.span for s in video.paragraphs[0].sentences] == [(24.3, 30.4)] * 4
    assert video.paragraphs[0].sentences[1].text == "person flipped the light switch near the door."


def test_qvhighlights_windows_and_extras(shared_data: Path) -> None:
    ds = load_dataset("qvhighlights", shared_data, "val")
    sentences = {s.key: (p, s) for p, s in ds.sentences()}
    p, s = sentences["2638"]
    assert p.video_id == "bP5KfdFJzC4_60.0_210.0" and p.duration == 150.0
    assert s.windows == ((0.0, 74.0), (76.0, 142.0), (144.0, 150.0)) and s.span == (0.0, 74.0)
    assert s.extra["relevant_clip_ids"][:5] == [0, 1, 2, 3, 4]
    assert len(s.extra["saliency_scores"]) == len(s.extra["relevant_clip_ids"])
    video = next(v for v in ds.videos if v.video_id == "lwNho_1tKrc_60.0_210.0")
    assert [(q.index, q.sentences[0].key, q.sentences[0].index) for q in video.paragraphs] == [
        (0, "548", 0),
        (1, "1918", 1),
    ]


def test_cg_extras_are_kept_per_sentence(shared_data: Path) -> None:
    words = load_dataset("charades_cg", shared_data, "novel_word")
    assert words.videos[0].paragraphs[0].sentences[0].extra == {"news": {"DET": ["all"]}}
    comp = load_dataset("charades_cg", shared_data, "novel_composition")
    assert comp.videos[0].paragraphs[0].sentences[0].extra == {"novels": {"v-adv": [["put", "on"]]}}


# --- the bad-record policy, for every format, on small files written here ---------------------------

Clip = tuple[str, float, float]  # text, start, end (seconds)
Videos = dict[str, tuple[float | None, list[Clip]]]  # video id -> (duration or None, clips)
FPS = 25.0


def _write_captions(tmp: Path, videos: Videos) -> Path:
    data: dict[str, Any] = {}
    for vid, (duration, clips) in videos.items():
        data[vid] = {"timestamps": [[s, e] for _, s, e in clips], "sentences": [t for t, _, _ in clips]}
        if duration is not None:
            data[vid]["duration"] = duration
    path = tmp / "val_2.json"
    path.write_text(json.dumps(data))
    return path


def _write_tacos(tmp: Path, videos: Videos) -> Path:
    data: dict[str, Any] = {}
    for vid, (duration, clips) in videos.items():
        data[vid] = {
            "timestamps": [[s * FPS, e * FPS] for _, s, e in clips],
            "sentences": [t for t, _, _ in clips],
            "fps": FPS,
        }
        if duration is not None:
            data[vid]["num_frames"] = round(duration * FPS)
    path = tmp / "test.json"
    path.write_text(json.dumps(data))
    return path


def _write_tacos_paragraphs(tmp: Path, videos: Videos) -> Path:
    records = []
    for vid, (duration, clips) in videos.items():
        # Two paragraphs per video (first sentence, then the rest): indices run across them.
        for part in (clips[:1], clips[1:]):
            record: dict[str, Any] = {"video": vid, "sentences": [t for t, _, _ in part]}
            record["timestamps"] = [[s, e] for _, s, e in part]
            if duration is not None:
                record["duration"] = duration
            records.append(record)
    path = tmp / "paragraphs_test.json"
    path.write_text(json.dumps(records))
    return path


def _write_charades(tmp: Path, videos: Videos) -> Path:
    with (tmp / "Charades_v1_test.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "scene", "length"])
        writer.writerows([vid, "Kitchen", d] for vid, (d, _) in videos.items() if d is not None)
    lines = [f"{vid} {s} {e}##{t}\n" for vid, (_, clips) in videos.items() for t, s, e in clips]
    path = tmp / "charades_sta_test.txt"
    path.write_text("".join(lines))
    return path


def _write_qvh(tmp: Path, videos: Videos) -> Path:
    lines = []
    for vid, (duration, clips) in videos.items():
        for text, s, e in clips:
            record: dict[str, Any] = {"qid": len(lines), "query": text, "vid": vid}
            record["relevant_windows"] = [[s, e]]
            if duration is not None:
                record["duration"] = duration
            lines.append(json.dumps(record))
    path = tmp / "highlight_val_release.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


WRITERS: dict[str, Callable[[Path, Videos], Path]] = {
    "activitynet_captions": _write_captions,
    "charades_cg": _write_captions,
    "tacos": _write_tacos,
    "tacos_paragraphs": _write_tacos_paragraphs,
    "charades_sta": _write_charades,
    "qvhighlights": _write_qvh,
}


def _videos() -> Videos:
    return {
        "vidA": (30.0, [("a man opens the door.", 0.0, 4.0), ("he sits down.", 4.0, 10.0)]),
        "vidB": (40.0, [("a dog runs.", 1.0, 5.0), ("it jumps.", 6.0, 9.0), ("it sleeps.", 10.0, 40.0)]),
    }


def _corrupt(kind: str) -> Videos:
    """The small set with vidB's sentence 1 (or vidB's duration) broken in one way."""
    videos = _videos()
    duration, clips = videos["vidB"]
    text, start, end = clips[1]
    clips[1] = {
        "reversed": (text, 9.0, 6.0),
        "nan": (text, math.nan, 9.0),
        "negative": (text, -2.0, 9.0),
        "empty": ("   ", start, end),
        "overshoot": (text, start, 55.0),
        "duration": (text, start, end),
    }[kind]
    videos["vidB"] = (None if kind == "duration" else duration, clips)
    return videos


def _load(name: str, path: Path, **options: Any) -> GroundingDataset:
    return load_annotation_file(name, path, **options)


@pytest.mark.parametrize("name", WRITERS)
def test_clean_small_file_loads(tmp_path: Path, name: str) -> None:
    ds = _load(name, WRITERS[name](tmp_path, _videos()))
    assert [v.video_id for v in ds.videos] == ["vidA", "vidB"]
    assert ds.sentence_count() == 5 and ds.report.clamped == 0 and not ds.report.skipped
    spans = [s.span for _, s in ds.sentences()]
    assert spans == [pytest.approx(x) for x in [(0, 4), (4, 10), (1, 5), (6, 9), (10, 40)]]


SENTENCE_PROBLEMS = {
    "reversed": "after end",
    "nan": "not finite",
    "negative": "negative start",
    "empty": "empty sentence",
    "overshoot": "past the video duration",
}


@pytest.mark.parametrize("kind", SENTENCE_PROBLEMS)
@pytest.mark.parametrize("name", WRITERS)
def test_bad_sentence_raises_then_skips(tmp_path: Path, name: str, kind: str) -> None:
    path = WRITERS[name](tmp_path, _corrupt(kind))
    with pytest.raises(DataError) as err:
        _load(name, path)
    message = str(err.value)
    for part in (path.name, "'vidB'", "sentence 1", SENTENCE_PROBLEMS[kind]):
        assert part in message
    # The fix is data; a Python caller reads it in Python spelling (the CLI spells it per command).
    assert isinstance(err.value, FixableDataError) and err.value.fix.option == "on_bad"
    assert message.endswith("; pass on_bad='skip' to skip bad records")

    ds = _load(name, path, on_bad="skip")
    assert [(r.video_id, r.sentence_index) for r in ds.report.skipped] == [("vidB", 1)]
    assert SENTENCE_PROBLEMS[kind] in ds.report.skipped[0].reason
    assert ds.sentence_count() == 4
    kept = [s for p, s in ds.sentences() if p.video_id == "vidB"]
    assert [s.index for s in kept] == [0, 2]
    assert "skipped 1 bad record(s): vidB#1" in ds.report.summary()


@pytest.mark.parametrize("name", WRITERS)
def test_unknown_duration_raises_then_skips_the_video(tmp_path: Path, name: str) -> None:
    path = WRITERS[name](tmp_path, _corrupt("duration"))
    with pytest.raises(DataError, match="unknown video duration") as err:
        _load(name, path)
    assert path.name in str(err.value) and "'vidB'" in str(err.value)
    ds = _load(name, path, on_bad="skip")
    assert [v.video_id for v in ds.videos] == ["vidA"]
    assert [(r.video_id, r.sentence_index) for r in ds.report.skipped] == [("vidB", None)]


@pytest.mark.parametrize("name", WRITERS)
def test_small_overshoot_is_clamped_and_counted(tmp_path: Path, name: str) -> None:
    videos = _videos()
    videos["vidB"][1][2] = ("it sleeps.", 10.0, 40.0 + DEFAULT_CLAMP_TOLERANCE / 2)
    path = WRITERS[name](tmp_path, videos)
    ds = _load(name, path)
    assert ds.report.clamped == 1 and not ds.report.skipped
    last = [s for p, s in ds.sentences() if p.video_id == "vidB"][-1]
    assert last.end == pytest.approx(40.0)
    with pytest.raises(DataError, match=r"sentence 2\b.*: end 41.0 past the video duration 40.0"):
        _load(name, path, clamp_tolerance=0.1)


def test_length_mismatch_is_a_video_level_problem(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    good = {"duration": 9.0, "timestamps": [[0, 1]], "sentences": ["a"]}
    bad = {"duration": 9.0, "timestamps": [[0, 1]], "sentences": ["a", "b"]}
    path.write_text(json.dumps({"v1": bad, "v2": good}))
    with pytest.raises(DataError, match=r"'v1': 1 timestamps for 2 sentences"):
        load_annotation_file("activitynet_captions", path)
    ds = load_annotation_file("activitynet_captions", path, on_bad="skip")
    assert [v.video_id for v in ds.videos] == ["v2"]
    assert ds.report.skipped == [SkippedRecord("v1", None, "1 timestamps for 2 sentences")]


def test_duplicate_video_id_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "val_1.json"
    record = '{"duration": 9.0, "timestamps": [[0, 1]], "sentences": ["a"]}'
    path.write_text(f'{{"v1": {record}, "v1": {record}}}')
    with pytest.raises(DataError, match="duplicate key 'v1'"):
        load_annotation_file("activitynet_captions", path, on_bad="skip")


def test_charades_needs_its_csv(tmp_path: Path) -> None:
    path = _write_charades(tmp_path, _videos())
    (tmp_path / "Charades_v1_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"Charades_v1_test\.csv"):
        load_annotation_file("charades_sta", path)


def test_skipped_sentences_record_their_key(shared_data: Path) -> None:
    ds = load_dataset("charades_sta", shared_data, "train", on_bad="skip")
    assert [r.key for r in ds.report.skipped] == ["LEOL6#0", "IOL8Q#0", "AKKWU#0", "AKKWU#1"]


def test_skipped_qvhighlights_query_records_its_qid(tmp_path: Path) -> None:
    path = _write_qvh(tmp_path, _corrupt("reversed"))
    ds = load_annotation_file("qvhighlights", path, on_bad="skip")
    assert [(r.video_id, r.sentence_index, r.key) for r in ds.report.skipped] == [("vidB", 1, "3")]


# --- a file read with another benchmark's reader -----------------------------------------------------

# file under shared/data, reader it is read with, the reader it looks like (None: no reader), wording
WRONG_READER = [
    (
        "tacos/train.json",
        "activitynet_captions",
        "tacos",
        "a tacos file (timestamps in frames with fps/num_frames)",
    ),
    (
        "activitynet_captions/train.json",
        "tacos",
        "activitynet_captions",
        "an ActivityNet-Captions-layout file",
    ),
    ("tacos/test.json", "tacos_paragraphs", "tacos", "a tacos file"),
    ("tacos/paragraphs_test.json", "tacos", "tacos_paragraphs", "a tacos_paragraphs file"),
    ("tacos/paragraphs_test.json", "activitynet_captions", "tacos_paragraphs", "a tacos_paragraphs file"),
    ("charades_cg/train.json", "tacos", "activitynet_captions", "an ActivityNet-Captions-layout file"),
    ("charades_cg/train.json", "charades_sta", "activitynet_captions", "an ActivityNet-Captions-layout file"),
    ("charades_sta/charades_sta_test.txt", "activitynet_captions", "charades_sta", "a charades_sta file"),
    ("charades_sta/charades_sta_test.txt", "qvhighlights", "charades_sta", "a charades_sta file"),
    (
        "qvhighlights/highlight_val_release.jsonl",
        "activitynet_captions",
        "qvhighlights",
        "a qvhighlights file",
    ),
    ("qvhighlights/highlight_val_release.jsonl", "charades_sta", "qvhighlights", "a qvhighlights file"),
    (
        "activitynet_cg/novel_word.json",
        "qvhighlights",
        "activitynet_captions",
        "an ActivityNet-Captions-layout",
    ),
    ("didemo/test_data_bwzhang.json", "activitynet_captions", "didemo", "a DiDeMo file"),
    ("activitynet_captions/val_2.json", "didemo", "activitynet_captions", "an ActivityNet-Captions-layout"),
]


@pytest.mark.parametrize(("file", "reader", "looks_like", "wording"), WRONG_READER, ids=lambda x: str(x))
@pytest.mark.parametrize("on_bad", ["error", "skip"])
def test_wrong_reader_names_the_file_and_the_right_reader(
    shared_data: Path,
    read_once: Callable[[str, Path, Any], GroundingDataset],
    file: str,
    reader: str,
    looks_like: str | None,
    wording: str,
    on_bad: Any,
) -> None:
    path = shared_data / file
    with pytest.raises(DataError) as err:
        load_annotation_file(reader, path, on_bad=on_bad)
    message = str(err.value)
    assert message.startswith(f"{path}: not in the {reader} layout: it looks like {wording}")
    if looks_like is None:
        assert not isinstance(err.value, LayoutError) and "no higround reader reads" in message
    else:
        assert isinstance(err.value, LayoutError) and err.value.fix.value == looks_like
        assert f"use the {looks_like!r} reader" in message
        # Following the advice reads the file (the same read for either on_bad of the wrong one).
        assert read_once(looks_like, path, "skip").videos


def test_same_layout_readers_read_each_other(shared_data: Path) -> None:
    """The three ActivityNet-layout readers share a parser: no layout error between them."""
    path = shared_data / "charades_cg" / "novel_word.json"
    assert load_annotation_file("activitynet_cg", path).sentence_count() == 695


def test_a_split_with_every_record_bad_is_an_error(tmp_path: Path) -> None:
    videos = _videos()
    path = _write_tacos(tmp_path, {vid: (None, clips) for vid, (_, clips) in videos.items()})
    with pytest.raises(DataError, match="unknown video duration"):
        load_annotation_file("tacos", path)
    with pytest.raises(DataError) as err:
        load_annotation_file("tacos", path, on_bad="skip")
    message = str(err.value)
    assert message.startswith(f"{path}: every record is bad")
    assert "skipping 2 bad record(s) of 2 video(s)" in message
    assert "the first: video 'vidA': unknown video duration" in message
    assert not isinstance(err.value, FixableDataError)  # skipping is no fix for this


@pytest.mark.parametrize("broken", ["charades_sta_test.txt", "Charades_v1_test.csv"])
def test_charades_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path: Path, broken: str) -> None:
    path = _write_charades(tmp_path, _videos())
    target = tmp_path / broken
    lines = target.read_bytes().splitlines(keepends=True)
    target.write_bytes(b"".join([*lines[:2], b"\xff\xfe bad bytes\n", *lines[2:]]))
    with pytest.raises(DataError, match=rf"{re.escape(str(target))}: line 3: not UTF-8 text"):
        load_annotation_file("charades_sta", path)
