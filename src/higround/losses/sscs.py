"""Sscs objectives (Ding et al., ICCV 2021, Section 3.3-3.4): support-set pooling, the contrastive and
caption losses, as pure tensor functions a sentence-grounding family's training loss calls.

Notation of the paper: ``X`` ``(B, T, D)`` clip embeddings, ``Y`` ``(B, D)`` sentence embeddings in
one shared space, ``M_i`` the ground-truth (GT) clips of row ``i``, ``S_i`` its support set,
``w_i`` (``w̄_i``) the pooled support set, ``tau`` the temperature (paper 4.2: 0.1). Masks are
boolean, True for real entries; padded clips never change a result. Every row of a batch is one
sentence with its video (the sentence unit); rows that show the same video are told by the
``(B, B)`` ``same_video`` mask of :meth:`higround.data.batch.ParagraphBatch.same_video`.

The parameterised pooling functions FC and Conv of Section 3.4 live in
:class:`higround.models.sscs.SscsBranch`; the parameter-free ones (CA, SA, MP, AP) are here.
docs/sscs.md lists every choice the paper leaves open.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from higround.errors import ConfigError
from higround.losses.alignment import clip_positives
from higround.losses.span import masked_mean

# Section 3.3 objectives: GT clip-based (eq. 2-3) or support-set based (eq. 6-7).
OBJECTIVES = ("none", "gtc", "ss")
# Section 3.4 support-set constructions: V-SS (all clips), GT-SS (M_i), Non-GT-SS (background clips).
SUPPORTS = ("video", "gt", "non_gt")
# Section 3.4 functions mapping S_i to w_i; "fc" and "conv" carry parameters (models/sscs.py).
AGGREGATES = ("ca", "sa", "fc", "conv", "mp", "ap")
PARAMETER_FREE = ("ca", "sa", "mp", "ap")
# Batch reduction of a per-sentence loss: eq. 2 and 6 sum over i, eq. 3 and 7 average. The loss
# functions also take "none" (the (B,) per-sentence terms, 0 for rows left out), for tests and logs.
REDUCTIONS = ("sum", "mean")
ROW_REDUCTIONS = (*REDUCTIONS, "none")
# Another sentence of the same video in the batch: a negative as in eq. 2/6 ("keep"), or left out.
SAME_VIDEO_NEGATIVES = ("keep", "mask")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"sscs: {name} must be one of {allowed}, got {value!r}")


def _reduce(per_row: Tensor, valid: Tensor, reduction: str) -> Tensor:
    """Sum or mean of ``per_row`` ``(B,)`` over the ``valid`` rows (a mean over no row is 0), or the
    rows themselves (``"none"``, 0 where not valid)."""
    _choice("reduction", reduction, ROW_REDUCTIONS)
    per_row = torch.where(valid, per_row, 0.0)  # an excluded row may hold inf or NaN
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return masked_mean(per_row, valid)


def gt_clip_mask(spans: Tensor, clip_mask: Tensor) -> Tensor:
    """``(B, T)`` True for the GT clips ``M_i`` of each sentence (the paper's ``t in [t_s, t_e]``).

    A clip is GT when its centre lies inside the span, and the clip holding the span's midpoint is
    always GT, so every row with a real clip has at least one: the rule of
    :func:`higround.losses.alignment.clip_positives`, which this calls.

    Args:
        spans: ``(B, 2)`` normalised ground-truth (start, end).
        clip_mask: ``(B, T)`` real clips, a prefix of each row, tiling the whole video uniformly.
    """
    sentence = torch.ones(spans.shape[0], 1, dtype=torch.bool, device=spans.device)
    return clip_positives(spans[:, None, :], sentence, clip_mask)[:, 0]


def support_mask(clip_mask: Tensor, gt_mask: Tensor, construction: str) -> Tensor:
    """``(B, T)`` the clips of the support set ``S_i`` (Section 3.4).

    ``"video"`` (V-SS, the default of 3.3.2): every real clip; ``"gt"`` (GT-SS): ``M_i``;
    ``"non_gt"`` (Non-GT-SS): the real clips outside ``M_i``. A row may be left with no clip
    (Non-GT-SS of a span covering the whole video); callers leave such rows out of the losses.
    """
    _choice("support", construction, SUPPORTS)
    if construction == "video":
        return clip_mask
    if construction == "gt":
        return clip_mask & gt_mask
    return clip_mask & ~gt_mask


def support_attention(x: Tensor, y: Tensor | None, support: Tensor, kind: str, tau: float) -> Tensor:
    """``(B, T)`` clip weights ``a_t^i`` over the support set, 0 outside it.

    * ``"ca"`` (cross-attention, eq. 4): ``softmax_t(cos(x_t, Y) / tau)``, the cosine computed here
      whatever the scale of ``x`` and ``y``.
    * ``"sa"`` (self-attention, eq. 8): ``Q = S S^T / tau`` with ``S`` the support clips stacked as
      rows (the clip Gram matrix: the paper writes ``S^T S`` and "``q_t in R^D``", but a row of
      the matrix whose entries are summed into ``z_t`` has one entry per clip); ``z_t = sum_t' Q[t,
      t'] = x_t . (sum_{t' in S} x_t') / tau``, ``a = softmax_t(z)``. Text-blind, dot products.

    The softmax runs over the clips of ``S_i`` only. A row with an empty support set gets all zeros.

    Args:
        x: ``(B, T, D)`` clip embeddings.
        y: ``(B, D)`` sentence embeddings (needed by ``"ca"`` only).
        support: ``(B, T)`` the support set (:func:`support_mask`).
        kind: ``"ca"`` or ``"sa"``.
        tau: temperature.
    """
    if kind == "ca":
        if y is None:
            raise ConfigError("sscs: cross-attention (eq. 4) needs the sentence embeddings")
        logits = torch.einsum("btd,bd->bt", F.normalize(x, dim=-1), F.normalize(y, dim=-1)) / tau
    elif kind == "sa":
        total = (x * support[..., None].to(x.dtype)).sum(dim=1)  # sum of the support clips, (B, D)
        logits = torch.einsum("btd,bd->bt", x, total) / tau
    else:
        raise ConfigError(f"sscs: support attention is 'ca' or 'sa', got {kind!r}")
    nonempty = support.any(dim=1, keepdim=True)
    # An empty row is opened to every clip so that the softmax stays finite, then zeroed.
    opened = support | ~nonempty
    weights = logits.masked_fill(~opened, float("-inf")).softmax(dim=1)
    return weights * nonempty.to(weights.dtype)


def support_set_pool(x: Tensor, y: Tensor | None, support: Tensor, kind: str, tau: float) -> Tensor:
    """``(B, D)`` ``w_i``: the support set ``S_i`` pooled by a parameter-free function (Section 3.4).

    * ``"ca"``: eq. 4 weights (:func:`support_attention`), then eq. 5 ``w_i = sum_t a_t^i x_t^i``.
    * ``"sa"``: eq. 8 weights, then eq. 5.
    * ``"mp"``: channel-wise max over the clips of ``S_i``.
    * ``"ap"``: mean over the clips of ``S_i``.

    A row with an empty support set gives zeros (callers exclude it: ``support.any(1)``). FC and
    Conv need parameters: :class:`higround.models.sscs.SscsBranch`.

    Args:
        x: ``(B, T, D)`` clip embeddings ``X``.
        y: ``(B, D)`` sentence embeddings ``Y`` (used by ``"ca"`` only; may be None otherwise).
        support: ``(B, T)`` the support set.
        kind: one of :data:`PARAMETER_FREE`.
        tau: temperature of eq. 4 and 8.
    """
    _choice("aggregate", kind, PARAMETER_FREE)
    if kind in ("ca", "sa"):
        return torch.einsum("bt,btd->bd", support_attention(x, y, support, kind, tau), x)
    nonempty = support.any(dim=1, keepdim=True)
    if kind == "mp":
        opened = (support | ~nonempty)[..., None]
        pooled = x.masked_fill(~opened, float("-inf")).amax(dim=1)
        return pooled * nonempty.to(x.dtype)
    weights = support.to(x.dtype)
    return torch.einsum("bt,btd->bd", weights, x) / weights.sum(dim=1, keepdim=True).clamp_min(1.0)


def _negatives_mask(same_video: Tensor | None, mode: str, batch: int, device: torch.device) -> Tensor:
    """``(B, B)`` True where row ``j``'s items may enter row ``i``'s denominator (``j == i`` always)."""
    _choice("same_video_negatives", mode, SAME_VIDEO_NEGATIVES)
    eye = torch.eye(batch, dtype=torch.bool, device=device)
    if mode == "keep":
        return torch.ones(batch, batch, dtype=torch.bool, device=device)
    if same_video is None:
        raise ConfigError("sscs: same_video_negatives='mask' needs the batch's (B, B) same-video mask")
    if same_video.shape != (batch, batch):
        raise ConfigError(f"sscs: same_video must be ({batch}, {batch}), got {tuple(same_video.shape)}")
    return ~same_video | eye


def ss_contrastive(
    pooled: Tensor,
    y: Tensor,
    tau: float,
    reduction: str = "sum",
    same_video: Tensor | None = None,
    same_video_negatives: str = "keep",
    valid: Tensor | None = None,
) -> Tensor:
    """Support-set contrastive objective (eq. 6), video-to-text.

    ``-sum_i log( e^{w_i.Y_i/tau} / (e^{w_i.Y_i/tau} + sum_{j != i} e^{w_i.Y_j/tau}) )``: positive
    ``(w_i, Y_i)``, negatives ``(w_i, Y_j)`` for every other sentence ``j`` of the batch; ``w_i`` is
    pooled once, with its own sentence (eq. 4), and the score is the dot product as written.

    Args:
        pooled: ``(B, D)`` ``w_i`` (:func:`support_set_pool`).
        y: ``(B, D)`` ``Y``.
        tau: temperature.
        reduction: ``"sum"`` over the rows (eq. 6), ``"mean"`` or ``"none"`` (per row).
        same_video: ``(B, B)`` True where two rows show the same video (diagonal included).
        same_video_negatives: ``"keep"`` (eq. 6: another sentence of the same video is a negative)
            or ``"mask"`` (it leaves row ``i``'s denominator).
        valid: ``(B,)`` rows whose ``w_i`` is defined (an empty support set is not); only they
            contribute a term, while every ``Y_j`` stays a negative. Default: every row.
    """
    batch = pooled.shape[0]
    logits = pooled @ y.T / tau  # (B, B): row i scores w_i against every Y_j
    allowed = _negatives_mask(same_video, same_video_negatives, batch, pooled.device)
    every = logits.masked_fill(~allowed, float("-inf")).logsumexp(dim=1)
    per_row = every - logits.diagonal()
    rows = torch.ones(batch, dtype=torch.bool, device=pooled.device) if valid is None else valid
    return _reduce(per_row, rows, reduction)


def gtc_contrastive(
    x: Tensor,
    y: Tensor,
    gt_mask: Tensor,
    clip_mask: Tensor,
    tau: float,
    reduction: str = "sum",
    same_video: Tensor | None = None,
    same_video_negatives: str = "keep",
) -> Tensor:
    """GT clip-based contrastive objective (eq. 2), the softmax version of MIL-NCE.

    ``-sum_i log( sum_{P_i} e^{x.Y_i/tau} / (sum_{P_i} e^{x.Y_i/tau} + sum_{N_i} e^{x'.Y_i/tau}) )``
    with positives ``P_i`` the GT clips of row ``i`` and negatives ``N_i`` its own background clips
    and every real clip of every other row, all paired with ``Y_i`` (dot products as written). Rows
    without a GT clip contribute nothing (:func:`gt_clip_mask` gives every row one).

    Args:
        x: ``(B, T, D)`` clip embeddings.
        y: ``(B, D)`` sentence embeddings.
        gt_mask: ``(B, T)`` GT clips ``M_i``.
        clip_mask: ``(B, T)`` real clips.
        tau: temperature.
        reduction: ``"sum"`` over the rows (eq. 2), ``"mean"`` or ``"none"`` (per row).
        same_video: ``(B, B)`` True where two rows show the same video (diagonal included).
        same_video_negatives: ``"keep"`` (eq. 2) or ``"mask"``: the clips of another row of the same
            video leave row ``i``'s denominator.
    """
    batch, num_clips, _ = x.shape
    logits = torch.einsum("id,jtd->ijt", y, x) / tau  # (B, B, T): Y_i against clip t of row j
    allowed = _negatives_mask(same_video, same_video_negatives, batch, x.device)
    candidates = allowed[:, :, None] & clip_mask[None, :, :]
    eye = torch.eye(batch, dtype=torch.bool, device=x.device)
    positives = eye[:, :, None] & (gt_mask & clip_mask)[None, :, :]
    rows = positives.flatten(1).any(dim=1)
    # A row without a positive is given its candidates as positives (a finite 0), then left out.
    positives = torch.where(rows[:, None, None], positives, candidates)
    flat = logits.reshape(batch, batch * num_clips)
    neg_inf = float("-inf")
    every = flat.masked_fill(~candidates.reshape(batch, -1), neg_inf).logsumexp(dim=1)
    relevant = flat.masked_fill(~positives.reshape(batch, -1), neg_inf).logsumexp(dim=1)
    return _reduce(every - relevant, rows, reduction)


def caption_nll(
    logits: Tensor,
    targets: Tensor,
    token_mask: Tensor,
    reduction: str = "mean",
    valid: Tensor | None = None,
) -> Tensor:
    """Caption objective (eq. 3 GTC, eq. 7 SS): ``-1/B sum_i log p(L_i | w_i)`` by teacher forcing.

    The cross-entropy of each sentence's target tokens is averaged over its real tokens, then over
    the sentences (``"mean"``, eq. 3/7) or summed over them (``"sum"``). The paper's ``log p(l_i |
    w_i)`` is read as the sentence's tokens, each predicted from the ones before and ``w_i``.

    Args:
        logits: ``(B, L, V)`` the decoder's scores for each target position.
        targets: ``(B, L)`` long target ids (anything where ``token_mask`` is False).
        token_mask: ``(B, L)`` real target tokens.
        reduction: ``"mean"`` or ``"sum"`` over the sentences, or ``"none"`` (per sentence).
        valid: ``(B,)`` sentences whose ``w_i`` is defined (default: every sentence with a token).
    """
    ce = F.cross_entropy(logits.transpose(1, 2), targets.masked_fill(~token_mask, 0), reduction="none")
    per_row = masked_mean(ce, token_mask, dim=1)
    rows = token_mask.any(dim=1)
    if valid is not None:
        rows = rows & valid
    return _reduce(per_row, rows, reduction)
