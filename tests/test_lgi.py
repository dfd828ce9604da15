"""LGI (models/lgi, losses/lgi.py): the losses on hand-computed cases (Sscs spec §7 item 9), padding
invariance, gradients, an overfit of real Charades-STA sentences, a checkpoint round trip through the
engine, and `higround train / evaluate / predict` with the Charades-STA recipe on features written
in LGI's released layout (one ``<vid>.npy`` per video)."""

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
from higround.data.dataset import SENTENCE, make_item, sentence_view
from higround.data.readers import load_dataset
from higround.data.schema import Paragraph
from higround.engine import fit
from higround.engine.config import Config, merge, parse_overrides, read_yaml
from higround.engine.evaluation import open_checkpoint
from higround.errors import ConfigError
from higround.losses.lgi import (
    LGILoss,
    boundary_loss,
    distinct_query_attention_loss,
    guided_clips,
    temporal_attention_guidance_loss,
)
from higround.metrics import read_predictions, temporal_iou
from higround.models import registry
from higround.models.lgi import LGI, LGIConfig
from higround.models.lgi.family import LGI_FAMILY, ordered_spans, predictions
from higround.models.lgi.interaction import MaskedBatchNorm1d
from higround.text.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "lgi" / "charades_sta.yaml"
LIMIT = 6  # Charades-STA test videos (= paragraphs) used by the engine tests
# A model small enough for a CPU test; the rest of the recipe (3 phrases, ReLU head, ...) is kept.
TINY = [
    "model.num_clips=16",
    "model.hidden_dim=16",
    "model.lstm_hidden=8",
    "model.lstm_layers=1",
    "model.attention_dim=8",
    "model.conv_kernel=3",
    "model.nonlocal_blocks=1",
    "model.nonlocal_heads=2",
    "model.regression_dim=16",
]


def _config(**changes: object) -> LGIConfig:
    values: dict[str, object] = {
        "video_dim": 12,
        "word_dim": 10,
        "num_clips": 16,
        "hidden_dim": 16,
        "lstm_hidden": 8,
        "attention_dim": 8,
        "conv_kernel": 3,
        "nonlocal_heads": 2,
        "regression_dim": 16,
        "regression_activation": "sigmoid",
    }
    return LGIConfig.from_dict({**values, **changes})


@pytest.fixture(scope="module")
def sentences(shared_data: Path) -> list[Paragraph]:
    """The first 8 sentences of the real Charades-STA test file, each a one-sentence sample."""
    return sentence_view(load_dataset("charades_sta", shared_data / "charades_sta", "test").paragraphs())[:8]


def _items_batch(
    rows: list[Paragraph], clips: list[int], dim: int, seed: int = 0
) -> tuple[list[ParagraphItem], Vocabulary]:
    """Items of ``rows`` with random features resampled to ``clips[i]`` clips, and their vocabulary."""
    vocab = Vocabulary.build([s.text for r in rows for s in r.sentences])
    rng = np.random.default_rng(seed)
    items = [make_item(r, rng.standard_normal((40, dim)), vocab, n) for r, n in zip(rows, clips, strict=True)]
    return items, vocab


# --- losses on hand-computed cases -----------------------------------------------------------------


def test_tag_of_uniform_attention_over_four_segments_is_ln_4() -> None:
    attention = torch.full((1, 4), 0.25)
    guided = torch.tensor([[False, True, True, False]])
    loss = temporal_attention_guidance_loss(attention, guided, torch.tensor([True]))
    assert float(loss) == pytest.approx(math.log(4), abs=1e-6)  # 1.38629
    # Rows average; a row whose sentence is padding never counts.
    peaked = torch.tensor([[0.0, 0.5, 0.5, 0.0]])
    both = temporal_attention_guidance_loss(
        torch.cat([attention, peaked]), guided.repeat(2, 1), torch.tensor([True, True])
    )
    assert float(both) == pytest.approx((math.log(4) + math.log(2)) / 2, abs=1e-6)
    alone = temporal_attention_guidance_loss(
        torch.cat([attention, peaked]), guided.repeat(2, 1), torch.tensor([True, False])
    )
    assert float(alone) == pytest.approx(math.log(4), abs=1e-6)


