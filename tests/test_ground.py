"""``higround ground`` end to end on the real ActivityNet videos: features extracted with the real
default backbone, a tiny checkpoint trained in the test on the videos' real captions, then the CLI
grounds each video's real paragraph; plus the checkpoint/backbone mismatch errors and the sentence
splitting rule."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from higround.cli.main import main
from higround.engine.api import Grounder
from higround.engine.checkpoint import load_checkpoint
from higround.errors import ConfigError
from higround.text import split_sentences
from higround.video.grounding import plan_extraction
from higround.video.settings import ClipSampling, FeatureSettings

REPO = Path(__file__).resolve().parents[1]
IDS = ["v_GGSY1Qvo990", "v_ZNVhz7ctTq0"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, object]:
    """Extract both videos (1 fps), train 1 epoch on their real captions, return the paths."""
    tmp = tmp_path_factory.mktemp("ground")
    records = {}
    for split in ("train", "val_1"):
        found = json.loads((shared_data / "activitynet_captions" / f"{split}.json").read_text())
        records.update({v: found[v] for v in IDS if v in found})
    root = tmp / "activitynet_captions"
    root.mkdir()
    for split in ("train", "val_1"):  # both videos in both splits: a tiny train = val set
        (root / f"{split}.json").write_text(json.dumps(records))
    videos = [shared_data / "videos" / f"{v}.mp4" for v in IDS]
    store = tmp / "features.h5"
    code, _, err = _run(["extract", *map(str, videos), "--out", str(store), "--no-progress"])
    assert code == 0, err
    args = [
        *("train", "--config", str(REPO / "configs" / "hscnet" / "activitynet_captions.yaml")),
        *(f"data.root={root}", f"data.features={store}", "data.feature_key=null", "data.test_split=val_1"),
        *("data.batch_size=2", "data.num_workers=0", "model.video_dim=null", "model.num_clips=16"),
        *("model.hidden_dim=16", "model.num_heads=2", "model.feature_layers=1", "trainer.max_epochs=1"),
        *("trainer.accelerator=cpu", "trainer.progress_bar=false", f"output_dir={tmp / 'runs'}"),
    ]
    code, _, err = _run(args)
    assert code == 0, err
    run = tmp / "runs" / "hscnet_activitynet_captions"
    return {"tmp": tmp, "store": store, "records": records, "checkpoint": run / "checkpoints" / "best.ckpt",
            "weights": run / "model.safetensors"}  # fmt: skip


def test_checkpoint_records_the_extraction_settings(trained: dict[str, object]) -> None:
    loaded = load_checkpoint(trained["checkpoint"])  # type: ignore[arg-type]
    features = loaded.config.features
    assert (features.backbone, features.fps, features.clip_frames, features.stride) == (
        "efficientnet-lite0",
        1.0,
        1,
        1,
    )
    assert loaded.model_config.video_dim == 1280


@pytest.mark.parametrize("video_id", IDS)
def test_ground_prints_one_span_per_sentence_inside_the_video(
    trained: dict[str, object], shared_data: Path, video_id: str
) -> None:
    tmp, records = trained["tmp"], trained["records"]
    assert isinstance(tmp, Path) and isinstance(records, dict)
    paragraph = " ".join(s.strip() for s in records[video_id]["sentences"])
    sentences = split_sentences(paragraph)
    assert sentences == [s.strip() for s in records[video_id]["sentences"]]
    video = shared_data / "videos" / f"{video_id}.mp4"
    png = tmp / f"{video_id}.png"
    argv = ["ground", str(video), "--text", paragraph, "--checkpoint", str(trained["checkpoint"])]
    code, out, err = _run([*argv, "--png", str(png), "--no-progress"])
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("S")]
    assert len(lines) == len(sentences)
    duration = float(records[video_id]["duration"])
    for line, sentence in zip(lines, sentences, strict=True):
        start, _, end = line.split()[1:4]
        assert 0.0 <= float(start) <= float(end) <= duration and line.endswith(sentence)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000  # thumbnails drawn

    # The same video from the store the training read, through the exported weights, as JSON.
    argv = ["ground", str(video), "--text", paragraph, "--checkpoint", str(trained["weights"])]
    code, out, err = _run([*argv, "--features", str(trained["store"]), "--json", "--png", str(tmp / "j.png")])
    assert code == 0, err
    result = json.loads(out)
    assert result["video"] == video_id and [s["text"] for s in result["sentences"]] == sentences
    assert all(0.0 <= s["start"] <= s["end"] <= result["duration"] for s in result["sentences"])
    # Features from the store equal features extracted from the file: the same spans, as printed.
    assert [f"{s['start']:.2f}" for s in result["sentences"]] == [line.split()[1] for line in lines]
    assert [f"{s['end']:.2f}" for s in result["sentences"]] == [line.split()[3] for line in lines]


def test_mismatched_backbone_or_clip_length_is_a_clear_error(
    trained: dict[str, object], shared_data: Path
) -> None:
    video = shared_data / "videos" / f"{IDS[1]}.mp4"
    argv = ["ground", str(video), "--text", "A dog walks.", "--checkpoint", str(trained["checkpoint"])]
    code, _, err = _run([*argv, "--fps", "2", "--no-progress"])
    assert (
        code == 2 and "trained on backbone efficientnet-lite0" in err and "0.5 s clips instead of 1 s" in err
    )
    code, _, err = _run([*argv, "--backbone", "r3d_18", "--no-progress"])
    assert code == 2 and "the model expects 1280-d clip features but got backbone r3d_18 (512-d" in err
    grounder = Grounder.from_checkpoint(trained["checkpoint"])  # type: ignore[arg-type]
    other = FeatureSettings("efficientnet-lite0", 1280, ClipSampling(1.0, 2, 2))
    store_features = np.zeros((5, 1280), np.float32)
    from higround.video.extract import VideoFeatures

    with pytest.raises(ConfigError, match="2 s clips instead of 1 s"):
        grounder.ground_video(
            VideoFeatures("x", store_features, np.zeros((5, 2)), 5.0, other), "A dog walks."
        )
    with pytest.raises(ConfigError, match="expects 1280-d clip features but got 7-d features"):
        grounder.ground_video(
            VideoFeatures("x", np.zeros((5, 7), np.float32), np.zeros((5, 2)), 5.0, None), "A."
        )


def test_checkpoint_without_settings_needs_a_store_or_a_backbone() -> None:
    with pytest.raises(ConfigError, match="records no feature extraction settings"):
        plan_extraction(None, 500, "c3d.ckpt")
    planned = plan_extraction(None, 1280, "c3d.ckpt", backbone="efficientnet-lite0", fps=0.5)
    assert planned == FeatureSettings("efficientnet-lite0", 1280, ClipSampling(0.5, 1, 1))


def test_sentence_splitting_rule() -> None:
    assert split_sentences("A man enters. He sits down!\nThen he waves") == [
        "A man enters.",
        "He sits down!",
        "Then he waves",
    ]
    # Terminator runs stay together, a dot inside a token does not split, empty pieces are dropped.
    assert split_sentences("It weighs 3.5 kg... Really?!  \n\n ... \n  last one") == [
        "It weighs 3.5 kg...",
        "Really?!",
        "last one",
    ]
    assert split_sentences(" \n ?! ") == []
