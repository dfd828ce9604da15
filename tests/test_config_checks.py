"""What the checks of a user's inputs report, and that they never refuse a valid value.

Exported weights get the mode of every other output; ``predict --on-bad skip`` says what it skipped;
``evaluate --checkpoint`` reports the split's unknown-word rate; ``--feature-key auto`` reads a store
laid out otherwise than the training one; and the recipe's ``trainer.*`` / ``seed`` checks accept
every value Lightning accepts. Checkpoints here are untrained tiny models (no training run needed).
"""

from __future__ import annotations

import json
import os
import stat
import typing
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.strategies import StrategyRegistry

import higround.io
from higround.cli.main import main
from higround.data.features import HDF5Store, write_hdf5_store
from higround.data.readers import load_dataset
from higround.engine import export_safetensors, load_checkpoint, load_config, save_checkpoint
from higround.engine.config import Config
from higround.engine.trainer import check_trainer_settings
from higround.errors import ConfigError
from higround.models.hscnet import HSCNet
from higround.text import tokenize
from higround.text.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "hscnet" / "tacos.yaml"
LIMIT = 4  # paragraphs predicted
FEW_WORDS = {"a", "man", "cuts", "it"}  # the vocabulary of the "foreign" checkpoint


@pytest.fixture(scope="module")
def checkpoints(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path, tacos_features: Path, tiny_model: list[str]
) -> dict[str, Path]:
    """An untrained tiny model of the TACoS recipe (key template ``{video_id}``) saved with the
    vocabulary of the TACoS test split ("own") and with a four-word one ("foreign")."""
    tmp = tmp_path_factory.mktemp("checkpoints")
    overrides = [*tiny_model, f"data.root={shared_data / 'tacos'}", f"data.features={tacos_features}"]
    config = load_config(RECIPE, [*overrides, "data.num_workers=0"])
    assert config.data.feature_key == "{video_id}"
    texts = [s.text for p in load_dataset("tacos_paragraphs", shared_data / "tacos", "test").paragraphs()
             for s in p.sentences]  # fmt: skip
    paths = {}
    for name, vocab in (
        ("own", Vocabulary.build(texts)),
        ("foreign", Vocabulary.build([" ".join(FEW_WORDS)])),
    ):
        torch.manual_seed(0)
        model = HSCNet(config.model_config(word_dim=8), torch.randn(len(vocab), 8))
        paths[name] = tmp / f"{name}.ckpt"
        save_checkpoint(paths[name], model, config, vocab)
    return paths


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _checkpoint_argv(command: str, checkpoint: Path, *extra: str) -> list[str]:
    argv = [command, "--checkpoint", str(checkpoint), "--split", "test", "--limit", str(LIMIT)]
    return [*argv, "--device", "cpu", "--num-workers", "0", *extra]


# --- exported weights ---------------------------------------------------------------------------------


