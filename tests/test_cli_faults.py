"""Every user mistake ends in one clean line: each command, with each of its inputs corrupted.

One row per (command, corruption): the command must exit with status 2, print no traceback, and end
its stderr with exactly one ``higround <command>...: error: ...`` line naming the file, key or option
at fault (argparse's usage lines may come before it for a bad option value). The inputs are small
real files: the first paragraphs of the real TACoS test split with a 24-d feature store, one tiny
checkpoint trained once for the module, and annotation / predictions / config files corrupted in
the ways a user meets them (truncated, random bytes, another JSON type, NaN, a folder for a file).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from higround.cli.main import main
from higround.data.features import write_hdf5_store

REPO = Path(__file__).resolve().parents[1]
RANDOM_BYTES = bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8))


@dataclass(frozen=True)
class Env:
    """The shared inputs: a TACoS folder, its feature store, a checkpoint and the real data."""

    root: Path  # paragraphs_{train,val,test}.json
    store: Path
    checkpoint: Path
    videos: tuple[str, ...]
    shared: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, tiny_model: list[str]) -> Env:
    """The first paragraph of two real TACoS test videos, random 24-d features, one epoch."""
    tmp = tmp_path_factory.mktemp("cli_faults")
    records = json.loads((shared_data / "tacos" / "paragraphs_test.json").read_text())
    first: dict[str, dict[str, object]] = {}
    for record in records:
        first.setdefault(record["video"], record)
        if len(first) == 2:
            break
    root = tmp / "tacos"
    root.mkdir()
    for split in ("train", "val", "test"):
        (root / f"paragraphs_{split}.json").write_text(json.dumps(list(first.values())))
    rng = np.random.default_rng(0)
    store = tmp / "features.h5"
    write_hdf5_store(store, {v: rng.standard_normal((20, 24)) for v in first})
    argv = [
        *("train", "--config", str(REPO / "configs" / "hscnet" / "tacos.yaml")),
        *(f"data.root={root}", f"data.features={store}", "data.batch_size=2", "data.num_workers=0"),
        *tiny_model,
        *("text.word_vectors=learned", "trainer.max_epochs=1", "trainer.accelerator=cpu"),
        *("trainer.progress_bar=false", f"output_dir={tmp / 'runs'}"),
    ]
    assert main(argv) == 0
    checkpoint = tmp / "runs" / "hscnet_tacos" / "checkpoints" / "best.ckpt"
    return Env(root, store, checkpoint, tuple(sorted(first)), shared_data)


# --- corrupt inputs ------------------------------------------------------------------------------------


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _damaged_inside(env: Env, tmp: Path) -> Path:
    """The store with its index overwritten: it opens, but looking up an entry fails in h5py."""
    data = bytearray(env.store.read_bytes())
    data[800:-100] = b"\xab" * (len(data) - 900)
    return _write(tmp / "damaged.h5", bytes(data))


def _store(tmp: Path, name: str, items: dict[str, np.ndarray]) -> Path:
    import h5py

    path = tmp / name
    with h5py.File(path, "w") as f:  # written raw: write_hdf5_store refuses such entries itself
        for video, array in items.items():
            f.create_dataset(video, data=array)
    return path


def _npy_folder(env: Env, tmp: Path, bad: Callable[[Path], None], suffix: str = ".npy") -> Path:
    """A folder with one good file per video, then ``bad`` applied to the first video's file."""
    folder = tmp / f"features_{suffix[1:]}"
    folder.mkdir()
    for video in env.videos:
        if suffix == ".npy":
            np.save(folder / f"{video}.npy", np.ones((20, 24), np.float32))
        else:
            np.savez(folder / f"{video}.npz", features=np.ones((20, 24), np.float32))
    bad(folder / f"{env.videos[0]}{suffix}")
    return folder


# A GloVe text file whose vector of a word of the training text ("out") holds NaN on line 2.
NAN_VECTORS = "zzz 1 2 3\nout 0.5 nan 1\n"


def _videos(env: Env, dim: int) -> dict[str, np.ndarray]:
    """``dim``-d features of every video of ``env`` (the checkpoint's model takes 24)."""
    return {v: np.ones((20, dim), np.float32) for v in env.videos}


