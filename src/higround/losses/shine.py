"""SHINE's saliency losses (Cheng, Pu et al., ECCV 2024): the negative-pair loss, the coarse-grained
ranking loss ``L_cr`` and the fine-grained ranking loss ``L_fr``, as vectorised tensor functions a
DETR-style family's training loss calls (:class:`higround.losses.detr.DETRLoss`), the choice of the
easy negative, and the ``model.shine`` recipe section (:class:`ShineConfig`, :func:`shine_section`).

Inputs are per-clip saliency *logits* of one batch of videos, each scored against several queries:
the positive ``s`` ``(B, N_V)``, the easy negative ``s^n`` ``(B, N_V)`` (another query of the batch),
the hard negatives ``s^hn`` ``(B, H, N_V)`` (the hierarchy, least edited first), the GT clips
``(B, N_V)`` and the real (valid) clips ``(B, N_V)``. Masks are boolean, True for real entries;
padded clips never change a result, whatever their scores (even NaN), nor get a gradient.

Equation labels: "S-Eq. n" are the supplement's; "C-n" the spec's labels for what the supplement
describes and the released code (``shine/ctf_ranking.py``) computes, since the main paper's text was
not available (docs/shine.md, ``../shared/specs/shine.md`` section 3).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from higround.errors import ConfigError
from higround.losses.span import masked_mean
from higround.models.family import DictConfig

# L_fr's chain: "relative" compares neighbours (the released ranking_type "red", the default:
# supp. 1.3 "we adopt the fine-grained ranking loss of relative distance as the default"), "absolute"
# compares every later negative to hn^1 (S-Eq. 1, released "abd").
RANKINGS = ("relative", "absolute")
# The easy negative of row i: the query of row (i + 1) mod B (QD-DETR's batch roll, released), or the
# next row (cyclically) showing another video, so that the "negative" is never a query of the same
# video (spec 5.7: Charades-CG has ~2.3 queries per video).
ROLL = "roll"
OTHER_VIDEO = "other_video"
EASY_NEGATIVES = (ROLL, OTHER_VIDEO)

COARSE_TERM = "shine_coarse"
FINE_TERM = "shine_fine"
# The terms :func:`shine_losses` returns: the families' loss_weights keys for lambda_cr and lambda_fr
# (released coarse_coef = fine_coef = 1.0, so both weigh 1 unless a recipe says otherwise).
LOSS_TERMS = (COARSE_TERM, FINE_TERM)
# The negative-pair loss L_neg (S-Eq. 3) as the DETR families name it (QD-DETR's; SHINE adds it to
# Moment-DETR, S-Eq. 4): lambda_neg is ``loss_weights["saliency_negative"]`` (released 1).
NEGATIVE_TERM = "saliency_negative"


def _check_scores(name: str, scores: Tensor, valid_mask: Tensor) -> None:
    if scores.shape[0] != valid_mask.shape[0] or scores.shape[-1] != valid_mask.shape[-1]:
        raise ValueError(
            f"shine: {name} of shape {tuple(scores.shape)} does not match the clip mask "
            f"{tuple(valid_mask.shape)}"
        )


def _clean(scores: Tensor, mask: Tensor) -> Tensor:
    """``scores`` with 0 where not ``mask``: a padded NaN or inf then reaches no result or gradient."""
    return torch.where(mask, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))


def negative_pair_loss(negative: Tensor, valid_mask: Tensor, rows: Tensor | None = None) -> Tensor:
    """S-Eq. 3, ``L_neg = -log(1 - sigma(s^neg))`` summed over a row's real clips, mean over rows.

    Written ``softplus(s^neg)`` (the same value, finite for large logits). QD-DETR's negative-pair
    loss; SHINE adds it to Moment-DETR (S-Eq. 4).

    Args:
        negative: ``(B, N_V)`` saliency logits of the video against a query that does not describe it.
        valid_mask: ``(B, N_V)`` real clips.
        rows: ``(B,)`` the rows that count (default: those with a real clip).

    Returns:
        A scalar (0 for a batch without a row that counts).
    """
    _check_scores("negative", negative, valid_mask)
    per_clip = _clean(F.softplus(_clean(negative, valid_mask)), valid_mask)
    return masked_mean(per_clip.sum(dim=1), valid_mask.any(dim=1) if rows is None else rows)


def top_k_mean(scores: Tensor, mask: Tensor, k: Tensor) -> Tensor:
    """``(B,)`` the mean of the ``k_b`` highest ``scores`` of each row among the ``mask`` entries.

    ``k`` ``(B,)`` must lie in ``[1, mask.sum(1)]``; rows outside that range give 0.
    """
    ranked = scores.masked_fill(~mask, float("-inf")).sort(dim=1, descending=True).values
    positions = torch.arange(scores.shape[1], device=scores.device)
    take = (positions[None, :] < k[:, None]) & (positions[None, :] < mask.sum(dim=1, keepdim=True))
    ok = (k >= 1) & (k <= mask.sum(dim=1))
    total = _clean(ranked, take).sum(dim=1)
    return torch.where(ok, total / k.clamp_min(1).to(scores.dtype), torch.zeros_like(total))


class CoarseRanking(NamedTuple):
    """The two hinges of L_cr (C-2), each a batch mean; :attr:`total` is ``L_cr`` (C-3)."""

    intra: Tensor
    inter: Tensor

    @property
    def total(self) -> Tensor:
        """``L_cr = L_intra + L_inter``."""
        return self.intra + self.inter


def coarse_ranking_loss(
    positive: Tensor,
    easy_negative: Tensor,
    gt_mask: Tensor,
    valid_mask: Tensor,
    *,
    intra_margin: float = 1.0,
    inter_margin: float = 2.0,
    q: int = 8,
) -> CoarseRanking:
    """The coarse-grained ranking loss L_cr (C-1 .. C-3).

    Per row, with ``G`` its GT clips and ``k = max(floor(|G| / q), 1)``:

    * (C-1) ``s_in`` = mean of the top-k positive logits inside ``G``; ``s_out`` = the highest
      positive logit of the real clips outside ``G`` (the first clip's when ``G`` covers the whole
      video, as released); ``s_neg`` = mean of the top-k easy-negative logits inside ``G``.
    * (C-2) ``L_intra = max(0, h_1 + s_out - s_in)``, ``L_inter = max(0, h_2 + s_neg - s_in)``.
    * (C-3) each averaged over the rows with a GT clip (the released code divides by the batch
      size: the same when every row has one).

    Args:
        positive: ``(B, N_V)`` saliency logits for the positive query (raw logits: top-k and hinges
            act on them, not on sigmoids, as released).
        easy_negative: ``(B, N_V)`` logits of the same video for the easy negative query.
        gt_mask: ``(B, N_V)`` GT clips (binary saliency labels); entries outside ``valid_mask`` are
            ignored.
        valid_mask: ``(B, N_V)`` real clips.
        intra_margin: ``h_1`` (1.0: supp. Table 2a, the released ``coarse_margin`` default).
        inter_margin: ``h_2`` (2.0: same sources).
        q: the top-k divisor (8, released ``q``).

    Returns:
        :class:`CoarseRanking` of scalar ``intra`` and ``inter``.
    """
    for name, scores in (("positive", positive), ("easy_negative", easy_negative), ("gt_mask", gt_mask)):
        _check_scores(name, scores, valid_mask)
    if q < 1:
        raise ConfigError(f"shine: the top-k divisor q must be >= 1, got {q}")
    gt = gt_mask.bool() & valid_mask
    has_gt = gt.any(dim=1)
    pos = _clean(positive, valid_mask)
    neg = _clean(easy_negative, valid_mask)
    k = torch.div(gt.sum(dim=1), q, rounding_mode="floor").clamp_min(1)
    s_in = top_k_mean(pos, gt, k)
    s_neg = top_k_mean(neg, gt, k)
    background = valid_mask & ~gt
    has_background = background.any(dim=1)
    s_out = torch.where(has_background, pos.masked_fill(~background, float("-inf")).amax(dim=1), pos[:, 0])
    intra = F.relu(intra_margin + s_out - s_in)
    inter = F.relu(inter_margin + s_neg - s_in)
    return CoarseRanking(masked_mean(intra, has_gt), masked_mean(inter, has_gt))


def saliency_distance(target: Tensor, scores: Tensor, valid_mask: Tensor) -> Tensor:
    """C-4: ``d(T, S) = (1/L) sum_t -sg[T_t] log sigma(s_t)`` over the ``L`` real clips of each row.

    The positive half of a binary cross-entropy, target detached (``sg``: no gradient flows through
    it). ``d(Y, S_p)`` takes the binary GT labels as ``target``; ``d(S_p, S_x)`` takes
    ``sigmoid(s^p)``. Computed with ``logsigmoid`` (the released ``log(sigma + 1e-9)`` differs by at
    most 1e-9 / sigma).

    Args:
        target: ``(..., N_V)`` target probabilities in ``[0, 1]``.
        scores: ``(..., N_V)`` logits, broadcastable with ``target``.
        valid_mask: ``(B, N_V)`` real clips, broadcast over the middle dimensions.

    Returns:
        ``(...)`` one distance per row (0 for a row without a real clip).
    """
    _check_scores("scores", scores, valid_mask)
    valid = valid_mask.reshape(valid_mask.shape[0], *([1] * (scores.dim() - 2)), valid_mask.shape[-1])
    per_clip = -_clean(target.detach(), valid) * F.logsigmoid(_clean(scores, valid))
    return _clean(per_clip, valid).sum(dim=-1) / valid.sum(dim=-1).clamp_min(1).to(scores.dtype)


def fine_distances(
    positive: Tensor, hard_negatives: Tensor, easy_negative: Tensor, gt_mask: Tensor, valid_mask: Tensor
) -> Tensor:
    """``(B, H + 2)`` the chain ``d(Y, S_p), d(S_p, S_hn^1), ..., d(S_p, S_hn^H), d(S_p, S_n)`` (C-4).

    Args:
        positive: ``(B, N_V)`` positive logits ``s^p``.
        hard_negatives: ``(B, H, N_V)`` hard-negative logits, least edited first.
        easy_negative: ``(B, N_V)`` easy-negative logits.
        gt_mask: ``(B, N_V)`` GT clips (the labels ``Y``).
        valid_mask: ``(B, N_V)`` real clips.
    """
    if hard_negatives.dim() != 3 or hard_negatives.shape[0] != positive.shape[0]:
        raise ValueError(f"shine: hard_negatives must be (B, H, N_V), got {tuple(hard_negatives.shape)}")
    labels = (gt_mask.bool() & valid_mask).to(positive.dtype)
    to_gt = saliency_distance(labels, positive, valid_mask)
    negatives = torch.cat([hard_negatives, easy_negative[:, None]], dim=1)  # (B, H + 1, N_V)
    target = torch.sigmoid(_clean(positive, valid_mask))[:, None]
    return torch.cat([to_gt[:, None], saliency_distance(target, negatives, valid_mask)], dim=1)


def ranking_hinge(distances: Tensor, margins: tuple[float, ...] | list[float], ranking: str) -> Tensor:
    """``(B,)`` the sum of L_fr's hinges on a distance chain ``D_0 .. D_{H+1}`` (``(B, H + 2)``).

    * ``"relative"`` (default): ``sum_j max(0, m_j + D_j - D_{j+1})``, j = 0..H: each negative
      further from the positive than the one before.
    * ``"absolute"`` (S-Eq. 1): ``max(0, m_0 + D_0 - D_1) + sum_{j>=1} max(0, m_j + D_1 - D_{j+1})``.

    Args:
        distances: ``(B, H + 2)`` from :func:`fine_distances`.
        margins: ``m_0 .. m_H`` (``H + 1`` values).
        ranking: one of :data:`RANKINGS`.
    """
    if ranking not in RANKINGS:
        raise ConfigError(f"shine: ranking must be one of {RANKINGS}, got {ranking!r}")
    if len(margins) != distances.shape[1] - 1:
        raise ConfigError(
            f"shine: {len(margins)} fine margins for {distances.shape[1] - 2} hard negatives "
            f"(need {distances.shape[1] - 1}: m_0 .. m_H)"
        )
    m = torch.as_tensor(margins, dtype=distances.dtype, device=distances.device)
    if ranking == "relative":
        anchors = distances[:, :-1]
    else:
        anchors = torch.cat([distances[:, :1], distances[:, 1:2].expand(-1, len(margins) - 1)], dim=1)
    return F.relu(m + anchors - distances[:, 1:]).sum(dim=1)


def fine_ranking_loss(
    positive: Tensor,
    hard_negatives: Tensor,
    easy_negative: Tensor,
    gt_mask: Tensor,
    valid_mask: Tensor,
    *,
    margins: tuple[float, ...] | list[float] = (0.25, 0.25, 0.25, 0.25),
    ranking: str = "relative",
) -> Tensor:
    """The fine-grained ranking loss L_fr: :func:`ranking_hinge` of :func:`fine_distances`, averaged
    over the rows with a real clip.

    Gradients reach ``s^p`` only through ``d(Y, S_p)``: in ``d(S_p, S_x)`` the target ``sigma(s^p)``
    is detached, so the hard and easy negatives are pushed away from a fixed positive profile.

    Args:
        positive, hard_negatives, easy_negative, gt_mask, valid_mask: see :func:`fine_distances`.
        margins: ``m_0 .. m_H`` (0.25 each: supp. Table 2b, the released ``fine_margin`` default).
        ranking: ``"relative"`` (default) or ``"absolute"`` (S-Eq. 1, supp. Table 3).

    Returns:
        A scalar.
    """
    distances = fine_distances(positive, hard_negatives, easy_negative, gt_mask, valid_mask)
    return masked_mean(ranking_hinge(distances, margins, ranking), valid_mask.any(dim=1))


def easy_negative_index(same_video: Tensor, mode: str = ROLL) -> Tensor:
    """``(B,)`` for each row, the row whose query is its easy negative.

    ``"roll"``: ``(i + 1) mod B`` (QD-DETR's batch roll ``src_txt[1:] + src_txt[0:1]``, and the
    released SHINE). ``"other_video"``: the first row after ``i`` (cyclically) of another video;
    ``(i + 1) mod B`` when every row shows the same video. QD-DETR's negative pass and SHINE's easy
    negative both take their rows here.

    Args:
        same_video: ``(B, B)`` bool, True where rows ``i`` and ``j`` show the same video
            (:meth:`higround.data.batch.ParagraphBatch.same_video`).
        mode: one of :data:`EASY_NEGATIVES`.

    Returns:
        ``(B,)`` long row indices.

    Raises:
        ConfigError: an unknown ``mode``.
    """
    if mode not in EASY_NEGATIVES:
        raise ConfigError(f"shine: easy_negative must be one of {EASY_NEGATIVES}, got {mode!r}")
    size = same_video.shape[0]
    rows = torch.arange(size, device=same_video.device)
    if mode == "roll" or size < 2:
        return (rows + 1) % size
    offsets = torch.arange(1, size, device=same_video.device)
    candidates = (rows[:, None] + offsets[None, :]) % size  # (B, B - 1), nearest first
    other = ~same_video.gather(1, candidates)
    first = torch.where(other.any(dim=1), other.to(torch.int8).argmax(dim=1), 0)
    return candidates.gather(1, first[:, None])[:, 0]


def _floats(name: str, value: Any, count: int | None = None) -> tuple[float, ...]:
    """``value`` as a tuple of finite floats >= 0 (a YAML list, or a string float literal per entry)."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"shine config: {name} must be a list of numbers, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, str):
            with contextlib.suppress(ValueError):
                item = float(item)
        if isinstance(item, bool) or not isinstance(item, int | float) or not 0 <= item < math.inf:
            raise ConfigError(f"shine config: {name} must hold finite numbers >= 0, got {value!r}")
        out.append(float(item))
    if count is not None and len(out) != count:
        raise ConfigError(f"shine config: {name} must hold {count} numbers, got {len(out)}")
    return tuple(out)


