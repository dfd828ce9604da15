"""Engine options any family's recipe may set: the plateau learning-rate schedule and the hit rule."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_family import FAKE_FAMILY
from higround.cli.evaluate_cmd import exclusive_rule
from higround.engine import fit
from higround.engine.config import Config, merge, parse_overrides, read_yaml
from higround.engine.inference import SentencePredictions, score
from higround.errors import ConfigError
from higround.models import registry

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hscnet"


def _fake_overrides(shared_data: Path, features: Path, out: Path) -> list[str]:
    return [
        f"data.root={shared_data / 'tacos'}",
        f"data.features={features}",
        "data.train_split=test",
        "data.val_split=test",
        "data.limit=4",
        "data.batch_size=2",
        "data.num_workers=0",
        "model.family=fake",
        "model.num_clips=16",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "trainer.early_stopping_patience=null",
        f"output_dir={out}",
        "name=plateau",
    ]


def test_the_plateau_schedule_steps_on_the_validation_metric_after_every_epoch(
    tmp_path: Path, shared_data: Path, tacos_features: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.FAMILIES, "fake", FAKE_FAMILY)
    recipe = read_yaml(CONFIGS / "tacos.yaml")
    recipe.pop("model")
    lr, factor = 1e-2, 0.5
    overrides = [
        *_fake_overrides(shared_data, tacos_features, tmp_path),
        f"optim.lr={lr}",
        "optim.scheduler=plateau",
        "optim.plateau_monitor=val/loss",
        "optim.plateau_mode=max",  # 2D-TAN's official schedule: stepped on -val_loss in mode min
        f"optim.plateau_factor={factor}",
        "optim.plateau_patience=0",
        "trainer.max_epochs=4",
    ]
    result = fit(Config.from_dict(merge(recipe, parse_overrides(overrides))))

    rows = list(csv.DictReader(next((result.run_dir / "csv").glob("version_*/metrics.csv")).open()))
    val_loss = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(val_loss) == 4
    # ReduceLROnPlateau (mode max, relative threshold 1e-4, patience 0): every validation that does
    # not beat the best so far multiplies the rate by the factor.
    best, expected = -np.inf, lr
    for value in val_loss:
        if value > best * (1 + 1e-4) if best > 0 else value > best:
            best = value
        else:
            expected *= factor
    last = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    # last.ckpt is written after the last epoch's step: a run resumed from it trains at the rate an
    # uninterrupted run would.
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(expected)
    assert last["callbacks"]["PlateauSchedule"]["mode"] == "max"
    assert last["callbacks"]["PlateauSchedule"]["best"] == pytest.approx(best)


def test_a_run_resumed_mid_schedule_trains_at_the_uninterrupted_rates(
    tmp_path: Path, shared_data: Path, tacos_features: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.FAMILIES, "fake", FAKE_FAMILY)
    recipe = read_yaml(CONFIGS / "tacos.yaml")
    recipe.pop("model")
    schedule = ["optim.lr=1e-2", "optim.scheduler=plateau", "optim.plateau_patience=0"]

    def run(out: Path, *extra: str) -> Path:
        overrides = [*_fake_overrides(shared_data, tacos_features, out), *schedule, *extra]
        return fit(Config.from_dict(merge(recipe, parse_overrides(overrides)))).run_dir

    def rate(run_dir: Path) -> float:
        last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        return float(last["optimizer_states"][0]["param_groups"][0]["lr"])

    straight = run(tmp_path / "a", "trainer.max_epochs=4")
    stopped = run(tmp_path / "b", "trainer.max_epochs=2")
    resumed = run(tmp_path / "b", "trainer.max_epochs=4", f"resume={stopped / 'checkpoints' / 'last.ckpt'}")
    assert rate(straight) < 1e-2  # the schedule did reduce the rate, so the comparison means something
    assert rate(resumed) == rate(straight)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("scheduler", "cosine", "optim.scheduler must be one of"),
        ("plateau_mode", "up", "optim.plateau_mode must be min or max"),
        ("plateau_factor", "1.0", r"optim.plateau_factor must be in \(0, 1\)"),
        ("plateau_monitor", "train/loss", "optim.plateau_monitor must be a validation metric"),
    ],
)
def test_bad_schedule_settings_are_one_line_config_errors(key: str, value: str, message: str) -> None:
    recipe = read_yaml(CONFIGS / "tacos.yaml")
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(merge(recipe, parse_overrides([f"optim.{key}={value}"])))


def test_the_hit_rule_decides_a_prediction_at_exactly_the_threshold() -> None:
    # IoU of [0, 5] with [0, 10] is exactly 0.5: a hit at m = 0.5 only under IoU >= m.
    predictions = SentencePredictions(
        video_ids=np.array(["v"], dtype=object),
        sentence_index=np.array([0]),
        spans=np.array([[0.0, 5.0]]),
        targets=np.array([[0.0, 10.0]]),
    )
    assert score(predictions, "charades_sta", [0.5])["R1@0.5"] == 1.0
    assert score(predictions, "charades_sta", [0.5], inclusive=False)["R1@0.5"] == 0.0


def test_the_command_line_hit_rule_overrides_the_checkpoint_recipe() -> None:
    assert exclusive_rule(argparse.Namespace(exclusive=None), inclusive=False) is True
    assert exclusive_rule(argparse.Namespace(exclusive=None)) is False
    assert exclusive_rule(argparse.Namespace(exclusive=False), inclusive=False) is False
    assert exclusive_rule(argparse.Namespace(exclusive=True), inclusive=True) is True


def test_only_the_newest_epoch_checkpoints_are_kept_when_asked(
    tmp_path: Path, shared_data: Path, tacos_features: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.FAMILIES, "fake", FAKE_FAMILY)
    recipe = read_yaml(CONFIGS / "tacos.yaml")
    recipe.pop("model")
    overrides = [
        *_fake_overrides(shared_data, tacos_features, tmp_path),
        "trainer.max_epochs=4",
        "trainer.keep_epoch_checkpoints=2",
    ]
    result = fit(Config.from_dict(merge(recipe, parse_overrides(overrides))))
    names = sorted(p.name for p in (result.run_dir / "checkpoints").glob("*.ckpt"))
    assert names == ["best.ckpt", "epoch=002.ckpt", "epoch=003.ckpt", "last.ckpt"]
    with pytest.raises(ConfigError, match=r"trainer\.keep_epoch_checkpoints must be >= 1"):
        Config.from_dict(merge(recipe, parse_overrides(["trainer.keep_epoch_checkpoints=0"])))


@pytest.mark.parametrize(("name", "expected"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_the_optimizer_switch_builds_adam_or_adamw(name: str, expected: type) -> None:
    from higround.engine.module import GroundingModule
    from higround.text.vocab import Vocabulary

    config = Config.from_dict(
        merge(
            read_yaml(CONFIGS / "tacos.yaml"),
            parse_overrides([f"optim.optimizer={name}", "optim.weight_decay=0.01"]),
        )
    )
    model_config = config.family.config({**config.model, "video_dim": 8, "word_dim": 4, "hidden_dim": 16})
    vocab = Vocabulary(["a", "b"])
    module = GroundingModule(config, model_config, vocab, torch.zeros(len(vocab), 4))
    optimizer = module.configure_optimizers()
    assert type(optimizer) is expected and optimizer.defaults["weight_decay"] == 0.01


def test_detr_recipes_train_with_adamw_and_a_bad_optimizer_is_one_line() -> None:
    root = CONFIGS.parent
    for family in ("moment_detr", "qd_detr"):
        assert Config.from_dict(read_yaml(root / family / "qvhighlights.yaml")).optim.optimizer == "adamw"
    with pytest.raises(ConfigError, match=r"optim.optimizer must be one of \['adam', 'adamw'\], got 'sgd'"):
        Config.from_dict(merge(read_yaml(CONFIGS / "tacos.yaml"), parse_overrides(["optim.optimizer=sgd"])))
