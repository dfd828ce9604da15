"""HSE through the commands and the Python API, on small features the tests write in the release
layout of ActivityNet-Captions (``train.json``, ``val_1.json``, ``val_2.json``; one HDF5 store with
``<vid>/c3d_features``): ``train`` with the paper recipe, ``evaluate --checkpoint`` in both rank
conventions against the metrics recomputed from the embeddings, ``retrieve`` both ways with its
embedding cache (written, reused, stale, corrupt), a missing video, the chain retrieve -> ground,
and the grounding commands refusing a retrieval checkpoint in one line."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from higround.cli.main import main
from higround.data.synthetic import SyntheticConfig, generate_dataset

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "hse" / "activitynet_captions.yaml"
TINY = [
    "model.video_dim=16",
    "model.embed_dim=16",
    "data.batch_size=4",
    "data.num_workers=0",
    "text.word_vectors=learned",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.progress_bar=false",
]


@dataclass(frozen=True)
class Env:
    root: Path  # train.json, val_1.json, val_2.json
    store: Path  # <vid>/c3d_features
    checkpoint: Path
    runs: Path
    val_2: dict[str, dict[str, object]]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """12 / 6 / 6 procedural videos in the ActivityNet layout; HSE trained 2 epochs by the CLI."""
    tmp = tmp_path_factory.mktemp("hse_cli")
    config = SyntheticConfig(train_videos=12, val_videos=6, test_videos=6, num_clips=24, feature_dim=16)
    paths = generate_dataset(tmp / "synthetic", config)
    root = tmp / "anet"
    root.mkdir()
    for source, split in (("train", "train"), ("val", "val_1"), ("test", "val_2")):
        shutil.copy(paths.root / f"{source}.json", root / f"{split}.json")
    store = tmp / "sub_activitynet_v1-3.c3d.hdf5"
    with h5py.File(paths.features, "r") as f, h5py.File(store, "w") as out:
        for video in f:  # the group records the duration, as the store lets it
            out.create_dataset(f"{video}/c3d_features", data=f[video][()])
            out[video].attrs["duration"] = f[video].attrs["duration"]
    runs = tmp / "runs"
    argv = ["train", "--config", str(RECIPE), f"data.root={root}", f"data.features={store}", *TINY]
    assert main([*argv, f"output_dir={runs}"]) == 0
    checkpoint = runs / "hse_activitynet_captions" / "checkpoints" / "best.ckpt"
    return Env(root, store, checkpoint, runs, json.loads((root / "val_2.json").read_text()))


def _retrieve(env: Env, cache: Path, *extra: str) -> list[str]:
    return ["retrieve", "--checkpoint", str(env.checkpoint), "--cache", str(cache), "--device", "cpu", *extra]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_train_writes_a_retrieval_checkpoint_and_reports_rsum(env: Env) -> None:
    config = (env.runs / "hse_activitynet_captions" / "config.yaml").read_text()
    assert "family: hse" in config and env.checkpoint.is_file()
    metrics = (env.runs / "hse_activitynet_captions" / "csv").rglob("metrics.csv")
    header = next(iter(metrics)).read_text().splitlines()[0]
    for key in ("val/rsum", "val/p2v/R@1", "val/v2p/median_rank", "train/low_match", "train/reconstruction"):
        assert key in header


def test_evaluate_reports_both_directions_as_the_embeddings_give_them(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from higround.engine.evaluation import open_checkpoint
    from higround.engine.retrieval import embed_loader, retrieval_scores

    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--checkpoint", str(env.checkpoint), "--split", "val_2", "--device", "cpu"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "paragraph -> video" in printed and "video -> paragraph" in printed and "6 videos" in printed
    reported = json.loads(out.read_text())["metrics"]
    run = open_checkpoint(env.checkpoint, device="cpu")
    expected = retrieval_scores(embed_loader(run.model, run.config.family, run.data.loader("val_2"), "cpu"))
    assert reported == pytest.approx(expected)
    assert set(reported) >= {f"{d}/R@{k}" for d in ("p2v", "v2p") for k in (1, 5, 10, 50)}
    # Ranks are printed as ranks, recalls in percent.
    row = next(line for line in printed.splitlines() if line.startswith("paragraph -> video"))
    assert f"{expected['p2v/mean_rank']:.2f}" in row and f"{100 * expected['p2v/R@1']:.2f}" in row

    assert main([*argv, "--rank-convention", "hse", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Paragraph to Video:" in printed and "r10 is R@50" in printed
    hse = json.loads(out.read_text())["metrics"]
    assert hse["p2v/r10"] == pytest.approx(100 * expected["p2v/R@50"])
    assert hse["v2p/r1"] == pytest.approx(100 * expected["v2p/R@1"])


def test_retrieve_ranks_the_videos_and_reuses_its_cache(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from higround.engine.retriever import Retriever

    cache = tmp_path / "cache.npz"
    video, record = next(iter(env.val_2.items()))
    paragraph = " ".join(str(s) for s in record["sentences"])  # type: ignore[attr-defined]
    argv = _retrieve(env, cache, "--annotations", str(env.root), "--split", "val_2", "--top", "6")
    assert main([*argv, "--paragraph", paragraph]) == 0
    first = capsys.readouterr().out
    assert "(written)" in first and cache.is_file()
    ranked = [line.split()[2] for line in first.splitlines() if line.strip()[:1].isdigit()]
    assert sorted(ranked) == sorted(env.val_2)
    assert main([*argv, "--paragraph", paragraph]) == 0
    second = capsys.readouterr().out
    assert "(reused)" in second and second.splitlines()[2:] == first.splitlines()[2:]
    # The API ranks alike, from the same cache.
    retriever = Retriever.from_checkpoint(env.checkpoint)
    index = retriever.index(env.store, annotations=env.root, split="val_2", cache=cache)
    assert index.reused and [h.video_id for h in retriever.retrieve(paragraph, index, 6)] == ranked
    # A changed checkpoint (newer mtime) makes the cache stale: recomputed, same ranking.
    stat = env.checkpoint.stat()
    os.utime(env.checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert main([*argv, "--paragraph", paragraph]) == 0
    assert "(written)" in capsys.readouterr().out
    # The reverse: a video's paragraphs, its own among them.
    assert main([*argv, "--video", video]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(video in line for line in lines if line.strip()[:1].isdigit())


def test_a_corrupt_cache_and_a_missing_video_are_one_line_errors(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache.npz"
    cache.write_bytes(b"\x00garbage" * 10)
    argv = _retrieve(env, cache, "--annotations", str(env.root), "--split", "val_2")
    assert main([*argv, "--paragraph", "The man peels the kiwis."]) == 2
    line = _error_line(capsys)
    assert str(cache) in line and "not a higround embedding cache" in line and "--refresh-cache" in line
    assert main([*argv, "--refresh-cache", "--paragraph", "The man peels the kiwis."]) == 0
    capsys.readouterr()
    assert main([*argv, "--video", "v_not_there"]) == 2
    line = _error_line(capsys)
    assert "'v_not_there' is not among the 6 videos" in line
    # HSE's clips are the annotated segments: without annotations it cannot embed a video.
    assert main([*_retrieve(env, cache), "--paragraph", "The man peels the kiwis."]) == 2
    assert "give the annotations" in _error_line(capsys)
    # An annotated video the store lacks.
    short = tmp_path / "short.hdf5"
    with h5py.File(env.store, "r") as f, h5py.File(short, "w") as out:
        for video in list(f)[1:]:
            out.create_dataset(f"{video}/c3d_features", data=f[video]["c3d_features"][()])
    missing = _retrieve(
        env, cache, "--features", str(short), "--annotations", str(env.root), "--split", "val_2"
    )
    assert main([*missing, "--paragraph", "The man peels the kiwis."]) == 2
    assert "no features for 1 annotated video" in _error_line(capsys)


def test_the_grounding_commands_refuse_a_retrieval_checkpoint(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.json"
    argv = ["predict", "--checkpoint", str(env.checkpoint), "--split", "val_2", "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 2
    assert "retrieval model" in _error_line(capsys) and not out.exists()


def test_uniform_clips_retrieve_without_annotations_and_chain_into_grounding(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """HSE trained on the annotated segments, evaluated on 4 uniform clips: every video of the store
    is a candidate, no annotation needed; the paragraph is then grounded in the top videos."""
    from higround.engine.api import Grounder
    from higround.engine.retriever import Retriever, ground_hits

    common = [f"data.root={env.root}", f"data.features={env.store}", f"output_dir={tmp_path}"]
    uniform = ["train", "--config", str(RECIPE), *common, *TINY, "model.eval_clips=uniform", "name=u"]
    assert main([*uniform, "trainer.max_epochs=1"]) == 0
    hscnet = ["train", "--config", str(REPO / "configs" / "hscnet" / "activitynet_captions.yaml"), *common]
    tiny_hscnet = ["model.hidden_dim=16", "model.num_heads=2", "model.num_clips=16", "model.video_dim=16"]
    fast = ["data.batch_size=4", "data.num_workers=0", "text.word_vectors=learned", "trainer.max_epochs=1"]
    cpu = ["trainer.accelerator=cpu", "trainer.progress_bar=false", "name=g"]
    assert main([*hscnet, *tiny_hscnet, *fast, *cpu]) == 0
    capsys.readouterr()
    checkpoint = tmp_path / "u" / "checkpoints" / "best.ckpt"
    grounding = tmp_path / "g" / "checkpoints" / "best.ckpt"
    paragraph = " ".join(str(s) for s in next(iter(env.val_2.values()))["sentences"][:2])  # type: ignore[index]
    argv = ["retrieve", "--checkpoint", str(checkpoint), "--cache", str(tmp_path / "c.npz"), "--top", "2"]
    assert main([*argv, "--paragraph", paragraph, "--ground-checkpoint", str(grounding)]) == 0
    printed = capsys.readouterr().out
    assert "24 videos" in printed and "clips: uniform" in printed  # every video of the store
    assert printed.count("sentence 1:") == 2 and printed.count("sentence 2:") == 2
    retriever = Retriever.from_checkpoint(checkpoint)
    index = retriever.index(env.store, cache=tmp_path / "c.npz")
    hits = retriever.retrieve(paragraph, index, top=2)
    results = ground_hits(Grounder.from_checkpoint(grounding), index, paragraph, hits)
    assert [len(r.spans) for r in results] == [2, 2]
    assert all(0 <= s <= e <= r.duration + 1e-6 for r in results for s, e in r.spans)
    # --video without annotations has no paragraphs to rank.
    assert main([*argv, "--video", hits[0].video_id]) == 2
    assert "--video ranks the paragraphs of annotations" in _error_line(capsys)


def test_the_default_cache_lives_in_the_cache_dir_and_paragraphs_rank_by_score(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from higround.engine.retriever import Retriever

    monkeypatch.setenv("HIGROUND_CACHE_DIR", str(tmp_path / "caches"))
    retriever = Retriever.from_checkpoint(env.checkpoint)
    index = retriever.index(env.store, annotations=env.root / "val_2.json")
    assert index.cache is not None and index.cache.parent == tmp_path / "caches" and not index.reused
    assert np.allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)
    video = index.video_ids[0]
    hits = retriever.rank_paragraphs(video, index, top=6)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and len(hits) == 6