def _object_array(path: Path) -> None:
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _tacos_root(tmp: Path, test: str | bytes, env: Env | None = None) -> Path:
    """A TACoS folder whose test split is ``test`` (train and val: the good ones of ``env``)."""
    root = tmp / "tacos_bad"
    root.mkdir()
    for split in ("train", "val"):
        if env is not None:
            shutil.copy(env.root / f"paragraphs_{split}.json", root / f"paragraphs_{split}.json")
    _write(root / "paragraphs_test.json", test)
    return root


def _annotations(tmp: Path) -> Path:
    return _write(
        tmp / "val_2.json",
        json.dumps({"v1": {"duration": 100, "timestamps": [[0, 10], [20, 40]], "sentences": ["a", "b"]}}),
    )


def _predictions(records: object) -> str:
    return json.dumps(
        {"format": "higround.predictions.v1", "dataset": "activitynet_captions", "predictions": records}
    )


GOOD_RECORDS = [
    {"key": "v1#0", "video_id": "v1", "spans": [[0, 5]]},
    {"key": "v1#1", "video_id": "v1", "spans": [[20, 40]]},
]


# --- the command lines -----------------------------------------------------------------------------------

Argv = list[str]
# A case builds (argv, the substrings the error line must hold) from the shared env and a tmp folder.
Build = Callable[[Env, Path], tuple[Argv, list[str]]]


def _evaluate(predictions: Path, annotations: Path, *extra: str) -> Argv:
    return ["evaluate", "--predictions", str(predictions), "--annotations", str(annotations), *extra]


def _evaluate_checkpoint(env: Env, *extra: str) -> Argv:
    common = ["--split", "test", "--device", "cpu", "--num-workers", "0"]
    return ["evaluate", "--checkpoint", str(env.checkpoint), *common, *extra]


def _train(env: Env, tmp: Path, *overrides: str, print_config: bool = True) -> Argv:
    argv = ["train", "--config", str(REPO / "configs" / "hscnet" / "tacos.yaml")]
    argv += ["--print-config"] if print_config else []
    return [
        *argv,
        *(f"data.root={env.root}", f"data.features={env.store}", "data.num_workers=0"),
        *("model.video_dim=24", "model.hidden_dim=16", "model.num_heads=2", "model.num_clips=16"),
        *("text.word_vectors=learned", "trainer.accelerator=cpu", "trainer.progress_bar=false"),
        *(f"output_dir={tmp / 'runs'}", *overrides),
    ]


def _config(path: Path) -> Argv:
    return ["train", "--config", str(path), "--print-config"]


def _baseline(root: Path, *extra: str) -> Argv:
    return [
        *("baseline", "prior", "--dataset", "tacos_paragraphs", "--root", str(root)),
        *("--train-split", "train", "--eval-split", "test", *extra),
    ]


def _demo(tmp: Path, *extra: str) -> Argv:
    return ["demo", "--out", str(tmp / "demo"), "--no-progress-bar", *extra]


def _extract(env: Env, tmp: Path, *extra: str) -> Argv:
    video = env.shared / "videos" / "v_GGSY1Qvo990.mp4"
    return ["extract", str(video), "--out", str(tmp / "x.h5"), "--no-progress", *extra]


def _ground(env: Env, tmp: Path, *extra: str) -> Argv:
    common = ["--checkpoint", str(env.checkpoint), "--device", "cpu", "--png", str(tmp / "g.png")]
    return ["ground", Path(env.videos[0]).stem, "--text", "A girl cuts a lime.", *common, *extra]


def _file_case(command: Callable[[Path], Argv], name: str, content: str | bytes, *names: str) -> Build:
    """A command reading one file ``name`` holding ``content``; the error names the file and ``names``."""

    def build(env: Env, tmp: Path) -> tuple[Argv, list[str]]:
        path = _write(tmp / name, content)
        return command(path), [str(path), *names]

    return build


def _anet_stats(path: Path) -> Argv:
    return ["data", "stats", "activitynet_captions", "--file", str(path)]


def _evaluate_predictions(path: Path) -> Argv:
    return _evaluate(path, _annotations(path.parent))


DIDEMO_TEST = Path("didemo") / "test_data_bwzhang.json"


def _didemo_stats(path: Path) -> Argv:
    return ["data", "stats", "didemo", "--file", str(path)]


