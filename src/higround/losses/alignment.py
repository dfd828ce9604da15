"""Encoder semantic alignment losses (HSCNet supplement eq. 3-5) on the similarity matrices of eq. 5.

A clip is relevant to a sentence when its centre lies inside the sentence's ground-truth span; the
clip holding the span's midpoint is always relevant too, so a span shorter than a clip still has a
positive. A word inherits its sentence's clips; the paragraph's clips are those relevant to any of
its sentences (the union of the sentence intervals, not their hull). Real clips are a prefix of the
clip axis and tile the whole video uniformly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from higround.losses.span import masked_mean


def clip_positives(spans: Tensor, sentence_mask: Tensor, video_mask: Tensor) -> Tensor:
    """``(B, N_S, N_V)`` True where clip ``j`` is relevant to sentence ``i``.

    Args:
        spans: ``(B, N_S, 2)`` normalised ground-truth spans.
        sentence_mask: ``(B, N_S)`` real sentences.
        video_mask: ``(B, N_V)`` real clips (a prefix of each row).
    """
    num_clips = video_mask.shape[1]
    real = video_mask.sum(dim=1)  # T clips of each video, (B,)
    index = torch.arange(num_clips, device=spans.device)
    centres = (index + 0.5)[None, :] / real[:, None].to(spans.dtype)  # (B, N_V)
    inside = (centres[:, None, :] >= spans[..., :1]) & (centres[:, None, :] <= spans[..., 1:])
    midpoint = (spans.mean(dim=-1) * real[:, None]).floor().long()
    midpoint = torch.minimum(midpoint, (real - 1)[:, None])
    inside = inside | (index[None, None, :] == midpoint[..., None])
    return inside & sentence_mask[..., None] & video_mask[:, None, :]


def word_positives(sentence_positives: Tensor, word_sentence: Tensor, word_mask: Tensor) -> Tensor:
    """``(B, N_W, N_V)`` clips relevant to each word: its sentence's row of ``sentence_positives``."""
    index = word_sentence.clamp_min(0)[..., None].expand(-1, -1, sentence_positives.shape[-1])
    return sentence_positives.gather(1, index) & word_mask[..., None]


def _negative_log_mass(logits: Tensor, positives: Tensor, valid: Tensor, dim: int) -> Tensor:
    """``-log`` of the softmax mass (over the ``valid`` entries of ``dim``) that falls on ``positives``.

    Computed as ``logsumexp(valid) - logsumexp(positives)``; ``positives`` must already be masked by
    ``valid`` (every caller passes ``positives & valid``). A line without positives (or without valid
    entries) is given all its valid entries as positives, i.e. a finite 0 with a finite 0 gradient;
    callers exclude such lines from their means.
    """
    valid = valid | ~valid.any(dim=dim, keepdim=True)
    positives = torch.where(positives.any(dim=dim, keepdim=True), positives, valid)
    neg_inf = float("-inf")
    every = logits.masked_fill(~valid, neg_inf).logsumexp(dim=dim)
    relevant = logits.masked_fill(~positives, neg_inf).logsumexp(dim=dim)
    return every - relevant


def alignment_loss(similarity: Tensor, positives: Tensor, text_mask: Tensor, video_mask: Tensor) -> Tensor:
    """Video-word (supp. eq. 3) or video-sentence (supp. eq. 4) loss, mean over paragraphs with a positive.

    ``-1/|V| sum_{j in V} log sum_{i in T_j+} Adot_ij - 1/|T| sum_{i in T} log sum_{j in V_i+} Addot_ij``
    with ``Adot`` the column-wise softmax (over text units, per clip) and ``Addot`` the row-wise
    softmax (over clips, per text unit) of ``A``, both over real entries only; ``V``: clips relevant
    to at least one text unit; ``T``: text units with at least one relevant clip.

    Args:
        similarity: ``(B, N_T, N_V)`` ``A``.
        positives: ``(B, N_T, N_V)`` relevance (see :func:`clip_positives`, :func:`word_positives`).
        text_mask: ``(B, N_T)`` real text units.
        video_mask: ``(B, N_V)`` real clips.
    """
    valid = text_mask[:, :, None] & video_mask[:, None, :]
    positives = positives & valid
    per_clip = _negative_log_mass(similarity, positives, valid, dim=1)  # (B, N_V)
    per_text = _negative_log_mass(similarity, positives, valid, dim=2)  # (B, N_T)
    per_paragraph = masked_mean(per_clip, positives.any(dim=1), dim=1) + masked_mean(
        per_text, positives.any(dim=2), dim=1
    )
    # Eq. 3-4 are undefined for a paragraph with no positive (|V| = |T| = 0): it is left out of the
    # mean, as in paragraph_alignment_loss, so the others' weights do not depend on how many such
    # paragraphs share their batch.
    return masked_mean(per_paragraph, positives.flatten(1).any(dim=1))


def paragraph_alignment_loss(similarity: Tensor, positives: Tensor, video_mask: Tensor) -> Tensor:
    """Video-paragraph alignment loss (supp. eq. 5) ``-log sum_{j in V_p} Addot_j``.

    Averaged over the paragraphs with a positive, like :func:`alignment_loss`.

    Args:
        similarity: ``(B, 1, N_V)`` ``A^VP``.
        positives: ``(B, N_V)`` clips relevant to the paragraph (``clip_positives(...).any(1)``).
        video_mask: ``(B, N_V)`` real clips.
    """
    positives = positives & video_mask
    per_paragraph = _negative_log_mass(similarity[:, 0], positives, video_mask, dim=1)
    return masked_mean(per_paragraph, positives.any(dim=1))
