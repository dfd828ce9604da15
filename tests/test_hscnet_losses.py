"""HSCNet losses against hand-computed values (supplement eq. 3-7, L1/GIoU) and the total of eq. 11."""

from __future__ import annotations

import math

import pytest
import torch

from higround.data.batch import ParagraphBatch
from higround.data.batching import ParagraphItem, collate_paragraphs
from higround.errors import ConfigError
from higround.losses import (
    HSCNetLoss,
    alignment_loss,
    clip_positives,
    giou_loss,
    hull_span,
    l1_loss,
    paragraph_alignment_loss,
    span_giou,
    word_positives,
    word_subset_loss,
    word_union_loss,
)
from higround.models import HSCNet, HSCNetConfig
from higround.models.hscnet.model import HSCNetOutput

e = math.e


def test_l1_and_giou_hand_computed() -> None:
    pred = torch.tensor([[0.1, 0.3], [0.2, 0.6], [0.0, 1.0]])
    target = torch.tensor([[0.5, 0.9], [0.4, 0.8], [0.3, 0.3]])
    mask = torch.tensor([True, True, False])
    # disjoint: inter 0, union 0.6, hull 0.8 -> -0.25; overlap: inter 0.2, union = hull = 0.6 -> 1/3
    assert torch.allclose(span_giou(pred[:2], target[:2]), torch.tensor([-0.25, 1 / 3]))
    assert torch.isclose(giou_loss(pred, target, mask), torch.tensor((1.25 + 2 / 3) / 2))
    assert torch.isclose(l1_loss(pred, target, mask), torch.tensor((0.4 + 0.6 + 0.2 + 0.2) / 2))
    assert torch.isclose(span_giou(target[:1], target[:1]), torch.tensor([1.0])).all()
    assert l1_loss(pred, target, torch.zeros(3, dtype=torch.bool)) == 0


def test_hull_span_is_min_start_max_end_of_real_spans() -> None:
    spans = torch.tensor([[[0.2, 0.4], [0.1, 0.3], [0.0, 1.0]]])
    assert torch.equal(hull_span(spans, torch.tensor([[True, True, False]])), torch.tensor([[0.1, 0.4]]))


def test_clip_positives_centres_and_midpoint_guard() -> None:
    spans = torch.tensor([[[0.3, 0.7], [0.51, 0.52], [0.0, 0.0]]])
    sentence_mask = torch.tensor([[True, True, False]])
    full = clip_positives(spans, sentence_mask, torch.ones(1, 4, dtype=torch.bool))
    # centres 0.125, 0.375, 0.625, 0.875; the short span holds no centre but its midpoint is in clip 2
    assert full[0].tolist() == [[False, True, True, False], [False, False, True, False], [False] * 4]
    # only 2 real clips (centres 0.25, 0.75): clip 0 holds the midpoint 0.5 * 2 = 1 -> clamped to clip 1
    two = clip_positives(spans, sentence_mask, torch.tensor([[True, True, False, False]]))
    assert two[0, :2].tolist() == [[False, True, False, False], [False, True, False, False]]
    words = word_positives(full, torch.tensor([[1, 0, -1]]), torch.tensor([[True, True, False]]))
    assert words[0].tolist() == [full[0, 1].tolist(), full[0, 0].tolist(), [False] * 4]


def test_alignment_loss_on_a_2x3_matrix() -> None:
    sim = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]]])
    positives = torch.tensor([[[True, False, False], [False, True, True]]])
    # column-wise softmax over the two text units, one term per clip (all three are relevant)
    columns = -(math.log(e / (e + 1)) + math.log(e**2 / (1 + e**2)) + math.log(e / (1 + e))) / 3
    # row-wise softmax over the three clips, one term per text unit
    rows = -(math.log(e / (e + 2)) + math.log((e**2 + e) / (1 + e**2 + e))) / 2
    loss = alignment_loss(
        sim, positives, torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool)
    )
    assert loss.item() == pytest.approx(columns + rows, rel=1e-6)

    # a padded text unit and a padded clip, however large their scores, change nothing
    padded_sim = torch.full((1, 3, 4), 50.0)
    padded_sim[:, :2, :3] = sim
    padded_pos = torch.ones(1, 3, 4, dtype=torch.bool)
    padded_pos[:, :2, :3] = positives
    padded = alignment_loss(
        padded_sim, padded_pos, torch.tensor([[True, True, False]]), torch.tensor([[True, True, True, False]])
    )
    assert padded.item() == pytest.approx(columns + rows, rel=1e-6)


def test_alignment_loss_leaves_out_a_paragraph_without_positives() -> None:
    sim = torch.randn(2, 2, 3, requires_grad=True)
    positives = torch.zeros(2, 2, 3, dtype=torch.bool)
    positives[0, 0, 0] = True  # paragraph 1 has no positive at all
    mask_t, mask_v = torch.ones(2, 2, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)
    loss = alignment_loss(sim, positives, mask_t, mask_v)
    alone = alignment_loss(sim[:1], positives[:1], mask_t[:1], mask_v[:1])
    # eq. 3-4 are undefined for it (|V| = |T| = 0): it neither adds a term nor counts in the mean
    assert torch.equal(loss, alone)
    loss.backward()
    assert sim.grad is not None and torch.isfinite(sim.grad).all() and not sim.grad[1].any()


