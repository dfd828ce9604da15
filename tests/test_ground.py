"""``higround ground`` end to end on the real ActivityNet videos: features extracted with the real
default backbone, a tiny checkpoint trained in the test on the videos' real captions, then the CLI
grounds each video's real paragraph; plus the checkpoint/backbone mismatch errors, the sentence
splitting rule, paragraph strings and unknown words in the Python API, and released stores."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from higround.cli.main import main
from higround.data.features import write_hdf5_store
from higround.engine.api import Grounder
from higround.engine.checkpoint import load_checkpoint
from higround.errors import ConfigError, DataError
from higround.text import UnknownWordsWarning, split_sentences
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


@pytest.mark.filterwarnings("ignore::higround.text.UnknownWordsWarning")  # a tiny vocabulary
def test_a_paragraph_string_is_split_into_sentences(trained: dict[str, object]) -> None:
    grounder = Grounder.from_checkpoint(trained["checkpoint"])  # type: ignore[arg-type]
    features = np.random.default_rng(0).standard_normal((20, 1280)).astype(np.float32)
    one = grounder.ground(features, "A man lifts a barbell", duration=60)  # not 21 one-letter sentences
    assert len(one.spans) == 1 and one.words == [["a", "man", "lifts", "a", "barbell"]]
    assert one == grounder.ground(features, ["A man lifts a barbell"], 60)
    text = "A man lifts a barbell. He drops it!\nThe crowd cheers"
    assert grounder.ground(features, text, 60) == grounder.ground(features, split_sentences(text), 60)
    for bad, message in [
        (["A man lifts.", "!!!"], r"sentence 1 \('!!!'\) has no word token"),
        (["...", "a man"], r"sentence 0 \('...'\) has no word token"),
        (" ?! ", "the paragraph holds no sentence"),
        ([], "the paragraph holds no sentence"),
        (["A man.", 3], "sentence 1 is a int, not a string"),
    ]:
        with pytest.raises(DataError, match=message):
            grounder.ground(features, bad, 60)  # type: ignore[arg-type]


def test_a_query_of_unknown_words_warns_and_reports_its_rate(trained: dict[str, object]) -> None:
    grounder = Grounder.from_checkpoint(trained["checkpoint"])  # type: ignore[arg-type]
    features = np.random.default_rng(0).standard_normal((20, 1280)).astype(np.float32)
    known = [w for w in grounder.vocab.words[2:] if w.isalpha()][:4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for known words
        result = grounder.ground(features, " ".join(known), 60)
    assert result.unknown_rate == 0.0
    query = f"{known[0]} zxqvy wubbleflorp {known[1]} quarkle"  # 3 of 5 words unknown
    with pytest.warns(UnknownWordsWarning, match="60.0 % unknown words") as caught:
        result = grounder.ground(features, query, 60)
    assert result.unknown_rate == pytest.approx(0.6)
    assert "(unknown: quarkle, wubbleflorp, zxqvy)" in str(caught[0].message)
    assert str(trained["checkpoint"]) in str(caught[0].message)


def test_ground_reads_a_released_store_with_duration(
    trained: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = trained["tmp"]
    assert isinstance(tmp, Path)
    store = tmp / "released.h5"  # released-style: one (T, D) dataset per id, no clip times, no settings
    rng = np.random.default_rng(0)
    features = {"v_rel": rng.standard_normal((30, 1280)), "v_dur": rng.standard_normal((9, 1280))}
    write_hdf5_store(store, features, attrs={"v_dur": {"duration": 42.0}})
    text, checkpoint = "A man lifts a barbell. He drops it.", str(trained["checkpoint"])

    def ground(video_id: str, *extra: str) -> int:
        options = ["--features", str(store), "--png", str(tmp / "rel.png"), "--json", *extra]
        return main(["ground", video_id, "--text", text, "--checkpoint", checkpoint, *options])

    assert ground("v_rel") == 2
    assert capsys.readouterr().err == (
        f"higround ground: error: {store} records no duration for video 'v_rel' and v_rel is not the video "
        "file to read it from: pass --duration SECONDS\n"
    )
    assert ground("v_rel", "--duration", "60") == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    # The tiny vocabulary (two videos' captions) lacks "man", "he" and "drops": one warning line.
    assert result["unknown_rate"] == 3 / 8
    assert err == (
        f"higround ground: warning: {checkpoint}: the query: 37.5 % unknown words (3 of 8 tokens are <unk>) "
        "(unknown: drops, he, man); more than 20 % of the words are unknown to the model (another dataset, "
        "language or spelling than its training text?), so its groundings are unreliable\n"
    )
    assert result["duration"] == 60.0 and len(result["sentences"]) == 2
    assert all(0.0 <= s["start"] <= s["end"] <= 60.0 for s in result["sentences"])
    assert (tmp / "rel.png").read_bytes()[:4] == b"\x89PNG"
    assert ground("v_dur") == 0  # the duration the store records
    assert json.loads(capsys.readouterr().out)["duration"] == 42.0
    assert ground("v_dur", "--duration", "60") == 2
    err = capsys.readouterr().err
    assert "--duration 60 but" in err and "records 42.00 s for video 'v_dur'; drop --duration" in err
    for bad in ("0", "-3", "nan", "soon"):
        with pytest.raises(SystemExit):
            ground("v_rel", "--duration", bad)
        assert "must be a finite number > 0" in capsys.readouterr().err


def test_ground_checks_png_before_the_work(
    trained: dict[str, object], shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = trained["tmp"]
    assert isinstance(tmp, Path)
    (tmp / "afile").write_text("")
    png = tmp / "afile" / "t.png"  # its folder is a file (tests run as root: no chmod)
    video = shared_data / "videos" / f"{IDS[1]}.mp4"
    argv = ["ground", str(video), "--text", "A dog walks.", "--checkpoint", str(trained["checkpoint"])]
    assert main([*argv, "--png", str(png), "--no-progress"]) == 2
    assert capsys.readouterr() == (
        "",
        f"higround ground: error: --png {png}: {tmp / 'afile'} is a file, not a folder\n",
    )


@pytest.mark.filterwarnings("ignore::higround.text.UnknownWordsWarning")  # a tiny vocabulary
def test_bf16_grounding_stays_close_to_fp32_and_an_unknown_precision_is_refused(
    trained: dict[str, object],
) -> None:
    features = np.random.default_rng(1).standard_normal((20, 1280)).astype(np.float32)
    text = "A man lifts a barbell. He drops it."
    fp32 = Grounder.from_checkpoint(trained["checkpoint"]).ground(features, text, 60)  # type: ignore[arg-type]
    bf16 = Grounder.from_checkpoint(trained["checkpoint"], precision="bf16-mixed")  # type: ignore[arg-type]
    spans = bf16.ground(features, text, 60).spans
    # HSCNet's span heads run in float32 under autocast: spans move by well under 1 % of the video.
    assert np.abs(np.array(spans) - np.array(fp32.spans)).max() < 0.01 * 60
    with pytest.raises(ConfigError, match="inference precision 'fp8' is not one of"):
        Grounder.from_checkpoint(trained["checkpoint"], precision="fp8")  # type: ignore[arg-type]