@dataclass
class ShineConfig(DictConfig):
    """The ``model.shine`` section of a recipe: every SHINE switch (defaults: the paper's; sources in
    docs/shine.md). The weights ``lambda_cr``, ``lambda_fr`` are the family's
    ``loss_weights["shine_coarse"]`` and ``loss_weights["shine_fine"]`` (released 1.0 each); the
    masking ratios are the negative generator's (:func:`higround.data.negatives.generate_negatives`).

    Which negatives feed the hard passes is the data's (``data.negatives``, ``data.negatives_kind``):
    the first ``hard_negatives`` levels of every training query's hierarchy.

    Attributes:
        hard_negatives: ``H``, hard negatives per query [hn_num: 3].
        coarse_margins: ``(h_1, h_2)``, the intra and inter margins of L_cr [coarse_margin; supp.
            Table 2a best: 1.0, 2.0].
        top_k_divisor: ``q`` of L_cr's top-k [q: 8].
        fine_margins: ``m_0 .. m_H`` of L_fr [fine_margin; supp. Table 2b best: 0.25 each].
        ranking: L_fr's chain, ``"relative"`` [ranking_type "red", default] or ``"absolute"``
            (S-Eq. 1, ["abd"]).
        keep_base_saliency_hinge: keep the base model's saliency hinge besides L_cr. False: replaced
            by L_intra (supp. 1.4); the released ActivityNet-CG command adds it back
            (``--use_saliency_loss``).
        easy_negative: ``"roll"`` (released) or ``"other_video"`` (:func:`easy_negative_index`).
    """

    LABEL: ClassVar[str] = "shine config"

    hard_negatives: int = 3
    coarse_margins: tuple[float, ...] = (1.0, 2.0)
    top_k_divisor: int = 8
    fine_margins: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    ranking: str = "relative"
    keep_base_saliency_hinge: bool = False
    easy_negative: str = "roll"

    def __post_init__(self) -> None:
        """Check every type, choice and range; a bad value raises ConfigError naming the field.

        The section reaches this class untyped from YAML: lists become tuples of floats.
        """
        for name in ("hard_negatives", "top_k_divisor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"shine config: {name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.keep_base_saliency_hinge, bool):
            hinge = self.keep_base_saliency_hinge
            raise ConfigError(f"shine config: keep_base_saliency_hinge must be true or false, got {hinge!r}")
        for name, allowed in (("ranking", RANKINGS), ("easy_negative", EASY_NEGATIVES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"shine config: {name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        self.coarse_margins = _floats("coarse_margins", self.coarse_margins, 2)
        self.fine_margins = _floats("fine_margins", self.fine_margins)
        if len(self.fine_margins) != self.hard_negatives + 1:
            raise ConfigError(
                f"shine config: fine_margins must hold hard_negatives + 1 = {self.hard_negatives + 1} "
                f"margins (m_0 .. m_H), got {len(self.fine_margins)}"
            )


def shine_section(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A family config's ``shine`` field checked and completed: every key of :class:`ShineConfig`
    (its defaults where the recipe is silent; margins as lists, as YAML writes them back), or
    ``None`` (SHINE off). ``{}`` is the paper's SHINE.

    Raises:
        ConfigError: not a mapping, an unknown key, or a bad value (named).
    """
    if value is None:
        return None
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in ShineConfig.from_dict(value).to_dict().items()
    }


def shine_losses(
    positive: Tensor,
    easy_negative: Tensor,
    hard_negatives: Tensor,
    gt_mask: Tensor,
    valid_mask: Tensor,
    config: ShineConfig,
) -> dict[str, Tensor]:
    """``{"shine_coarse": L_cr, "shine_fine": L_fr}`` of one batch under ``config`` (unweighted).

    Args:
        positive: ``(B, N_V)`` positive logits.
        easy_negative: ``(B, N_V)`` easy-negative logits.
        hard_negatives: ``(B, H, N_V)`` hard-negative logits, ``H = config.hard_negatives``.
        gt_mask: ``(B, N_V)`` GT clips.
        valid_mask: ``(B, N_V)`` real clips.
        config: margins, ``q`` and the ranking variant.

    Raises:
        ConfigError: ``hard_negatives`` does not hold ``config.hard_negatives`` negatives.
    """
    if hard_negatives.dim() != 3 or hard_negatives.shape[1] != config.hard_negatives:
        raise ConfigError(
            f"shine: {config.hard_negatives} hard negatives configured, scores of shape "
            f"{tuple(hard_negatives.shape)} given (want (B, {config.hard_negatives}, N_V))"
        )
    h1, h2 = config.coarse_margins
    coarse = coarse_ranking_loss(
        positive, easy_negative, gt_mask, valid_mask, intra_margin=h1, inter_margin=h2, q=config.top_k_divisor
    )
    fine = fine_ranking_loss(
        positive,
        hard_negatives,
        easy_negative,
        gt_mask,
        valid_mask,
        margins=config.fine_margins,
        ranking=config.ranking,
    )
    return {COARSE_TERM: coarse.total, FINE_TERM: fine}
