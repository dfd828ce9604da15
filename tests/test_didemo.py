"""DiDeMo reader (CMHSE's ``*_data_bwzhang.json``): real counts, frames -> seconds, bad records."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from higround.data.readers import LayoutError, load_annotation_file, load_dataset
from higround.errors import DataError, FixableDataError

# split, videos, descriptions (HSE's supplement and CMHSE's files)
REAL = [("train", 8395, 33005), ("val", 1065, 4180), ("test", 1004, 4021)]
# The train descriptions whose time starts past the video's last feature frame: the whole video.
WHOLE_VIDEO = {
    ("72794895@N00_5347816154_22a7e06b4e", 1): (598, 299),
    ("72794895@N00_5347816154_22a7e06b4e", 2): (598, 299),
    ("72794895@N00_5347816154_22a7e06b4e", 3): (598, 299),
    ("72794895@N00_5347816154_22a7e06b4e", 4): (598, 299),
    ("72794895@N00_5042697431_f03e5507f1", 4): (449, 374),
    ("26765414@N00_4996933597_5c59fe091e", 3): (748, 462),
    ("26765414@N00_4996933597_5c59fe091e", 4): (748, 462),
}


@pytest.mark.parametrize(("split", "videos", "descriptions"), REAL, ids=[r[0] for r in REAL])
def test_real_counts(shared_data: Path, split: str, videos: int, descriptions: int) -> None:
    ds = load_dataset("didemo", shared_data, split)
    assert (ds.name, ds.split) == ("didemo", split)
    assert len(ds.videos) == len(ds.paragraphs()) == videos
    assert ds.sentence_count() == descriptions
    assert ds.report.clamped == 0 and not ds.report.skipped
    keys = [s.key for _, s in ds.sentences()]
    assert len(set(keys)) == len(keys)
    assert all(0 <= s.start <= s.end <= p.duration for p, s in ds.sentences())
    whole = {
        (p.video_id, s.index): s.extra["released_frames"]
        for p, s in ds.sentences()
        if "released_frames" in s.extra
    }
    assert whole == (WHOLE_VIDEO if split == "train" else {})


def test_frames_become_seconds_of_the_feature_grid(shared_data: Path) -> None:
    path = shared_data / "didemo" / "train_data_bwzhang.json"
    ds = load_annotation_file("didemo", path)  # the split comes from the file name
    assert ds.split == "train"
    video = next(v for v in ds.videos if v.video_id == "48001787@N06_4999236488_1f7ff5f552")
    # 29.07 s, 870 frames; times [[299, 448], [448, 598], [448, 598]] in file order.
    assert video.duration == 29.07 and dict(video.extra) == {"feature_leng": 870, "num_segments": 6}
    sentences = video.paragraphs[0].sentences
    assert [s.text for s in sentences] == [
        "the boat first bears right",
        "bar passes very close to camera and out of frame",
        "two people are seen",
    ]
    assert [s.extra["frames"] for s in sentences] == [(299, 448), (448, 598), (448, 598)]
    assert sentences[0].span == pytest.approx((299 * 29.07 / 870, 448 * 29.07 / 870))
    # 299 / 29.93 frames/s = 9.99 s: segment 2 starts at 10 s, one frame later.
    assert 10 - 29.07 / 870 < sentences[0].start < 10


def test_spans_sit_within_a_frame_before_the_5_second_grid(shared_data: Path) -> None:
    ds = load_dataset("didemo", shared_data, "test")
    rows = [
        (s.start, s.end, p.duration, v.extra["feature_leng"])
        for v in ds.videos
        for p in v.paragraphs
        for s in p.sentences
    ]
    start, end, duration, length = np.array(rows).T
    frame = duration / length
    for t, last in ((start, np.zeros_like(start, dtype=bool)), (end, end == duration)):
        grid = 5 * np.ceil(t / 5 - 1e-9)
        # Every boundary is floor(5 k fps) frames: at most one frame before 5 k s (or on it, to float
        # rounding); an end at the last frame is the duration (a last segment shorter than 5 s).
        assert np.all(last | ((grid - t > -1e-9) & (grid - t < frame)))
    assert (end == duration).sum() == 130


def test_time_past_the_features_is_the_whole_video(shared_data: Path) -> None:
    ds = load_dataset("didemo", shared_data, "train")
    video = next(v for v in ds.videos if v.video_id == "26765414@N00_4996933597_5c59fe091e")
    s3, s4 = video.paragraphs[0].sentences[3:5]
    assert s3.span == s4.span == (0.0, video.duration) == (0.0, 15.44)
    assert s3.extra == {"frames": (0, 462), "released_frames": (748, 462)}


def _write(tmp: Path, records: Any, name: str = "test_data_bwzhang.json") -> Path:
    path = tmp / name
    path.write_text(records if isinstance(records, str) else json.dumps(records))
    return path


def _good() -> dict[str, Any]:
    """Two 30-s videos at 30 frames/s."""
    return {
        "vA": {
            "duration": 30.0,
            "feature_leng": 900,
            "times": [[0, 150], [150, 450]],
            "description": ["a", "b"],
            "num_segments": 6,
        },
        "vB": {
            "duration": 30.0,
            "feature_leng": 900,
            "times": [[750, 900]],
            "description": ["c"],
            "num_segments": 6,
        },
    }


def test_small_file_loads(tmp_path: Path) -> None:
    ds = load_annotation_file("didemo", _write(tmp_path, _good()))
    spans = [s.span for _, s in ds.sentences()]
    assert spans == [(0.0, 5.0), (5.0, 15.0), (25.0, 30.0)]
    assert [s.key for _, s in ds.sentences()] == ["vA#0", "vA#1", "vB#0"]


# (change to vA, substrings of the error): each a bad record of video vA
BAD = {
    "reversed": (
        lambda r: r["times"].__setitem__(1, [450, 150]),
        ["sentence 1", "[450, 150] in feature frames", "after end"],
    ),
    "negative": (lambda r: r["times"].__setitem__(1, [-3, 150]), ["sentence 1", "negative start"]),
    "fraction": (
        lambda r: r["times"].__setitem__(1, [150.5, 450]),
        ["sentence 1", "not whole numbers"],
    ),
    "not-a-number": (lambda r: r["times"].__setitem__(1, ["x", 450]), ["sentence 1", "not finite"]),
    "three-numbers": (lambda r: r["times"].__setitem__(1, [1, 2, 3]), ["sentence 1", "malformed"]),
    "end-far-past": (
        lambda r: r["times"].__setitem__(1, [150, 990]),
        ["sentence 1", "past the video duration"],
    ),
    "empty-text": (lambda r: r["description"].__setitem__(0, " "), ["sentence 0", "empty sentence"]),
    "no-times": (lambda r: r.pop("times"), ["no 'times' field"]),
    "times-not-list": (lambda r: r.__setitem__("times", "0-150"), ["'times' is str, not a list"]),
    "lengths-differ": (lambda r: r["times"].pop(), ["1 times for 2 descriptions"]),
    "no-feature-leng": (lambda r: r.pop("feature_leng"), ["feature_leng None"]),
    "zero-feature-leng": (lambda r: r.__setitem__("feature_leng", 0), ["feature_leng 0"]),
    "no-duration": (lambda r: r.pop("duration"), ["unknown video duration"]),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_record_names_file_video_and_description_then_skips(tmp_path: Path, kind: str) -> None:
    records = _good()
    change, names = BAD[kind]
    change(records["vA"])
    path = _write(tmp_path, records)
    with pytest.raises(FixableDataError) as err:
        load_annotation_file("didemo", path)
    message = str(err.value)
    assert message.startswith(f"{path}: video 'vA'"), message
    assert all(name in message for name in names), message
    skipped = load_annotation_file("didemo", path, on_bad="skip")
    # One bad record (the sentence, or the whole video for a video-level problem), only vA's.
    assert [r.video_id for r in skipped.report.skipped] == ["vA"]
    assert "vB" in [v.video_id for v in skipped.videos]


def test_small_end_overshoot_is_clamped_and_counted(tmp_path: Path) -> None:
    records = _good()
    records["vB"]["times"] = [[750, 930]]  # 1 s past the 900 frames
    ds = load_annotation_file("didemo", _write(tmp_path, records))
    assert ds.report.clamped == 1 and ds.videos[1].paragraphs[0].sentences[0].span == (25.0, 30.0)


def test_corrupt_copy_of_the_real_file_names_the_file(shared_data: Path, tmp_path: Path) -> None:
    text = (shared_data / "didemo" / "test_data_bwzhang.json").read_text()
    path = _write(tmp_path, text[: len(text) // 2])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: not valid JSON"):
        load_annotation_file("didemo", path)


def test_didemo_own_release_is_named(tmp_path: Path) -> None:
    release = [
        {
            "video": "v.mov",
            "times": [[1, 1], [1, 2], [1, 1], [1, 1]],
            "description": "a dog",
            "num_segments": 6,
        }
    ]
    path = _write(tmp_path, release, "val_data.json")
    with pytest.raises(DataError, match=r"DiDeMo's own release .* CMHSE's"):
        load_annotation_file("didemo", path)


def test_wrong_reader_is_named_both_ways(shared_data: Path) -> None:
    path = shared_data / "didemo" / "test_data_bwzhang.json"
    with pytest.raises(LayoutError) as err:
        load_annotation_file("activitynet_captions", path)
    assert err.value.fix.value == "didemo"
    with pytest.raises(LayoutError, match="looks like a tacos file"):
        load_annotation_file("didemo", shared_data / "tacos" / "test.json")
