"""2D-TAN (model family ``tan2d``): the released map layout, the masked map convolutions, the rescaled
IoU loss, padding invariance, gradients, an overfit, the checkpoint round trip and the commands."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from higround.cli.main import main
from higround.data.batch import ParagraphBatch
from higround.data.batching import collate_paragraphs
from higround.data.dataset import make_item, sentence_view
from higround.data.features import write_hdf5_store
from higround.data.readers import load_dataset
from higround.data.schema import Paragraph
from higround.engine import fit
from higround.engine.config import Config, merge, parse_overrides, read_yaml
from higround.engine.evaluation import open_checkpoint
from higround.errors import ConfigError
from higround.losses.tan2d import Tan2DLoss, cell_iou, masked_bce, rescaled_targets
from higround.metrics import evaluate, read_predictions
from higround.models.registry import get_family
from higround.models.tan2d import Tan2D, Tan2DConfig, Tan2DOutput, cell_spans, sparse_layout, valid_cell_mask
from higround.models.tan2d.family import TAN2D_FAMILY, predictions, rank_cells
from higround.models.tan2d.map_conv import mask_weights
from higround.models.tan2d.temporal_map import SparseTemporalMap
from higround.text.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "tan2d" / "charades_sta.yaml"
DIM = 12  # clip feature size of the tests' features
TINY = [  # a model that trains in a second: 16 clips, a 16 x 16 map (the recipe's [16] scale)
    f"model.video_dim={DIM}",
    "model.num_clips=16",
    "model.pool_stride=1",
    "model.hidden_dim=8",
    "model.text_hidden_dim=8",
    "model.lstm_layers=1",
    "model.map_layers=1",
    "model.map_kernel=3",
]


def tiny_config(**overrides: object) -> Tan2DConfig:
    values: dict[str, object] = dict(
        video_dim=DIM,
        word_dim=8,
        num_clips=16,
        pool_stride=1,
        hidden_dim=16,
        text_hidden_dim=16,
        lstm_layers=2,
        map_layers=2,
        map_kernel=3,
    )
    values.update(overrides)
    return Tan2DConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def charades_test(shared_data: Path) -> list[Paragraph]:
    """The real Charades-STA test paragraphs (one per video)."""
    return load_dataset("charades_sta", shared_data / "charades_sta", "test").paragraphs()


def sentence_batch(
    paragraphs: list[Paragraph], vocab: Vocabulary, count: int, clips: int = 16, seed: int = 0
) -> ParagraphBatch:
    """The first ``count`` sentences of ``paragraphs``, one row each, with random features per video."""
    rows = sentence_view(paragraphs)[:count]
    rng = np.random.default_rng(seed)
    features = {r.video_id: rng.standard_normal((clips, DIM)).astype(np.float32) for r in rows}
    return collate_paragraphs([make_item(r, features[r.video_id], vocab, clips) for r in rows])


def sentence_vocab(paragraphs: list[Paragraph]) -> Vocabulary:
    return Vocabulary.build(s.text for p in paragraphs for s in p.sentences)


# --- the map ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "scales", "count"), [(16, [16], 136), (64, [16, 8, 8], 1104), (128, [16, 8, 8, 8], 2548)]
)
def test_the_released_layouts_have_the_released_valid_cell_counts(
    size: int, scales: list[int], count: int
) -> None:
    mask = valid_cell_mask(size, scales)
    assert int(mask.sum()) == sparse_layout(size, scales).count == count
    assert not mask.tril(-1).any()  # every cell has s <= e


def test_the_activitynet_map_follows_the_released_index_arithmetic() -> None:
    mask = valid_cell_mask(64, [16, 8, 8])
    assert not mask[1, 18] and mask[2, 19]
    s, e = torch.nonzero(mask, as_tuple=True)
    offset = e - s
    # Offsets 0-15 from every start, 17, 19, ..., 31 from even starts, 35, 39, ..., 63 from starts = 0 mod 4.
    expected = {(a, a + d) for a in range(64) for d in range(16) if a + d < 64}
    expected |= {(a, a + d) for a in range(0, 64, 2) for d in range(17, 32, 2) if a + d < 64}
    expected |= {(a, a + d) for a in range(0, 64, 4) for d in range(35, 64, 4) if a + d < 64}
    assert set(zip(s.tolist(), e.tolist(), strict=True)) == expected
    assert int(offset.max()) == 63 and mask[0, 63]


def test_scales_that_do_not_fit_the_map_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"num_scale_layers \[16\] do not fit a map of 8 clips"):
        sparse_layout(8, [16])
    with pytest.raises(ConfigError, match="do not fit a map of 16 clips"):
        Tan2DConfig(num_clips=256, pool_stride=16, num_scale_layers=[16, 8])


def test_pool_cells_hold_the_max_over_their_clips() -> None:
    layer = SparseTemporalMap(64, [16, 8, 8], hidden_dim=3)
    clips = torch.randn(2, 3, 64)
    cells = layer(clips)
    for i, (s, e) in enumerate(zip(layer.starts.tolist(), layer.ends.tolist(), strict=True)):
        torch.testing.assert_close(cells[:, :, i], clips[:, :, s : e + 1].amax(dim=-1), rtol=0, atol=0)
    dense = layer.to_map(cells)
    assert torch.equal(dense[:, :, ~layer.mask], torch.zeros(2, 3, int((~layer.mask).sum())))
    assert torch.equal(dense[:, :, 2, 19], clips[:, :, 2:20].amax(dim=-1))


def test_cell_s_e_is_the_moment_from_s_over_n_to_e_plus_one_over_n() -> None:
    spans = cell_spans(torch.tensor([0, 2, 15]), torch.tensor([0, 5, 15]), 16)
    torch.testing.assert_close(spans, torch.tensor([[0.0, 1 / 16], [2 / 16, 6 / 16], [15 / 16, 1.0]]))
    assert (spans[1] * 32.0).tolist() == [4.0, 12.0]  # seconds of a 32 s video: clips of 2 s
    layer = SparseTemporalMap(16, [16], hidden_dim=1)
    i = int(torch.nonzero(layer.flat_index == 2 * 16 + 5))
    torch.testing.assert_close(layer.spans[i], torch.tensor([2 / 16, 6 / 16]))


def test_map_conv_weight_is_one_over_the_valid_inputs_under_the_kernel() -> None:
    mask = valid_cell_mask(16, [16])  # the upper triangle with its diagonal
    weights = mask_weights(mask, kernel=5, layers=8, padding=16)
    assert [w.shape[0] for w in weights] == [44, 40, 36, 32, 28, 24, 20, 16]  # back to N x N
    # Output (i, j) of the first layer reads input rows i-16 .. i-12, columns j-16 .. j-12.
    assert weights[0][16, 26] == pytest.approx(1 / 25)  # rows 0-4, columns 10-14: all valid
    assert weights[0][16, 16] == pytest.approx(1 / 15)  # rows 0-4, columns 0-4: the 15 with s <= e
    assert weights[0][0, 0] == 0  # only padding under the kernel
    assert weights[0][12, 12] == pytest.approx(1.0)  # one valid input, cell (0, 0), at the corner


# --- the loss -----------------------------------------------------------------------------------


def test_iou_targets_are_rescaled_between_t_min_and_t_max() -> None:
    iou = torch.tensor([0.75, 0.4, 1.0, 0.5])
    torch.testing.assert_close(rescaled_targets(iou, 0.5, 1.0), torch.tensor([0.5, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(rescaled_targets(torch.tensor([0.5]), 0.3, 0.7), torch.tensor([0.5]))  # TACoS
    # The cells' IoU with a span: [0, 1/16] and [2/16, 6/16] against [2/16, 4/16].
    spans = cell_spans(torch.tensor([0, 2]), torch.tensor([0, 5]), 16)
    torch.testing.assert_close(cell_iou(spans, torch.tensor([[2 / 16, 4 / 16]])), torch.tensor([[0.0, 0.5]]))


def test_bce_of_one_cell_with_logit_zero_and_target_half_is_ln_2(charades_test: list[Paragraph]) -> None:
    assert float(masked_bce(torch.zeros(1, 1), torch.full((1, 1), 0.5), torch.ones(1, dtype=torch.bool))) == (
        pytest.approx(math.log(2))
    )
    # The whole loss: one cell [0, 1] against a span [0, 0.75]: IoU 0.75 -> target 0.5 -> ln 2. A
    # padded row (sentence_mask False) with any logit changes nothing.
    batch = sentence_batch(charades_test, sentence_vocab(charades_test), 2)
    batch.spans[0, 0] = torch.tensor([0.0, 0.75])
    batch.sentence_mask[1] = False
    output = Tan2DOutput(
        logits=torch.zeros(2, 1, 1),
        mask=torch.ones(1, 1, dtype=torch.bool),
        cell_logits=torch.tensor([[0.0], [7.0]]),
        cell_spans=torch.tensor([[0.0, 1.0]]),
        clips=torch.zeros(2, 1, 1),
        sentence=torch.zeros(2, 1),
        top_k=1,
        nms_threshold=0.5,
    )
    losses = Tan2DLoss(Tan2DConfig(loss_weights={"bce": 2.0}))(output, batch)
    assert float(losses["bce"]) == pytest.approx(math.log(2))
    assert float(losses["total"]) == pytest.approx(2 * math.log(2))


# --- ranking ------------------------------------------------------------------------------------


def test_nms_keeps_the_best_cells_that_overlap_no_better_kept_one() -> None:
    spans = torch.tensor([[0.0, 0.5], [0.0, 0.4], [0.5, 1.0], [0.1, 0.5], [0.6, 0.9]])
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    kept, kept_scores = rank_cells(scores, spans, top_k=3, threshold=0.5)
    # Row 0: [0, .5] kept; [0, .4] (IoU 0.8) and [.1, .5] (0.8) suppressed; [.5, 1] kept; [.6, .9] (0.6) not.
    # Fewer than 3 survive: the best span pads, at score 0.
    torch.testing.assert_close(kept[0], torch.tensor([[0.0, 0.5], [0.5, 1.0], [0.0, 0.5]]))
    torch.testing.assert_close(kept_scores[0], torch.tensor([0.9, 0.7, 0.0]))
    # Row 1 ranks the other way round: [.6, .9] first (suppressing [.5, 1]), then [.1, .5] (suppressing
    # [0, .4] and [0, .5]).
    torch.testing.assert_close(kept[1], torch.tensor([[0.6, 0.9], [0.1, 0.5], [0.6, 0.9]]))
    # IoU exactly at the threshold ([0, .5] and [.25, .5]: 0.5) suppresses nothing: it needs IoU > t.
    kept, _ = rank_cells(torch.tensor([[0.9, 0.8]]), torch.tensor([[0.0, 0.5], [0.25, 0.5]]), 2, 0.5)
    torch.testing.assert_close(kept[0], torch.tensor([[0.0, 0.5], [0.25, 0.5]]))


# --- the model ----------------------------------------------------------------------------------


def test_the_family_is_registered_as_a_sentence_family() -> None:
    family = get_family("tan2d")
    assert family is TAN2D_FAMILY
    assert (family.name, family.title, family.unit, family.task) == (
        "tan2d",
        "2D-TAN",
        "sentence",
        "grounding",
    )
    assert Tan2DConfig.from_dict(Tan2DConfig().to_dict()) == Tan2DConfig()
    with pytest.raises(ConfigError, match=r"tan2d config: unknown loss_weights \['giou'\]"):
        Tan2DConfig(loss_weights={"giou": 1.0})
    with pytest.raises(ConfigError, match="num_clips 100 is not a multiple of pool_stride 16"):
        Tan2DConfig(num_clips=100)
    with pytest.raises(ConfigError, match="proposal must be one of"):
        Tan2DConfig.from_dict({"proposal": "dense"})


@pytest.mark.parametrize("proposal", ["pool", "conv"])
def test_a_sentence_alone_and_in_a_padded_batch_scores_the_same(
    charades_test: list[Paragraph], proposal: str
) -> None:
    vocab = sentence_vocab(charades_test)
    batch = sentence_batch(charades_test, vocab, 6)
    lengths = batch.word_mask.sum(dim=1)
    shortest = int(lengths.argmin())
    assert int(lengths.max()) > int(lengths[shortest])  # the others are longer: its words are padded
    torch.manual_seed(0)
    model = Tan2D(tiny_config(proposal=proposal), torch.randn(len(vocab), 8)).eval()
    row = sentence_view(charades_test)[shortest]
    item = collate_paragraphs([make_item(row, batch.video[shortest].numpy(), vocab, 16)])
    with torch.no_grad():
        full, single = model(batch), model(item)
    torch.testing.assert_close(single.cell_logits[0], full.cell_logits[shortest], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(single.sentence[0], full.sentence[shortest], rtol=1e-5, atol=1e-6)
    assert full.clips.shape == (6, 16, 16) and full.sentence.shape == (6, 16)
    ranked_full = predictions(full, batch)
    ranked_single = predictions(single, item)
    assert ranked_full.scores is not None and ranked_single.scores is not None
    torch.testing.assert_close(ranked_single.spans[0], ranked_full.spans[shortest])
    torch.testing.assert_close(ranked_single.scores[0], ranked_full.scores[shortest], rtol=1e-5, atol=1e-6)
    assert ranked_full.spans.shape == (6, 1, 5, 2) and ranked_full.scores.shape == (6, 1, 5)
    assert bool((ranked_full.scores[..., :-1] >= ranked_full.scores[..., 1:]).all())
    assert torch.equal(full.logits[:, ~full.mask], torch.zeros(6, int((~full.mask).sum())))


@pytest.mark.parametrize("proposal", ["pool", "conv"])
def test_gradients_reach_every_trainable_parameter(charades_test: list[Paragraph], proposal: str) -> None:
    vocab = sentence_vocab(charades_test)
    torch.manual_seed(0)
    model = Tan2D(tiny_config(proposal=proposal, fine_tune_word_vectors=True), torch.randn(len(vocab), 8))
    batch = sentence_batch(charades_test, vocab, 8)
    Tan2DLoss(model.config)(model(batch), batch)["total"].backward()
    named = dict(model.named_parameters())
    assert "embedding.weight" in named
    for name, p in named.items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    frozen = Tan2D(tiny_config(), torch.randn(len(vocab), 8))
    assert not frozen.embedding.weight.requires_grad


def test_the_model_refuses_batches_it_cannot_map(charades_test: list[Paragraph]) -> None:
    vocab = sentence_vocab(charades_test)
    model = Tan2D(tiny_config(), torch.randn(len(vocab), 8))
    with pytest.raises(ConfigError, match=r"expects \(num_clips=16, video_dim=12\)"):
        model(sentence_batch(charades_test, vocab, 2, clips=20))
    assert len(charades_test[0].sentences) == 4
    paragraph = collate_paragraphs([make_item(charades_test[0], np.zeros((16, DIM), np.float32), vocab, 16)])
    with pytest.raises(ConfigError, match="one sentence"):
        model(paragraph)
    with pytest.raises(ConfigError, match=r"word vectors of shape \(5, 3\)"):
        Tan2D(tiny_config(), torch.zeros(5, 3))


def test_a_small_batch_of_real_sentences_is_overfit(charades_test: list[Paragraph]) -> None:
    """Eight real Charades-STA test sentences (three videos share their features), 150 Adam steps:
    the top-ranked span reaches mIoU >= 0.8 against the annotation (the best cell of the 16 x 16 map
    reaches 0.834 on these spans: the grid caps it)."""
    vocab = sentence_vocab(charades_test)
    batch = sentence_batch(charades_test, vocab, 8)
    assert len(set(batch.video_ids)) < 8  # sentences of one video differ only by their words
    torch.manual_seed(0)
    model = Tan2D(tiny_config(hidden_dim=32, text_hidden_dim=32), torch.randn(len(vocab), 8))
    loss = Tan2DLoss(model.config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        loss(model(batch), batch)["total"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        output = model(batch)
    best = predictions(output, batch).best[:, 0]
    miou = float(cell_iou(best, batch.spans[:, 0]).diagonal().mean())
    oracle = float(cell_iou(output.cell_spans, batch.spans[:, 0]).amax(dim=1).mean())
    assert oracle == pytest.approx(0.834, abs=0.001)
    assert miou >= 0.8, miou


# --- the engine and the commands ----------------------------------------------------------------


@pytest.fixture(scope="module")
def charades_features(tmp_path_factory: pytest.TempPathFactory, charades_test: list[Paragraph]) -> Path:
    """Random 12-d features of the first 6 Charades-STA test videos in the release layout
    (``vgg_rgb_features.hdf5``: one ``(T, D)`` dataset per video id; VGG has D = 4096)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("charades") / "vgg_rgb_features.hdf5"
    write_hdf5_store(
        path, {p.video_id: rng.standard_normal((int(rng.integers(20, 60)), DIM)) for p in charades_test[:6]}
    )
    return path


