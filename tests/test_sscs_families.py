"""Sscs attached to 2D-TAN and LGI (issue 12): the ``sscs`` config section and its lambdas, the
training-only contract (eval predictions bit-identical with the branch on or off, the branch's
parameters unused at inference), gradients into the base model through the Sscs terms alone, every
construction x function (2D-TAN) and supervision (LGI) training, padded rows, the recipes, and
``higround train / evaluate / predict`` with the ``*_sscs.yaml`` recipes (checkpoint round trip)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from higround.cli.main import main
from higround.data.batch import ParagraphBatch
from higround.data.batching import collate_paragraphs
from higround.data.dataset import make_item, sentence_view
from higround.data.features import write_hdf5_store
from higround.data.readers import load_dataset
from higround.data.schema import Paragraph
from higround.engine.config import Config, load_config, read_yaml
from higround.engine.evaluation import open_checkpoint
from higround.errors import ConfigError
from higround.losses.sscs import AGGREGATES, SUPPORTS
from higround.metrics import read_predictions
from higround.models.lgi import LOSS_TERMS as LGI_TERMS
from higround.models.registry import get_family
from higround.models.sscs import LOSS_TERMS, SscsBranch, SscsConfig
from higround.models.tan2d import LOSS_TERMS as TAN2D_TERMS
from higround.text.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
FAMILIES = ("tan2d", "lgi")
DIM = 12  # clip feature size of the tests' features
LIMIT = 6  # Charades-STA test videos used by the command-line tests
# A branch as small as the tiny models (the defaults are 512 wide).
SMALL_SSCS: dict[str, Any] = {"dim": 8, "decoder_hidden": 8, "gt_encoder_heads": 2, "gt_encoder_ffn_dim": 16}
# The base layers before the taps F and G: the only base parameters the Sscs terms can reach.
UPSTREAM = {
    "tan2d": ("embedding.", "frame_pool.", "fusion.lstm."),
    "lgi": ("embedding.", "video_encoder.", "query_encoder."),
}
# What each family's loss weighs besides the Sscs terms (all 0: the Sscs terms alone).
BASE_TERMS = {"tan2d": ("bce",), "lgi": ("boundary", "tag", "dqa")}
FAMILY_TERMS = {"tan2d": TAN2D_TERMS, "lgi": LGI_TERMS}


def tiny_config(family: str, sscs: dict[str, Any] | None = None, **changes: Any) -> Any:
    """A model of ``family`` that runs in milliseconds, with the given Sscs section."""
    if family == "tan2d":
        values: dict[str, Any] = dict(
            video_dim=DIM, word_dim=8, num_clips=16, pool_stride=1, hidden_dim=16, text_hidden_dim=16,
            lstm_layers=1, map_layers=1, map_kernel=3,
        )  # fmt: skip
    else:
        values = dict(
            video_dim=DIM, word_dim=8, num_clips=16, hidden_dim=16, lstm_hidden=8, lstm_layers=1,
            attention_dim=8, conv_kernel=3, nonlocal_blocks=1, nonlocal_heads=2, regression_dim=16,
            regression_activation="sigmoid",
        )  # fmt: skip
    return get_family(family).config_class.from_dict({**values, "sscs": sscs, **changes})


def build(family: str, config: Any, vocab: Vocabulary, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    vectors = torch.randn(len(vocab), config.word_dim, generator=torch.Generator().manual_seed(1))
    return get_family(family).build_model(config, vectors)


@pytest.fixture(scope="module")
def charades_test(shared_data: Path) -> list[Paragraph]:
    """The real Charades-STA test paragraphs (one per video)."""
    return load_dataset("charades_sta", shared_data / "charades_sta", "test").paragraphs()


@pytest.fixture(scope="module")
def vocab(charades_test: list[Paragraph]) -> Vocabulary:
    return Vocabulary.build(s.text for p in charades_test for s in p.sentences)


def sentence_batch(rows: list[Paragraph], vocab: Vocabulary, family: str) -> ParagraphBatch:
    """One row per sentence with random features fixed per video; LGI's videos have 9-16 clips (padded)."""
    clips = [16] * len(rows) if family == "tan2d" else [16, 12, 9, 16, 14, 11, 16, 10, 13, 15][: len(rows)]
    features = {
        r.video_id: np.random.default_rng(int.from_bytes(r.video_id.encode(), "little") % 2**32)
        .standard_normal((40, DIM))
        .astype(np.float32)
        for r in rows
    }
    return collate_paragraphs(
        [make_item(r, features[r.video_id], vocab, n) for r, n in zip(rows, clips, strict=True)]
    )