def test_guided_clips_follow_lgis_rounding_and_never_reach_padding() -> None:
    # T = 4 real clips: s = min(round(0.25 * 4), 3) = 1, e = max(round(0.5 * 4), s + 1) = 2.
    four = torch.ones(1, 4, dtype=torch.bool)
    assert guided_clips(torch.tensor([[0.25, 0.5]]), four).tolist() == [[False, True, True, False]]
    # A span shorter than a clip still guides two clips (e >= s + 1); round half to even.
    assert guided_clips(torch.tensor([[0.3, 0.3]]), four).tolist() == [[False, True, True, False]]
    assert guided_clips(torch.tensor([[0.125, 0.375]]), four).tolist() == [[True, True, True, False]]
    # The same 4 real clips padded to 6: the end at 1.0 gives e = 4, a padded clip, which never counts
    # (LGI's mask would mark it); the padding changes nothing.
    padded = torch.tensor([[True] * 4 + [False] * 2])
    assert guided_clips(torch.tensor([[0.5, 1.0]]), padded).tolist() == [
        [False, False, True, True, False, False]
    ]
    assert guided_clips(torch.tensor([[0.5, 1.0]]), four).tolist() == [[False, False, True, True]]


def test_dqa_of_identity_attention_with_lambda_0_3_is_0_98() -> None:
    eye = torch.eye(2)[None]
    assert float(distinct_query_attention_loss(eye, 0.3, torch.tensor([True]))) == pytest.approx(0.98)
    # Padded words carry attention 0: appending them leaves A A^T, hence the loss, unchanged.
    padded = torch.cat([eye, torch.zeros(1, 2, 3)], dim=2)
    assert float(distinct_query_attention_loss(padded, 0.3, torch.tensor([True]))) == pytest.approx(0.98)
    # Two phrases on the same word: A A^T = ones(2, 2) -> 2 * 0.7^2 + 2 * 1 = 2.98.
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert float(distinct_query_attention_loss(same, 0.3, torch.tensor([True]))) == pytest.approx(2.98)


def test_smooth_l1_of_half_against_zero_is_0_125() -> None:
    rows = torch.tensor([True])
    assert float(boundary_loss(torch.tensor([[0.5, 0.0]]), torch.zeros(1, 2), rows)) == pytest.approx(0.125)
    # Start and end add; past beta = 1 the loss is linear: 0.125 + (2 - 0.5) = 1.625.
    assert float(boundary_loss(torch.tensor([[0.5, 2.0]]), torch.zeros(1, 2), rows)) == pytest.approx(1.625)


def _output_batch(config: LGIConfig, rows: list[Paragraph]) -> tuple[LGI, ParagraphBatch]:
    items, vocab = _items_batch(rows, [16, 11, 7, 13][: len(rows)], config.video_dim)
    torch.manual_seed(0)
    return LGI(config, torch.randn(len(vocab), config.word_dim)), collate_paragraphs(items)


def test_the_loss_weighs_and_switches_its_terms(sentences: list[Paragraph]) -> None:
    config = _config(loss_weights={"tag": 0.5, "dqa": 2.0})
    model, batch = _output_batch(config, sentences[:4])
    with torch.no_grad():
        output = model(batch)
        terms = LGILoss(config)(output, batch)
    assert set(terms) == {"boundary", "tag", "dqa", "total"}
    expected = terms["boundary"] + 0.5 * terms["tag"] + 2.0 * terms["dqa"]
    assert float(terms["total"]) == pytest.approx(float(expected))
    spans = batch.spans[:, 0]
    assert float(terms["tag"]) == pytest.approx(
        float(
            temporal_attention_guidance_loss(
                output.temporal_attention, guided_clips(spans, batch.video_mask), batch.sentence_mask[:, 0]
            )
        )
    )
    off = dataclasses.replace(config, temporal_attention_guidance=False, distinct_query_attention=False)
    assert set(LGILoss(off)(output, batch)) == {"boundary", "total"}
    # One phrase: no SQAN, no phrase attention (LGI-SQAN.yml), and the DQA loss must be off.
    single = _config(num_phrases=1, distinct_query_attention=False)
    model, batch = _output_batch(single, sentences[:4])
    output = model(batch)
    assert output.phrase_attention is None and torch.equal(output.phrase_weights, torch.ones(4, 1))
    assert set(LGILoss(single)(output, batch)) == {"boundary", "tag", "total"}


