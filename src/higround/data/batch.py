"""The padded paragraph batch every model consumes.

Shapes: B paragraphs, ``N_V`` clips, ``N_W`` words (all sentences of a paragraph concatenated in
order), ``N_S`` sentences. Masks are ``True`` for real entries, ``False`` for padding; padded
entries hold zeros (ids/positions ``0``, sentence index ``-1``) and must never change a result.

The same batch carries both data units (``data.unit``): a *paragraph* row holds all sentences of a
paragraph; a *sentence* row (sentence-grounding models) holds one sentence, so ``N_S == 1``. Rows of
one batch that share a video have the same ``video_group``; :meth:`ParagraphBatch.same_video` is the
``(B, B)`` mask a contrastive loss needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor


@dataclass
class ParagraphBatch:
    """A collated batch of paragraphs with their clip features.

    Attributes:
        video: ``(B, N_V, D_v)`` float clip features.
        video_mask: ``(B, N_V)`` bool.
        words: ``(B, N_W)`` long vocabulary ids of the paragraph's words.
        word_mask: ``(B, N_W)`` bool.
        word_sentence: ``(B, N_W)`` long, index of each word's sentence in its paragraph (-1: pad).
        word_position: ``(B, N_W)`` long, position of each word inside its sentence (0: pad).
        sentence_mask: ``(B, N_S)`` bool.
        sentence_length: ``(B, N_S)`` long, words per sentence (0: pad).
        spans: ``(B, N_S, 2)`` float ground-truth (start, end) normalised by duration to [0, 1].
        durations: ``(B,)`` float video durations in seconds.
        video_ids: the B video ids.
        paragraph_index: ``(B,)`` long, paragraph index within its video.
        sentence_index: ``(B, N_S)`` long, each sentence's index in its video's annotation (-1: pad).
        sentence_keys: per row, its sentences' :attr:`~higround.data.schema.Sentence.key` s
            (``"<video_id>#<index>"``, or QVHighlights' ``qid``), in order.
        video_group: ``(B,)`` long, the row's video numbered by first appearance in the batch (rows
            with the same video id have the same number; ``0`` is the first row's video).
        windows: ``(B, N_S, W, 2)`` float every ground-truth window of each sentence, normalised as
            ``spans`` (the first is ``spans``; QVHighlights queries have several).
        window_mask: ``(B, N_S, W)`` bool, the real windows (a prefix of each sentence's).
        clip_saliency: ``(B, N_S, N_V)`` float, per clip the annotators' summed highlight score of the
            sentence (QVHighlights ``saliency_scores``, 0 outside ``relevant_clip_ids``); ``None``
            when the data has no highlight labels.
        clip_relevant: ``(B, N_S, N_V)`` bool, the clips of ``relevant_clip_ids``, with ``clip_saliency``.
        text_features: ``(B, L_T, D_T)`` float pre-extracted token features of the row's sentence(s)
            (``data.text_features``: a sentence unit's one query); ``None`` when the data has none.
        text_mask: ``(B, L_T)`` bool, the real tokens of ``text_features``.
        negative_words: ``(B, N_S, H, L_H)`` long, the word ids of each sentence's ``H`` hard
            negative queries, least edited first (SHINE's hierarchy, ``data.negatives``: training
            batches only); ``None`` when the data has none.
        negative_mask: ``(B, N_S, H, L_H)`` bool, the real words of ``negative_words``.
    """

    video: Tensor
    video_mask: Tensor
    words: Tensor
    word_mask: Tensor
    word_sentence: Tensor
    word_position: Tensor
    sentence_mask: Tensor
    sentence_length: Tensor
    spans: Tensor
    durations: Tensor
    video_ids: list[str]
    paragraph_index: Tensor
    sentence_index: Tensor
    sentence_keys: list[tuple[str, ...]]
    video_group: Tensor
    windows: Tensor | None = None
    window_mask: Tensor | None = None
    clip_saliency: Tensor | None = None
    clip_relevant: Tensor | None = None
    text_features: Tensor | None = None
    text_mask: Tensor | None = None
    negative_words: Tensor | None = None
    negative_mask: Tensor | None = None

    def same_video(self) -> Tensor:
        """``(B, B)`` bool, True where rows ``i`` and ``j`` show the same video (diagonal included)."""
        return self.video_group[:, None] == self.video_group[None, :]

    def _map(self, fn: Callable[[Tensor], Tensor]) -> ParagraphBatch:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        moved: dict[str, Any] = {k: fn(v) for k, v in values.items() if isinstance(v, Tensor)}
        return replace(self, **moved)

    def to(self, device: torch.device | str) -> ParagraphBatch:
        """The same batch with every tensor on ``device``."""
        return self._map(lambda t: t.to(device))

    def pin_memory(self) -> ParagraphBatch:
        """The same batch in page-locked memory; DataLoader(pin_memory=True) calls this."""
        return self._map(Tensor.pin_memory)

    def __len__(self) -> int:
        return int(self.video.shape[0])
