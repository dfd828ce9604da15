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
        windows: ``(W, 2)`` float32 every ground-truth window of the sentences, divided by the
            duration, sentence after sentence (``None``: one window per sentence, its span).
        window_count: ``(S,)`` long windows per sentence (all >= 1, summing to W), with ``windows``.
        clip_saliency: ``(S, T)`` float32 per clip of ``video`` the annotators' summed highlight
            score (QVHighlights' ``saliency_scores``; 0 outside the relevant clips), or ``None``.
        clip_relevant: ``(S, T)`` bool, the clips of ``relevant_clip_ids``, with ``clip_saliency``.
        text_features: ``(L, D_t)`` float32 pre-extracted token features of the sentences,
            concatenated in order (``data.text_features``), or ``None``.
        negative_words: ``(N,)`` long word ids of every sentence's hard negative queries,
            concatenated (sentence after sentence, level 1 first; SHINE's ``data.negatives``), or
            ``None``.
        negative_length: ``(S, H)`` long words of each of them (all >= 1, summing to N), with
            ``negative_words``.
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
    windows: Tensor | None = None
    window_count: Tensor | None = None
    clip_saliency: Tensor | None = None
    clip_relevant: Tensor | None = None
    text_features: Tensor | None = None
    negative_words: Tensor | None = None
    negative_length: Tensor | None = None


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


def _optional(items: Sequence[ParagraphItem], name: str) -> list[Tensor] | None:
    """Every item's ``name`` field, or None when no item has one (ValueError when only some do)."""
    values = [getattr(it, name) for it in items]
    given = [v for v in values if v is not None]
    if not given:
        return None
    if len(given) != len(values):
        raise ValueError(
            f"collate_paragraphs: {len(given)} of {len(values)} items have {name}, the others not"
        )
    return given


def collate_paragraphs(items: Sequence[ParagraphItem]) -> ParagraphBatch:
    """Pad ``items`` into one :class:`ParagraphBatch` (usable as a DataLoader ``collate_fn``).

    Each field is concatenated once over the items and scattered into its padded tensor through a
    length mask (row-major order matches the concatenation order); the per-word sentence index and
    in-sentence position come from ``repeat_interleave`` over cumulative offsets. The optional
    per-clip highlight labels, token features and hard negatives are collated when every item has
    them.

    Raises:
        ValueError: no item, only some items carry highlight labels, token features or hard
            negatives, or items carry different numbers of hard negatives.
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

    # Every window of every sentence: per sentence (a row per sentence), then per paragraph.
    window_count = torch.cat(
        [
            it.window_count if it.window_count is not None else torch.ones(len(it.sentence_length))
            for it in items
        ]
    ).long()
    per_sentence = _lengths_mask(window_count)
    windows = _pad(
        torch.cat([it.windows if it.windows is not None else it.spans for it in items]).float(),
        per_sentence,
        0.0,
    )
    # (B, N_S, N_V) labels: the True entries of the mask, in row-major order, are each item's
    # (S, T) labels flattened in order.
    saliency, relevant = _optional(items, "clip_saliency"), _optional(items, "clip_relevant")
    clip_mask = sentence_mask[:, :, None] & video_mask[:, None, :]
    texts = _optional(items, "text_features")
    text_mask = text_features = None
    if texts is not None:
        text_mask = _lengths_mask(torch.tensor([len(t) for t in texts]))
        text_features = _pad(torch.cat(texts).float(), text_mask, 0.0)
    # (B, N_S, H, L_H) hard negatives: a row per negative (item, sentence, level order), padded to
    # the longest, then scattered through the sentence mask as the windows are.
    negatives, negative_lengths = _optional(items, "negative_words"), _optional(items, "negative_length")
    negative_words = negative_mask = None
    if negatives is not None and negative_lengths is not None:
        levels = {n.shape[1] for n in negative_lengths}
        if len(levels) > 1:
            raise ValueError(f"collate_paragraphs: items carry {sorted(levels)} hard negatives per sentence")
        per_negative = _lengths_mask(torch.cat([n.reshape(-1) for n in negative_lengths]).long())
        rows = per_negative.view(-1, levels.pop(), per_negative.shape[-1])
        negative_words = _pad(
            _pad(torch.cat(negatives).long(), per_negative, 0).view(rows.shape), sentence_mask, 0
        )
        negative_mask = _pad(rows, sentence_mask, False)

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
        windows=_pad(windows, sentence_mask, 0.0),
        window_mask=_pad(per_sentence, sentence_mask, False),
        clip_saliency=None
        if saliency is None
        else _pad(torch.cat([x.reshape(-1) for x in saliency]).float(), clip_mask, 0.0),
        clip_relevant=None
        if relevant is None
        else _pad(torch.cat([x.reshape(-1) for x in relevant]).bool(), clip_mask, False),
        text_features=text_features,
        text_mask=text_mask,
        negative_words=negative_words,
        negative_mask=negative_mask,
    )
