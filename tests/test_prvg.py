"""PRVG (models/prvg, losses/prvg.py): the loss terms on hand-computed cases, the parameter count at
upstream's shapes, padding invariance of a paragraph alone and in a padded batch, gradients, an
overfit of real ActivityNet paragraphs, a checkpoint round trip through the engine, and `higround
train / evaluate / predict` with the ActivityNet recipe on features in the C3D release layout."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from higround.cli.main import main
from higround.data.batch import ParagraphBatch
from higround.data.batching import ParagraphItem, collate_paragraphs
from higround.data.dataset import PARAGRAPH, make_item
from higround.data.features import write_hdf5_store
from higround.data.readers import load_dataset
from higround.data.schema import Paragraph
from higround.engine import fit
from higround.engine.config import Config, merge, parse_overrides, read_yaml
from higround.engine.evaluation import open_checkpoint
from higround.errors import ConfigError
from higround.losses.prvg import (
    ATTENTION_EPS,
    PRVGLoss,
    attention_loss,
    boundary_iou,
    clips_inside,
    iou_loss,
)
from higround.losses.span import l1_loss
from higround.metrics import read_predictions, temporal_iou
from higround.models import count_parameters, registry
from higround.models.prvg import PRVG, PRVGConfig, PRVGOutput
from higround.models.prvg.encoders import sentence_words
from higround.models.prvg.family import PRVG_FAMILY, predictions
from higround.models.prvg.model import reset_transformer_parameters
from higround.text.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "prvg" / "activitynet_captions.yaml"
LIMIT = 4  # ActivityNet val_2 videos (= paragraphs) used by the engine tests
# A model small enough for a CPU test; the rest of the recipe (layers, heads' split, losses) is kept.
TINY = [
    "model.num_clips=16",
    "model.hidden_dim=16",
    "model.num_heads=2",
    "model.ffn_dim=32",
    "model.lstm_layers=1",
]


def _config(**changes: object) -> PRVGConfig:
    values: dict[str, object] = {
        "video_dim": 12,
        "word_dim": 10,
        "num_clips": 16,
        "hidden_dim": 16,
        "num_heads": 2,
        "ffn_dim": 32,
        "lstm_layers": 2,
    }
    return PRVGConfig.from_dict({**values, **changes})


def _val_2(shared_data: Path) -> list[Paragraph]:
    """The paragraphs of the real ActivityNet-Captions val_2 file."""
    return load_dataset("activitynet_captions", shared_data / "activitynet_captions", "val_2").paragraphs()


@pytest.fixture(scope="module")
def paragraphs(shared_data: Path) -> list[Paragraph]:
    """The first 8 paragraphs of the real ActivityNet-Captions val_2 file (28 sentences, 3 to 6 each)."""
    return _val_2(shared_data)[:8]


def _items(
    rows: list[Paragraph], clips: list[int], dim: int, seed: int = 0
) -> tuple[list[ParagraphItem], Vocabulary]:
    """Items of ``rows`` with random features resampled to ``clips[i]`` clips, and their vocabulary."""
    vocab = Vocabulary.build([s.text for r in rows for s in r.sentences])
    rng = np.random.default_rng(seed)
    items = [make_item(r, rng.standard_normal((40, dim)), vocab, n) for r, n in zip(rows, clips, strict=True)]
    return items, vocab


def _batch_of(spans: list[list[tuple[float, float]]], clips: list[int]) -> ParagraphBatch:
    """A batch whose only meaningful fields are the spans, the sentence mask and the clip mask."""
    items = [
        ParagraphItem(
            video=torch.zeros(n, 3),
            words=torch.full((len(s),), 2),
            sentence_length=torch.ones(len(s), dtype=torch.long),
            spans=torch.tensor(s),
            duration=10.0,
            video_id=f"v{b}",
            paragraph_index=0,
            sentence_index=torch.arange(len(s)),
        )
        for b, (s, n) in enumerate(zip(spans, clips, strict=True))
    ]
    return collate_paragraphs(items)


# --- the loss terms on hand-computed cases --------------------------------------------------------


def test_the_attention_loss_is_minus_log2_of_the_mass_on_the_clips_inside() -> None:
    # 4 real clips start at 0, .25, .5, .75: [0.25, 0.5] holds clips 1 and 2 (both ends inclusive).
    four = torch.ones(1, 4, dtype=torch.bool)
    inside = clips_inside(torch.tensor([[[0.25, 0.5]]]), four)
    assert inside.tolist() == [[[False, True, True, False]]]
    uniform = torch.full((1, 1, 4), 0.25)
    assert float(attention_loss(uniform, inside, torch.tensor([[True]]))) == pytest.approx(1.0)  # -log2 0.5
    # Two sentences (masses 0.5 and 0.25 -> 1 and 2) average; a padded third never counts.
    spans = torch.tensor([[[0.25, 0.5], [0.0, 0.1], [0.0, 1.0]]])
    inside = clips_inside(spans, four)
    assert inside[0, 1].tolist() == [True, False, False, False]
    loss = attention_loss(uniform.expand(1, 3, 4), inside, torch.tensor([[True, True, False]]))
    assert float(loss) == pytest.approx(1.5)
    # The same 4 real clips padded to 6: start times are k / 4 still, padded clips never inside.
    padded = torch.tensor([[True] * 4 + [False] * 2])
    assert clips_inside(torch.tensor([[[0.5, 1.0]]]), padded).tolist() == [
        [[False, False, True, True, False, False]]
    ]
    # A span between two clip starts holds no clip: the constant -log2(1e-10), as upstream.
    empty = clips_inside(torch.tensor([[[0.3, 0.45]]]), four)
    assert not bool(empty.any())
    constant = attention_loss(uniform, empty, torch.tensor([[True]]))
    assert float(constant) == pytest.approx(-math.log2(ATTENTION_EPS), rel=1e-6)  # 33.22


def test_l1_and_iou_of_hand_computed_pairs() -> None:
    mask = torch.tensor([[True]])
    pred, target = torch.tensor([[[0.2, 0.6]]]), torch.tensor([[[0.3, 0.7]]])
    assert float(l1_loss(pred, target, mask)) == pytest.approx(0.2)  # 0.1 + 0.1
    # inter 0.3 over hull 0.5 = IoU 0.6.
    assert float(boundary_iou(pred, target)) == pytest.approx(0.6)
    assert float(iou_loss(pred, target, mask)) == pytest.approx(0.4)
    # A reversed pair overlaps nothing: IoU 0, loss 1; so does a disjoint span.
    assert float(boundary_iou(torch.tensor([0.6, 0.2]), torch.tensor([0.3, 0.7]))) == 0.0
    assert float(boundary_iou(torch.tensor([0.0, 0.1]), torch.tensor([0.5, 0.7]))) == 0.0
    # On ordered spans, upstream's inter / hull is the IoU the evaluator computes.
    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.rand(50, 2, generator=g).sort(dim=-1).values,
        torch.rand(50, 2, generator=g).sort(dim=-1).values,
    )
    np.testing.assert_allclose(boundary_iou(a, b).numpy(), temporal_iou(a.numpy(), b.numpy()), atol=1e-6)


def test_the_total_weighs_the_terms_by_the_official_weights() -> None:
    batch = _batch_of([[(0.25, 0.5), (0.0, 0.1)], [(0.3, 0.7)]], [4, 4])
    output = PRVGOutput(
        boundaries=torch.tensor([[[0.2, 0.6], [0.6, 0.2]], [[0.3, 0.7], [0.9, 0.9]]]),
        attention=torch.full((2, 2, 4), 0.25),
    )
    terms = PRVGLoss(_config())(output, batch)
    assert set(terms) == {"attention", "l1", "iou", "total"}
    # attention over clips starting at 0, .25, .5, .75: [.25, .5] holds clips 1-2 (mass .5), [0, .1]
    # clip 0 (.25), [.3, .7] clip 2 (.25) -> (1 + 2 + 2) / 3; the padded 4th sentence never counts.
    assert float(terms["attention"]) == pytest.approx(5 / 3)
    # l1 on the raw pairs: .05 + .1, .6 + .1 (reversed), 0 -> (0.15 + 0.7 + 0) / 3.
    assert float(terms["l1"]) == pytest.approx((0.15 + 0.7) / 3)
    # iou: [.2,.6] vs [.25,.5] = .25/.4; reversed pair 0; exact 1 -> losses .375, 1, 0.
    assert float(terms["iou"]) == pytest.approx((0.375 + 1.0) / 3)
    expected = terms["attention"] + 2 * terms["l1"] + 2 * terms["iou"]
    assert float(terms["total"]) == pytest.approx(float(expected))
    # A weight set in the recipe replaces the official one; the others keep theirs.
    weighted = PRVGLoss(_config(loss_weights={"l1": 5.0}))(output, batch)
    assert float(weighted["total"]) == pytest.approx(
        float(terms["attention"] + 5 * terms["l1"] + 2 * terms["iou"])
    )
    # Switches: no attention term; GIoU on the ordered span instead of the raw IoU.
    switched = PRVGLoss(_config(attention_loss=False, generalized_iou=True))(output, batch)
    assert set(switched) == {"l1", "giou", "total"}
    # giou: .625 ([.2,.6] hull .4 = union); [.2,.6] vs [0,.1]: -(.6 - .5) / .6; exact 1.
    giou = [0.625, -(0.6 - 0.5) / 0.6, 1.0]
    assert float(switched["giou"]) == pytest.approx(sum(1 - g for g in giou) / 3)


def test_the_config_refuses_bad_values_by_name() -> None:
    for values, message in [
        ({"num_heads": 3}, "not divisible by num_heads 3"),
        ({"hidden_dim": 7, "num_heads": 7}, "even hidden_dim"),
        ({"decoder_layers": 0}, "decoder_layers must be >= 1"),
        ({"encoder_layers": -1}, "encoder_layers must be >= 0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"loss_weights": {"tag": 1.0}}, r"unknown loss_weights \['tag'\]"),
        ({"loss_weights": {"l1": -1.0}}, "must be >= 0"),
        ({"queries": 8}, r"unknown key\(s\) \['queries'\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            PRVGConfig.from_dict(values)
    config = _config(loss_weights={"iou": 1.0})
    assert PRVGConfig.from_dict(config.to_dict()) == config
    assert config.weight("iou") == 1.0 and config.weight("l1") == 2.0 and config.weight("attention") == 1.0


# --- the model ------------------------------------------------------------------------------------


def test_the_parameter_count_at_upstreams_activitynet_shapes() -> None:
    """Upstream's model has 22,953,986 parameters with 50-d word vectors, of which 21,898,242 get
    gradients: the rest is the decoder's never-called self-attention (4 * (512^2 + 512)), its
    LayerNorm (2 * 512) and the unused query embedding (8 * 512), which are not built here."""
    unused = 4 * (512 * 512 + 512) + 2 * 512 + 8 * 512
    assert unused == 1_055_744
    for word_dim, expected in [(50, 21_898_242), (300, 21_898_242 + 4 * 512 * 250)]:
        model = PRVG(PRVGConfig(video_dim=500, word_dim=word_dim), torch.zeros(3, word_dim))
        assert count_parameters(model) == expected
        # Besides them only the frozen embedding (3 words here).
        assert count_parameters(model, trainable_only=False) == expected + 3 * word_dim
    assert 21_898_242 + unused == 22_953_986


def test_the_transformer_stacks_start_as_upstreams() -> None:
    torch.manual_seed(0)
    model = PRVG(_config(hidden_dim=64, num_heads=4, ffn_dim=128), torch.zeros(3, 10))
    reset_transformer_parameters(model.decoder)
    attention = model.decoder.layers[0].attention.requires_grad_(False)
    d = 64
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        linear = getattr(attention, name)
        assert bool((linear.bias == 0).all())
        # xavier: q, k, v as blocks of one (3d, d) matrix, the output projection as a (d, d) one.
        bound = math.sqrt(6 / (4 * d)) if name != "out_proj" else math.sqrt(6 / (2 * d))
        assert float(linear.weight.abs().max()) <= bound
        assert float(linear.weight.abs().max()) > 0.9 * bound
    ffn = model.clip_encoder.layers[0].ffn.net[0].requires_grad_(False)
    assert float(ffn.weight.abs().max()) <= math.sqrt(6 / (64 + 128))


def test_the_words_are_laid_out_one_real_sentence_per_row() -> None:
    # Paragraph 0: sentences of 2 and 1 words; paragraph 1: one of 3 words, then padding.
    items = [
        ParagraphItem(torch.zeros(2, 1), torch.tensor([11, 12, 13]), torch.tensor([2, 1]), torch.zeros(2, 2),
                      1.0, "a", 0, torch.arange(2)),
        ParagraphItem(torch.zeros(2, 1), torch.tensor([21, 22, 23]), torch.tensor([3]), torch.zeros(1, 2),
                      1.0, "b", 0, torch.arange(1)),
    ]  # fmt: skip
    batch = collate_paragraphs(items)
    embedded = batch.words[..., None].float()  # each word's vector is its id
    rows = sentence_words(
        embedded, batch.word_mask, batch.word_sentence, batch.word_position, batch.sentence_mask
    )
    assert rows[..., 0].tolist() == [[11, 12, 0], [13, 0, 0], [21, 22, 23]]


def test_a_paragraph_alone_and_in_a_padded_batch_grounds_the_same(paragraphs: list[Paragraph]) -> None:
    config = _config(encoder_layers=2, decoder_layers=2)
    rows = [paragraphs[i] for i in (6, 0, 7, 1)]  # 6, 3, 4 and 3 sentences
    items, vocab = _items(rows, [16, 9, 5, 12], config.video_dim)
    assert len({len(it.sentence_length) for it in items}) > 1  # sentences pad too
    torch.manual_seed(0)
    model = PRVG(config, torch.randn(len(vocab), config.word_dim)).eval()
    batch = collate_paragraphs(items)
    # Whatever the padding holds: large clip features, real word ids.
    noisy = dataclasses.replace(
        batch,
        video=batch.video.masked_fill(~batch.video_mask[..., None], 100.0),
        words=torch.where(batch.word_mask, batch.words, 3),
    )
    with torch.no_grad():
        full = model(batch)
        torch.testing.assert_close(model(noisy).boundaries, full.boundaries)
        for b, item in enumerate(items):
            one = model(collate_paragraphs([item]))
            clips, sentences = item.video.shape[0], len(item.sentence_length)
            torch.testing.assert_close(
                one.boundaries, full.boundaries[b : b + 1, :sentences], atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(
                one.attention, full.attention[b : b + 1, :sentences, :clips], atol=1e-6, rtol=1e-5
            )
            assert bool((full.attention[b, :, clips:] == 0).all())
            sums = full.attention[b, :sentences].sum(dim=-1)
            torch.testing.assert_close(sums, torch.ones(sentences))


def test_gradients_reach_every_trainable_parameter(paragraphs: list[Paragraph]) -> None:
    config = _config(encoder_layers=2, decoder_layers=2, fine_tune_word_vectors=True)
    items, vocab = _items(paragraphs[:4], [16, 11, 7, 13], config.video_dim)
    batch = collate_paragraphs(items)
    torch.manual_seed(0)
    model = PRVG(config, torch.randn(len(vocab), config.word_dim)).train()
    PRVGLoss(config)(model(batch), batch)["total"].backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert "embedding.weight" in trainable
    missing = [n for n, p in trainable.items() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []
    frozen = PRVG(_config(), torch.randn(9, 10))
    assert not frozen.embedding.weight.requires_grad  # upstream's fixed GloVe vectors


def test_predictions_are_one_ordered_span_per_sentence(paragraphs: list[Paragraph]) -> None:
    output = PRVGOutput(boundaries=torch.tensor([[[0.7, 0.2], [0.1, 0.4]]]), attention=torch.zeros(1, 2, 3))
    batch = _batch_of([[(0.1, 0.2), (0.3, 0.4)]], [3])
    answer = predictions(output, batch)
    assert answer.spans.shape == (1, 2, 1, 2) and answer.scores is None and answer.sentence_spans is None
    torch.testing.assert_close(answer.best, torch.tensor([[[0.2, 0.7], [0.1, 0.4]]]))
    assert registry.get_family("prvg") is PRVG_FAMILY and PRVG_FAMILY.unit == PARAGRAPH
    items, _ = _items(paragraphs[:1], [16], 13)
    model = PRVG(_config(), torch.randn(200, 10))
    with pytest.raises(ConfigError, match="clip features have 13 channels"):
        model(collate_paragraphs(items))


def test_overfits_a_batch_of_real_activitynet_paragraphs(paragraphs: list[Paragraph]) -> None:
    """8 real ActivityNet val_2 paragraphs (28 sentences) with random 16-d features: mIoU 0.93
    after 150 full-batch Adam steps (measured; the bound leaves room for other kernels' rounding)."""
    config = _config(
        video_dim=16, word_dim=16, hidden_dim=32, num_heads=4, ffn_dim=64, lstm_layers=1, dropout=0.0
    )
    items, vocab = _items(paragraphs, [16] * 8, 16)
    batch = collate_paragraphs(items)
    torch.manual_seed(0)
    model = PRVG(config, torch.randn(len(vocab), 16))
    loss = PRVGLoss(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        total = loss(model(batch), batch)["total"]
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        spans = predictions(model(batch), batch).best
    mask = batch.sentence_mask
    miou = float(temporal_iou(spans[mask].numpy(), batch.spans[mask].numpy()).mean())
    assert miou > 0.9, miou


# --- through the engine and the commands ------------------------------------------------------------


@pytest.fixture(scope="module")
def activitynet_c3d(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Random (T, 500) features of the first LIMIT ActivityNet val_2 videos in the C3D release layout:
    one HDF5 file with video ``<vid>``'s clips at ``<vid>/c3d_features``."""
    rng = np.random.default_rng(0)
    arrays = {
        p.video_id: rng.standard_normal((int(rng.integers(10, 30)), 500)) for p in _val_2(shared_data)[:LIMIT]
    }
    path = tmp_path_factory.mktemp("anet") / "sub_activitynet_v1-3.c3d.hdf5"
    write_hdf5_store(path, arrays, key="{video_id}/c3d_features")
    return path


def _overrides(shared_data: Path, features: Path, out: Path, epochs: int) -> list[str]:
    return [
        f"data.root={shared_data / 'activitynet_captions'}",
        f"data.features={features}",
        *(f"data.{s}_split=val_2" for s in ("train", "val", "test")),
        f"data.limit={LIMIT}",
        "data.batch_size=2",
        "data.num_workers=0",
        *TINY,
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1",
        f"output_dir={out}",
    ]


def test_a_checkpoint_round_trips_its_predictions(
    tmp_path: Path, shared_data: Path, activitynet_c3d: Path
) -> None:
    recipe = read_yaml(RECIPE)
    config = Config.from_dict(
        merge(recipe, parse_overrides(_overrides(shared_data, activitynet_c3d, tmp_path, 2)))
    )
    assert config.family is PRVG_FAMILY and config.unit == PARAGRAPH
    result = fit(config)
    assert result.best_checkpoint is not None and result.weights is not None and result.best_score is not None
    run = open_checkpoint(result.best_checkpoint, device="cpu", limit=LIMIT)
    assert isinstance(run.model, PRVG) and run.model.config.num_clips == 16
    records = run.records("val_2")
    rows = run.data.paragraphs("val_2")
    assert [r.key for r in records] == [s.key for p in rows for s in p.sentences]
    # The loaded weights predict what the training run validated: the same mIoU (val = test split).
    truth = {s.key: s.span for p in rows for s in p.sentences}
    pred = np.array([r.spans[0] for r in records])
    gt = np.array([truth[r.key] for r in records])
    assert temporal_iou(pred, gt).mean() == pytest.approx(result.best_score, abs=1e-6)
    again = open_checkpoint(result.weights, device="cpu", limit=LIMIT).records("val_2")
    assert [r.spans for r in again] == [r.spans for r in records]


def test_train_evaluate_and_predict_with_the_activitynet_recipe(
    tmp_path: Path, shared_data: Path, activitynet_c3d: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["train", "--config", str(RECIPE), *_overrides(shared_data, activitynet_c3d, tmp_path, 1)]) == 0
    )
    run = tmp_path / "prvg_activitynet_captions"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.ckpt",
        "epoch=000.ckpt",
        "last.ckpt",
    ]
    capsys.readouterr()
    metrics_path = tmp_path / "metrics.json"
    evaluate = ["evaluate", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), "--split", "val_2"]
    assert main([*evaluate, "--limit", str(LIMIT), "--device", "cpu", "--json", str(metrics_path)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(metrics_path.read_text())
    rows = _val_2(shared_data)[:LIMIT]
    count = sum(len(p.sentences) for p in rows)
    assert result["sentences"] == count and result["thresholds"] == [0.3, 0.5, 0.7]
    assert set(result["metrics"]) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    assert f"{100 * result['metrics']['mIoU']:8.2f}" in printed

    out = tmp_path / "predictions.json"
    predict = [
        "predict",
        "--checkpoint",
        str(run / "model.safetensors"),
        "--split",
        "val_2",
        "--out",
        str(out),
    ]
    assert main([*predict, "--limit", str(LIMIT), "--device", "cpu"]) == 0
    written = read_predictions(out)
    assert len(written) == count and (written.dataset, written.split) == ("activitynet_captions", "val_2")
    duration = {p.video_id: p.duration for p in rows}
    for record in written.records:
        ((start, end),) = record.spans  # one regressed span per sentence
        assert 0.0 <= start <= end <= duration[record.video_id] + 1e-6
        assert record.scores is None and record.word_spans is None
    assert [r.key for r in written.records] == [s.key for p in rows for s in p.sentences]
