"""The procedural benchmark: determinism, real-format round trip, temporal structure, signal in features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from higround.data.features import open_store
from higround.data.readers import load_dataset
from higround.data.synthetic import (
    SPLITS,
    SyntheticConfig,
    SyntheticPaths,
    concept_embeddings,
    generate_dataset,
    held_out_pairs,
    main,
    vocabulary,
)
from higround.errors import ConfigError

SMALL = SyntheticConfig(seed=3, train_videos=40, val_videos=10, test_videos=12, num_clips=32, feature_dim=48)


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> SyntheticPaths:
    """The default-size benchmark (600/100/100 videos), written once."""
    return generate_dataset(tmp_path_factory.mktemp("synthetic"))


def _records(paths: SyntheticPaths, split: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(paths.annotations[split].read_text())
    return data


def _cosine(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (x @ v) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(v))


def test_same_seed_same_bytes_and_arrays(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", SMALL)
    b = generate_dataset(tmp_path / "b", SMALL)
    for split in SPLITS:
        assert a.annotations[split].read_bytes() == b.annotations[split].read_bytes()
    assert a.manifest.read_bytes() == b.manifest.read_bytes()
    sa, sb = open_store(a.features), open_store(b.features)
    assert sa.video_ids() == sb.video_ids()
    for vid in sa.video_ids():
        np.testing.assert_array_equal(sa.get(vid), sb.get(vid))
    other = generate_dataset(tmp_path / "c", SyntheticConfig(**{**SMALL.__dict__, "seed": 4}))
    assert other.annotations["train"].read_bytes() != a.annotations["train"].read_bytes()


def test_round_trip_through_the_real_reader_and_store(tmp_path: Path) -> None:
    paths = generate_dataset(tmp_path, SMALL)
    assert {p.name for p in tmp_path.iterdir()} == {
        "train.json",
        "val.json",
        "test.json",
        "features.h5",
        "synthetic.json",
    }
    store = open_store(paths.features)
    all_ids = []
    for split in SPLITS:
        ds = load_dataset("activitynet_captions", tmp_path, split)
        assert ds.split == split  # test.json is read itself, not the val_2 alias
        assert len(ds.videos) == SMALL.videos(split)
        assert ds.report.clamped == 0 and not ds.report.skipped
        records = _records(paths, split)
        for video in ds.videos:
            record = records[video.video_id]
            (paragraph,) = video.paragraphs
            assert [s.span for s in paragraph.sentences] == [tuple(t) for t in record["timestamps"]]
            assert [s.text for s in paragraph.sentences] == record["sentences"]
            assert [s.extra["novels"] for s in paragraph.sentences] == record["novels"]
            assert video.extra["verb_timestamps"] == record["verb_timestamps"]
            all_ids.append(video.video_id)
    assert store.video_ids() == sorted(all_ids)
    assert store.dim == SMALL.feature_dim
    with h5py.File(paths.features, "r") as f:
        vid = all_ids[0]
        assert f[vid].shape == (SMALL.num_clips, SMALL.feature_dim) and f[vid].dtype == np.float32
        duration = _records(paths, "train")[vid]["duration"]
        assert f[vid].attrs["duration"] == duration
        assert f[vid].attrs["clip_seconds"] == pytest.approx(duration / SMALL.num_clips)
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["config"]["seed"] == 3 and manifest["dataset"] == "activitynet_captions"
    assert [tuple(p) for p in manifest["held_out_pairs"]] == held_out_pairs(SMALL)


def test_default_sizes_and_ranges(default_set: SyntheticPaths) -> None:
    config = SyntheticConfig()
    for split, videos in (("train", 600), ("val", 100), ("test", 100)):
        ds = load_dataset("activitynet_captions", default_set.root, split)
        assert len(ds.videos) == videos
        counts = np.array([len(p) for p in ds.paragraphs()])
        assert counts.min() >= config.sentences[0] and counts.max() <= config.sentences[1]
        durations = np.array([v.duration for v in ds.videos])
        assert durations.min() >= config.duration[0] and durations.max() <= config.duration[1]


def test_spans_inside_video_ordered_and_verbs_partition_the_event(default_set: SyntheticPaths) -> None:
    for split in SPLITS:
        for vid, r in _records(default_set, split).items():
            spans = np.array(r["timestamps"])
            assert (spans[:, 0] >= 0).all() and (spans[:, 1] <= r["duration"]).all(), vid
            assert (spans[:, 0] < spans[:, 1]).all(), vid
            # Sentences follow time order and events do not overlap.
            assert (spans[1:, 0] >= spans[:-1, 1]).all(), vid
            others = np.array([d["timestamp"] for d in r["distractors"]]).reshape(-1, 2)
            every = np.concatenate([spans, others])
            every = every[np.argsort(every[:, 0])]
            assert (every[1:, 0] >= every[:-1, 1]).all(), vid
            for (start, end), parts, text in zip(spans, r["verb_timestamps"], r["sentences"], strict=True):
                assert len(parts) == (2 if " and " in text else 1)
                flat = np.array(parts).reshape(-1)
                assert flat[0] == start and flat[-1] == end
                assert (np.diff(flat) >= 0).all() and (np.diff(flat)[::2] > 0).all()  # ordered, non-empty


def test_held_out_pairs_stay_out_of_train(default_set: SyntheticPaths) -> None:
    config = SyntheticConfig()
    vocab = vocabulary(config)
    held = set(held_out_pairs(config))
    assert len(held) == round(config.held_out_pairs * len(vocab.verbs) * len(vocab.objects))

    def pairs(text: str) -> set[tuple[str, str]]:
        words = text.rstrip(".").split()
        obj = next(w for w in words if w in vocab.objects)
        return {(w, obj) for w in words if w in vocab.verbs}

    train = _records(default_set, "train")
    assert all(not (pairs(t) & held) for r in train.values() for t in r["sentences"])
    assert all((d["verb"], d["object"]) not in held for r in train.values() for d in r["distractors"])
    for split in ("val", "test"):
        novel = [
            (n, pairs(t))
            for r in _records(default_set, split).values()
            for n, t in zip(r["novels"], r["sentences"], strict=True)
        ]
        flagged = [n for n, _ in novel if n]
        assert all({tuple(p) for p in n["v-n"]} == (found & held) for n, found in novel if n)
        assert all(not (found & held) for n, found in novel if not n)
        assert 0.15 < len(flagged) / len(novel) < 0.35  # unseen_fraction 0.25


def test_distractors_use_concepts_the_paragraph_never_names(default_set: SyntheticPaths) -> None:
    records = _records(default_set, "train")
    with_distractors = [r for r in records.values() if r["distractors"]]
    assert len(with_distractors) > 300
    for r in with_distractors:
        words = set(" ".join(r["sentences"]).rstrip(".").replace(".", "").split())
        for d in r["distractors"]:
            assert d["verb"] not in words and d["object"] not in words
            assert d["adjective"] is None or d["adjective"] not in words


def test_features_carry_the_signal(default_set: SyntheticPaths) -> None:
    """Clips inside an event resemble its object (and each verb its own sub-interval) far more than
    clips outside; background entities are in every clip (the mutual-exclusion case)."""
    config = SyntheticConfig()
    emb = concept_embeddings(config)
    vocab = vocabulary(config)
    store = open_store(default_set.features)
    inside, outside, own_verb, other_verb, scene = [], [], [], [], []
    for vid, r in list(_records(default_set, "test").items()):
        x = store.get(vid).astype(np.float64)
        centres = (np.arange(config.num_clips) + 0.5) * r["duration"] / config.num_clips
        for (start, end), parts, text in zip(
            r["timestamps"], r["verb_timestamps"], r["sentences"], strict=True
        ):
            words = text.rstrip(".").split()
            obj = next(w for w in words if w in vocab.objects)
            cos = _cosine(x, emb[obj])
            same_object = np.zeros(config.num_clips, bool)
            for (s, e), t in zip(r["timestamps"], r["sentences"], strict=True):
                if obj in t.rstrip(".").split():
                    same_object |= (centres >= s) & (centres <= e)
            inside.append(cos[(centres >= start) & (centres <= end)].mean())
            outside.append(cos[~same_object].mean())
            verbs = [w for w in words if w in vocab.verbs]
            if len(verbs) == 2:
                (s0, e0), (s1, e1) = parts
                first = (centres > s0) & (centres < e0)
                second = (centres > s1) & (centres < e1)
                if first.any() and second.any():
                    own_verb += [
                        _cosine(x[first], emb[verbs[0]]).mean(),
                        _cosine(x[second], emb[verbs[1]]).mean(),
                    ]
                    other_verb += [
                        _cosine(x[first], emb[verbs[1]]).mean(),
                        _cosine(x[second], emb[verbs[0]]).mean(),
                    ]
        scene.append(min(_cosine(x, emb[p]).min() for p in r["scene"]))
    assert np.mean(inside) > 0.3 and np.mean(outside) < 0.05
    assert np.mean(inside) - np.mean(outside) > 0.3
    assert len(own_verb) > 20 and np.mean(own_verb) - np.mean(other_verb) > 0.2
    assert np.mean(scene) > 0.1  # background entities visible in every clip


def test_noise_knob_drowns_the_signal(tmp_path: Path) -> None:
    def contrast(noise: float) -> float:
        config = SyntheticConfig(**{**SMALL.__dict__, "noise": noise})
        paths = generate_dataset(tmp_path / str(noise), config)
        emb, vocab, store = concept_embeddings(config), vocabulary(config), open_store(paths.features)
        gaps = []
        for vid, r in _records(paths, "train").items():
            x = store.get(vid).astype(np.float64)
            centres = (np.arange(config.num_clips) + 0.5) * r["duration"] / config.num_clips
            (start, end), text = r["timestamps"][0], r["sentences"][0]
            obj = next(w for w in text.rstrip(".").split() if w in vocab.objects)
            inside = (centres >= start) & (centres <= end)
            if inside.any():
                cos = _cosine(x, emb[obj])
                gaps.append(cos[inside].mean() - cos[~inside].mean())
        return float(np.mean(gaps))

    assert contrast(0.5) > contrast(4.0) + 0.15


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="num_verbs must be at most 24"):
        SyntheticConfig(num_verbs=99)
    with pytest.raises(ConfigError, match="num_objects"):
        SyntheticConfig(num_objects=4, sentences=(2, 5))
    with pytest.raises(ConfigError, match="sentences must be a range"):
        SyntheticConfig(sentences=(5, 2))
    with pytest.raises(ConfigError, match="unseen_fraction"):
        SyntheticConfig(unseen_fraction=1.5)
    assert SyntheticConfig(duration=[30, 40]).duration == (30, 40)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(tmp_path), "--train-videos", "5", "--val-videos", "2", "--test-videos", "2"]
    assert main([*args, "--num-clips", "16", "--sentences", "1", "3", "--seed", "7"]) == 0
    assert "train 5, val 2, test 2 videos" in capsys.readouterr().out
    ds = load_dataset("activitynet_captions", tmp_path, "train")
    assert len(ds.videos) == 5 and max(len(p) for p in ds.paragraphs()) <= 3
    assert open_store(tmp_path / "features.h5").get(ds.videos[0].video_id).shape == (16, 64)