def _didemo_truncated(env: Env, tmp: Path) -> tuple[Argv, list[str]]:
    """The first 5000 characters of the real DiDeMo test file."""
    path = _write(tmp / DIDEMO_TEST.name, (env.shared / DIDEMO_TEST).read_text()[:5000])
    return _didemo_stats(path), [str(path), "JSON"]


def _didemo(change: Callable[[dict[str, object]], object], *names: str) -> Build:
    """The real DiDeMo test file with its first video's record broken by ``change``; the error names
    the copy, that video and ``names``."""

    def build(env: Env, tmp: Path) -> tuple[Argv, list[str]]:
        data = json.loads((env.shared / DIDEMO_TEST).read_text())
        video = next(iter(data))
        change(data[video])
        path = _write(tmp / DIDEMO_TEST.name, json.dumps(data))
        return _didemo_stats(path), [str(path), repr(video), *names]

    return build


def _reverse_second_time(record: dict[str, object]) -> None:
    times = record["times"]
    assert isinstance(times, list)
    times[1] = times[1][::-1]


def _huge_integer() -> str:
    """A span end written with more digits than Python turns into an int (json raises ValueError)."""
    return _predictions([{"key": "v1#0", "video_id": "v1", "spans": [[0, 1]]}]).replace(
        "[[0, 1]]", f"[[0, {'9' * 5000}]]"
    )


