"""Per-paragraph items and their vectorised collation into a :class:`ParagraphBatch`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from higround.data.batch import ParagraphBatch


@dataclass(frozen=True)
class ParagraphItem:
    """One paragraph ready for collation (see :func:`higround.data.dataset.make_item`).

    Attributes:
        video: ``(T, D)`` float32 clip features.
        words: ``(W,)`` long word ids of all sentences concatenated in order.
        sentence_length: ``(S,)`` long words per sentence (all >= 1, summing to W).
        spans: ``(S, 2)`` float32 (start, end) divided by the duration, in [0, 1].
        duration: video duration in seconds.
        video_id: the video's id.
        paragraph_index: the paragraph's index within its video.
        sentence_index: ``(S,)`` long, each sentence's index in its video's annotation.
        sentence_keys: the ``S`` sentences' keys (``"<video_id>#<index>"`` or the release's query id).
    """

    video: Tensor
    words: Tensor
    sentence_length: Tensor
    spans: Tensor
    duration: float
    video_id: str
    paragraph_index: int
    sentence_index: Tensor
    sentence_keys: tuple[str, ...] = ()


def _video_groups(video_ids: Sequence[str]) -> Tensor:
    """``(B,)`` long: each id numbered by its first appearance in ``video_ids``."""
    first: dict[str, int] = {}
    return torch.tensor([first.setdefault(v, len(first)) for v in video_ids], dtype=torch.long)


def _pad(values: Tensor, mask: Tensor, fill: float) -> Tensor:
    """A tensor shaped ``mask.shape + values.shape[1:]`` holding ``values`` where ``mask`` is True."""
    out = torch.full((*mask.shape, *values.shape[1:]), fill, dtype=values.dtype)
    out[mask] = values
    return out


def _lengths_mask(lengths: Tensor) -> Tensor:
    """``(B, max(lengths))`` bool mask, True for the first ``lengths[b]`` entries of row ``b``."""
    width = int(lengths.max()) if len(lengths) else 0
    return torch.arange(width) < lengths[:, None]


def collate_paragraphs(items: Sequence[ParagraphItem]) -> ParagraphBatch:
    """Pad ``items`` into one :class:`ParagraphBatch` (usable as a DataLoader ``collate_fn``).

    Each field is concatenated once over the items and scattered into its padded tensor through a
    length mask (row-major order matches the concatenation order); the per-word sentence index and
    in-sentence position come from ``repeat_interleave`` over cumulative offsets.
    """
    if not items:
        raise ValueError("collate_paragraphs: no items")
    clips = torch.tensor([it.video.shape[0] for it in items])
    sentences = torch.tensor([len(it.sentence_length) for it in items])
    word_counts = torch.tensor([len(it.words) for it in items])
    sentence_length = torch.cat([it.sentence_length for it in items]).long()
    words = torch.cat([it.words for it in items]).long()

    video_mask = _lengths_mask(clips)
    sentence_mask = _lengths_mask(sentences)
    word_mask = _lengths_mask(word_counts)

    # Position of every sentence inside its paragraph: global index minus its paragraph's first.
    paragraph_of_sentence = torch.repeat_interleave(torch.arange(len(items)), sentences)
    first_sentence = torch.cumsum(sentences, 0) - sentences
    local_sentence = torch.arange(len(sentence_length)) - first_sentence[paragraph_of_sentence]
    # Position of every word inside its sentence: global index minus its sentence's first word.
    first_word = torch.cumsum(sentence_length, 0) - sentence_length
    word_position = torch.arange(len(words)) - torch.repeat_interleave(first_word, sentence_length)

    return ParagraphBatch(
        video=_pad(torch.cat([it.video for it in items]).float(), video_mask, 0.0),
        video_mask=video_mask,
        words=_pad(words, word_mask, 0),
        word_mask=word_mask,
        word_sentence=_pad(torch.repeat_interleave(local_sentence, sentence_length), word_mask, -1),
        word_position=_pad(word_position, word_mask, 0),
        sentence_mask=sentence_mask,
        sentence_length=_pad(sentence_length, sentence_mask, 0),
        spans=_pad(torch.cat([it.spans for it in items]).float(), sentence_mask, 0.0),
        durations=torch.tensor([it.duration for it in items], dtype=torch.float32),
        video_ids=[it.video_id for it in items],
        paragraph_index=torch.tensor([it.paragraph_index for it in items], dtype=torch.long),
        sentence_index=_pad(torch.cat([it.sentence_index for it in items]).long(), sentence_mask, -1),
        sentence_keys=[it.sentence_keys for it in items],
        video_group=_video_groups([it.video_id for it in items]),
    )
