"""Resuming a training run: the best checkpoint, the checkpoint files and the overrides a resume
honours or refuses, with the val mIoU of every epoch scripted so that the best epoch is known."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping
from safetensors.torch import load_file

from higround.cli.main import main
from higround.engine import fit, load_checkpoint, load_config
from higround.engine.module import GroundingModule
from higround.engine.trainer import RecipeEarlyStopping, TrainResult
from higround.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hscnet"
RECIPE = CONFIGS / "tacos.yaml"
# val mIoU of epochs 0..5: epoch 2 is the best, and later epochs beat epoch 1 but not epoch 2.
SCRIPT = (0.10, 0.20, 0.40, 0.30, 0.35, 0.25)
BEST_EPOCH = 2
EPOCH_FILES = [f"epoch={e:03d}.ckpt" for e in range(len(SCRIPT))]


def _scripted_validation(self: GroundingModule) -> None:
    self._val_parts = []
    self.log("val/mIoU", SCRIPT[self.current_epoch], prog_bar=True)


class Killed(RuntimeError):
    """Stands for kill -9: training stops where it is, nothing runs after."""


def _kill_at_epoch(epoch: int) -> Any:
    def on_train_epoch_start(self: GroundingModule) -> None:
        if self.current_epoch == epoch:
            raise Killed(f"killed at the start of epoch {epoch}")

    return on_train_epoch_start


@pytest.fixture(scope="module")
def common(shared_data: Path, tacos_features: Path, tiny_model: list[str]) -> list[str]:
    """Overrides of a seconds-long run on 4 real TACoS test paragraphs (train = val)."""
    return [
        f"data.root={shared_data / 'tacos'}",
        f"data.features={tacos_features}",
        "data.train_split=test",
        "data.val_split=test",
        "data.limit=4",
        "data.batch_size=2",
        "data.num_workers=0",
        *tiny_model,
        "model.dropout=0.3",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "trainer.early_stopping_patience=null",
        "trainer.keep_epoch_checkpoints=null",  # every epoch's file: resumes from each are tested
    ]


@pytest.fixture(scope="module")
def scripted() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GroundingModule, "on_validation_epoch_end", _scripted_validation)
        yield


def _train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["train", "--config", str(RECIPE), *argv]) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def straight(scripted: None, common: list[str], tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """The uninterrupted run of all epochs: the reference of every resumed one."""
    out = tmp_path_factory.mktemp("straight")
    return fit(load_config(RECIPE, [*common, f"output_dir={out}", f"trainer.max_epochs={len(SCRIPT)}"]))


def _weights(path: Path | None) -> dict[str, torch.Tensor]:
    assert path is not None
    return load_file(str(path))


def _assert_same_run(run_dir: Path, best_score: float | None, straight: TrainResult) -> None:
    """best.ckpt, the exported weights, the best score and the last epoch of an uninterrupted run."""
    checkpoints = run_dir / "checkpoints"
    assert straight.best_checkpoint is not None and straight.last_checkpoint is not None
    assert load_checkpoint(straight.best_checkpoint).epoch == BEST_EPOCH
    assert load_checkpoint(checkpoints / "best.ckpt").epoch == BEST_EPOCH
    assert best_score == straight.best_score == pytest.approx(SCRIPT[BEST_EPOCH])
    expected, got = _weights(straight.weights), _weights(run_dir / "model.safetensors")
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
    last, reference = load_checkpoint(checkpoints / "last.ckpt"), load_checkpoint(straight.last_checkpoint)
    assert last.epoch == reference.epoch == len(SCRIPT) - 1
    for key, value in reference.state_dict.items():
        torch.testing.assert_close(last.state_dict[key], value, rtol=0, atol=0, msg=key)
    # One file per epoch: a retrained epoch overwrites its file (no epoch=NNN-v1.ckpt).
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", *EPOCH_FILES, "last.ckpt"]


def test_resume_after_the_best_epoch_keeps_it(
    straight: TrainResult, common: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Stopped after the best epoch (the last one run), then resumed to all epochs.
    run = [*common, f"output_dir={tmp_path}"]
    _train([*run, f"trainer.max_epochs={BEST_EPOCH + 1}"], capsys)
    checkpoints = tmp_path / "hscnet_tacos" / "checkpoints"
    # last.ckpt knows that its own epoch is the best so far.
    state = torch.load(checkpoints / "last.ckpt", weights_only=True)["callbacks"]
    best_state = next(v for k, v in state.items() if "val/mIoU" in k and k.startswith("ModelCheckpoint"))
    assert float(best_state["best_model_score"]) == pytest.approx(SCRIPT[BEST_EPOCH])

    printed = _train(
        [*run, f"trainer.max_epochs={len(SCRIPT)}", f"resume={checkpoints / 'last.ckpt'}"], capsys
    )
    assert f"best checkpoint:  {checkpoints / 'best.ckpt'}" in printed
    # The printed best is the uninterrupted run's (epoch 3's 30.00 and later would have replaced it).
    assert straight.best_score is not None
    assert f"best val mIoU:    {100 * straight.best_score:.2f}" in printed.splitlines()
    _assert_same_run(checkpoints.parent, straight.best_score, straight)


@pytest.mark.parametrize("resume_from", ["last.ckpt", f"epoch={BEST_EPOCH:03d}.ckpt", "epoch=001.ckpt"])
def test_resume_after_a_kill_from_any_surviving_checkpoint(
    straight: TrainResult,
    common: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resume_from: str,
) -> None:
    # Killed at the start of the epoch after the best, with all epochs asked for. Resuming from
    # epoch=001.ckpt retrains epoch 2, whose file survived the kill.
    run = [*common, f"output_dir={tmp_path}", f"trainer.max_epochs={len(SCRIPT)}"]
    with monkeypatch.context() as patch:
        patch.setattr(GroundingModule, "on_train_epoch_start", _kill_at_epoch(BEST_EPOCH + 1))
        with pytest.raises(Killed):
            fit(load_config(RECIPE, run))
    checkpoints = tmp_path / "hscnet_tacos" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "best.ckpt",
        *EPOCH_FILES[: BEST_EPOCH + 1],
        "last.ckpt",
    ]
    resumed = fit(load_config(RECIPE, [*run, f"resume={checkpoints / resume_from}"]))
    assert resumed.best_checkpoint == checkpoints / "best.ckpt"
    _assert_same_run(resumed.run_dir, resumed.best_score, straight)


@pytest.fixture(scope="module")
def one_epoch(common: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """A finished one-epoch run: its overrides and its last checkpoint."""
    run = [*common, f"output_dir={tmp_path_factory.mktemp('one_epoch')}"]
    result = fit(load_config(RECIPE, [*run, "trainer.max_epochs=1"]))
    assert result.last_checkpoint is not None
    return run, result.last_checkpoint


@pytest.mark.parametrize(
    ("override", "recipe_value", "checkpoint_value"),
    [
        ("text.word_vectors=learned", "learned", "glove-6b-50d"),
        ("text.min_count=2", "2", "1"),
        ("model.hidden_dim=32", "32", "16"),
        ("model.dropout=0.1", "0.1", "0.3"),
        ("seed=1", "1", "0"),
        ("optim.lr=1e-3", "0.001", "0.0001"),
        ("data.max_sentences=2", "2", "null"),
        ("data.limit=3", "3", "4"),
        ("data.val_split=null", "null", "test"),
    ],
)
def test_resume_refuses_an_override_it_cannot_honour(
    one_epoch: tuple[list[str], Path], override: str, recipe_value: str, checkpoint_value: str
) -> None:
    run, last = one_epoch
    config_file = last.parent.parent / "config.yaml"
    recorded = config_file.read_text()
    files = sorted(p.name for p in last.parent.iterdir())
    key = override.split("=")[0]
    message = f"resume: {key}={recipe_value} in the recipe but {checkpoint_value} in the checkpoint {last}"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        fit(load_config(RECIPE, [*run, "trainer.max_epochs=2", f"resume={last}", override]))
    # Nothing recorded what did not happen: config.yaml and the checkpoints are untouched.
    assert config_file.read_text() == recorded
    assert sorted(p.name for p in last.parent.iterdir()) == files


def test_train_cli_refuses_a_resume_override_in_one_line(
    one_epoch: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, last = one_epoch
    capsys.readouterr()
    argv = ["train", "--config", str(RECIPE), *run, f"resume={last}", "text.word_vectors=learned"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("higround train: error: resume: text.word_vectors=learned in the recipe but")
    assert "drop the override or set text.word_vectors=glove-6b-50d" in err


def test_resume_refuses_another_run_folder(one_epoch: tuple[list[str], Path]) -> None:
    run, last = one_epoch
    with pytest.raises(ConfigError, match="is not in this run's checkpoints folder"):
        fit(load_config(RECIPE, [*run, "name=elsewhere", "trainer.max_epochs=2", f"resume={last}"]))


def test_resume_honours_a_new_early_stopping_patience(
    scripted: None, common: list[str], tmp_path: Path
) -> None:
    # Patience 1 stops after epoch 3 (no better than epoch 2); resumed with patience 3 it trains on.
    run = [*common, f"output_dir={tmp_path}", "trainer.early_stopping_patience=1"]
    first = fit(load_config(RECIPE, [*run, f"trainer.max_epochs={BEST_EPOCH + 1}"]))
    assert first.last_checkpoint is not None
    resumed = fit(
        load_config(
            RECIPE,
            [
                *run,
                f"trainer.max_epochs={len(SCRIPT)}",
                "trainer.early_stopping_patience=3",
                f"resume={first.last_checkpoint}",
            ],
        )
    )
    assert resumed.last_checkpoint is not None
    assert load_checkpoint(resumed.last_checkpoint).epoch == len(SCRIPT) - 1
    recorded = yaml.safe_load((resumed.run_dir / "config.yaml").read_text())
    assert recorded["trainer"]["early_stopping_patience"] == 3


def test_recipe_early_stopping_keeps_lightnings_state_key() -> None:
    ours = RecipeEarlyStopping("val/mIoU", mode="max", patience=5)
    theirs = EarlyStopping("val/mIoU", mode="max", patience=1)
    theirs.wait_count = 1
    assert ours.state_key == theirs.state_key  # checkpoints written by either restore into the other
    ours.load_state_dict(theirs.state_dict())
    assert (ours.patience, ours.wait_count) == (5, 1)