CASES: dict[str, Build] = {
    # data stats: annotation files.
    "data-qvhighlights-jsonl-random-bytes": _file_case(
        lambda p: ["data", "stats", "qvhighlights", "--file", str(p)],
        "q.jsonl",
        RANDOM_BYTES,
        "line 1",
        "UTF-8",
    ),
    "data-file-random-bytes": _file_case(_anet_stats, "r.json", RANDOM_BYTES),
    "data-file-truncated": _file_case(_anet_stats, "t.json", '{"v1": {"duration": 10, "timest', "JSON"),
    "data-file-top-level-list": _file_case(_anet_stats, "l.json", "[1, 2]"),
    "data-file-timestamp-nan": _file_case(
        _anet_stats, "n.json", '{"v1": {"duration": 10, "timestamps": [[NaN, 1]], "sentences": ["a"]}}', "v1"
    ),
    "data-didemo-truncated-copy": _didemo_truncated,
    "data-didemo-missing-times": _didemo(lambda r: r.pop("times"), "'times'"),
    "data-didemo-time-reversed": _didemo(_reverse_second_time, "sentence 1", "feature frames", "after end"),
    "data-max-sentences-0": lambda env, tmp: (
        [*_anet_stats(env.shared / "activitynet_captions" / "val_2.json"), "--max-sentences", "0"],
        ["sentences"],
    ),
    # evaluate --predictions: predictions and annotation files, numeric options.
    "evaluate-predictions-jsonl-random-bytes": _file_case(
        _evaluate_predictions, "p.jsonl", RANDOM_BYTES, "line 1"
    ),
    "evaluate-predictions-random-bytes": _file_case(_evaluate_predictions, "p.json", RANDOM_BYTES, "UTF-8"),
    "evaluate-predictions-truncated": _file_case(
        _evaluate_predictions, "p.json", _predictions(GOOD_RECORDS)[:70]
    ),
    "evaluate-predictions-top-level-list": _file_case(_evaluate_predictions, "p.json", "[1, 2]"),
    "evaluate-predictions-span-nan": _file_case(
        _evaluate_predictions,
        "p.json",
        _predictions([{"key": "v1#0", "video_id": "v1", "spans": [[0, 1]]}]).replace(
            "[[0, 1]]", "[[NaN, 1]]"
        ),
        "record 0",
        "spans[0]",
    ),
    "evaluate-predictions-integer-too-long": _file_case(_evaluate_predictions, "p.json", _huge_integer()),
    "evaluate-predictions-moment-detr-ragged": _file_case(
        _evaluate_predictions,
        "p.jsonl",
        '{"qid": 1, "vid": "v", "pred_relevant_windows": [[0, 1], [0, 1, 2]]}\n',
        "line 1",
    ),
    "evaluate-predictions-moment-detr-saliency-not-numeric": _file_case(
        _evaluate_predictions,
        "p.jsonl",
        '{"qid": 1, "vid": "v", "pred_relevant_windows": [[0, 1, 0.5]], '
        '"pred_saliency_scores": [0.1, "a"]}\n',
        "line 1",
        "qid 1",
        "pred_saliency_scores[1]",
    ),
    "evaluate-annotations-saliency-rows-mismatch": lambda env, tmp: (
        _evaluate(
            _write(tmp / "p.jsonl", '{"qid": 1, "vid": "v", "pred_relevant_windows": [[0, 4, 0.5]]}\n'),
            _write(
                tmp / "highlight_val_release.jsonl",
                '{"qid": 1, "vid": "v", "query": "a", "duration": 10, "relevant_windows": [[0, 4]], '
                '"relevant_clip_ids": [0, 1], "saliency_scores": [[1, 2, 3]]}\n',
            ),
        ),
        [str(tmp / "highlight_val_release.jsonl"), "qid 1", "1 saliency_scores rows for 2 relevant_clip_ids"],
    ),
    "evaluate-annotations-random-bytes": lambda env, tmp: (
        _evaluate(
            _write(tmp / "p.json", _predictions(GOOD_RECORDS)), _write(tmp / "val_2.json", RANDOM_BYTES)
        ),
        [str(tmp / "val_2.json")],
    ),
    "evaluate-annotations-hold-no-sentence": lambda env, tmp: (
        _evaluate(_write(tmp / "p.json", _predictions([])), _write(tmp / "val_2.json", "{}")),
        [str(tmp / "val_2.json")],
    ),
    "evaluate-nms-threshold-2": lambda env, tmp: (
        _evaluate(
            _write(tmp / "p.json", _predictions(GOOD_RECORDS)), _annotations(tmp), "--nms-threshold", "2"
        ),
        ["--nms-threshold"],
    ),
    "evaluate-nms-threshold-nan": lambda env, tmp: (
        _evaluate(
            _write(tmp / "p.json", _predictions(GOOD_RECORDS)), _annotations(tmp), "--nms-threshold", "nan"
        ),
        ["--nms-threshold"],
    ),
    "evaluate-thresholds-2": lambda env, tmp: (
        _evaluate(_write(tmp / "p.json", _predictions(GOOD_RECORDS)), _annotations(tmp), "--thresholds", "2"),
        ["thresholds"],
    ),
    # evaluate --checkpoint / predict: feature stores, annotation folders, numeric options, device.
    "checkpoint-features-damaged-inside": lambda env, tmp: (
        _evaluate_checkpoint(env, "--features", str(_damaged_inside(env, tmp))),
        [str(tmp / "damaged.h5")],
    ),
    "checkpoint-features-random-bytes": lambda env, tmp: (
        _evaluate_checkpoint(env, "--features", str(_write(tmp / "r.h5", RANDOM_BYTES))),
        [str(tmp / "r.h5")],
    ),
    "checkpoint-features-nan": lambda env, tmp: (
        _evaluate_checkpoint(
            env,
            "--features",
            str(_store(tmp, "nan.h5", {v: np.full((20, 24), np.nan, np.float32) for v in env.videos})),
        ),
        [str(tmp / "nan.h5"), "NaN"],
    ),
    "checkpoint-features-mixed-sizes": lambda env, tmp: (
        _evaluate_checkpoint(
            env,
            "--features",
            str(
                _store(
                    tmp,
                    "mixed.h5",
                    {v: np.ones((20, 24 + 6 * i), np.float32) for i, v in enumerate(env.videos)},
                )
            ),
        ),
        [str(tmp / "mixed.h5"), env.videos[1], "30"],
    ),
    "checkpoint-feature-key-conversion": lambda env, tmp: (
        _evaluate_checkpoint(env, "--feature-key", "{video_id!r}"),
        ["{video_id!r}"],
    ),
    "checkpoint-npy-random-bytes": lambda env, tmp: (
        _evaluate_checkpoint(
            env,
            *("--feature-key", "{video_id}.npy", "--features"),
            str(_npy_folder(env, tmp, lambda p: p.write_bytes(RANDOM_BYTES))),
        ),
        [f"{env.videos[0]}.npy", "not a .npy file"],
    ),
    "checkpoint-npy-object-array": lambda env, tmp: (
        _evaluate_checkpoint(
            env, *("--feature-key", "{video_id}.npy", "--features"), str(_npy_folder(env, tmp, _object_array))
        ),
        [f"{env.videos[0]}.npy", "Python objects"],
    ),
    "checkpoint-npz-random-bytes": lambda env, tmp: (
        _evaluate_checkpoint(
            env,
            *("--feature-key", "{video_id}.npz", "--features"),
            str(_npy_folder(env, tmp, lambda p: p.write_bytes(RANDOM_BYTES), ".npz")),
        ),
        [f"{env.videos[0]}.npz", "not a .npz file"],
    ),
    "checkpoint-npy-folder-with-hdf5-key": lambda env, tmp: (
        _evaluate_checkpoint(env, "--features", str(_npy_folder(env, tmp, lambda p: None))),
        [str(tmp / "features_npy"), ".npy"],
    ),
    "checkpoint-limit-0": lambda env, tmp: (_evaluate_checkpoint(env, "--limit", "0"), ["--limit"]),
    "checkpoint-batch-size-negative": lambda env, tmp: (
        _evaluate_checkpoint(env, "--batch-size", "-1"),
        ["--batch-size"],
    ),
    "checkpoint-num-workers-negative": lambda env, tmp: (
        _evaluate_checkpoint(env, "--num-workers", "-1"),
        ["--num-workers"],
    ),
    "checkpoint-device-unknown": lambda env, tmp: (_evaluate_checkpoint(env, "--device", "bogus"), ["bogus"]),
    "checkpoint-split-holds-no-sentence": lambda env, tmp: (
        _evaluate_checkpoint(env, "--annotations-root", str(_tacos_root(tmp, "[]"))),
        [str(tmp / "tacos_bad" / "paragraphs_test.json")],
    ),
    "checkpoint-annotations-random-bytes": lambda env, tmp: (
        _evaluate_checkpoint(env, "--annotations-root", str(_tacos_root(tmp, RANDOM_BYTES))),
        [str(tmp / "tacos_bad" / "paragraphs_test.json")],
    ),
    "predict-limit-0": lambda env, tmp: (
        [
            *("predict", "--checkpoint", str(env.checkpoint), "--split", "test"),
            *("--out", str(tmp / "p.json"), "--device", "cpu", "--limit", "0"),
        ],
        ["--limit"],
    ),
    # train: the recipe file, its bases, overrides, the data it points at.
    "train-config-random-bytes": _file_case(_config, "r.yaml", RANDOM_BYTES, "UTF-8"),
    "train-config-latin-1": _file_case(_config, "l.yaml", "name: caf\xe9\n".encode("latin-1"), "UTF-8"),
    "train-config-bad-yaml-one-line": _file_case(_config, "b.yaml", "data: [\n  x: 1", "line 2"),
    "train-config-duplicate-key": _file_case(_config, "d.yaml", "seed: 1\nseed: 2\n", "'seed'", "line 2"),
    "train-config-base-not-a-name": _file_case(_config, "b.yaml", "base: 3\n", "'base'"),
    "train-config-base-missing": _file_case(_config, "b.yaml", "base: nope.yaml\n", "nope.yaml"),
    "train-config-top-level-list": _file_case(_config, "l.yaml", "- 1\n- 2\n"),
    "train-config-is-a-folder": lambda env, tmp: (_config(tmp), [str(tmp), "folder"]),
    "train-override-wrong-type": lambda env, tmp: (
        _train(env, tmp, "data.batch_size=two"),
        ["data.batch_size"],
    ),
    "train-override-unknown-key": lambda env, tmp: (_train(env, tmp, "data.batchsize=2"), ["data.batchsize"]),
    "train-features-damaged-inside": lambda env, tmp: (
        _train(env, tmp, f"data.features={_damaged_inside(env, tmp)}", print_config=False),
        [str(tmp / "damaged.h5")],
    ),
    # baseline prior.
    "baseline-max-sentences-0": lambda env, tmp: (_baseline(env.root, "--max-sentences", "0"), ["sentences"]),
    "baseline-eval-split-holds-no-sentence": lambda env, tmp: (
        _baseline(_tacos_root(tmp, "[]", env)),
        [str(tmp / "tacos_bad" / "paragraphs_test.json")],
    ),
    "baseline-train-split-random-bytes": lambda env, tmp: (
        _baseline(_tacos_root(tmp, RANDOM_BYTES, env)),
        [str(tmp / "tacos_bad" / "paragraphs_test.json")],
    ),
    # demo: every one of these fails before any data is generated.
    "demo-paragraphs-0": lambda env, tmp: (_demo(tmp, "--paragraphs", "0"), ["--paragraphs"]),
    "demo-seed-negative": lambda env, tmp: (_demo(tmp, "--seed", "-1"), ["--seed"]),
    "demo-knob-not-a-number": lambda env, tmp: (_demo(tmp, "synthetic.noise=abc"), ["noise"]),
    "demo-knob-not-yaml": lambda env, tmp: (_demo(tmp, "synthetic.noise=[1"), ["noise"]),
    "demo-knob-range-is-a-number": lambda env, tmp: (_demo(tmp, "synthetic.duration=5"), ["duration"]),
    "demo-knob-float-for-an-integer": lambda env, tmp: (
        _demo(tmp, "synthetic.train_videos=1.5"),
        ["train_videos"],
    ),
    "demo-knob-unknown": lambda env, tmp: (_demo(tmp, "synthetic.foo=1"), ["synthetic.foo"]),
    "demo-override-unknown-key": lambda env, tmp: (_demo(tmp, "data.batchsize=2"), ["data.batchsize"]),
    "demo-config-random-bytes": lambda env, tmp: (
        _demo(tmp, "--config", str(_write(tmp / "r.yaml", RANDOM_BYTES))),
        [str(tmp / "r.yaml")],
    ),
    "demo-out-is-a-file": lambda env, tmp: (
        ["demo", "--out", str(_write(tmp / "out.txt", "x")), "--no-progress-bar"],
        [str(tmp / "out.txt")],
    ),
    # extract: numeric options and the device are refused before the backbone loads.
    "extract-batch-size-0": lambda env, tmp: (_extract(env, tmp, "--batch-size", "0"), ["--batch-size"]),
    "extract-clip-frames-0": lambda env, tmp: (_extract(env, tmp, "--clip-frames", "0"), ["--clip-frames"]),
    "extract-stride-0": lambda env, tmp: (_extract(env, tmp, "--stride", "0"), ["--stride"]),
    "extract-shard-out-of-range": lambda env, tmp: (_extract(env, tmp, "--shard", "5/2"), ["5/2"]),
    "extract-device-unknown": lambda env, tmp: (_extract(env, tmp, "--device", "bogus"), ["bogus"]),
    "extract-weights-random-bytes": lambda env, tmp: (
        _extract(env, tmp, "--weights", str(_write(tmp / "w.pt", RANDOM_BYTES))),
        [str(tmp / "w.pt")],
    ),
    # ground: numeric options, the device, the feature store.
    "ground-thumbnails-negative": lambda env, tmp: (
        _ground(env, tmp, "--thumbnails", "-1"),
        ["--thumbnails"],
    ),
    "ground-batch-size-0": lambda env, tmp: (_ground(env, tmp, "--batch-size", "0"), ["--batch-size"]),
    "ground-fps-0": lambda env, tmp: (_ground(env, tmp, "--fps", "0"), ["--fps"]),
    "ground-device-unknown": lambda env, tmp: (_ground(env, tmp, "--device", "bogus"), ["bogus"]),
    "ground-features-damaged-inside": lambda env, tmp: (
        _ground(env, tmp, "--features", str(_damaged_inside(env, tmp))),
        [str(tmp / "damaged.h5")],
    ),
    "ground-features-random-bytes": lambda env, tmp: (
        _ground(env, tmp, "--features", str(_write(tmp / "r.h5", RANDOM_BYTES))),
        [str(tmp / "r.h5")],
    ),
    "ground-text-file-not-utf8": lambda env, tmp: (
        [
            *_ground(env, tmp)[:2],
            "--text-file",
            str(_write(tmp / "t.txt", RANDOM_BYTES)),
            *_ground(env, tmp)[4:],
        ],
        [str(tmp / "t.txt")],
    ),
    # Found by the first sweep: config values, store sizes, long integers, word vectors, folders.
    "data-file-integer-too-long": _file_case(
        _anet_stats,
        "big.json",
        f'{{"v1": {{"duration": {"9" * 5000}, "timestamps": [[0, 1]], "sentences": ["a"]}}}}',
    ),
    "data-qvhighlights-integer-too-long": _file_case(
        lambda p: ["data", "stats", "qvhighlights", "--file", str(p)],
        "q.jsonl",
        f'{{"qid": 1, "vid": "v", "duration": {"9" * 5000}}}\n',
        "line 1",
    ),
    "data-file-is-a-folder": lambda env, tmp: (_anet_stats(tmp), [str(tmp), "folder", "--root"]),
    "checkpoint-features-wrong-size": lambda env, tmp: (
        _evaluate_checkpoint(env, "--features", str(_store(tmp, "d7.h5", _videos(env, 7)))),
        [str(tmp / "d7.h5"), "7 channels", "takes 24", "--features"],
    ),
    "predict-features-wrong-size": lambda env, tmp: (
        [
            *("predict", "--checkpoint", str(env.checkpoint), "--split", "test", "--device", "cpu"),
            *("--out", str(tmp / "p.json"), "--features", str(_store(tmp, "d7.h5", _videos(env, 7)))),
        ],
        [str(tmp / "d7.h5"), "7 channels", "takes 24", "--features"],
    ),
    "train-trainer-devices-not-a-count": lambda env, tmp: (
        _train(env, tmp, "trainer.devices=foo"),
        ["trainer.devices", "'foo'"],
    ),
    "train-trainer-precision-unknown": lambda env, tmp: (
        _train(env, tmp, "trainer.precision=foo"),
        ["trainer.precision", "bf16-mixed"],
    ),
    "train-trainer-accelerator-unknown": lambda env, tmp: (
        _train(env, tmp, "trainer.accelerator=foo", print_config=False),
        ["trainer.accelerator=foo", "cpu"],
    ),
    "train-trainer-strategy-unknown": lambda env, tmp: (
        _train(env, tmp, "trainer.strategy=foo", print_config=False),
        ["trainer.strategy=foo", "ddp"],
    ),
    "train-trainer-devices-list-on-cpu": lambda env, tmp: (
        _train(env, tmp, "trainer.devices='0,1'", print_config=False),
        ["trainer.devices=0,1", "trainer.accelerator=cpu"],
    ),
    "train-seed-negative": lambda env, tmp: (_train(env, tmp, "seed=-1"), ["seed", "2**32 - 1"]),
    "train-seed-past-32-bits": lambda env, tmp: (_train(env, tmp, "seed=4294967296"), ["seed"]),
    "train-seed-past-64-bits": lambda env, tmp: (_train(env, tmp, f"seed={10**23}"), ["seed"]),
    "train-batch-size-past-64-bits": lambda env, tmp: (
        _train(env, tmp, f"data.batch_size={10**23}"),
        ["data.batch_size"],
    ),
    "train-lr-inf": lambda env, tmp: (_train(env, tmp, "optim.lr=.inf"), ["optim.lr", "finite"]),
    "train-loss-weight-nan": lambda env, tmp: (
        _train(env, tmp, "model.loss_weights.grounding_l1=.nan"),
        ["model.loss_weights.grounding_l1", "finite"],
    ),
    "train-max-vocab-0": lambda env, tmp: (_train(env, tmp, "text.max_vocab=0"), ["text.max_vocab"]),
    "train-min-count-keeps-no-word": lambda env, tmp: (
        _train(env, tmp, "text.min_count=1000000", print_config=False),
        ["min_count=1000000", "text.min_count"],
    ),
    "train-word-vectors-nan": lambda env, tmp: (
        _train(
            env,
            tmp,
            f"text.word_vectors={_write(tmp / 'vectors.txt', NAN_VECTORS)}",
            print_config=False,
        ),
        [str(tmp / "vectors.txt"), "line 2", "'out'", "nan"],
    ),
}

PARAMS = [pytest.param(build, id=name) for name, build in CASES.items()]


def _run(argv: Argv, capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    try:
        code: object = main(argv)
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("build", PARAMS)
def test_a_user_mistake_is_one_clean_line(
    build: Build, env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, names = build(env, tmp_path)
    code, err = _run(argv, capsys)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    prefix = re.compile(rf"^higround {argv[0]}( [a-z]+)?: error: ")
    errors = [line for line in lines if prefix.match(line)]
    # One error line, and the last: a message continued over several lines would leave lines after it.
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert code == 2, err
    missing = [name for name in names if name not in errors[0]]
    assert not missing, f"{missing} not named in: {errors[0]}"
    # Advice to unpickle or to load untrusted data is never passed on to the user.
    assert "allow_pickle" not in err and "weights_only" not in err