def test_alignment_losses_average_the_paragraphs_with_positives_hand_computed() -> None:
    """Two paragraphs with positives and one without: both losses are the mean of the first two."""
    sim = torch.zeros(3, 2, 3)
    sim[0] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    sim[1, 0, :2] = torch.tensor([0.0, 1.0])
    positives = torch.zeros(3, 2, 3, dtype=torch.bool)
    positives[0] = torch.tensor([[True, False, False], [False, True, True]])
    positives[1, 0, 1] = True
    text_mask = torch.tensor([[True, True], [True, False], [True, True]])
    video_mask = torch.tensor([[True, True, True], [True, True, False], [True, True, True]])
    # paragraph 0 as in test_alignment_loss_on_a_2x3_matrix
    first = (
        -(math.log(e / (e + 1)) + math.log(e**2 / (1 + e**2)) + math.log(e / (1 + e))) / 3
        - (math.log(e / (e + 2)) + math.log((e**2 + e) / (1 + e**2 + e))) / 2
    )
    # paragraph 1: one text unit (its column softmax is 1 on clip 1), row softmax e / (1 + e) on clip 1
    second = 0.0 - math.log(e / (1 + e))
    expected = (first + second) / 2
    loss = alignment_loss(sim, positives, text_mask, video_mask)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(loss, alignment_loss(sim[:2], positives[:2], text_mask[:2], video_mask[:2]))

    # eq. 5 on the first row of each paragraph's matrix: -log(e / (e + 2)) and -log(e / (1 + e))
    para_sim, para_pos = sim[:, :1], positives[:, 0]
    para_expected = (-math.log(e / (e + 2)) - math.log(e / (1 + e))) / 2
    para = paragraph_alignment_loss(para_sim, para_pos, video_mask)
    assert para.item() == pytest.approx(para_expected, rel=1e-6)
    assert torch.equal(para, paragraph_alignment_loss(para_sim[:2], para_pos[:2], video_mask[:2]))


def test_paragraph_alignment_loss_hand_computed() -> None:
    sim = torch.tensor([[[0.0, 1.0, 2.0, 7.0]]])
    positives = torch.tensor([[True, False, True, True]])
    video_mask = torch.tensor([[True, True, True, False]])
    expected = -math.log((1 + e**2) / (1 + e + e**2))
    assert paragraph_alignment_loss(sim, positives, video_mask).item() == pytest.approx(expected, rel=1e-6)


def _word_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    word_spans = torch.tensor(
        [[[[0.2, 0.4], [0.6, 0.8], [0.0, 1.0]], [[0.5, 0.9], [0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0]] * 3]]
    )
    word_mask = torch.tensor([[[True, True, False], [True, False, False], [False] * 3]])
    spans = torch.tensor([[[0.1, 0.7], [0.5, 0.8], [0.0, 0.0]]])
    return word_spans, word_mask, spans, torch.tensor([[True, True, False]])


def test_word_union_loss_hand_computed() -> None:
    # unions (0.2, 0.8) vs (0.1, 0.7) -> 0.2 and (0.5, 0.9) vs (0.5, 0.8) -> 0.1
    assert word_union_loss(*_word_case()).item() == pytest.approx(0.15, rel=1e-5)


def test_word_subset_loss_hand_computed() -> None:
    # sentence 1: 0.2/0.2 inside and 0.1/0.2 -> 0.75; sentence 2: 0.3/0.4 -> 0.75
    assert word_subset_loss(*_word_case()).item() == pytest.approx(0.25, rel=1e-5)
    word_spans, word_mask, spans, sentence_mask = _word_case()
    point = word_spans.clone()
    point[0, 0, 0] = torch.tensor([0.3, 0.3])  # a point word inside its sentence: ratio 0, finite
    assert torch.isfinite(word_subset_loss(point, word_mask, spans, sentence_mask))


def _model_and_batch() -> tuple[HSCNetConfig, HSCNet, ParagraphBatch]:
    item = ParagraphItem(
        video=torch.randn(8, 6),
        words=torch.tensor([2, 3, 4, 5, 6]),
        sentence_length=torch.tensor([2, 3]),
        spans=torch.tensor([[0.1, 0.4], [0.3, 0.9]]),
        duration=10.0,
        video_id="v",
        paragraph_index=0,
        sentence_index=torch.arange(2),
    )
    config = HSCNetConfig(video_dim=6, word_dim=4, num_clips=8, hidden_dim=16, num_heads=2, feature_layers=1)
    torch.manual_seed(0)
    return config, HSCNet(config, torch.randn(8, 4)), collate_paragraphs([item])


def test_total_is_the_weighted_sum_and_paragraph_target_is_the_hull() -> None:
    config, model, batch = _model_and_batch()
    output = model(batch)
    terms = HSCNetLoss(config)(output, batch)
    assert output.paragraph_span is not None
    hull = torch.tensor([[0.1, 0.9]])
    assert torch.isclose(terms["paragraph_l1"], (output.paragraph_span - hull).abs().sum())
    weighted = HSCNetConfig(
        **{**config.to_dict(), "loss_weights": {"align_word": 0.0, "grounding_giou": 3.0}}
    )
    again = HSCNetLoss(weighted)(output, batch)
    expected = terms["total"] - terms["align_word"] + 2 * terms["grounding_giou"]
    assert torch.isclose(again["total"], expected)


def test_output_missing_a_needed_level_raises() -> None:
    config, model, batch = _model_and_batch()
    output = model(batch)
    stripped = HSCNetOutput(**{**vars(output), "word_similarity": None})
    with pytest.raises(ConfigError, match="word_similarity"):
        HSCNetLoss(config)(stripped, batch)