def test_a_checkpoint_predicts_what_the_trained_model_did(
    tmp_path: Path, shared_data: Path, charades_features: Path
) -> None:
    overrides = [
        f"data.root={shared_data / 'charades_sta'}",
        f"data.features={charades_features}",
        "data.train_split=test",
        "data.val_split=test",
        "data.limit=6",
        "data.batch_size=8",
        "data.num_workers=0",
        "optim.scheduler=plateau",  # the release's schedule, now that there is a validation split
        *TINY,
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output_dir={tmp_path}",
        "name=tan2d",
    ]
    config = Config.from_dict(merge(read_yaml(RECIPE), parse_overrides(overrides)))
    assert config.unit == "sentence" and config.family is TAN2D_FAMILY and not config.eval.inclusive
    result = fit(config)
    assert result.best_checkpoint is not None and result.weights is not None
    from_ckpt = open_checkpoint(result.best_checkpoint, device="cpu", limit=6)
    from_weights = open_checkpoint(result.weights, device="cpu", limit=6)
    records, again = from_ckpt.records("test"), from_weights.records("test")
    sentences = [s.key for p in from_ckpt.data.paragraphs("test") for s in p.sentences]
    assert [r.key for r in records] == [r.key for r in again] == sentences
    for a, b in zip(records, again, strict=True):
        assert a.spans == b.spans and a.scores == b.scores and len(a.spans) == 5
    # The checkpoint's top spans score the best validation mIoU the training run logged.
    rows = list(csv.DictReader((result.run_dir / "csv" / "version_0" / "metrics.csv").open()))
    logged = [float(r["val/mIoU"]) for r in rows if r.get("val/mIoU")]
    assert len(logged) == 2
    metrics = evaluate(records, from_ckpt.data.annotations("test"))
    assert metrics["mIoU"] == pytest.approx(max(logged), abs=1e-6)
    # The same batch through the checkpoint's model and a model loaded from the weights file.
    batch = next(iter(from_ckpt.data.loader("test")))
    with torch.no_grad():
        one, two = from_ckpt.model(batch), from_weights.model(batch)
    assert torch.equal(one.cell_logits, two.cell_logits)


