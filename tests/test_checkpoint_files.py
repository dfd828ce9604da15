"""Corrupt checkpoint files, an unwritable ``predict --out`` and the unknown-word rate of a split:
every bad file is one line naming it through ``higround predict`` and ``higround ground`` (exit
status 2, no traceback), on a tiny model saved for the real TACoS test paragraphs."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from higround.cli.main import main
from higround.data.readers import load_dataset
from higround.engine import export_safetensors, load_config, save_checkpoint
from higround.models.hscnet import HSCNet
from higround.text import tokenize
from higround.text.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
LIMIT = 4  # paragraphs predicted


@pytest.fixture(scope="module")
def checkpoints(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path, tacos_features: Path, tiny_model: list[str]
) -> dict[str, Path]:
    """An untrained tiny model saved twice: with the vocabulary of the TACoS test split (every word
    known) and with a five-word one (most words unknown); plus the first one's exported weights."""
    tmp = tmp_path_factory.mktemp("checkpoints")
    overrides = [*tiny_model, f"data.root={shared_data / 'tacos'}", f"data.features={tacos_features}"]
    config = load_config(REPO / "configs" / "hscnet" / "tacos.yaml", [*overrides, "data.num_workers=0"])
    texts = [s.text for p in load_dataset("tacos_paragraphs", shared_data / "tacos", "test").paragraphs()
             for s in p.sentences]  # fmt: skip
    paths = {}
    for name, vocab in (("own", Vocabulary.build(texts)), ("foreign", Vocabulary.build(["a man cuts it"]))):
        torch.manual_seed(0)
        model = HSCNet(config.model_config(word_dim=8), torch.randn(len(vocab), 8))
        paths[name] = tmp / f"{name}.ckpt"
        save_checkpoint(paths[name], model, config, vocab)
    paths["weights"], paths["sidecar"] = export_safetensors(paths["own"], tmp / "own.safetensors")
    return paths


def _edited(source: Path, edit: Callable[[dict], None], out: Path) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, out)
    return out


def _with_sidecar(weights: Path, out: Path, sidecar: str, size: int | None = None) -> Path:
    out.write_bytes(weights.read_bytes()[:size])
    out.with_suffix(".json").write_text(sidecar)
    return out


def _written(out: Path, data: bytes) -> Path:
    out.write_bytes(data)
    return out


def _saved(out: Path, obj: object) -> Path:
    torch.save(obj, out)
    return out


Make = Callable[[dict[str, Path], Path], Path]
# (name, how to make the file from the good ones in a folder, what the message says)
CORRUPT: list[tuple[str, Make, str]] = [
    (
        "truncated safetensors",
        lambda c, d: _with_sidecar(c["weights"], d / "t.safetensors", c["sidecar"].read_text(), 5000),
        "not a checkpoint, or truncated or corrupt: its 5000 bytes do not read as a safetensors file",
    ),
    (
        "random bytes",
        lambda c, d: _written(d / "r.ckpt", os.urandom(3000)),
        "not a checkpoint, or truncated or corrupt: its 3000 bytes do not read as a torch file",
    ),
    (
        "empty",
        lambda c, d: _written(d / "e.ckpt", b""),
        "not a checkpoint, or truncated or corrupt: the file is empty (0 bytes)",
    ),
    (
        "truncated ckpt",
        lambda c, d: _written(d / "tr.ckpt", c["own"].read_bytes()[:20000]),
        "not a checkpoint, or truncated or corrupt: its 20000 bytes do not read as a torch file",
    ),
    (
        "refused object",
        lambda c, d: _saved(d / "o.ckpt", {"state_dict": {}, "args": argparse.Namespace(a=1)}),
        "holds a Python object of type argparse.Namespace, which higround does not load",
    ),
    (
        "sidecar not JSON",
        lambda c, d: _with_sidecar(c["weights"], d / "j.safetensors", "{not json"),
        "j.json: checkpoint sidecar is not JSON (line 1, column 2",
    ),
    (
        "sidecar lacks keys",
        lambda c, d: _with_sidecar(
            c["weights"], d / "k.safetensors", '{"format_version": 1, "model": "hscnet"}'
        ),
        "k.json: malformed checkpoint: no 'config' or 'vocab' mapping",
    ),
    (
        "config with a bad key",
        lambda c, d: _edited(c["own"], lambda x: x["higround"]["config"].update(bogus=1), d / "b.ckpt"),
        "b.ckpt: malformed checkpoint: config: unknown key 'bogus'",
    ),
    (
        "vocabulary a list",
        lambda c, d: _edited(c["own"], lambda x: x["higround"].update(vocab=["a", "b"]), d / "v.ckpt"),
        "v.ckpt: malformed checkpoint: no 'vocab' mapping",
    ),
    (
        "vocabulary words not a list",
        lambda c, d: _edited(c["own"], lambda x: x["higround"].update(vocab={"words": 3}), d / "w.ckpt"),
        "w.ckpt: malformed checkpoint: vocabulary: expected a mapping with a 'words' list of strings",
    ),
]


