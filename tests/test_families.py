"""The model-family contract: the table, model.family in recipes and checkpoints, checkpoints from
before families, and a fake family trained and read by the engine with no HSCNet special case."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from fake_family import FAKE_FAMILY, FakeConfig
from higround.data.batch import ParagraphBatch
from higround.data.batching import collate_paragraphs
from higround.data.dataset import make_item
from higround.data.schema import Paragraph, Sentence
from higround.engine import Grounder, fit, load_checkpoint, load_config, save_checkpoint, save_config
from higround.engine.checkpoint import CHECKPOINT_KEY
from higround.engine.config import Config, merge, parse_overrides, read_yaml
from higround.engine.evaluation import open_checkpoint
from higround.errors import ConfigError
from higround.models import registry
from higround.models.family import EMBEDDING_KEY, RETRIEVAL, GroundingPredictions
from higround.models.hscnet import LOSS_TERMS, HSCNet, HSCNetConfig
from higround.models.hscnet.family import HSCNET_FAMILY
from higround.models.hse.family import HSE_FAMILY
from higround.models.lgi.family import LGI_FAMILY
from higround.models.moment_detr.family import MOMENT_DETR_FAMILY
from higround.models.prvg.family import PRVG_FAMILY
from higround.models.qd_detr.family import QD_DETR_FAMILY
from higround.models.tan2d.family import TAN2D_FAMILY
from higround.text.vocab import Vocabulary

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hscnet"


def _batch(vocab: Vocabulary, video_dim: int, num_clips: int) -> ParagraphBatch:
    paragraph = Paragraph(
        "s1-d1.avi",
        40.0,
        (Sentence("a man opens the fridge", 2.0, 9.0, 0, "k0"), Sentence("he cuts it", 9.0, 30.0, 1, "k1")),
    )
    features = np.random.default_rng(0).standard_normal((23, video_dim)).astype(np.float32)
    return collate_paragraphs([make_item(paragraph, features, vocab, num_clips)])


def _vocab() -> Vocabulary:
    return Vocabulary.build(["a man opens the fridge", "he takes a carrot out", "the man cuts it"])


# --- the table --------------------------------------------------------------------------------------


def test_the_table_lists_hscnet_and_its_parts_satisfy_the_contract() -> None:
    assert registry.FAMILIES == {
        "hscnet": HSCNET_FAMILY,
        "tan2d": TAN2D_FAMILY,
        "lgi": LGI_FAMILY,
        "prvg": PRVG_FAMILY,
        "moment_detr": MOMENT_DETR_FAMILY,
        "qd_detr": QD_DETR_FAMILY,
        "hse": HSE_FAMILY,
    }
    assert registry.DEFAULT_FAMILY == "hscnet"
    assert [(f.title, f.unit) for f in registry.FAMILIES.values()] == [
        ("HSCNet", "paragraph"),
        ("2D-TAN", "sentence"),
        ("LGI", "sentence"),
        ("PRVG", "paragraph"),
        ("Moment-DETR", "sentence"),
        ("QD-DETR", "sentence"),
        ("HSE", "paragraph"),
    ]
    family = registry.get_family("hscnet")
    assert (family.name, family.title, family.task) == ("hscnet", "HSCNet", "grounding")
    assert family.config_class is HSCNetConfig
    config = family.config(
        {"family": "hscnet", "video_dim": 12, "word_dim": 8, "hidden_dim": 16, "num_heads": 2}
    )
    assert family.config(config.to_dict()) == config
    vocab = _vocab()
    model = family.build_model(config, torch.randn(len(vocab), 8))
    assert isinstance(model, nn.Module) and model.config is config  # type: ignore[attr-defined]
    assert EMBEDDING_KEY in model.state_dict()
    batch = _batch(vocab, 12, config.num_clips)
    output = model(batch)
    terms = family.build_loss(config)(output, batch)
    assert set(terms) == {*LOSS_TERMS, "total"}
    predictions = family.predictions(output, batch)
    assert isinstance(predictions, GroundingPredictions)
    assert predictions.spans.shape == (1, 2, 1, 2) and predictions.scores is None
    assert torch.equal(predictions.best, output.spans)
    assert predictions.paragraph_span is not None and predictions.word_spans is not None
    assert bool(((predictions.spans >= 0) & (predictions.spans <= 1)).all())


def test_an_unknown_family_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"model\.family: 'tan9d' is not a model family.*"
        r"known: hscnet, hse, lgi, moment_detr, prvg, qd_detr, tan2d",
    ) as err:
        load_config(CONFIGS / "tacos.yaml", ["model.family=tan9d"])
    assert "\n" not in str(err.value)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  family: nope\n")
    with pytest.raises(ConfigError, match="'nope' is not a model family"):
        load_config(recipe)
    with pytest.raises(ConfigError, match="known: hscnet, hse, lgi, moment_detr, prvg, qd_detr, tan2d"):
        registry.get_family("nope")


def test_a_retrieval_family_is_refused_by_the_grounding_engine() -> None:
    retrieval = dataclasses.replace(HSCNET_FAMILY, task=RETRIEVAL)
    with pytest.raises(ConfigError, match="retrieval model"):
        retrieval.check_task("training")
    with pytest.raises(ValueError, match="task must be one of"):
        dataclasses.replace(HSCNET_FAMILY, task="captioning")


# --- model.family in config.yaml and checkpoints -----------------------------------------------------


def _tiny(tiny_model: list[str]) -> tuple[Config, HSCNet, Vocabulary, ParagraphBatch]:
    config = load_config(CONFIGS / "tacos.yaml", [*tiny_model, "model.video_dim=12"])
    vocab = _vocab()
    torch.manual_seed(0)
    model = HSCNet(config.model_config(word_dim=8), torch.randn(len(vocab), 8)).eval()
    return config, model, vocab, _batch(vocab, 12, 16)


def test_the_family_round_trips_through_config_yaml_and_the_checkpoint(
    tmp_path: Path, tiny_model: list[str]
) -> None:
    config, model, vocab, _ = _tiny(tiny_model)
    assert config.model["family"] == "hscnet" and config.family is HSCNET_FAMILY
    explicit = load_config(CONFIGS / "tacos.yaml", [*tiny_model, "model.family=hscnet"])
    assert explicit == load_config(CONFIGS / "tacos.yaml", tiny_model)
    save_config(config, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["family"] == "hscnet"
    assert load_config(tmp_path / "config.yaml") == config

    save_checkpoint(tmp_path / "m.ckpt", model, config, vocab)
    payload = torch.load(tmp_path / "m.ckpt", weights_only=True)[CHECKPOINT_KEY]
    assert payload["model"] == "hscnet" and payload["config"]["model"]["family"] == "hscnet"
    loaded = load_checkpoint(tmp_path / "m.ckpt")
    assert loaded.family is HSCNET_FAMILY and loaded.config.model["family"] == "hscnet"


def test_a_family_that_disagrees_with_the_checkpoint_model_is_refused(
    tmp_path: Path, tiny_model: list[str]
) -> None:
    config, model, vocab, _ = _tiny(tiny_model)
    save_checkpoint(tmp_path / "m.ckpt", model, config, vocab)
    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=True)
    checkpoint[CHECKPOINT_KEY]["model"] = "tan9d"
    torch.save(checkpoint, tmp_path / "other.ckpt")
    with pytest.raises(ConfigError, match=r"checkpoint of model 'tan9d'.*model families: hscnet"):
        load_checkpoint(tmp_path / "other.ckpt")


def _old_layout_checkpoint(path: Path, config: Config, model: HSCNet, vocab: Vocabulary) -> None:
    """A checkpoint exactly as written before model families (the code of commit 8fa8328): the
    payload's "model" is "hscnet" and its config's model section has no "family" key."""
    full = config.to_dict()
    full["model"] = model.config.to_dict()
    payload = {"format_version": 1, "model": "hscnet", "config": full, "vocab": vocab.to_dict()}
    state = {"model." + k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "higround": payload}, path)


def test_a_checkpoint_from_before_families_loads_and_grounds_identically(
    tmp_path: Path, tiny_model: list[str]
) -> None:
    config, model, vocab, batch = _tiny(tiny_model)
    old = tmp_path / "old.ckpt"
    _old_layout_checkpoint(old, config, model, vocab)
    assert "family" not in torch.load(old, weights_only=True)["higround"]["config"]["model"]
    loaded = load_checkpoint(old)
    assert loaded.family is HSCNET_FAMILY and loaded.model_config == model.config
    rebuilt = loaded.build_model()
    with torch.no_grad():
        expected, got = model(batch), rebuilt(batch)
    for name in ("spans", "sentence_spans", "paragraph_span", "word_spans"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=0)

    new = tmp_path / "new.ckpt"
    save_checkpoint(new, model, config, vocab)
    features = np.random.default_rng(1).standard_normal((37, 12)).astype(np.float32)
    sentences = ["The man opens the fridge.", "He cuts it."]
    assert Grounder.from_checkpoint(old).ground(features, sentences, 50.0) == Grounder.from_checkpoint(
        new
    ).ground(features, sentences, 50.0)


# --- a fake family through the whole engine ----------------------------------------------------------


def test_a_fake_family_trains_and_predicts_through_the_engine(
    tmp_path: Path, shared_data: Path, tacos_features: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.FAMILIES, "fake", FAKE_FAMILY)
    recipe = read_yaml(CONFIGS / "tacos.yaml")
    recipe.pop("model")
    overrides = [
        f"data.root={shared_data / 'tacos'}",
        f"data.features={tacos_features}",
        "data.train_split=test",
        "data.val_split=test",
        "data.limit=4",
        "data.batch_size=2",
        "data.num_workers=0",
        "model.family=fake",
        "model.num_clips=16",
        "model.proposals=3",
        "model.loss_weights.score_size=0.5",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output_dir={tmp_path}",
        "name=fake",
    ]
    config = Config.from_dict(merge(recipe, parse_overrides(overrides)))
    assert config.model == {
        "family": "fake",
        "video_dim": None,
        "word_dim": None,
        "num_clips": 16,
        "hidden_dim": 8,
        "proposals": 3,
        "loss_weights": {"score_size": 0.5},
    }
    with pytest.raises(ConfigError, match=r"unknown key 'model\.hidden_size'"):
        Config.from_dict(merge(recipe, parse_overrides([*overrides, "model.hidden_size=4"])))
    with pytest.raises(ConfigError, match="proposals must be >= 1"):
        Config.from_dict(merge(recipe, parse_overrides([*overrides, "model.proposals=0"])))

    result = fit(config)
    assert result.best_checkpoint is not None and result.best_score is not None
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["model"]["family"] == "fake"
    metrics = next((result.run_dir / "csv").glob("version_*/metrics.csv")).read_text().splitlines()[0]
    assert {"train/loss", "train/best_l1", "train/score_size", "val/mIoU"} <= set(metrics.split(","))

    loaded = load_checkpoint(result.best_checkpoint)
    assert loaded.family is FAKE_FAMILY and isinstance(loaded.model_config, FakeConfig)
    assert loaded.model_config.video_dim == 24 and loaded.model_config.proposals == 3
    assert torch.load(result.best_checkpoint, weights_only=True)[CHECKPOINT_KEY]["model"] == "fake"
    run = open_checkpoint(result.best_checkpoint, device="cpu")
    records = run.records("test")
    assert len(records) == sum(len(p.sentences) for p in run.data.paragraphs("test"))
    for record in records:
        assert len(record.spans) == 3 and record.scores is not None and len(record.scores) == 3
        assert list(record.scores) == sorted(record.scores, reverse=True)
        assert record.sentence_span is None and record.paragraph_span is None and record.word_spans is None
    duration = {p.video_id: p.duration for p in run.data.paragraphs("test")}
    assert all(0 <= s <= e <= duration[r.video_id] + 1e-9 for r in records for s, e in r.spans)

    features = np.random.default_rng(1).standard_normal((30, 24)).astype(np.float32)
    out = Grounder.from_checkpoint(result.weights or result.best_checkpoint).ground(
        features, ["The person takes out a knife.", "She slices the carrot."], 60.0
    )
    assert len(out.spans) == 2 and out.sentence_spans is None and out.paragraph_span is None
    assert json.loads((result.run_dir / "model.json").read_text())["model"] == "fake"
