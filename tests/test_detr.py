"""Moment-DETR and QD-DETR (models/detr.py, models/moment_detr, models/qd_detr, losses/detr.py): the
matching, span, class and saliency losses on hand-computed cases (SHINE spec 7.4-7.8), the pair
sampling, padding invariance of spans, scores and saliency, gradients, an overfit of real Charades-STA
queries, the data they read (every window, QVHighlights' clip labels, token features by query key),
a checkpoint round trip through the engine and `higround train / evaluate / predict` with the
QVHighlights recipes on features written in Moment-DETR's released layout, highlight metrics
included."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from higround.cli.main import main
from higround.data.batch import ParagraphBatch
from higround.data.batching import ParagraphItem, collate_paragraphs
from higround.data.dataset import ParagraphDataset, clip_labels, make_item, sentence_view
from higround.data.features import open_store
from higround.data.readers import load_dataset
from higround.data.schema import Paragraph
from higround.engine import fit
from higround.engine.config import Config, merge, parse_overrides, read_yaml
from higround.engine.evaluation import open_checkpoint
from higround.errors import ConfigError, DataError
from higround.losses.detr import (
    DETRLoss,
    QDDETRLoss,
    ground_truth_clips,
    match_queries,
    matching_cost,
    rank_contrastive_loss,
    saliency_hinge,
    saliency_labels,
    saliency_pairs,
    span_terms,
    window_targets,
)
from higround.losses.shine import easy_negative_index, negative_pair_loss
from higround.metrics import read_predictions, temporal_iou
from higround.models import registry
from higround.models.detr import DETRModel, DETROutput, detr_predictions, span_xx_to_cxw
from higround.models.moment_detr import MomentDETR, MomentDETRConfig
from higround.models.qd_detr import QDDETR, QDDETRConfig
from higround.text.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
LIMIT = 4  # QVHighlights val videos (one query each) used by the engine tests
TOKEN_DIM = 8  # the token features the tests write (CLIP's are 512)
# Small widths; the recipes' shapes (75 clips, 10 queries, 2 + 2 layers) stay.
TINY = ["model.video_dim=12", "model.hidden_dim=16", "model.num_heads=2", "model.ffn_dim=32"]
MODELS = {
    "moment_detr": (MomentDETR, MomentDETRConfig, DETRLoss),
    "qd_detr": (QDDETR, QDDETRConfig, QDDETRLoss),
}


def _config(family: str, **changes: object) -> MomentDETRConfig | QDDETRConfig:
    values: dict[str, object] = {
        "video_dim": 12,
        "word_dim": 10,
        "num_clips": 32,
        "hidden_dim": 16,
        "num_heads": 2,
        "ffn_dim": 32,
    }
    return MODELS[family][1].from_dict({**values, **changes})


def _model(family: str, config: MomentDETRConfig | QDDETRConfig, vocab: Vocabulary) -> DETRModel:
    torch.manual_seed(0)
    model: DETRModel = MODELS[family][0](config, torch.randn(len(vocab), config.word_dim))  # type: ignore[arg-type]
    return model


@pytest.fixture(scope="module")
def charades(shared_data: Path) -> list[Paragraph]:
    """The first 8 sentences of the real Charades-STA test file, each a one-sentence sample."""
    return sentence_view(load_dataset("charades_sta", shared_data / "charades_sta", "test").paragraphs())[:8]


@pytest.fixture(scope="module")
def qvhighlights(shared_data: Path) -> list[Paragraph]:
    """The real QVHighlights val queries (one per paragraph), with highlight labels and windows."""
    return load_dataset("qvhighlights", shared_data / "qvhighlights", "val").paragraphs()


def _items(
    rows: list[Paragraph], clips: list[int], dim: int, seed: int = 0
) -> tuple[list[ParagraphItem], Vocabulary]:
    """Items of ``rows`` with random features of ``clips[i]`` clips kept as they are (native clips)."""
    vocab = Vocabulary.build([s.text for r in rows for s in r.sentences])
    rng = np.random.default_rng(seed)
    items = [
        make_item(r, rng.standard_normal((n, dim)), vocab, max(clips), native_clips=True)
        for r, n in zip(rows, clips, strict=True)
    ]
    return items, vocab


def _output(logits: list[list[float]], spans: list[list[float]], clips: int = 4) -> DETROutput:
    """A one-layer, one-row output with the given per-query logits and (center, width) spans."""
    return DETROutput(
        logits=torch.tensor(logits)[None, None],
        spans=torch.tensor(spans)[None, None],
        saliency=torch.zeros(1, clips),
        video_mask=torch.ones(1, clips, dtype=torch.bool),
    )


# --- matching, spans and classes on hand-computed cases ------------------------------------------------


def test_the_exact_query_is_matched_with_zero_l1_and_giou_and_the_other_is_background() -> None:
    # Spec 7.8: two predictions, one ground truth (0.5, 0.2) in (center, width).
    output = _output([[0.0, 0.0], [0.0, 0.0]], [[0.3, 0.1], [0.5, 0.2]])
    target, mask = torch.tensor([[[0.5, 0.2]]]), torch.ones(1, 1, dtype=torch.bool)
    cost = matching_cost(output.logits, output.spans, target[None], 4.0, 10.0, 1.0)
    # Query 1: -4 * 0.5 + 10 * 0 - 1 * 1 = -3. Query 0: L1 0.2 + 0.1 = 0.3; (0.25, 0.35) against
    # (0.4, 0.6): no overlap, union 0.3, hull 0.35, GIoU -1/7; -2 + 3 + 1/7.
    torch.testing.assert_close(cost[0, 0, :, 0], torch.tensor([1.0 + 1 / 7, -3.0]))
    assert match_queries(cost, mask).tolist() == [[[-1, 0]]]
    config = _config("moment_detr", aux_loss=False)
    terms = span_terms(output, target, mask, torch.tensor([True]), config)
    assert float(terms["span_l1"]) == pytest.approx(0.0, abs=1e-7)
    assert float(terms["span_giou"]) == pytest.approx(0.0, abs=1e-7)
    # Equal logits: ln 2 per query; the unmatched one is background and weighs eos_coef = 0.1, the
    # mean runs over both queries, not over the weights: (ln 2 + 0.1 ln 2) / 2.
    assert float(terms["class"]) == pytest.approx(0.55 * math.log(2), abs=1e-6)
    off = dataclasses.replace(config, eos_coef=1.0)
    assert float(span_terms(output, target, mask, torch.tensor([True]), off)["class"]) == pytest.approx(
        math.log(2)
    )


def test_several_windows_are_matched_at_the_lowest_total_cost() -> None:
    torch.manual_seed(0)
    logits, spans = torch.randn(1, 1, 4, 2), torch.rand(1, 1, 4, 2) * 0.5 + 0.1
    targets = torch.tensor([[[0.3, 0.2], [0.6, 0.3], [0.5, 0.1]]])
    cost = matching_cost(logits, spans, targets[None], 4.0, 10.0, 1.0)
    assignment = match_queries(cost, torch.ones(1, 3, dtype=torch.bool))[0, 0]
    assert sorted(assignment[assignment >= 0].tolist()) == [0, 1, 2] and (assignment < 0).sum() == 1
    chosen = sum(float(cost[0, 0, q, t]) for q, t in enumerate(assignment.tolist()) if t >= 0)
    best = min(
        sum(float(cost[0, 0, q, t]) for t, q in enumerate(p)) for p in itertools.permutations(range(4), 3)
    )
    assert chosen == pytest.approx(best)
    # Padded targets are never matched: with the last window masked, two queries are.
    short = match_queries(cost, torch.tensor([[True, True, False]]))[0, 0]
    assert sorted(short[short >= 0].tolist()) == [0, 1]


def test_l1_and_giou_of_matched_spans_and_the_aux_layers() -> None:
    # (0.4, 0.4) is (0.2, 0.6) against (0.4, 0.8): IoU = GIoU = 0.2 / 0.6, loss 2/3; L1 (0.2 + 0) / 2.
    # (0.1, 0.2) is (0.0, 0.2) against (0.6, 0.8): GIoU = 0 - (0.8 - 0.4) / 0.8, loss 1.5; L1 0.3.
    spans = torch.tensor([[[0.4, 0.4]], [[0.1, 0.2]]])[None]  # (1, B=2, Q=1, 2)
    output = DETROutput(torch.zeros(1, 2, 1, 2), spans, torch.zeros(2, 4), torch.ones(2, 4, dtype=torch.bool))
    targets = span_xx_to_cxw(torch.tensor([[[0.4, 0.8]], [[0.6, 0.8]]]))
    mask, rows = torch.ones(2, 1, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    terms = span_terms(output, targets, mask, rows, _config("moment_detr"))
    assert float(terms["span_giou"]) == pytest.approx((2 / 3 + 1.5) / 2, abs=1e-6)
    assert float(terms["span_l1"]) == pytest.approx((0.1 + 0.3) / 2, abs=1e-6)
    # A padded row never counts.
    alone = span_terms(output, targets, mask, torch.tensor([True, False]), _config("moment_detr"))
    assert float(alone["span_giou"]) == pytest.approx(2 / 3, abs=1e-6)
    # Two decoder layers: each is matched and scored; aux_loss sums them, else the last alone.
    two = dataclasses.replace(
        output, logits=output.logits.repeat(2, 1, 1, 1), spans=torch.cat([spans, spans])
    )
    assert float(span_terms(two, targets, mask, rows, _config("moment_detr"))["span_giou"]) == pytest.approx(
        2 * float(terms["span_giou"])
    )
    last = span_terms(two, targets, mask, rows, _config("moment_detr", aux_loss=False))
    assert float(last["span_giou"]) == pytest.approx(float(terms["span_giou"]))


def test_every_window_is_a_target_and_at_most_max_windows_are_kept(qvhighlights: list[Paragraph]) -> None:
    many = next(p for p in qvhighlights if len(p.sentences[0].all_windows) > 5)
    few = next(p for p in qvhighlights if len(p.sentences[0].all_windows) == 2)
    items, _ = _items([many, few], [75, 75], 4)
    batch = collate_paragraphs(items)
    assert batch.windows is not None and batch.window_mask is not None
    assert batch.window_mask[:, 0].sum(1).tolist() == [len(many.sentences[0].all_windows), 2]
    torch.testing.assert_close(batch.windows[:, 0, 0], batch.spans[:, 0])  # the first window is the span
    expected = torch.tensor(few.sentences[0].all_windows) / few.duration
    torch.testing.assert_close(batch.windows[1, 0, :2], expected.float())
    torch.manual_seed(0)
    targets, mask = window_targets(batch, max_windows=5)
    assert mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    real = span_xx_to_cxw(batch.windows[0, 0][batch.window_mask[0, 0]])
    chosen = targets[0]  # 5 of the real windows, each one of them
    assert all(bool((real - c).abs().sum(-1).min() < 1e-6) for c in chosen)
    torch.testing.assert_close(targets[1, :2], span_xx_to_cxw(expected.float()))


# --- saliency ---------------------------------------------------------------------------------------------


def test_ground_truth_clips_follow_the_peers_rule() -> None:
    ten = torch.ones(1, 10, dtype=torch.bool)

    def clips(start: float, end: float, mask: torch.Tensor = ten) -> list[int]:
        return torch.nonzero(ground_truth_clips(torch.tensor([[start, end]]), mask)[0]).flatten().tolist()

    assert clips(0.25, 0.5) == [2, 3, 4]  # floor(2.5) .. floor(5) - 1
    assert clips(0.31, 0.33) == [2]  # start past the end: moved back to it (gt_st = gt_ed)
    assert clips(0.9, 1.0) == [9]
    assert clips(26 / 150, 36 / 150, torch.ones(1, 75, dtype=torch.bool)) == [13, 14, 15, 16, 17]
    # The same 4 real clips padded to 6: nothing reaches the padding.
    padded = torch.tensor([[True] * 4 + [False] * 2])
    assert clips(0.5, 1.0, padded) == [2, 3]


def test_the_hinge_of_the_spec_case() -> None:
    # Spec 7.6: pos 1.0, neg 0.9, margin 0.2: 0.1 per pair; sum / (B pairs) * 2 with B = 1, 2 pairs.
    saliency = torch.tensor([[1.0, 0.9, 1.0, 0.9]])
    pos, neg = torch.tensor([[0, 2]]), torch.tensor([[1, 3]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    assert float(saliency_hinge(saliency, pos, neg, valid, 0.2)) == pytest.approx(0.2)
    # A pair past the margin adds 0; invalid pairs never count (nor divide).
    assert float(saliency_hinge(torch.tensor([[1.0, 0.5, 1.0, 0.9]]), pos, neg, valid, 0.2)) == pytest.approx(
        0.1
    )
    half = torch.tensor([[True, False]])
    assert float(saliency_hinge(saliency, pos, neg, half, 0.2)) == pytest.approx(0.2)


def test_qvhighlights_pairs_are_a_hard_and_an_easy_pair() -> None:
    # Relevant clips 1..4 with summed scores 5, 12, 3, 12; clips 0 and 5 are not relevant, 6 is padding.
    labels = torch.tensor([[0.0, 5.0, 12.0, 3.0, 12.0, 0.0, 0.0]])
    relevant = torch.tensor([[False, True, True, True, True, False, False]])
    mask = torch.tensor([[True] * 6 + [False]])
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        pos, neg, valid = saliency_pairs(labels, relevant, mask, graded=True, generator=generator)
        assert bool(valid.all())
        assert (pos[0, 0], neg[0, 0]) == (4, 3)  # the last of the tied maxima; the minimum
        assert int(pos[0, 1]) in {1, 2, 3, 4} and int(neg[0, 1]) in {0, 5}
    # Every clip relevant: the easy pair repeats the hard one; no relevant clip: no pair.
    every = torch.tensor([[True] * 6 + [False]])
    pos, neg, valid = saliency_pairs(labels, every, mask, graded=True)
    assert pos[0].tolist() == [4, 4] and neg[0].tolist() == [0, 0]
    _, _, valid = saliency_pairs(labels, torch.zeros_like(every), mask, graded=True)
    assert not bool(valid.any())


def test_single_window_pairs_are_distinct_clips_drawn_reproducibly() -> None:
    relevant = torch.tensor(
        [[False, True, True, True, False, False], [False, False, True, False, False, False]]
    )
    mask = torch.ones(2, 6, dtype=torch.bool)
    labels = relevant.float()
    draws = set()
    for seed in range(30):
        pos, neg, valid = saliency_pairs(labels, relevant, mask, False, torch.Generator().manual_seed(seed))
        again = saliency_pairs(labels, relevant, mask, False, torch.Generator().manual_seed(seed))
        assert torch.equal(pos, again[0]) and torch.equal(neg, again[1])  # seeded: reproducible
        assert bool(valid.all())
        assert pos[0, 0] != pos[0, 1] and set(pos[0].tolist()) <= {1, 2, 3}
        assert neg[0, 0] != neg[0, 1] and set(neg[0].tolist()) <= {0, 4, 5}
        assert pos[1].tolist() == [2, 2]  # a one-clip ground truth gives it twice
        draws.add(tuple(pos[0].tolist()))
    assert len(draws) > 1
    # A ground truth covering every clip leaves no negative: the row has no pair.
    _, _, valid = saliency_pairs(labels, torch.ones(2, 6, dtype=torch.bool), mask, graded=False)
    assert not bool(valid.any())


def test_negative_pair_loss_of_zero_logits_is_3_ln_2() -> None:
    # Spec 7.4: s^neg = 0 on 3 real clips (+1 padded, whatever it holds).
    negative = torch.tensor([[0.0, 0.0, 0.0, 50.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert float(negative_pair_loss(negative, mask, torch.tensor([True]))) == pytest.approx(3 * math.log(2))


def test_rank_contrastive_loss_on_hand_computed_cases() -> None:
    # Spec 7.5: s = [1, 0], labels [1, 0], s^neg = [0, 0], tau 0.5: logits [2, 0, 0, 0]; only r = 1 has
    # a positive: -(2 - ln(e^2 + 3)) = 0.34074, divided by 12.
    s, negative, labels = torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    mask, rows = torch.ones(1, 2, dtype=torch.bool), torch.tensor([True])
    value = float(rank_contrastive_loss(s, negative, labels, mask, rows))
    assert value == pytest.approx((math.log(math.e**2 + 3) - 2) / 12, abs=1e-6)
    assert value == pytest.approx(0.02840, abs=1e-5)
    # Padded clips change nothing whatever they hold.
    padded = rank_contrastive_loss(
        torch.tensor([[1.0, 0.0, 9.0]]),
        torch.tensor([[0.0, 0.0, 9.0]]),
        torch.tensor([[1.0, 0.0, 3.0]]),
        torch.tensor([[True, True, False]]),
        rows,
    )
    assert float(padded) == pytest.approx(value, abs=1e-6)
    # Graded labels [2, 1, 0] on s = [1, 0.5, 0]: logits [2, 1, 0, 0, 0, 0], Z = e^2 + e + 4. Rank 1
    # has two positives: the code's mean log-probability ln Z - 1.5, S-Eq. 5's log of the summed
    # probability ln Z - ln(e^2 + e); rank 2 has one: ln Z - 2 both.
    s, labels = torch.tensor([[1.0, 0.5, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]])
    z = math.log(math.e**2 + math.e + 4)
    three = torch.ones(1, 3, dtype=torch.bool)
    mean_log = rank_contrastive_loss(s, torch.zeros(1, 3), labels, three, rows, form="mean_log")
    log_sum = rank_contrastive_loss(s, torch.zeros(1, 3), labels, three, rows, form="log_sum")
    assert float(mean_log) == pytest.approx((z - 1.5 + z - 2) / 12, abs=1e-6)
    assert float(log_sum) == pytest.approx((z - math.log(math.e**2 + math.e) + z - 2) / 12, abs=1e-6)


def test_the_negative_rows_take_the_next_query_or_the_next_other_video() -> None:
    # Spec 7.7: row i gets row (i + 1) mod B; with the other-video option and videos [a, a, b] row 0
    # gets row 2's query (QD-DETR's negative pass and SHINE's easy negative: one function).
    def rows(groups: list[int], mode: str = "roll") -> list[int]:
        group = torch.tensor(groups)
        return easy_negative_index(group[:, None] == group[None], mode).tolist()

    assert rows([0, 0, 1]) == [1, 2, 0]
    assert rows([0, 0, 1], "other_video") == [2, 2, 0]
    assert rows([0, 0], "other_video") == [1, 0]  # one video: the roll
    assert rows([0]) == [0]
    assert QDDETRConfig(negative_other_video=True).easy_negative == "other_video"
    assert QDDETRConfig().easy_negative == MomentDETRConfig().easy_negative == "roll"


def test_saliency_labels_are_the_summed_scores_or_the_ground_truth_clips(
    qvhighlights: list[Paragraph], charades: list[Paragraph]
) -> None:
    row = qvhighlights[0]  # qid 2579: relevant clips 41..74, first scores [1, 1, 2]
    items, _ = _items([row], [75], 4)
    batch = collate_paragraphs(items)
    labels, relevant = saliency_labels(batch)
    extra = row.sentences[0].extra
    assert torch.nonzero(relevant[0]).flatten().tolist() == extra["relevant_clip_ids"]
    assert float(labels[0, 41]) == sum(extra["saliency_scores"][0]) == 4 and float(labels[0, 0]) == 0
    items, _ = _items(charades[:1], [20], 4)
    labels, relevant = saliency_labels(collate_paragraphs(items))
    assert torch.equal(labels, relevant.float()) and bool(relevant.any())


# --- the models -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", MODELS)
def test_padding_never_changes_a_span_score_or_saliency(family: str, charades: list[Paragraph]) -> None:
    rows = charades[:4]
    items, vocab = _items(rows, [20, 9, 14, 32], 12)
    assert len({len(it.words) for it in items}) > 1  # words pad too
    model = _model(family, _config(family), vocab).eval()
    batch = collate_paragraphs(items)
    # Whatever the padding holds: large clip features, real word ids.
    noisy = dataclasses.replace(
        batch,
        video=batch.video.masked_fill(~batch.video_mask[..., None], 100.0),
        words=torch.where(batch.word_mask, batch.words, 3),
    )
    with torch.no_grad():
        full = detr_predictions(model(batch), batch)
        again = detr_predictions(model(noisy), noisy)
        assert full.saliency is not None and again.saliency is not None
        torch.testing.assert_close(again.spans, full.spans)
        torch.testing.assert_close(again.saliency, full.saliency)
        for b, item in enumerate(items):
            alone = collate_paragraphs([item])
            one = detr_predictions(model(alone), alone)
            clips = alone.video.shape[1]
            assert one.saliency is not None and one.scores is not None and full.scores is not None
            torch.testing.assert_close(one.spans, full.spans[b : b + 1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(one.scores, full.scores[b : b + 1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(
                one.saliency, full.saliency[b : b + 1, :, :clips], atol=1e-5, rtol=1e-5
            )
            assert bool((full.saliency[b, :, clips:] == 0).all())


@pytest.mark.parametrize("family", MODELS)
def test_pair_saliency_scores_any_query_on_the_batch_videos(family: str, charades: list[Paragraph]) -> None:
    """The entry point for extra queries (QD-DETR's negative, SHINE's): one encoder pass per pair."""
    items, vocab = _items(charades[:3], [20, 9, 14], 12)
    config = _config(family, dropout=0.0, input_dropout=0.0)
    model = _model(family, config, vocab)
    batch = collate_paragraphs(items)
    video, video_mask = model.video_inputs(batch)
    text, text_mask = model.text_inputs(batch)
    model.eval()
    with torch.no_grad():
        own = model.pair_saliency(video, video_mask, text, text_mask)
        torch.testing.assert_close(own, model(batch).saliency)
        # Other word ids (e.g. a negative query's) on the same videos.
        words = torch.flip(batch.words, dims=[0])
        other_text, other_mask = model.embed_words(words, torch.flip(batch.word_mask, dims=[0]))
        other = model.pair_saliency(video, video_mask, other_text, other_mask)
        assert other.shape == own.shape and not torch.allclose(other, own)
    if family == "qd_detr":  # training: the negative is the pair saliency of the rolled queries
        model.train()
        output = model(batch)
        rolled = easy_negative_index(batch.same_video())
        torch.testing.assert_close(
            output.negative_saliency, model.pair_saliency(video, video_mask, text[rolled], text_mask[rolled])
        )


@pytest.mark.parametrize("family", MODELS)
def test_gradients_reach_every_trainable_parameter(family: str, charades: list[Paragraph]) -> None:
    items, vocab = _items(charades[:4], [20, 9, 14, 32], 12)
    config = _config(family, fine_tune_word_vectors=True)
    model = _model(family, config, vocab).train()
    batch = collate_paragraphs(items)
    terms = MODELS[family][2](config)(model(batch), batch)  # type: ignore[arg-type]
    shine_only = {"shine_coarse", "shine_fine"} | (
        {"saliency_negative"} if family == "moment_detr" else set()
    )
    assert set(terms) == {*config.LOSS_TERMS, "total"} - shine_only  # no SHINE section: no SHINE term
    terms["total"].backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert "embedding.weight" in trainable
    missing = {n for n, p in trainable.items() if p.grad is None or not bool(p.grad.abs().sum() > 0)}
    # The first decoder layer's self-attention reads the zero initial states (DETR's tgt = 0): its
    # value projection's weight multiplies zeros. The hinge compares two clips' saliency: the
    # saliency head's bias cancels (Moment-DETR's; QD-DETR's is a product).
    expected = {"decoder.0.self_attention.attention.v_proj.weight", "saliency_head.bias"}
    if family == "qd_detr":
        expected = {"decoder.layers.0.self_attention.attention.v_proj.weight"}
    assert missing == expected
    frozen = _model(family, _config(family), vocab)
    assert not frozen.embedding.weight.requires_grad  # the default: frozen word vectors


@pytest.mark.parametrize("family", MODELS)
def test_token_features_replace_the_words(family: str, charades: list[Paragraph]) -> None:
    rows = charades[:3]
    vocab = Vocabulary.build([s.text for r in rows for s in r.sentences])
    rng = np.random.default_rng(0)
    tokens = [[rng.standard_normal((n, TOKEN_DIM))] for n in (5, 9, 3)]
    items = [
        make_item(r, rng.standard_normal((16, 12)), vocab, 16, text_features=t)
        for r, t in zip(rows, tokens, strict=True)
    ]
    batch = collate_paragraphs(items)
    assert batch.text_features is not None and batch.text_mask is not None
    assert batch.text_mask.sum(1).tolist() == [5, 9, 3] and batch.text_features.shape == (3, 9, TOKEN_DIM)
    assert not bool(batch.text_features[2, 3:].any())
    config = _config(family, text_dim=TOKEN_DIM, max_query_length=6)
    model = _model(family, config, vocab).eval()
    with torch.no_grad():
        full = model(batch)
        # Tokens past max_query_length are padding, as padded tokens are.
        cut = dataclasses.replace(batch, text_features=batch.text_features.clone())
        assert cut.text_features is not None
        cut.text_features[:, 6:] = 7.0
        torch.testing.assert_close(model(cut).spans, full.spans)
        alone = collate_paragraphs([items[2]])
        torch.testing.assert_close(model(alone).spans, full.spans[:, 2:3], atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="reads token features of text_dim=8"):
        model(dataclasses.replace(batch, text_features=None, text_mask=None))
    with pytest.raises(ConfigError, match=r"carries token features but model\.text_dim is null"):
        _model(family, _config(family), vocab)(batch)


def test_predictions_rank_every_query_by_its_foreground_probability() -> None:
    logits = torch.tensor([[[0.0, 2.0], [3.0, 0.0], [1.0, 1.0]]])  # p_fg = sigmoid(-2), sigmoid(3), 0.5
    spans = torch.tensor([[[0.5, 0.2], [0.05, 0.3], [0.9, 0.4]]])  # the last two run past the video
    mask = torch.tensor([[True, True, False]])
    output = DETROutput(logits[None], spans[None], torch.tensor([[1.0, 2.0, 3.0]]), mask)
    item = ParagraphItem(
        torch.zeros(3, 1),
        torch.tensor([1]),
        torch.tensor([1]),
        torch.tensor([[0.0, 1.0]]),
        10.0,
        "v",
        0,
        torch.tensor([0]),
    )
    batch = collate_paragraphs([item])
    answer = detr_predictions(output, batch)
    assert answer.spans.shape == (1, 1, 3, 2) and answer.scores is not None and answer.saliency is not None
    torch.testing.assert_close(
        answer.scores[0, 0],
        torch.tensor([torch.sigmoid(torch.tensor(3.0)), 0.5, torch.sigmoid(torch.tensor(-2.0))]),
    )
    torch.testing.assert_close(answer.spans[0, 0], torch.tensor([[0.0, 0.2], [0.7, 1.0], [0.4, 0.6]]))
    torch.testing.assert_close(answer.saliency[0, 0], torch.tensor([1.0, 2.0, 0.0]))  # padding: 0


def test_the_configs_refuse_bad_values_by_name() -> None:
    for values, message in [
        ({"hidden_dim": 30, "num_heads": 4}, "must be even and divisible by num_heads 4"),
        ({"activation": "tanh"}, "activation must be one of"),
        ({"input_dropout": 1.0}, r"input_dropout must be in \[0, 1\)"),
        ({"text_dim": 0}, "text_dim must be >= 1"),
        ({"num_queries": 0}, "num_queries must be >= 1"),
        ({"loss_weights": {"saliency_contrast": 1.0}}, r"unknown loss_weights \['saliency_contrast'\]"),
        ({"loss_weights": {"class": -1.0}}, "must be >= 0"),
        ({"queries": 10}, r"unknown key\(s\) \['queries'\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            MomentDETRConfig.from_dict(values)
    with pytest.raises(ConfigError, match="contrastive_form must be one of"):
        QDDETRConfig.from_dict({"contrastive_form": "sum"})
    assert (
        QDDETRConfig.from_dict({"loss_weights": {"saliency_contrast": 0.5}}).weight("saliency_contrast")
        == 0.5
    )
    config = MomentDETRConfig()
    assert (config.weight("span_l1"), config.weight("span_giou"), config.weight("class")) == (10.0, 1.0, 4.0)
    assert MomentDETRConfig.from_dict(config.to_dict()) == config
    assert QDDETRConfig().activation == "prelu" and config.activation == "relu"


@pytest.mark.parametrize("family", MODELS)
def test_overfits_a_batch_of_real_charades_sentences(family: str, charades: list[Paragraph]) -> None:
    """8 real Charades-STA test queries with random 16-d features of 16 clips: mIoU 0.978 (Moment-DETR)
    and 0.969 (QD-DETR) of the top span after 200 full-batch Adam steps (measured; the bound leaves
    room for other kernels' rounding)."""
    config = _config(
        family, video_dim=16, word_dim=16, num_clips=16, hidden_dim=32, num_heads=4, ffn_dim=64,
        dropout=0.0, input_dropout=0.0, encoder_layers=1,
    )  # fmt: skip
    items, vocab = _items(charades, [16] * 8, 16)
    batch = collate_paragraphs(items)
    model = _model(family, config, vocab)
    loss = MODELS[family][2](config)  # type: ignore[arg-type]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(200):
        total = loss(model(batch), batch)["total"]
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        spans = detr_predictions(model(batch), batch).best[:, 0]
    miou = float(temporal_iou(spans.numpy(), batch.spans[:, 0].numpy()).mean())
    assert miou > 0.9, miou


# --- the data they read -------------------------------------------------------------------------------------


def test_qvhighlights_clip_labels_follow_the_clips(qvhighlights: list[Paragraph]) -> None:
    row = qvhighlights[0]
    extra = row.sentences[0].extra
    labels = clip_labels(row, 75, 75)
    assert labels is not None
    scores, relevant = labels
    assert torch.nonzero(relevant[0]).flatten().tolist() == extra["relevant_clip_ids"]
    assert scores[0, 41:].tolist() == [float(sum(s)) for s in extra["saliency_scores"]]
    # Features of 60 clips: ids past them are dropped; resampled to 30 clips the labels follow (clip
    # 20 averages clips 40 and 41: half relevant, relevant).
    short = clip_labels(row, 60, 60)
    assert short is not None and torch.nonzero(short[1][0]).flatten().tolist() == list(range(41, 60))
    half = clip_labels(row, 30, 60)
    assert (
        half is not None
        and half[1].shape == (1, 30)
        and torch.nonzero(half[1][0]).flatten().tolist() == list(range(20, 30))
    )
    assert clip_labels(Paragraph("v", 10.0, (dataclasses.replace(row.sentences[0], extra={}),)), 5, 5) is None
    # Resampling keeps to num_clips; native clips keep the features' own grid up to it.
    vocab = Vocabulary.build([row.sentences[0].text])
    features = np.random.default_rng(0).standard_normal((60, 4))
    assert make_item(row, features, vocab, 75).video.shape[0] == 75
    assert make_item(row, features, vocab, 75, native_clips=True).video.shape[0] == 60
    assert make_item(row, features, vocab, 50, native_clips=True).video.shape[0] == 50


def test_token_features_are_read_by_query_key(tmp_path: Path, qvhighlights: list[Paragraph]) -> None:
    rows = qvhighlights[:3]
    folder = tmp_path / "text"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lengths = {}
    for p in rows[:2]:
        key = p.sentences[0].key
        lengths[key] = int(rng.integers(3, 9))
        np.savez(folder / f"qid{key}.npz", last_hidden_state=rng.standard_normal((lengths[key], TOKEN_DIM)))
    text = open_store(folder, "qid{video_id}.npz", normalize=True, npz_field="last_hidden_state")
    videos = DictStore({p.video_id: rng.standard_normal((75, 4)).astype(np.float32) for p in rows})
    vocab = Vocabulary.build([s.text for p in rows for s in p.sentences])
    with pytest.raises(DataError, match=rf"no features for 1 sentence key\(s\): {rows[2].sentences[0].key}"):
        ParagraphDataset(rows, videos, vocab, 75, native_clips=True, text_store=text)
    dataset = ParagraphDataset(rows[:2], videos, vocab, 75, native_clips=True, text_store=text)
    batch = collate_paragraphs([dataset[0], dataset[1]])
    assert batch.text_mask is not None and batch.text_features is not None
    assert batch.text_mask.sum(1).tolist() == [lengths[p.sentences[0].key] for p in rows[:2]]
    norms = batch.text_features.norm(dim=-1)[batch.text_mask]
    torch.testing.assert_close(norms, torch.ones_like(norms))  # L2-normalised per token


class DictStore:
    """A feature store over a dict of arrays (test helper)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.name = "dict-store"
        self.dim = next(iter(arrays.values())).shape[1]

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.arrays

    def get(self, video_id: str) -> np.ndarray:
        return self.arrays[video_id]

    def video_ids(self) -> list[str]:
        return sorted(self.arrays)


# --- through the engine and the commands --------------------------------------------------------------------


@pytest.fixture(scope="module")
def qvh_features(
    tmp_path_factory: pytest.TempPathFactory, qvhighlights: list[Paragraph]
) -> tuple[Path, Path]:
    """Random features of the first LIMIT QVHighlights val videos in Moment-DETR's released layout: a
    folder of ``<vid>.npz`` holding ``features`` (2 s clips; 12-d instead of 2816), and the query
    tokens as ``qid<qid>.npz`` holding ``last_hidden_state`` (8-d instead of CLIP's 512)."""
    root = tmp_path_factory.mktemp("qvhighlights")
    video, text = root / "slowfast_clip_features", root / "clip_text_features"
    video.mkdir()
    text.mkdir()
    rng = np.random.default_rng(0)
    for paragraph in qvhighlights[:LIMIT]:
        clips = int(paragraph.duration // 2)
        np.savez(
            video / f"{paragraph.video_id}.npz", features=rng.standard_normal((clips, 12)).astype(np.float32)
        )
        for s in paragraph.sentences:
            tokens = rng.standard_normal((int(rng.integers(4, 12)), TOKEN_DIM)).astype(np.float32)
            np.savez(text / f"qid{s.key}.npz", last_hidden_state=tokens)
    return video, text


def _overrides(shared_data: Path, features: Path, out: Path, epochs: int) -> list[str]:
    return [
        f"data.root={shared_data / 'qvhighlights'}",
        f"data.features={features}",
        "data.train_split=val",
        f"data.limit={LIMIT}",
        "data.batch_size=2",
        "data.num_workers=0",
        *TINY,
        f"trainer.max_epochs={epochs}",
        "trainer.check_val_every_n_epoch=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1",
        f"output_dir={out}",
    ]


def test_a_checkpoint_round_trips_its_spans_and_saliency(
    tmp_path: Path, shared_data: Path, qvh_features: tuple[Path, Path], qvhighlights: list[Paragraph]
) -> None:
    video, text = qvh_features
    recipe = read_yaml(REPO / "configs" / "qd_detr" / "qvhighlights.yaml")
    tokens = [
        f"data.text_features={text}",
        "data.text_feature_key=qid{video_id}.npz",
        f"model.text_dim={TOKEN_DIM}",
    ]
    config = Config.from_dict(
        merge(recipe, parse_overrides([*_overrides(shared_data, video, tmp_path, 2), *tokens]))
    )
    assert config.family is registry.get_family("qd_detr") and config.unit == "sentence"
    result = fit(config)
    assert result.best_checkpoint is not None and result.weights is not None and result.best_score is not None
    run = open_checkpoint(result.best_checkpoint, device="cpu", limit=LIMIT)
    assert isinstance(run.model, QDDETR) and run.model.config.text_dim == TOKEN_DIM
    records = run.records("val")
    rows = qvhighlights[:LIMIT]
    assert [r.key for r in records] == [p.sentences[0].key for p in rows]
    for record, row in zip(records, rows, strict=True):
        assert (
            len(record.spans) == 10
            and record.scores is not None
            and list(record.scores) == sorted(record.scores)[::-1]
        )
        assert record.saliency is not None and len(record.saliency) == int(row.duration // 2)  # the 2-s grid
    # The loaded weights predict what the run validated: the same mIoU (val = train split here).
    truth = {p.sentences[0].key: p.sentences[0].span for p in rows}
    iou = temporal_iou(np.array([r.spans[0] for r in records]), np.array([truth[r.key] for r in records]))
    assert iou.mean() == pytest.approx(result.best_score, abs=1e-6)
    again = open_checkpoint(result.weights, device="cpu", limit=LIMIT).records("val")
    assert [(r.spans, r.saliency) for r in again] == [(r.spans, r.saliency) for r in records]


def test_train_evaluate_and_predict_with_the_qvhighlights_recipe(
    tmp_path: Path,
    shared_data: Path,
    qvh_features: tuple[Path, Path],
    qvhighlights: list[Paragraph],
    capsys: pytest.CaptureFixture[str],
) -> None:
    video, _ = qvh_features
    recipe = REPO / "configs" / "moment_detr" / "qvhighlights.yaml"
    assert main(["train", "--config", str(recipe), *_overrides(shared_data, video, tmp_path, 1)]) == 0
    run = tmp_path / "moment_detr_qvhighlights"
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"best.ckpt", "last.ckpt"}
    capsys.readouterr()
    metrics_path = tmp_path / "metrics.json"
    evaluate = ["evaluate", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), "--split", "val"]
    assert main([*evaluate, "--limit", str(LIMIT), "--device", "cpu", "--json", str(metrics_path)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(metrics_path.read_text())
    assert result["sentences"] == LIMIT
    for level in ("Fair", "Good", "VeryGood"):
        for name in ("mAP", "Hit1"):
            assert 0.0 <= result["metrics"][f"HL-min-{level}/{name}"] <= 1.0
    assert "HL-min-VeryGood" in printed and "mAP" in printed

    out = tmp_path / "predictions.json"
    predict = ["predict", "--checkpoint", str(run / "model.safetensors"), "--split", "val", "--out", str(out)]
    assert main([*predict, "--limit", str(LIMIT), "--device", "cpu"]) == 0
    written = read_predictions(out)
    assert len(written) == LIMIT and written.dataset == "qvhighlights"
    duration = {p.video_id: p.duration for p in qvhighlights[:LIMIT]}
    for record in written.records:
        clips = int(duration[record.video_id] // 2)
        assert len(record.spans) == 10 and record.saliency is not None and len(record.saliency) == clips
        assert all(0.0 <= s <= e <= duration[record.video_id] + 1e-6 for s, e in record.spans)


def test_batches_refuse_paragraph_rows(charades: list[Paragraph]) -> None:
    items, vocab = _items([Paragraph("v", 40.0, tuple(s.sentences[0] for s in charades[:2]))], [16], 12)
    batch: ParagraphBatch = collate_paragraphs(items)
    with pytest.raises(ConfigError, match="grounds one sentence per row"):
        _model("moment_detr", _config("moment_detr"), vocab)(batch)