@pytest.mark.parametrize(("name", "make", "message"), CORRUPT, ids=[c[0] for c in CORRUPT])
@pytest.mark.parametrize("command", ["predict", "ground"])
def test_a_bad_checkpoint_is_one_line_naming_the_file(
    checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    name: str,
    make: Make,
    message: str,
) -> None:
    path = make(checkpoints, tmp_path)
    if command == "predict":
        argv = ["predict", "--checkpoint", str(path), "--split", "test", "--out", str(tmp_path / "p.json")]
    else:
        argv = ["ground", "s30-d40", "--text", "A man cuts it.", "--checkpoint", str(path)]
        argv += ["--png", str(tmp_path / "t.png")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"higround {command}: error: {path.parent}"), captured.err
    assert message in lines[0] and "Traceback" not in captured.err
    assert "weights_only" not in captured.err  # torch's advice to load unsafely is never passed on
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "t.png").exists()


def test_predict_checks_out_before_the_work(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "preds.json"  # its folder is a file (tests run as root: no chmod)
    argv = ["predict", "--checkpoint", str(checkpoints["own"]), "--split", "test", "--out", str(out)]
    assert main([*argv, "--limit", str(LIMIT), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == f"higround predict: error: --out {out}: {tmp_path / 'afile'} is a file, not a folder\n"


def test_predict_reports_the_unknown_word_rate_of_the_split(
    checkpoints: dict[str, Path],
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    argv = ["predict", "--split", "test", "--limit", str(LIMIT), "--device", "cpu", "--num-workers", "0"]
    records = json.loads((shared_data / "tacos" / "paragraphs_test.json").read_text())

    tokens = sum(len(tokenize(s)) for r in records[:LIMIT] for s in r["sentences"])
    with caplog.at_level(logging.INFO, logger="higround.engine.datamodule"):
        assert main([*argv, "--checkpoint", str(checkpoints["own"]), "--out", str(tmp_path / "a.json")]) == 0
    assert f"0.0 % unknown words (0 of {tokens} tokens are <unk>)" in capsys.readouterr().out
    assert [r.levelno for r in caplog.records if "split 'test'" in r.getMessage()] == [logging.INFO]
    caplog.clear()

    assert main([*argv, "--checkpoint", str(checkpoints["foreign"]), "--out", str(tmp_path / "b.json")]) == 0
    known = {"a", "man", "cuts", "it"}
    unknown = sum(t not in known for r in records[:LIMIT] for s in r["sentences"] for t in tokenize(s))
    rate = f"{100 * unknown / tokens:.1f} % unknown words ({unknown} of {tokens} tokens are <unk>)"
    assert rate in capsys.readouterr().out
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith(f"split 'test': {rate}; more than 20 % of the words are unknown")