def test_train_evaluate_and_predict_from_the_command_line(
    tmp_path: Path, shared_data: Path, charades_features: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shared_data / "charades_sta"
    args = [
        *("train", "--config", str(RECIPE)),
        f"data.root={root}",
        f"data.features={charades_features}",
        "data.train_split=test",
        "data.limit=6",
        "data.batch_size=8",
        "data.num_workers=0",
        *TINY,
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output_dir={tmp_path / 'runs'}",
    ]
    assert main(args) == 0
    run = tmp_path / "runs" / "tan2d_charades_sta"
    checkpoint = run / "checkpoints" / "last.ckpt"  # no validation split: the last epoch's
    assert checkpoint.is_file() and (run / "model.safetensors").is_file()
    capsys.readouterr()
    code = main(
        [
            *("evaluate", "--checkpoint", str(checkpoint), "--split", "test"),
            *("--limit", "6", "--device", "cpu", "--json", str(tmp_path / "metrics.json")),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "hit: IoU > m" in printed  # the recipe's eval.inclusive: false
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"R1@0.5", "R1@0.7", "R5@0.5", "R5@0.7", "mIoU"}
    assert all(metrics[f"R5@{m}"] >= metrics[f"R1@{m}"] for m in ("0.5", "0.7"))
    assert f"{100 * metrics['mIoU']:8.2f}" in printed

    out = tmp_path / "preds.json"
    code = main(
        [
            *("predict", "--checkpoint", str(run / "model.safetensors"), "--split", "test"),
            *("--out", str(out), "--limit", "6", "--device", "cpu"),
        ]
    )
    assert code == 0
    predicted = read_predictions(out)
    dataset = load_dataset("charades_sta", root, "test")
    durations = {p.video_id: p.duration for p in dataset.paragraphs()[:6]}
    assert len(predicted) == sum(len(p.sentences) for p in dataset.paragraphs()[:6])
    for record in predicted.records:
        assert len(record.spans) == 5 and record.scores is not None and len(record.scores) == 5
        assert list(record.scores) == sorted(record.scores, reverse=True)
        assert all(0.0 <= s < e <= durations[record.video_id] + 1e-6 for s, e in record.spans)


@pytest.mark.parametrize(
    ("recipe", "size", "cells", "video_dim"),
    [
        ("charades_sta", 16, 136, 4096),
        ("charades_sta_i3d", 16, 136, 1024),
        ("tacos", 128, 2548, 4096),
        ("activitynet_captions", 64, 1104, 500),
    ],
)
def test_every_recipe_builds_the_released_map(recipe: str, size: int, cells: int, video_dim: int) -> None:
    config = Config.from_dict(read_yaml(REPO / "configs" / "tan2d" / f"{recipe}.yaml"))
    model_config = config.model_config(word_dim=300)
    assert config.family is TAN2D_FAMILY and config.unit == "sentence" and not config.eval.inclusive
    assert (model_config.map_size, model_config.video_dim, model_config.num_clips) == (size, video_dim, 256)
    assert sparse_layout(size, model_config.num_scale_layers).count == cells
    assert model_config.map_padding == 16  # the released PADDINGS: [16, 0, ...]
    optim = config.optim
    assert (
        optim.lr,
        config.data.batch_size,
        config.trainer.max_epochs,
        config.trainer.gradient_clip_val,
    ) == (
        1e-4,
        32,
        100,
        10,
    )
    if config.data.val_split is None:  # Charades-STA: 2D-TAN never steps its schedule without validation
        assert optim.scheduler == "none"
    else:
        assert (optim.scheduler, optim.plateau_monitor, optim.plateau_mode) == ("plateau", "val/loss", "max")
        assert (optim.plateau_factor, optim.plateau_patience) == (0.8, 20)