def test_the_config_refuses_bad_values_by_name() -> None:
    for values, message in [
        ({"num_phrases": 1}, "distinct_query_attention needs num_phrases >= 2"),
        ({"conv_kernel": 4}, "conv_kernel must be odd"),
        ({"nonlocal_heads": 3}, "not divisible by nonlocal_heads 3"),
        ({"regression_activation": "tanh"}, "regression_activation must be one of"),
        ({"max_query_length": 0}, "max_query_length must be >= 1"),
        ({"video_dropout": 1.0}, r"video_dropout must be in \[0, 1\)"),
        ({"loss_weights": {"giou": 1.0}}, r"unknown loss_weights \['giou'\]"),
        ({"loss_weights": {"tag": -1.0}}, "must be >= 0"),
        ({"phrases": 3}, r"unknown key\(s\) \['phrases'\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            LGIConfig.from_dict(values)
    config = _config(max_query_length=10)
    assert LGIConfig.from_dict(config.to_dict()) == config


# --- the model ---------------------------------------------------------------------------------------


def test_padded_clips_and_words_never_change_the_span(sentences: list[Paragraph]) -> None:
    config = _config(max_query_length=5)
    rows = sentences[:4]
    items, vocab = _items_batch(rows, [16, 9, 5, 12], config.video_dim)
    assert len({len(it.words) for it in items}) > 1  # words pad too
    torch.manual_seed(0)
    model = LGI(config, torch.randn(len(vocab), config.word_dim)).eval()
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
            alone = collate_paragraphs([item])
            one = model(alone)
            clips, words = alone.video.shape[1], min(alone.words.shape[1], 5)
            torch.testing.assert_close(one.boundaries, full.boundaries[b : b + 1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(one.temporal_attention, full.temporal_attention[b : b + 1, :clips])
            assert bool((full.temporal_attention[b, clips:] == 0).all())
            assert full.phrase_attention is not None and one.phrase_attention is not None
            torch.testing.assert_close(
                one.phrase_attention[..., :words], full.phrase_attention[b : b + 1, :, :words]
            )
            assert bool((full.phrase_attention[b, :, words:] == 0).all())
        # Words past max_query_length are padding: other words there, or none, change nothing.
        long = next(b for b, it in enumerate(items) if len(it.words) > 5)
        alone = collate_paragraphs([items[long]])
        past = torch.arange(alone.words.shape[1]) >= 5
        other = dataclasses.replace(alone, words=torch.where(past, 2, alone.words))
        cut = dataclasses.replace(alone, words=alone.words[:, :5], word_mask=alone.word_mask[:, :5])
        reference = model(alone).boundaries
        torch.testing.assert_close(model(other).boundaries, reference)
        torch.testing.assert_close(model(cut).boundaries, reference, atol=1e-6, rtol=1e-6)


def test_masked_batch_norm_counts_real_clips_only() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    garbage = x.clone()
    garbage[1, :, 4:] = 1e3
    masked, plain = MaskedBatchNorm1d(3).train(), torch.nn.BatchNorm1d(3).train()
    out = masked(garbage, mask)
    # The plain batch norm over the 10 real positions only, laid out as one sequence.
    real = torch.cat([x[0], x[1, :, :4]], dim=1)[None]
    expected = plain(real)[0]
    torch.testing.assert_close(torch.cat([out[0], out[1, :, :4]], dim=1), expected)
    torch.testing.assert_close(masked.norm.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.norm.running_var, plain.running_var)
    masked.eval()
    plain.eval()
    torch.testing.assert_close(masked(x, mask), plain(x))


def test_gradients_reach_every_trainable_parameter(sentences: list[Paragraph]) -> None:
    config = _config(lstm_layers=2, nonlocal_blocks=2, res_blocks=2)
    model, batch = _output_batch(config, sentences[:4])
    model.train()
    LGILoss(config)(model(batch), batch)["total"].backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert "embedding.weight" in trainable  # the word vectors are fine-tuned
    missing = [n for n, p in trainable.items() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []
    frozen = LGI(dataclasses.replace(config, fine_tune_word_vectors=False), torch.randn(9, config.word_dim))
    assert not frozen.embedding.weight.requires_grad


def test_predictions_are_one_ordered_span_inside_the_video(sentences: list[Paragraph]) -> None:
    raw = torch.tensor([[0.7, 0.2], [-0.1, 1.3], [0.1, 0.4]])
    torch.testing.assert_close(ordered_spans(raw), torch.tensor([[0.2, 0.7], [0.0, 1.0], [0.1, 0.4]]))
    config = _config()
    model, batch = _output_batch(config, sentences[:4])
    answer = predictions(model(batch), batch)
    assert answer.spans.shape == (4, 1, 1, 2) and answer.scores is None and answer.sentence_spans is None
    # A paragraph batch (several sentences a row) is refused with one line.
    items, _ = _items_batch([Paragraph("v", 40.0, tuple(s.sentences[0] for s in sentences[:2]))], [16], 12)
    with pytest.raises(ConfigError, match="lgi grounds one sentence per row"):
        model(collate_paragraphs(items))


def test_overfits_a_batch_of_real_charades_sentences(sentences: list[Paragraph]) -> None:
    """8 real Charades-STA test queries with random 16-d features: mIoU 0.96 after 200 full-batch
    Adam steps (measured; the bound leaves room for other kernels' rounding)."""
    config = _config(
        video_dim=16, word_dim=16, hidden_dim=32, lstm_hidden=16, lstm_layers=1, attention_dim=16,
        regression_dim=32, nonlocal_blocks=1, video_dropout=0.0, lstm_dropout=0.0,
    )  # fmt: skip
    items, vocab = _items_batch(sentences, [16] * 8, 16)
    batch = collate_paragraphs(items)
    torch.manual_seed(0)
    model = LGI(config, torch.randn(len(vocab), 16))
    loss = LGILoss(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        total = loss(model(batch), batch)["total"]
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        spans = predictions(model(batch), batch).best[:, 0]
    miou = float(temporal_iou(spans.numpy(), batch.spans[:, 0].numpy()).mean())
    assert miou > 0.9, miou


# --- through the engine and the commands --------------------------------------------------------------


@pytest.fixture(scope="module")
def charades_npy(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Random (T, 1024) features of the first LIMIT Charades-STA test videos, in LGI's released layout:
    a folder ``i3d_finetuned/`` holding one ``<vid>.npy`` per video."""
    folder = tmp_path_factory.mktemp("charades") / "i3d_finetuned"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for paragraph in load_dataset("charades_sta", shared_data / "charades_sta", "test").paragraphs()[:LIMIT]:
        array = rng.standard_normal((int(rng.integers(10, 30)), 1024)).astype(np.float32)
        np.save(folder / f"{paragraph.video_id}.npy", array)
    return folder


def _overrides(shared_data: Path, features: Path, out: Path, epochs: int) -> list[str]:
    return [
        f"data.root={shared_data / 'charades_sta'}",
        f"data.features={features}",
        "data.train_split=test",
        f"data.limit={LIMIT}",
        "data.batch_size=8",
        "data.num_workers=0",
        *TINY,
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1",
        f"output_dir={out}",
    ]


def test_a_checkpoint_round_trips_its_predictions(
    tmp_path: Path, shared_data: Path, charades_npy: Path
) -> None:
    recipe = read_yaml(RECIPE)
    config = Config.from_dict(
        merge(recipe, parse_overrides(_overrides(shared_data, charades_npy, tmp_path, 2)))
    )
    assert config.family is LGI_FAMILY and config.unit == SENTENCE
    assert registry.get_family("lgi") is LGI_FAMILY
    with pytest.raises(ConfigError, match="grounds one sentence per sample"):
        Config.from_dict(merge(recipe, parse_overrides(["data.unit=paragraph"])))
    result = fit(config)
    assert result.best_checkpoint is not None and result.weights is not None and result.best_score is not None
    run = open_checkpoint(result.best_checkpoint, device="cpu", limit=LIMIT)
    assert isinstance(run.model, LGI) and run.model.config.max_query_length == 10
    records = run.records("test")
    paragraphs = run.data.paragraphs("test")
    assert [r.key for r in records] == [s.key for p in paragraphs for s in p.sentences]
    # The loaded weights predict what the training run validated: the same mIoU (val = test split).
    truth = {s.key: s.span for p in paragraphs for s in p.sentences}
    pred = np.array([r.spans[0] for r in records])
    gt = np.array([truth[r.key] for r in records])
    assert temporal_iou(pred, gt).mean() == pytest.approx(result.best_score, abs=1e-6)
    # The exported weights give the same spans.
    again = open_checkpoint(result.weights, device="cpu", limit=LIMIT).records("test")
    assert [r.spans for r in again] == [r.spans for r in records]


def test_train_evaluate_and_predict_with_the_charades_recipe(
    tmp_path: Path, shared_data: Path, charades_npy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--config", str(RECIPE), *_overrides(shared_data, charades_npy, tmp_path, 1)]) == 0
    run = tmp_path / "lgi_charades_sta"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.ckpt",
        "epoch=000.ckpt",
        "last.ckpt",
    ]
    capsys.readouterr()
    metrics_path = tmp_path / "metrics.json"
    evaluate = ["evaluate", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), "--split", "test"]
    assert main([*evaluate, "--limit", str(LIMIT), "--device", "cpu", "--json", str(metrics_path)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(metrics_path.read_text())
    paragraphs = load_dataset("charades_sta", shared_data / "charades_sta", "test").paragraphs()[:LIMIT]
    count = sum(len(p.sentences) for p in paragraphs)
    assert result["sentences"] == count and result["thresholds"] == [0.1, 0.3, 0.5, 0.7]
    assert set(result["metrics"]) == {"R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    assert f"{100 * result['metrics']['mIoU']:8.2f}" in printed and "R1" in printed

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
    assert len(written) == count and (written.dataset, written.split) == ("charades_sta", "test")
    duration = {p.video_id: p.duration for p in paragraphs}
    for record in written.records:
        ((start, end),) = record.spans  # one regressed span per sentence
        assert 0.0 <= start <= end <= duration[record.video_id] + 1e-6
        assert record.scores is None and record.word_spans is None
    assert [r.key for r in written.records] == [s.key for p in paragraphs for s in p.sentences]
