"""The DETR-style moment retrieval objective of Moment-DETR and QD-DETR, as tensor functions and the
:class:`DETRLoss` / :class:`QDDETRLoss` modules that weigh them.

Moment-DETR (``moment_detr/model.py`` ``SetCriterion``, ``matcher.py`` ``HungarianMatcher``):

* Hungarian matching of the ``Q`` predicted spans to the ground-truth windows with the cost
  ``-c_cls p_fg + c_L1 |m - m^|_1 - c_GIoU GIoU(m, m^)`` (4, 10, 1), solved by
  ``scipy.optimize.linear_sum_assignment`` per sample (:func:`match_queries`);
* on matched queries ``L_span = lambda_L1 |m - m^|_1 + lambda_GIoU (1 - GIoU)`` (SHINE supp. S-Eq. 2,
  weights 10 and 1) and over every query a cross-entropy of foreground vs background whose
  background class weighs ``eos_coef`` = 0.1 (weight 4); both on every decoder layer (aux losses);
* the saliency hinge ``sum max(0, 0.2 + s_neg - s_pos)`` over sampled clip pairs, ``/ (B pairs) * 2``
  (:func:`saliency_pairs`, :func:`saliency_hinge`).

QD-DETR adds (``qd_detr/model.py`` ``loss_saliency``): the negative-pair loss
``sum_t -log(1 - sigmoid(s^neg_t))`` (S-Eq. 3; :func:`higround.losses.shine.negative_pair_loss`) and
the rank-contrastive loss over ``[s; s^neg]`` with labels ``[y; 0]`` (S-Eq. 5;
:func:`rank_contrastive_loss`).

SHINE (a ``shine`` section; docs/shine.md): both families gain L_neg on the easy negative (S-Eq. 4 for
Moment-DETR; QD-DETR's own), the coarse- and fine-grained ranking losses L_cr and L_fr
(:func:`higround.losses.shine.shine_losses`) on the GT clips of the saliency labels, and the saliency
hinge is replaced (L_intra, inside L_cr, takes its place: supp. 1.4) unless
``keep_base_saliency_hinge``.

Random draws (clip pairs, the window subset) use torch's default generator, which the engine
reseeds before every training batch: a run is reproducible.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.losses.shine import NEGATIVE_TERM, negative_pair_loss, shine_losses
from higround.losses.span import masked_mean, span_giou
from higround.models.detr import FOREGROUND, DETRConfig, DETROutput, span_cxw_to_xx, span_xx_to_cxw
from higround.models.qd_detr.config import MEAN_LOG, QDDETRConfig

# A clip boundary that s * T misses by float rounding (26 / 150 * 75 = 12.99999...) still counts.
CLIP_EPS = 1e-4
# QD-DETR's ranks: thresholds r = 1..11 over the summed annotator scores, the sum divided by 12
# (qd_detr/model.py: ``for rand_idx in range(1, 12)`` and ``/ 12``).
RANKS = 11
RANK_DIVISOR = 12.0


# --- matching and the span/class terms ------------------------------------------------------------------


def matching_cost(
    logits: Tensor, spans: Tensor, targets: Tensor, cost_class: float, cost_span: float, cost_giou: float
) -> Tensor:
    """``(..., Q, W)`` the matching cost of every predicted span against every target.

    ``-cost_class p_fg + cost_span |m - m^|_1 - cost_giou GIoU(m, m^)``, the L1 on ``(center,
    width)`` and the GIoU on ``(start, end)`` (``HungarianMatcher.forward``).

    Args:
        logits: ``(..., Q, 2)`` class logits (foreground: index 0).
        spans: ``(..., Q, 2)`` predicted ``(center, width)``.
        targets: ``(..., W, 2)`` target ``(center, width)`` (broadcast against ``spans``' leading axes).
    """
    probability = logits.softmax(dim=-1)[..., FOREGROUND]
    pred, gt = spans[..., :, None, :], targets[..., None, :, :]
    l1 = (pred - gt).abs().sum(dim=-1)
    giou = span_giou(span_cxw_to_xx(pred), span_cxw_to_xx(gt))
    return cost_span * l1 - cost_giou * giou - cost_class * probability[..., None]


def match_queries(cost: Tensor, target_mask: Tensor) -> Tensor:
    """The optimal one-to-one assignment of queries to targets under ``cost``, per sample.

    Args:
        cost: ``(L, B, Q, W)`` matching costs (:func:`matching_cost`).
        target_mask: ``(B, W)`` the real targets, a prefix of each row.

    Returns:
        ``(L, B, Q)`` long: the target matched to each query, ``-1`` for a query left unmatched
        (``min(Q, W_b)`` are matched per sample; none for a sample without target).
    """
    layers, batch, queries, _ = cost.shape
    table = cost.detach().float().cpu().numpy()
    counts = target_mask.sum(dim=1).tolist()
    assignment = np.full((layers, batch, queries), -1, dtype=np.int64)
    for layer in range(layers):
        for b, count in enumerate(counts):
            if count:
                rows, cols = linear_sum_assignment(table[layer, b, :, :count])
                assignment[layer, b, rows] = cols
    return torch.from_numpy(assignment).to(cost.device)


def window_targets(batch: ParagraphBatch, max_windows: int) -> tuple[Tensor, Tensor]:
    """``(B, W, 2)`` the ground-truth ``(center, width)`` of every row's sentence, and their ``(B, W)``
    mask (a prefix per row): every window, or a random ``max_windows`` of them when there are more
    (``get_span_labels`` shuffles and keeps ``max_windows``)."""
    if batch.windows is None or batch.window_mask is None:
        windows, mask = batch.spans[:, :1], batch.sentence_mask[:, :1]
    else:
        windows, mask = batch.windows[:, 0], batch.window_mask[:, 0]
    if windows.shape[1] > max_windows:
        keys = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, -1.0)
        chosen = keys.topk(max_windows, dim=1).indices.sort(dim=1).values  # real windows first
        windows = windows.gather(1, chosen[..., None].expand(-1, -1, 2))
        mask = mask.gather(1, chosen)
    return span_xx_to_cxw(windows), mask


def span_terms(
    output: DETROutput, targets: Tensor, target_mask: Tensor, rows: Tensor, config: DETRConfig
) -> dict[str, Tensor]:
    """``span_l1``, ``span_giou`` and ``class`` summed over the decoder layers trained (every one with
    ``aux_loss``, else the last), each layer matched on its own (``SetCriterion.forward``).

    Per layer: the L1 of ``(center, width)`` averaged over the matched queries and both coordinates
    (``F.l1_loss(...).mean()``), ``1 - GIoU`` averaged over them, and the weighted cross-entropy
    (background weight ``eos_coef``) averaged over every query of the real rows, unnormalised by the
    weights (``reduction="none"`` then ``.mean()``).

    Args:
        output: the model's output.
        targets: ``(B, W, 2)`` target ``(center, width)``; ``target_mask`` ``(B, W)`` the real ones.
        rows: ``(B,)`` rows that count.
        config: costs, ``eos_coef`` and ``aux_loss``.
    """
    layers = output.logits.shape[0] if config.aux_loss else 1
    logits, spans = output.logits[-layers:], output.spans[-layers:]
    cost = matching_cost(logits, spans, targets[None], config.cost_class, config.cost_span, config.cost_giou)
    assignment = match_queries(cost, target_mask & rows[:, None])
    matched = assignment >= 0
    index = assignment.clamp_min(0)[..., None].expand(-1, -1, -1, 2)
    matched_targets = targets[None].expand(layers, -1, -1, -1).gather(2, index)
    per_layer = matched.flatten(1)  # (L, B * Q): every mean below is per decoder layer
    l1 = masked_mean((spans - matched_targets).abs().mean(dim=-1).flatten(1), per_layer, dim=1)
    giou = 1.0 - span_giou(span_cxw_to_xx(spans), span_cxw_to_xx(matched_targets))
    giou = masked_mean(giou.flatten(1), per_layer, dim=1)
    weight = logits.new_ones(2)
    weight[1 - FOREGROUND] = config.eos_coef
    labels = torch.where(matched, FOREGROUND, 1 - FOREGROUND)
    ce = F.cross_entropy(logits.flatten(0, 2), labels.flatten(), weight=weight, reduction="none")
    counted = rows[None, :, None].expand_as(matched).flatten(1)
    classes = masked_mean(ce.view(layers, -1), counted, dim=1)
    return {"span_l1": l1.sum(), "span_giou": giou.sum(), "class": classes.sum()}


# --- saliency -----------------------------------------------------------------------------------


def ground_truth_clips(spans: Tensor, video_mask: Tensor) -> Tensor:
    """``(B, N_V)`` the clips of each row's ground-truth span on its ``T_b`` real clips.

    The peers' rule (``get_saliency_labels_sub_as_query``; SHINE spec open point 6), with ``s, e`` the
    span divided by the duration: clips ``floor(s T_b) .. max(0, min(floor(e T_b), T_b) - 1)``, the
    first moved back to the last when it is past it (a span inside one clip: that clip).

    Args:
        spans: ``(B, 2)`` normalised ground-truth spans.
        video_mask: ``(B, N_V)`` real clips (a prefix of each row).
    """
    clips = video_mask.sum(dim=1, keepdim=True).to(spans.dtype)
    end = (torch.minimum(torch.floor(spans[:, 1:] * clips + CLIP_EPS), clips) - 1).clamp_min(0)
    start = torch.minimum(torch.floor(spans[:, :1] * clips + CLIP_EPS), end)
    index = torch.arange(video_mask.shape[1], device=spans.device, dtype=spans.dtype)[None]
    return (index >= start) & (index <= end) & video_mask


def saliency_labels(batch: ParagraphBatch) -> tuple[Tensor, Tensor]:
    """``(B, N_V)`` the saliency label ``y`` of every clip and ``(B, N_V)`` the relevant clips.

    QVHighlights (highlight labels in the batch): ``y`` is the annotators' summed score (0..12) of a
    relevant clip, 0 elsewhere (QD-DETR's ``saliency_all_labels``); other data: ``y`` is 1 on the
    ground-truth clips (:func:`ground_truth_clips`) and 0 elsewhere.
    """
    if batch.clip_saliency is not None and batch.clip_relevant is not None:
        relevant = batch.clip_relevant[:, 0] & batch.video_mask
        return batch.clip_saliency[:, 0] * relevant, relevant
    relevant = ground_truth_clips(batch.spans[:, 0], batch.video_mask)
    return relevant.to(batch.video.dtype), relevant


def _second(first: Tensor, second: Tensor, count: Tensor) -> Tensor:
    """``second`` where at least two candidates exist, else ``first`` again (a one-clip pool)."""
    return torch.where(count >= 2, second, first)


def saliency_pairs(
    labels: Tensor,
    relevant: Tensor,
    video_mask: Tensor,
    graded: bool,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Two (positive, negative) clip pairs per row for the saliency hinge.

    ``graded`` (QVHighlights, ``get_saliency_labels``): a hard pair, the relevant clip of the highest
    summed score (the last on ties, as a stable ascending sort ends) against the relevant clip of
    the lowest (the first on ties), and an easy pair, a random relevant clip against a random real
    clip outside the relevant ones (when there is none: the hard pair again). Otherwise
    (single-window data, ``get_saliency_labels_sub_as_query``): two distinct random ground-truth
    clips against two distinct random other real clips; a pool of one clip gives it twice.

    Args:
        labels: ``(B, N_V)`` summed scores (graded) or 0/1 labels.
        relevant: ``(B, N_V)`` the relevant (ground-truth) clips.
        video_mask: ``(B, N_V)`` the real clips of the rows that count.
        graded: the QVHighlights rule.
        generator: the random source (default: torch's, which the engine reseeds per batch).

    Returns:
        ``(B, 2)`` positive and ``(B, 2)`` negative clip indices, and ``(B, 2)`` which pairs are
        valid (a row without a relevant clip, or, single-window, without another clip, has none).
    """
    relevant = relevant & video_mask
    outside = video_mask & ~relevant
    draw = torch.rand(labels.shape, device=labels.device, generator=generator)
    count_in, count_out = relevant.sum(dim=1), outside.sum(dim=1)
    if graded:
        width = labels.shape[1]
        hard_pos = width - 1 - labels.masked_fill(~relevant, -torch.inf).flip(1).argmax(dim=1)
        hard_neg = labels.masked_fill(~relevant, torch.inf).argmin(dim=1)
        easy_pos = draw.masked_fill(~relevant, -1.0).argmax(dim=1)
        easy_neg = draw.masked_fill(~outside, -1.0).argmax(dim=1)
        has_out = count_out > 0
        positive = torch.stack([hard_pos, torch.where(has_out, easy_pos, hard_pos)], dim=1)
        negative = torch.stack([hard_neg, torch.where(has_out, easy_neg, hard_neg)], dim=1)
        valid = count_in > 0
    else:
        k = min(2, labels.shape[1])
        pos = draw.masked_fill(~relevant, -1.0).topk(k, dim=1).indices
        neg = draw.masked_fill(~outside, -1.0).topk(k, dim=1).indices
        positive = torch.stack([pos[:, 0], _second(pos[:, 0], pos[:, -1], count_in)], dim=1)
        negative = torch.stack([neg[:, 0], _second(neg[:, 0], neg[:, -1], count_out)], dim=1)
        valid = (count_in > 0) & (count_out > 0)
    return positive, negative, valid[:, None].expand(-1, 2)


def saliency_hinge(
    saliency: Tensor, positive: Tensor, negative: Tensor, valid: Tensor, margin: float
) -> Tensor:
    """``2 sum max(0, margin + s_neg - s_pos) / #pairs`` over the valid pairs (``loss_saliency``:
    ``/ (B * pairs) * 2``); 0 without a valid pair.

    Args:
        saliency: ``(B, N_V)`` saliency logits.
        positive, negative: ``(B, P)`` clip indices; ``valid`` ``(B, P)`` the pairs that count.
        margin: the hinge's margin (0.2).
    """
    hinge = F.relu(margin + saliency.gather(1, negative) - saliency.gather(1, positive))
    return 2.0 * (hinge * valid).sum() / valid.sum().clamp_min(1)


def rank_contrastive_loss(
    saliency: Tensor,
    negative: Tensor,
    labels: Tensor,
    video_mask: Tensor,
    rows: Tensor,
    tau: float = 0.5,
    form: str = MEAN_LOG,
) -> Tensor:
    """QD-DETR's rank-aware contrastive loss over ``[s; s^neg]`` with labels ``[y; 0]`` (S-Eq. 5).

    For every rank ``r = 1..11`` the clips of label ``>= r`` are positives among all real clips of
    both passes, logits ``s / tau``; a row's term, over its positives ``P_r`` and all its clips ``A``:

    * ``mean_log`` (the released code): ``-(1/|P_r|) sum_{x in P_r} log softmax_A(x)``;
    * ``log_sum`` (S-Eq. 5 as printed): ``-log(sum_{P_r} exp / sum_A exp)``.

    A row without positive at rank ``r`` adds 0; the row mean is summed over ranks and divided by
    12 (binary labels: only ``r = 1`` counts, SHINE spec open point 6). The code's ``+ 1e-6`` inside
    the log of the softmax is left out (it moves the loss by under 1e-6).

    Args:
        saliency, negative: ``(B, N_V)`` logits with the row's query and with another row's.
        labels: ``(B, N_V)`` saliency labels ``y`` (:func:`saliency_labels`).
        video_mask: ``(B, N_V)`` real clips; ``rows`` ``(B,)`` rows that count.
        tau: the temperature (0.5).
        form: ``mean_log`` or ``log_sum``.
    """
    real = torch.cat([video_mask, video_mask], dim=1)
    logits = (torch.cat([saliency, negative], dim=1) / tau).masked_fill(~real, -torch.inf)
    targets = torch.cat([labels, torch.zeros_like(labels)], dim=1)
    ranks = torch.arange(1, RANKS + 1, device=logits.device, dtype=targets.dtype)
    positive = (targets[None] >= ranks[:, None, None]) & real[None]  # (R, B, 2 N_V)
    count = positive.sum(dim=-1)
    every = logits.logsumexp(dim=1)  # (B,)
    if form == MEAN_LOG:
        log_prob = logits - every[:, None]
        per = -torch.where(positive, log_prob[None], 0.0).sum(dim=-1) / count.clamp_min(1)
    else:
        per = every[None] - logits[None].masked_fill(~positive, -torch.inf).logsumexp(dim=-1)
    per = torch.where(count > 0, per, 0.0)
    return masked_mean(per, rows[None].expand_as(per), dim=1).sum() / RANK_DIVISOR


# --- the modules --------------------------------------------------------------------------------


class DETRLoss(nn.Module):
    """Moment-DETR's objective: ``10 L1 + 1 (1 - GIoU) + 4 CE`` on every decoder layer plus the
    saliency hinge (weight 1); with SHINE (``config.shine``) L_neg, L_cr and L_fr besides (S-Eq. 4).

    Terms: ``span_l1``, ``span_giou``, ``class`` (each summed over the decoder layers trained),
    ``saliency`` (the hinge; with SHINE only if ``keep_base_saliency_hinge``), and, when the output
    has the negative passes (training with SHINE), ``saliency_negative`` (L_neg on the easy
    negative), ``shine_coarse`` and ``shine_fine``; ``"total"`` is their sum weighted by
    :meth:`DETRConfig.weight`. A batch row is one sentence (the sentence unit); padded rows never count.
    """

    def __init__(self, config: DETRConfig) -> None:
        """The objective of the model built from ``config``."""
        super().__init__()
        self.config = config
        self.shine = config.shine_config

    def extra_terms(
        self, output: DETROutput, batch: ParagraphBatch, labels: Tensor, relevant: Tensor
    ) -> dict[str, Tensor]:
        """L_neg (S-Eq. 3) when the output has the easy negative's saliency, and SHINE's L_cr, L_fr
        when it has the hard negatives'; ``labels``, ``relevant`` are :func:`saliency_labels`'s (the
        relevant clips are SHINE's GT clips: :func:`ground_truth_clips` on single-window data)."""
        negative = output.negative_saliency
        if negative is None:
            return {}
        rows = batch.sentence_mask[:, 0]
        terms = {NEGATIVE_TERM: negative_pair_loss(negative, output.video_mask, rows)}
        if self.shine is not None and output.hard_saliency is not None:
            valid = output.video_mask & rows[:, None]
            terms |= shine_losses(
                output.saliency, negative, output.hard_saliency, relevant, valid, self.shine
            )
        return terms

    def forward(self, output: DETROutput, batch: ParagraphBatch) -> dict[str, Tensor]:
        """Every term (unweighted) and ``"total"``, their weighted sum."""
        config = self.config
        if batch.spans.shape[1] != 1:
            raise ConfigError(f"{config.LABEL}: one sentence per row expected, got {batch.spans.shape[1]}")
        rows = batch.sentence_mask[:, 0]
        targets, target_mask = window_targets(batch, config.max_windows)
        terms = span_terms(output, targets, target_mask, rows, config)
        labels, relevant = saliency_labels(batch)
        if self.shine is None or self.shine.keep_base_saliency_hinge:
            clips = batch.video_mask & rows[:, None]
            pairs = saliency_pairs(labels, relevant, clips, graded=batch.clip_saliency is not None)
            terms["saliency"] = saliency_hinge(output.saliency, *pairs, config.saliency_margin)
        terms.update(self.extra_terms(output, batch, labels, relevant))
        total = sum(
            (config.weight(name) * value for name, value in terms.items()), output.saliency.new_zeros(())
        )
        return {**terms, "total": total}


class QDDETRLoss(DETRLoss):
    """QD-DETR's objective: Moment-DETR's plus, when the output has the rolled-query pass (training),
    ``saliency_negative`` (:func:`higround.losses.shine.negative_pair_loss`) and ``saliency_contrast``
    (:func:`rank_contrastive_loss`), weight 1 each (``loss_saliency`` adds the three saliency terms,
    ``lw_saliency`` 1); with SHINE, its two ranking terms (:class:`DETRLoss`)."""

    config: QDDETRConfig

    def __init__(self, config: QDDETRConfig) -> None:
        """The objective of the model built from ``config``."""
        super().__init__(config)

    def extra_terms(
        self, output: DETROutput, batch: ParagraphBatch, labels: Tensor, relevant: Tensor
    ) -> dict[str, Tensor]:
        """The negative-pair and rank-contrastive terms (none without the negative pass), and SHINE's."""
        terms = super().extra_terms(output, batch, labels, relevant)
        negative = output.negative_saliency
        if negative is None:
            return terms
        rows, config = batch.sentence_mask[:, 0], self.config
        contrast = rank_contrastive_loss(
            output.saliency,
            negative,
            labels,
            output.video_mask,
            rows,
            config.contrastive_tau,
            config.contrastive_form,
        )
        return {**terms, "saliency_contrast": contrast}
