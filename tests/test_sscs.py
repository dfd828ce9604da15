"""Sscs (Ding et al., ICCV 2021): the objectives against hand-computed values (docs/sscs.md, spec
section 7 items 1-6) and the training-only branch (every construction x function, gradients, padding)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from higround.errors import ConfigError
from higround.losses.sscs import (
    AGGREGATES,
    SUPPORTS,
    caption_nll,
    gt_clip_mask,
    gtc_contrastive,
    ss_contrastive,
    support_attention,
    support_mask,
    support_set_pool,
)
from higround.models.sscs import LOSS_TERMS, CaptionDecoder, SscsBranch, SscsConfig

e = math.e
T_ = torch.tensor
LOG_1P_EINV = math.log(1 + 1 / e)  # 0.31326
ALL = torch.ones(1, 3, dtype=torch.bool)


def _ca_fixture() -> tuple[torch.Tensor, torch.Tensor]:
    return T_([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]]), T_([[1.0, 0.0]])


# ---- eq. 4-5 (CA), eq. 8 (SA), MP, AP ----------------------------------------------------------


def test_cross_attention_hand_computed_at_tau_1_and_0_1() -> None:
    x, y = _ca_fixture()
    a = support_attention(x, y, ALL, "ca", tau=1.0)
    assert torch.allclose(a, T_([[0.66524, 0.24473, 0.09003]]), atol=1e-5)
    assert torch.allclose(support_set_pool(x, y, ALL, "ca", tau=1.0), T_([[0.57521, 0.24473]]), atol=1e-5)
    sharp = support_attention(x, y, ALL, "ca", tau=0.1)
    assert torch.allclose(sharp, T_([[0.99995, 4.54e-5, 2.06e-9]]), rtol=1e-2, atol=0)
    # eq. 4 is a cosine: scaling clips and sentence changes nothing
    assert torch.allclose(support_attention(3 * x, 0.5 * y, ALL, "ca", tau=1.0), a)


def test_self_attention_eq8_and_pools_hand_computed() -> None:
    s = T_([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    # z = (2, 1, 2) -> a = (e^2, e, e^2) / (2 e^2 + e)
    a = support_attention(s, None, ALL, "sa", tau=1.0)
    assert torch.allclose(a, T_([[0.42232, 0.15536, 0.42232]]), atol=1e-5)
    assert torch.allclose(support_set_pool(s, None, ALL, "sa", tau=1.0), T_([[0.84464, 0.15536]]), atol=1e-5)
    two = T_([[[1.0, 3.0], [2.0, 0.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert torch.equal(support_set_pool(two, None, mask, "mp", 1.0), T_([[2.0, 3.0]]))
    assert torch.equal(support_set_pool(two, None, mask, "ap", 1.0), T_([[1.5, 1.5]]))
    with pytest.raises(ConfigError, match="aggregate"):
        support_set_pool(two, None, mask, "fc", 1.0)  # FC needs parameters: the branch's


@pytest.mark.parametrize("kind", ["ca", "sa", "mp", "ap"])
def test_padded_clip_changes_nothing(kind: str) -> None:
    x, y = _ca_fixture()
    padded = torch.cat([x, T_([[[5.0, -7.0]]])], dim=1)
    mask = T_([[True, True, True, False]])
    assert torch.allclose(
        support_set_pool(padded, y, mask, kind, 0.1), support_set_pool(x, y, ALL, kind, 0.1)
    )
    if kind in ("ca", "sa"):
        a = support_attention(padded, y, mask, kind, 0.1)
        assert a[0, 3] == 0
        assert torch.allclose(a[:, :3], support_attention(x, y, ALL, kind, 0.1))


@pytest.mark.parametrize("kind", ["ca", "sa", "mp", "ap"])
def test_gt_and_non_gt_support_sets(kind: str) -> None:
    x, y = _ca_fixture()
    gt = T_([[False, True, False]])
    # GT-SS with GT = {clip 1}: a support set of one clip returns that clip exactly
    one = support_mask(ALL, gt, "gt")
    assert torch.equal(support_set_pool(x, y, one, kind, 0.1), x[:, 1])
    # Non-GT-SS excludes it: its value no longer matters
    rest = support_mask(ALL, gt, "non_gt")
    assert rest.tolist() == [[True, False, True]]
    moved = x.clone()
    moved[0, 1] = T_([9.0, 9.0])
    assert torch.allclose(
        support_set_pool(moved, y, rest, kind, 0.1), support_set_pool(x, y, rest, kind, 0.1)
    )
    assert torch.equal(support_mask(ALL, gt, "video"), ALL)
    # an empty support set (GT covering the video, Non-GT-SS) pools to zeros, finitely
    empty = support_mask(ALL, ALL, "non_gt")
    assert torch.equal(support_set_pool(x, y, empty, kind, 0.1), torch.zeros(1, 2))


def test_gt_clip_mask_uses_clip_positives_rule() -> None:
    spans = T_([[0.3, 0.7], [0.51, 0.52]])
    clip_mask = T_([[True] * 4, [True, True, False, False]])
    # centres 0.125 .. 0.875; row 2 has 2 real clips, the tiny span's midpoint falls in clip 1
    assert gt_clip_mask(spans, clip_mask).tolist() == [
        [False, True, True, False],
        [False, True, False, False],
    ]


# ---- eq. 6 (SS contrastive) -------------------------------------------------------------------


def test_ss_contrastive_hand_computed_sum_mean_permutation_and_swap() -> None:
    w = T_([[1.0, 0.0], [0.0, 1.0]])
    y = T_([[1.0, 0.0], [0.0, 1.0]])
    total = ss_contrastive(w, y, tau=1.0)
    assert math.isclose(total.item(), 2 * LOG_1P_EINV, rel_tol=1e-6)  # 0.62652
    assert math.isclose(ss_contrastive(w, y, 1.0, "mean").item(), LOG_1P_EINV, rel_tol=1e-6)  # 0.31326
    torch.manual_seed(0)
    w3, y3 = torch.randn(5, 4), torch.randn(5, 4)
    perm = torch.randperm(5)
    assert torch.isclose(ss_contrastive(w3[perm], y3[perm], 0.1), ss_contrastive(w3, y3, 0.1))
    assert ss_contrastive(w, y.flip(0), 1.0) > total  # swapping the sentences raises it
    # a row without w (empty support set) adds no term, but its Y stays the other row's negative
    rows = ss_contrastive(w, y, 1.0, "none", valid=T_([True, False]))
    assert torch.allclose(rows, T_([LOG_1P_EINV, 0.0]))


def test_ss_contrastive_same_video_mask() -> None:
    w = T_([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = T_([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    group = T_([0, 1, 1])
    same = group[:, None] == group[None, :]
    kept = ss_contrastive(w, y, 1.0, "none")
    masked = ss_contrastive(w, y, 1.0, "none", same, "mask")
    # row 0 sees the same negatives either way; rows 1-2 lose each other
    assert torch.isclose(masked[0], kept[0])
    assert torch.isclose(masked[1], T_(math.log(1 + 1 / e)))  # w_1.Y_1 = 1 against w_1.Y_0 = 0 alone
    assert torch.isclose(masked[2], T_(math.log(1 + e)))  # w_2.Y_2 = 0 against w_2.Y_0 = 1 alone
    assert (masked[1:] < kept[1:]).all()
    with pytest.raises(ConfigError, match="same-video"):
        ss_contrastive(w, y, 1.0, same_video_negatives="mask")


# ---- eq. 2 (GTC contrastive) ------------------------------------------------------------------


def _gtc(video2: list[list[float]], gt2: list[bool]) -> tuple[torch.Tensor, ...]:
    x = T_([[[1.0, 0.0], [0.0, 1.0]], video2])
    y = T_([[1.0, 0.0], [0.0, 1.0]])
    gt = T_([[True, False], gt2])
    return x, y, gt, torch.ones(2, 2, dtype=torch.bool)


def test_gtc_fixture_a() -> None:
    x, y, gt, clips = _gtc([[0.0, 1.0], [1.0, 0.0]], [True, False])
    one = math.log(2) + LOG_1P_EINV  # -log(e / (e + 1 + 1 + e)) = 1.00641
    assert math.isclose(gtc_contrastive(x, y, gt, clips, 1.0).item(), 2 * one, rel_tol=1e-6)  # 2.01282
    assert math.isclose(gtc_contrastive(x, y, gt, clips, 1.0, "mean").item(), one, rel_tol=1e-6)
    # a padded clip (which would be a strong negative) changes nothing
    xp = torch.cat([x, T_([[[1.0, 0.0]], [[0.0, 1.0]]])], dim=1)
    clips_p = T_([[True, True, False], [True, True, False]])
    gt_p = torch.cat([gt, T_([[True], [True]])], dim=1)  # even marked GT, padding is ignored
    assert torch.isclose(gtc_contrastive(xp, y, gt_p, clips_p, 1.0), gtc_contrastive(x, y, gt, clips, 1.0))
    # both rows from one video, mask: the other row's clips leave the denominator, -log(e / (e + 1))
    same = torch.ones(2, 2, dtype=torch.bool)
    masked = gtc_contrastive(x, y, gt, clips, 1.0, "none", same, "mask")
    assert torch.allclose(masked, T_([LOG_1P_EINV, LOG_1P_EINV]))
    kept = gtc_contrastive(x, y, gt, clips, 1.0, "none", same, "keep")
    assert torch.allclose(kept, T_([one, one]))


def test_gtc_fixture_b_per_sample() -> None:
    x, y, gt, clips = _gtc([[-1.0, 0.0], [0.0, 1.0]], [False, True])
    rows = gtc_contrastive(x, y, gt, clips, 1.0, "none")
    # sample 1: -log(e / (e + 1 + e^-1 + 1)) = 2 log(1 + e^-1); sample 2: as in fixture A
    assert torch.allclose(rows, T_([2 * LOG_1P_EINV, math.log(2) + LOG_1P_EINV]), atol=1e-6)
    assert torch.allclose(rows, T_([0.62652, 1.00641]), atol=1e-5)
    assert torch.isclose(gtc_contrastive(x, y, gt, clips, 1.0, "sum"), rows.sum())


# ---- eq. 3 / 7 (caption) ----------------------------------------------------------------------


def test_caption_nll_on_a_stub_equals_hand_cross_entropy() -> None:
    torch.manual_seed(0)
    base = T_(
        [[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [7.0, 7.0, -3.0]], [[0.0, 0.0, 0.0], [4.0, 4.0, 4.0], [1, 2, 3]]]
    )
    targets = T_([[0, 1, 2], [2, 1, 0]])
    mask = T_([[True, True, False], [True, False, False]])
    w = torch.zeros(2, 4, requires_grad=True)
    project = torch.randn(4, 3)

    def stub(w: torch.Tensor) -> torch.Tensor:  # a decoder stub: fixed logits shifted by w
        return base + (w @ project)[:, None, :]

    loss = caption_nll(stub(w), targets, mask)
    sentence_1 = (math.log(1 + 2 * e**-2) + math.log(1 + 2 / e)) / 2  # 0.24782, 0.55144 -> 0.39963
    sentence_2 = math.log(3)  # 1.09861
    assert math.isclose(loss.item(), (sentence_1 + sentence_2) / 2, rel_tol=1e-6)  # 0.74912
    summed = caption_nll(stub(w), targets, mask, "sum")
    assert math.isclose(summed.item(), sentence_1 + sentence_2, rel_tol=1e-6)
    # padding tokens (any logits, any target) change nothing
    noisy = stub(w) + torch.where(mask[..., None], 0.0, 50 * torch.randn(2, 3, 3))
    assert torch.isclose(caption_nll(noisy, targets.masked_fill(~mask, 2), mask), loss)
    loss.backward()
    assert w.grad is not None and w.grad.abs().sum(dim=1).min() > 0  # reaches every w


def test_caption_decoder_markers_and_padding() -> None:
    torch.manual_seed(0)
    decoder = CaptionDecoder(torch.randn(7, 3), in_dim=4, hidden_dim=5)
    assert decoder.eos_id == 7 and decoder.output.out_features == 8
    words = T_([[5, 6, 3], [2, 4, 0]])
    mask = T_([[True, True, False], [True, True, False]])
    w = torch.randn(2, 4)
    logits, targets, token_mask = decoder(w, words, mask)
    assert logits.shape == (2, 4, 8)
    assert targets.tolist() == [[5, 6, 7, 0], [2, 4, 7, 0]]
    assert token_mask.tolist() == [[True, True, True, False]] * 2
    per_row = caption_nll(logits, targets, token_mask, "none")
    # the first sentence alone, without padding, gives the same term
    logits_1, targets_1, token_mask_1 = decoder(w[:1], words[:1, :2], mask[:1, :2])
    assert torch.allclose(caption_nll(logits_1, targets_1, token_mask_1, "none"), per_row[:1], atol=1e-6)
    assert not decoder.embedding.weight.requires_grad  # frozen word vectors by default


# ---- the branch ---------------------------------------------------------------------------------

B, T, DV, DL, V, E, L = 4, 6, 5, 7, 11, 3, 4


def _small(**switches: Any) -> SscsConfig:
    return SscsConfig(dim=8, decoder_hidden=6, gt_encoder_heads=2, gt_encoder_ffn_dim=8, **switches)


def _batch(pad_clips: int = 0, pad_words: int = 0) -> dict[str, torch.Tensor]:
    """A batch of 4 sentences (rows 0 and 1 share a video); the padded version holds the same real
    entries followed by ``pad_clips`` random clips and ``pad_words`` random ids, all masked out."""
    g = torch.Generator().manual_seed(1)
    clips = torch.randn(B, T, DV, generator=g)
    sentence = torch.randn(B, DL, generator=g)
    words = torch.randint(2, V, (B, L), generator=g)
    noise = torch.Generator().manual_seed(2)
    clips = torch.cat([clips, 9 * torch.randn(B, pad_clips, DV, generator=noise)], dim=1)
    words = torch.cat([words, torch.randint(2, V, (B, pad_words), generator=noise)], dim=1)
    clip_mask = (torch.arange(T + pad_clips)[None, :] < T).expand(B, -1).clone()
    spans = T_([[0.2, 0.5], [0.0, 1.0], [0.6, 0.7], [0.0, 0.3]])  # row 1: GT is the whole video
    lengths = T_([4, 2, 1, 3])
    word_mask = torch.arange(L + pad_words)[None, :] < lengths[:, None]
    group = T_([0, 0, 1, 2])
    return {
        "clips": clips.requires_grad_(),
        "clip_mask": clip_mask,
        "sentence": sentence.requires_grad_(),
        "gt_mask": gt_clip_mask(spans, clip_mask),
        "words": words,  # the ids under padding are not zeroed: the mask alone must hide them
        "word_mask": word_mask,
        "same_video": group[:, None] == group[None, :],
    }


def _branch(config: SscsConfig, num_clips: int = T) -> SscsBranch:
    torch.manual_seed(0)
    return SscsBranch(config, DV, DL, num_clips, torch.randn(V, E))


OBJECTIVE_PAIRS = list(itertools.product(["ss", "gtc"], ["ss", "gtc"]))


@pytest.mark.parametrize(("support", "aggregate"), list(itertools.product(SUPPORTS, AGGREGATES)))
def test_branch_every_combination_trains_and_reaches_its_inputs(support: str, aggregate: str) -> None:
    for contrast, caption in OBJECTIVE_PAIRS:
        config = _small(contrast=contrast, caption=caption, support=support, aggregate=aggregate)
        branch = _branch(config)
        batch = _batch()
        terms = branch(**batch)
        assert tuple(terms) == LOSS_TERMS == config.terms
        assert all(torch.isfinite(v) and v.ndim == 0 for v in terms.values())
        torch.stack(list(terms.values())).sum().backward()
        for name in ("clips", "sentence"):  # so the gradient would reach a base model
            grad = batch[name].grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
        for name, parameter in branch.named_parameters():
            if not parameter.requires_grad:  # the frozen word vectors
                continue
            if name.endswith("k_proj.bias"):  # a key bias shifts every score of a query: no gradient
                continue
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(("support", "aggregate"), list(itertools.product(SUPPORTS, AGGREGATES)))
def test_branch_padding_changes_no_term(support: str, aggregate: str) -> None:
    for contrast, caption in OBJECTIVE_PAIRS:
        branch = _branch(
            _small(contrast=contrast, caption=caption, support=support, aggregate=aggregate), T + 2
        )
        plain = branch(**_batch())
        padded = branch(**_batch(pad_clips=2, pad_words=3))
        for term in LOSS_TERMS:
            assert torch.allclose(plain[term], padded[term], atol=1e-5), (contrast, caption, term)


def test_branch_builds_only_what_it_uses_and_returns_only_switched_terms() -> None:
    only_caption = _branch(_small(contrast="none", caption="ss", aggregate="sa"))
    assert only_caption.phi is None and only_caption.gt_encoder is None and only_caption.fc is None
    assert tuple(only_caption(**_batch())) == ("sscs_caption",)
    only_contrast = _branch(_small(contrast="gtc", caption="none"))
    assert only_contrast.decoder is None
    assert tuple(only_contrast(**_batch())) == ("sscs_contrast",)
    assert _branch(_small(contrast="none", caption="none"))(**_batch()) == {}


def test_branch_non_gt_rows_without_support_are_left_out() -> None:
    # row 1's GT covers the whole video: Non-GT-SS leaves it no clip, so it adds no term
    branch = _branch(_small(support="non_gt", contrast_reduction="mean", caption_reduction="mean"))
    batch = _batch()
    support = support_mask(batch["clip_mask"], batch["gt_mask"], "non_gt")
    assert support.any(dim=1).tolist() == [True, False, True, True]
    terms = branch(**batch)
    moved = dict(batch, words=batch["words"].clone())
    moved["words"][1] = T_([3, 9, 0, 0])  # the left-out row's sentence does not matter to the caption
    assert torch.isclose(branch(**moved)["sscs_caption"], terms["sscs_caption"])


def test_branch_same_video_mask_and_training_only_contract() -> None:
    batch = _batch()
    kept = _branch(_small())(**batch)
    masked = _branch(_small(same_video_negatives="mask"))(**batch)
    assert masked["sscs_contrast"] < kept["sscs_contrast"]  # rows 0 and 1 lose a negative each
    assert torch.isclose(masked["sscs_caption"], kept["sscs_caption"])
    with pytest.raises(ConfigError, match="same-video"):
        _branch(_small(same_video_negatives="mask"))(**dict(batch, same_video=None))
    branch = _branch(_small()).eval()
    with pytest.raises(RuntimeError, match="training only"):
        branch(**batch)


def test_config_checks() -> None:
    config = SscsConfig.from_dict({"contrast": "gtc", "aggregate": "sa", "tau": 0.5})
    assert SscsConfig.from_dict(config.to_dict()) == config
    assert SscsConfig().terms == LOSS_TERMS and SscsConfig(caption="none").terms == ("sscs_contrast",)
    with pytest.raises(ConfigError, match="unknown key"):
        SscsConfig.from_dict({"lambda_contrast": 0.1})  # the lambdas are the family's loss_weights
    with pytest.raises(ConfigError, match="aggregate"):
        SscsConfig.from_dict({"aggregate": "max"})
    with pytest.raises(ConfigError, match="tau"):
        SscsConfig(tau=0.0)
    with pytest.raises(ConfigError, match="num_clips"):
        SscsBranch(SscsConfig(aggregate="conv"), DV, DL, None, torch.randn(V, E))
    with pytest.raises(ConfigError, match="word_vectors"):
        SscsBranch(SscsConfig(), DV, DL, T)
    with pytest.raises(ConfigError, match="clips must be"):
        _branch(_small())(**dict(_batch(), clips=torch.randn(B, T, DV + 1)))
    # real clips past the fixed length of FC are refused, padding past it is dropped
    fc = _branch(_small(aggregate="fc"), num_clips=T - 1)
    with pytest.raises(ConfigError, match="num_clips"):
        fc(**_batch())