@pytest.fixture(scope="module")
def rows(charades_test: list[Paragraph]) -> list[Paragraph]:
    """The first 8 sentences: 4 videos, so rows of a batch share their video."""
    first = sentence_view(charades_test)[:8]
    assert len({r.video_id for r in first}) == 4
    return first


def base_fields(output: Any) -> dict[str, Any]:
    """Every field of a model output but the Sscs terms."""
    return {f.name: getattr(output, f.name) for f in dataclasses.fields(output) if f.name != "sscs"}


def assert_identical(a: Any, b: Any) -> None:
    for name, value in base_fields(a).items():
        other = base_fields(b)[name]
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, other), name
        else:
            assert value == other, name


# --- the config section ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_the_config_takes_an_sscs_section_and_its_lambdas(family: str, vocab: Vocabulary) -> None:
    config_class = get_family(family).config_class
    plain = config_class()
    assert plain.sscs is None and plain.sscs_config is None
    assert FAMILY_TERMS[family] == (*BASE_TERMS[family], *LOSS_TERMS)
    # {} is the paper's default branch, completed with every key; to_dict / from_dict round trip.
    config = config_class.from_dict({"sscs": {}, "loss_weights": {"sscs_contrast": 0.1, "sscs_caption": 0.2}})
    assert config.sscs == SscsConfig().to_dict() and config.sscs_config == SscsConfig()
    assert config_class.from_dict(config.to_dict()) == config
    partial = config_class.from_dict({"sscs": {"contrast": "gtc", "tau": 1}})
    assert partial.sscs_config == SscsConfig(contrast="gtc", tau=1.0)
    for sscs, message in [
        ({"contrast": "both"}, r"sscs config: contrast must be one of \('none', 'gtc', 'ss'\), got 'both'"),
        ({"tau": "warm"}, "sscs config: tau must be float, got 'warm'"),
        ({"dim": 8.5}, "sscs config: dim must be int, got 8.5"),
        ({"normalize": 1}, "sscs config: normalize must be bool, got 1"),
        ({"lambda": 0.1}, r"sscs config: unknown key\(s\) \['lambda'\]"),
        (7, "sscs config: expected a mapping, got int"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config_class.from_dict({"sscs": sscs})
    with pytest.raises(ConfigError, match=r"unknown loss_weights \['sscs'\]"):
        config_class.from_dict({"loss_weights": {"sscs": 1.0}})
    # Without the section the model has no branch: its state dict is the plain family's, so every
    # checkpoint written before Sscs loads strictly.
    model = build(family, tiny_config(family), vocab)
    assert model.sscs is None and not any(k.startswith("sscs.") for k in model.state_dict())
    with_branch = build(family, tiny_config(family, SMALL_SSCS), vocab)
    assert isinstance(with_branch.sscs, SscsBranch)


def test_the_command_line_switches_the_branch_by_override() -> None:
    recipe = CONFIGS / "tan2d" / "charades_sta_sscs.yaml"
    gtc = load_config(recipe, ["model.sscs.contrast=gtc", "model.sscs.tau=1e-2"]).model_config(word_dim=300)
    assert gtc.sscs_config == SscsConfig(contrast="gtc", tau=0.01)
    # model.sscs=null is the base recipe, lambdas and all (a weight of an absent term weighs nothing).
    off = load_config(recipe, ["model.sscs=null"]).model_config(word_dim=300)
    base = load_config(CONFIGS / "tan2d" / "charades_sta.yaml").model_config(word_dim=300)
    assert dataclasses.replace(off, loss_weights={}) == base
    # Any base recipe gains the branch by one override.
    fc = load_config(CONFIGS / "lgi" / "charades_sta.yaml", ["model.sscs.aggregate=fc"])
    assert fc.model_config(word_dim=300).sscs_config == SscsConfig(aggregate="fc")
    with pytest.raises(ConfigError, match=r"config: model\.sscs must be"):
        load_config(recipe, ["model.sscs=yes"])


SSCS_RECIPES = [
    ("tan2d", "charades_sta", 0.1),
    ("tan2d", "charades_sta_i3d", 0.1),
    ("tan2d", "tacos", 0.001),
    ("tan2d", "activitynet_captions", 0.1),
    ("tan2d", "synthetic", 0.1),
    ("lgi", "charades_sta", 0.1),
    ("lgi", "activitynet_captions", 0.1),
    ("lgi", "synthetic", 0.1),
]


@pytest.mark.parametrize(
    ("family", "dataset", "lam"), SSCS_RECIPES, ids=[f"{f}-{d}" for f, d, _ in SSCS_RECIPES]
)
def test_every_sscs_recipe_adds_only_the_branch_and_its_lambdas(
    family: str, dataset: str, lam: float
) -> None:
    config = Config.from_dict(read_yaml(CONFIGS / family / f"{dataset}_sscs.yaml"))
    base = Config.from_dict(read_yaml(CONFIGS / family / f"{dataset}.yaml"))
    assert config.name == f"{base.name}_sscs"
    ours, theirs = config.to_dict(), base.to_dict()
    for section in (ours, theirs):
        section.pop("name")
    model, base_model = ours.pop("model"), theirs.pop("model")
    assert ours == theirs  # data, text, optim, trainer, eval: the base recipe's
    assert model.pop("loss_weights") == {"sscs_contrast": lam, "sscs_caption": lam}
    assert base_model.pop("loss_weights") == {}
    sscs = model.pop("sscs")
    assert base_model.pop("sscs") is None
    assert model == base_model  # the model itself: the base recipe's
    paper = SscsConfig(contrast="ss", caption="ss", support="video", aggregate="ca", tau=0.1)
    if dataset == "synthetic":  # a branch as wide as the 64-wide procedural models
        paper = dataclasses.replace(
            paper, dim=64, decoder_hidden=64, gt_encoder_heads=4, gt_encoder_ffn_dim=256
        )
    assert SscsConfig.from_dict(sscs) == paper


def test_lgi_has_no_tacos_recipe() -> None:
    assert not list((CONFIGS / "lgi").glob("tacos*.yaml"))


# --- the training-only contract -------------------------------------------------------------------


def train_steps(
    family: str, model: nn.Module, batch: ParagraphBatch, steps: int, lr: float = 1e-2
) -> list[dict[str, float]]:
    """``steps`` Adam steps of the family's loss on ``batch``; the terms of every step."""
    loss = get_family(family).build_loss(model.config)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    history = []
    for _ in range(steps):
        terms = loss(model(batch), batch)
        optimiser.zero_grad()
        terms["total"].backward()
        optimiser.step()
        history.append({k: float(v.detach()) for k, v in terms.items()})
    return history


SETTINGS = [
    {},  # the paper's: V-SS + CA, both SS objectives
    {"contrast": "gtc", "caption": "gtc", "same_video_negatives": "mask"},
    {"support": "gt", "aggregate": "fc"},
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("setting", SETTINGS, ids=["ss-ca", "gtc-mask", "gt-fc"])
def test_eval_predictions_are_bit_identical_with_the_branch_on_or_off(
    family: str, setting: dict[str, Any], rows: list[Paragraph], vocab: Vocabulary
) -> None:
    batch = sentence_batch(rows, vocab, family)
    on = build(family, tiny_config(family, {**SMALL_SSCS, **setting}), vocab)
    off = build(family, tiny_config(family), vocab)
    # The branch is built last: with the same seed the base layers start from the same weights.
    base = {k: v.clone() for k, v in on.state_dict().items() if not k.startswith("sscs.")}
    assert base.keys() == off.state_dict().keys()
    assert all(torch.equal(v, off.state_dict()[k]) for k, v in base.items())
    # Train the model with the branch (its terms move the base weights), then give its base weights
    # (batch-norm statistics included) to the model without it.
    history = train_steps(family, on, batch, 3)
    assert all(set(LOSS_TERMS) <= set(step) for step in history)
    trained = {k: v for k, v in on.state_dict().items() if not k.startswith("sscs.")}
    assert not all(torch.equal(v, base[k]) for k, v in trained.items())
    off.load_state_dict(trained, strict=True)
    on.eval()
    off.eval()
    family_ = get_family(family)
    with torch.no_grad():
        with_branch, without = on(batch), off(batch)
        assert with_branch.sscs == {} and without.sscs == {}
        assert_identical(with_branch, without)
        a, b = family_.predictions(with_branch, batch), family_.predictions(without, batch)
        assert torch.equal(a.spans, b.spans)
        assert (a.scores is None and b.scores is None) or torch.equal(a.scores, b.scores)
        # The branch's parameters are not on the inference path: NaN weights change nothing.
        assert on.sscs is not None
        for p in on.sscs.parameters():
            p.fill_(float("nan"))
        assert_identical(on(batch), without)
    # Eval mode weighs no Sscs term: the validation loss is the base loss.
    with torch.no_grad():
        terms = family_.build_loss(on.config)(on(batch), batch)
    assert set(terms) == {*BASE_TERMS[family], "total"} and math.isfinite(float(terms["total"]))


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_the_base_model_through_the_sscs_terms_alone(
    family: str, rows: list[Paragraph], vocab: Vocabulary
) -> None:
    weights = {**dict.fromkeys(BASE_TERMS[family], 0.0), "sscs_contrast": 1.0, "sscs_caption": 1.0}
    config = tiny_config(family, SMALL_SSCS, fine_tune_word_vectors=True, loss_weights=weights)
    model = build(family, config, vocab).train()
    batch = sentence_batch(rows, vocab, family)
    terms = get_family(family).build_loss(config)(model(batch), batch)
    assert set(terms) == {*BASE_TERMS[family], *LOSS_TERMS, "total"}
    sscs_sum = terms["sscs_contrast"] + terms["sscs_caption"]
    assert float(terms["total"].detach()) == pytest.approx(float(sscs_sum.detach()))
    terms["total"].backward()
    reached, untouched = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert name == "sscs.decoder.embedding.weight"  # the decoder's frozen word vectors
            continue
        moved = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert p.grad is None or bool(torch.isfinite(p.grad).all()), name
        (reached if moved else untouched).append(name)
    upstream = UPSTREAM[family]
    assert "embedding.weight" in reached
    # Every parameter before the taps and every parameter of the branch gets a gradient; nothing
    # after the taps does (their only loss terms weigh 0).
    assert all(n.startswith((*upstream, "sscs.")) for n in reached), reached
    assert untouched and not any(n.startswith((*upstream, "sscs.")) for n in untouched), untouched
    assert any(n.startswith("sscs.") for n in reached) and any(n.startswith(upstream[1:]) for n in reached)


def test_the_loss_weighs_the_sscs_terms_by_their_lambdas(rows: list[Paragraph], vocab: Vocabulary) -> None:
    for family in FAMILIES:
        weights = {BASE_TERMS[family][0]: 2.0, "sscs_contrast": 0.1, "sscs_caption": 0.01}
        config = tiny_config(family, SMALL_SSCS, loss_weights=weights)
        model = build(family, config, vocab).train()
        batch = sentence_batch(rows, vocab, family)
        with torch.no_grad():  # training mode (the branch runs), no backward needed
            terms = get_family(family).build_loss(config)(model(batch), batch)
        expected = sum(config.weight(name) * float(value) for name, value in terms.items() if name != "total")
        assert float(terms["total"]) == pytest.approx(expected, rel=1e-6)
        assert float(terms["sscs_contrast"]) > 0 and float(terms["sscs_caption"]) > 0
        # A switched-off objective leaves its term out (its weight, still set, weighs nothing).
        caption_only = tiny_config(family, {**SMALL_SSCS, "contrast": "none"}, loss_weights=weights)
        model = build(family, caption_only, vocab).train()
        assert set(model(batch).sscs) == {"sscs_caption"}


def test_a_padded_row_changes_no_sscs_term(
    charades_test: list[Paragraph], rows: list[Paragraph], vocab: Vocabulary
) -> None:
    """A row whose sentence is padding, and the longer word padding it brings, leave the terms as
    they are without it (2D-TAN: no dropout, so training-mode outputs are deterministic)."""
    longest = max(sentence_view(charades_test)[:60], key=lambda r: len(r.sentences[0].text.split()))
    for setting in ({}, {"contrast": "gtc", "caption": "gtc", "same_video_negatives": "mask"}):
        model = build("tan2d", tiny_config("tan2d", {**SMALL_SSCS, **setting}), vocab).train()
        plain = sentence_batch(rows[:6], vocab, "tan2d")
        padded = sentence_batch([*rows[:3], longest, *rows[3:6]], vocab, "tan2d")
        assert padded.words.shape[1] > plain.words.shape[1]
        padded.sentence_mask[3] = False
        expected, got = model(plain).sscs, model(padded).sscs
        assert set(got) == set(LOSS_TERMS)
        for name in LOSS_TERMS:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


# --- short trainings ------------------------------------------------------------------------------


def assert_trains(family: str, sscs: dict[str, Any], batch: ParagraphBatch, vocab: Vocabulary) -> None:
    """Eight Adam steps on one batch: every term finite at every step, and the weighted Sscs terms
    lower at the end than at the start."""
    weights = {"sscs_contrast": 0.1, "sscs_caption": 0.1}
    config = tiny_config(family, {**SMALL_SSCS, **sscs}, loss_weights=weights)
    history = train_steps(family, build(family, config, vocab), batch, 8)
    terms = SscsConfig.from_dict(config.sscs).terms
    assert all(set(terms) <= set(step) and all(map(math.isfinite, step.values())) for step in history)

    def weighted(step: dict[str, float]) -> float:
        return sum(weights[t] * step[t] for t in terms)

    assert weighted(history[-1]) < weighted(history[0]), history


@pytest.mark.parametrize("aggregate", AGGREGATES)
@pytest.mark.parametrize("support", SUPPORTS)
def test_2dtan_trains_with_every_construction_and_function(
    support: str, aggregate: str, rows: list[Paragraph], vocab: Vocabulary
) -> None:
    """Table 2's grid: V-SS / GT-SS / Non-GT-SS x CA / SA / FC / Conv / MP / AP, both SS objectives."""
    assert_trains(
        "tan2d", {"support": support, "aggregate": aggregate}, sentence_batch(rows, vocab, "tan2d"), vocab
    )


SUPERVISIONS = [
    ("gtc", "none"),
    ("none", "gtc"),
    ("gtc", "gtc"),
    ("ss", "none"),
    ("none", "ss"),
    ("ss", "ss"),
]


@pytest.mark.parametrize(("contrast", "caption"), SUPERVISIONS, ids=[f"{a}-{b}" for a, b in SUPERVISIONS])
def test_lgi_trains_with_every_supervision(
    contrast: str, caption: str, rows: list[Paragraph], vocab: Vocabulary
) -> None:
    """Table 1's rows for LGI (videos of 9-16 clips: padded)."""
    assert_trains(
        "lgi", {"contrast": contrast, "caption": caption}, sentence_batch(rows, vocab, "lgi"), vocab
    )


# --- the engine and the commands ------------------------------------------------------------------

# The tiny models of tests/test_tan2d.py and tests/test_lgi.py, and a branch as small.
TINY = {
    "tan2d": [
        f"model.video_dim={DIM}", "model.num_clips=16", "model.pool_stride=1", "model.hidden_dim=8",
        "model.text_hidden_dim=8", "model.lstm_layers=1", "model.map_layers=1", "model.map_kernel=3",
    ],
    "lgi": [
        f"model.video_dim={DIM}", "model.num_clips=16", "model.hidden_dim=16", "model.lstm_hidden=8",
        "model.lstm_layers=1", "model.attention_dim=8", "model.conv_kernel=3", "model.nonlocal_blocks=1",
        "model.nonlocal_heads=2", "model.regression_dim=16",
    ],
}  # fmt: skip
TINY_SSCS = [f"model.sscs.{key}={value}" for key, value in SMALL_SSCS.items()]


@pytest.fixture(scope="module")
def released_features(
    tmp_path_factory: pytest.TempPathFactory, charades_test: list[Paragraph]
) -> dict[str, Path]:
    """Random 12-d features of the first LIMIT Charades-STA test videos in each family's released
    layout: 2D-TAN's ``vgg_rgb_features.hdf5`` (one ``(T, D)`` dataset per video id) and LGI's
    ``i3d_finetuned/<vid>.npy`` folder."""
    rng = np.random.default_rng(0)
    arrays = {
        p.video_id: rng.standard_normal((int(rng.integers(20, 60)), DIM)).astype(np.float32)
        for p in charades_test[:LIMIT]
    }
    root = tmp_path_factory.mktemp("charades")
    write_hdf5_store(root / "vgg_rgb_features.hdf5", arrays)
    folder = root / "i3d_finetuned"
    folder.mkdir()
    for video_id, array in arrays.items():
        np.save(folder / f"{video_id}.npy", array)
    return {"tan2d": root / "vgg_rgb_features.hdf5", "lgi": folder}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_charades_sscs_recipe_trains_evaluates_and_predicts(
    family: str,
    tmp_path: Path,
    shared_data: Path,
    released_features: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``higround train --config configs/<family>/charades_sta_sscs.yaml``: the Sscs terms are logged,
    the checkpoint (branch included) round trips, its predictions are those of the base weights
    alone, and ``evaluate --checkpoint`` / ``predict`` run on it."""
    root = shared_data / "charades_sta"
    args = [
        *("train", "--config", str(CONFIGS / family / "charades_sta_sscs.yaml")),
        f"data.root={root}",
        f"data.features={released_features[family]}",
        "data.train_split=test",
        f"data.limit={LIMIT}",
        "data.batch_size=8",
        "data.num_workers=0",
        *TINY[family],
        *TINY_SSCS,
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1",
        f"output_dir={tmp_path / 'runs'}",
    ]
    assert main(args) == 0
    run = tmp_path / "runs" / f"{family}_charades_sta_sscs"
    # 2D-TAN's recipe has no validation split (its last epoch's checkpoint), LGI's validates on test.
    checkpoint = run / "checkpoints" / ("last.ckpt" if family == "tan2d" else "best.ckpt")
    logged = list(csv.DictReader(next((run / "csv").glob("version_*/metrics.csv")).open()))
    for term in ("loss", *BASE_TERMS[family], *LOSS_TERMS):
        values = [float(r[f"train/{term}"]) for r in logged if r.get(f"train/{term}")]
        assert values and all(math.isfinite(v) and v > 0 for v in values), term

    # The checkpoint and the exported weights hold the branch and load into a model with it.
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert "model.sscs.psi.weight" in stored and "model.sscs.decoder.lstm.weight_hh_l0" in stored
    from_ckpt = open_checkpoint(checkpoint, device="cpu", limit=LIMIT)
    from_weights = open_checkpoint(run / "model.safetensors", device="cpu", limit=LIMIT)
    model = from_ckpt.model
    assert isinstance(model.sscs, SscsBranch) and model.config.sscs_config == SscsConfig(**SMALL_SSCS)
    for name, value in model.state_dict().items():
        assert torch.equal(value, stored[f"model.{name}"]), name
    records = from_ckpt.records("test")
    again = from_weights.records("test")
    assert [(r.key, r.spans, r.scores) for r in records] == [(r.key, r.spans, r.scores) for r in again]
    # The same base weights without the branch predict the same, bit for bit.
    plain = get_family(family).build_model(
        dataclasses.replace(model.config, sscs=None), model.embedding.weight
    )
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("sscs.")})
    plain.eval()
    model.eval()
    with torch.no_grad():
        for batch in from_ckpt.data.loader("test"):
            assert_identical(model(batch), plain(batch))

    capsys.readouterr()
    metrics_path = tmp_path / "metrics.json"
    evaluate = ["evaluate", "--checkpoint", str(checkpoint), "--split", "test", "--limit", str(LIMIT)]
    assert main([*evaluate, "--device", "cpu", "--json", str(metrics_path)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(metrics_path.read_text())["metrics"]
    if family == "tan2d":  # 5 ranked spans: R1 and R5 at 2D-TAN's Charades-STA columns
        assert set(metrics) == {"R1@0.5", "R1@0.7", "R5@0.5", "R5@0.7", "mIoU"} and "R5" in printed
    else:  # one regressed span: R1 only
        assert set(metrics) == {"R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    assert "R1" in printed and f"{100 * metrics['mIoU']:8.2f}" in printed

    out = tmp_path / "predictions.json"
    predict = [
        "predict",
        "--checkpoint",
        str(run / "model.safetensors"),
        "--split",
        "test",
        "--out",
        str(out),
    ]
    assert main([*predict, "--limit", str(LIMIT), "--device", "cpu"]) == 0
    written = read_predictions(out)
    assert [r.key for r in written.records] == [r.key for r in records]
    assert [r.spans for r in written.records] == [r.spans for r in records]
    assert all(len(r.spans) == (5 if family == "tan2d" else 1) for r in written.records)