def test_exported_weights_get_the_umask_mode_and_load_unchanged(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``model.safetensors`` used to be 0600 (safetensors recreated the temp file) while its sidecar
    and every other output had the mode ``open()`` gives."""
    monkeypatch.setattr(higround.io, "_UMASK", 0o022)  # read once at import: set both to one value
    previous = os.umask(0o022)
    try:
        weights, sidecar = export_safetensors(checkpoints["own"], tmp_path / "model.safetensors")
        plain = tmp_path / "plain"
        plain.write_bytes(b"")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (weights, sidecar, plain)}
    assert modes == {"model.safetensors": 0o644, "model.json": 0o644, "plain": 0o644}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    original, exported = load_checkpoint(checkpoints["own"]), load_checkpoint(weights)
    assert exported.vocab == original.vocab and exported.model_config == original.model_config
    assert exported.state_dict.keys() == original.state_dict.keys()
    for key, tensor in original.state_dict.items():
        assert torch.equal(exported.state_dict[key], tensor), key


# --- what predict and evaluate --checkpoint report ----------------------------------------------------------


def test_predict_on_bad_skip_prints_the_readers_note(
    checkpoints: dict[str, Path], corrupted_tacos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "preds.json"
    argv = _checkpoint_argv("predict", checkpoints["own"], "--annotations-root", str(corrupted_tacos))
    rc, printed, _ = _run(capsys, [*argv, "--out", str(out), "--on-bad", "skip"])
    assert rc == 0
    summary = load_dataset("tacos_paragraphs", corrupted_tacos, "test", on_bad="skip").report.summary()
    assert "skipped 1 bad record(s): s30-d40.avi#1" in summary
    lines = printed.splitlines()
    assert f"note: {summary}" in lines
    assert lines.index(f"note: {summary}") < next(
        i for i, line in enumerate(lines) if line.startswith("wrote")
    )
    keys = {r["key"] for r in json.loads(out.read_text())["predictions"]}
    assert "s30-d40.avi#0" in keys and "s30-d40.avi#1" not in keys

    # The released file has no bad record: no note.
    rc, printed, _ = _run(capsys, [*_checkpoint_argv("predict", checkpoints["own"]), "--out", str(out)])
    assert rc == 0 and "note:" not in printed


def test_evaluate_checkpoint_reports_the_unknown_word_rate(
    checkpoints: dict[str, Path], shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = json.loads((shared_data / "tacos" / "paragraphs_test.json").read_text())[:LIMIT]
    words = [t for r in records for s in r["sentences"] for t in tokenize(s)]
    expected = {
        "own": (0, len(words)),
        "foreign": (sum(t not in FEW_WORDS for t in words), len(words)),
    }
    assert 0 < expected["foreign"][0] < len(words)
    for name, (unknown, tokens) in expected.items():
        out = tmp_path / f"{name}.json"
        rc, printed, _ = _run(capsys, _checkpoint_argv("evaluate", checkpoints[name], "--json", str(out)))
        assert rc == 0
        rate = f"{100 * unknown / tokens:.1f} % unknown words ({unknown} of {tokens} tokens are <unk>)"
        note = f"note: split 'test': {rate} (words outside the checkpoint's vocabulary)"
        assert note in printed.splitlines()
        written = json.loads(out.read_text())["unknown_words"]
        assert written == {"unknown": unknown, "tokens": tokens, "rate": pytest.approx(unknown / tokens)}


# --- --feature-key auto -----------------------------------------------------------------------------------


def test_feature_key_auto_reads_a_store_of_another_layout(
    checkpoints: dict[str, Path], tacos_features: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint's template is ``{video_id}`` (TACoS); the same features laid out as the
    ActivityNet C3D file (``{video_id}/c3d_features``) give the same predictions with ``auto``."""
    source = HDF5Store(tacos_features)
    grouped = tmp_path / "grouped.h5"
    write_hdf5_store(grouped, {v: source.get(v) for v in source.video_ids()}, key="{video_id}/c3d_features")
    ckpt = checkpoints["own"]

    rc, _, err = _run(
        capsys,
        [*_checkpoint_argv("predict", ckpt, "--features", str(grouped)), "--out", str(tmp_path / "x.json")],
    )
    assert rc == 2 and str(grouped) in err  # the checkpoint's template finds groups, not arrays

    preds = {}
    for name, extra in (
        ("trained", []),
        ("auto", ["--features", str(grouped), "--feature-key", "auto"]),
    ):
        out = tmp_path / f"{name}.json"
        rc, _, err = _run(capsys, [*_checkpoint_argv("predict", ckpt, *extra), "--out", str(out)])
        assert rc == 0, err
        preds[name] = json.loads(out.read_text())["predictions"]
    assert len(preds["auto"]) > 0 and preds["auto"] == preds["trained"]

    rc, printed, err = _run(
        capsys, _checkpoint_argv("evaluate", ckpt, "--features", str(grouped), "--feature-key", "auto")
    )
    assert rc == 0 and "mIoU" in printed, err


# --- recipe values: every value Lightning accepts passes ------------------------------------------------


PRECISIONS = ["auto", *typing.get_args(_PRECISION_INPUT_STR), *typing.get_args(_PRECISION_INPUT_STR_ALIAS)]
ACCELERATORS = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
STRATEGIES = ["auto", *StrategyRegistry.available_strategies()]


@pytest.mark.parametrize(
    "override",
    [
        *(f"trainer.precision={p}" for p in (*PRECISIONS, 16, 32, 64)),
        *(f"trainer.accelerator={a}" for a in ACCELERATORS),
        *(f"trainer.strategy={s}" for s in (*STRATEGIES, "DDP")),
        *(f"trainer.devices={d}" for d in (-1, "auto", 1, 2, "'-1'", "'2'", "'0,1'", "'1,'", "'0, 1'")),
        *(f"seed={s}" for s in (0, 2**32 - 1)),
    ],
)
def test_valid_trainer_values_pass(override: str) -> None:
    config = load_config(RECIPE, [override])
    check_trainer_settings(config)
    assert Config.from_dict(config.to_dict()) == config


def test_the_checked_lists_hold_the_usual_values() -> None:
    """The lists above come from Lightning: they must hold what the docs and recipes use."""
    assert {"bf16-mixed", "16-mixed", "32-true", "64-true", "16", "32"} <= set(PRECISIONS)
    assert {"cpu", "gpu", "cuda", "auto"} <= set(ACCELERATORS)
    assert {"ddp", "auto", "ddp_find_unused_parameters_true"} <= set(STRATEGIES)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("precision", "bf16-mixed"),
        ("precision", "16"),
        ("devices", "0,1"),
        ("devices", -1),
        ("devices", "auto"),
        ("strategy", "ddp_find_unused_parameters_true"),
        ("accelerator", "gpu"),
    ],
)
def test_config_from_dict_takes_valid_trainer_values(key: str, value: object) -> None:
    """The checks run in ``Config.from_dict`` too (the path of a checkpoint's stored recipe)."""
    base = Config().to_dict()
    config = Config.from_dict({**base, "trainer": {**base["trainer"], key: value}})
    assert getattr(config.trainer, key) == value
    check_trainer_settings(config)
    with pytest.raises(ConfigError, match="seed"):
        Config.from_dict({**config.to_dict(), "seed": 2**32})
