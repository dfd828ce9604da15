"""Video-paragraph retrieval data: one item per video with its whole paragraph, frames kept as frames.

A retrieval family (HSE, docs/hse.md) encodes *sequences of feature frames*, not a fixed number of
resampled clips, so its batch (:class:`RetrievalBatch`) is a :class:`ParagraphBatch` whose
``video`` is the whole video's frames subsampled to at most ``max_frames`` (the input of the
whole-video encoding), plus the frames of every clip of the video, packed. What a clip is:

* ``"spans"`` (HSE's protocol, at training *and* at test time): each sentence's annotated segment.
  With ``L`` feature frames and duration ``d``, segment ``[st, ed]`` is frames
  ``floor(st / d * L) .. ceil(ed / d * L)`` inclusive (CMHSE ``activity_net/data.py``; a start past
  the end gives one frame; both clamped into the video). A sentence that carries its frames
  (DiDeMo: ``Sentence.extra["frames"]``, indices into the feature frames) uses them as CMHSE's
  ``didemo_dev/data.py`` does: frames ``f0 .. f1`` inclusive, the whole video when either end lies
  past the ``L`` frames.
* ``"uniform"``: ``K`` equal parts of the video, frames ``floor(k L / K) .. floor((k+1) L / K) - 1``
  (one frame when ``L < K``); needs no annotation, so a video can be embedded for retrieval before
  anyone describes it.
* ``None``: no clips (FSE).

A sequence (a clip, or the whole video) of ``n > max_frames`` frames is subsampled to the frames
``floor(j * n / max_frames)``, ``j < max_frames`` (CMHSE: ``np.arange(0, n, n / 80).astype(int)``,
the same indices for every n up to 5,000 at least). Everything is vectorised over the clips.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from higround.data.batch import ParagraphBatch
from higround.data.batching import ParagraphItem, collate_paragraphs
from higround.data.dataset import encode_paragraph
from higround.data.features import FeatureStore
from higround.data.schema import Paragraph
from higround.errors import ConfigError, DataError
from higround.text.vocab import Vocabulary

SPANS = "spans"
UNIFORM = "uniform"
CLIP_SOURCES = (SPANS, UNIFORM)


def span_frames(spans: np.ndarray, duration: float, num_frames: int) -> np.ndarray:
    """CMHSE's frames of annotated segments (module docstring), first and last inclusive.

    Args:
        spans: ``(K, 2)`` (start, end) in seconds.
        duration: the video's duration in seconds (> 0).
        num_frames: ``L``, the video's feature frames (>= 1).

    Returns:
        ``(K, 2)`` int64 ``[first, last]`` with ``0 <= first <= last < L``.
    """
    spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    # As CMHSE computes them (start / duration * L, in float64).
    first = np.floor(spans[:, 0] / duration * num_frames)
    last = np.ceil(spans[:, 1] / duration * num_frames)
    first = np.clip(first, 0, num_frames - 1)
    last = np.clip(np.maximum(last, first), 0, num_frames - 1)
    return np.stack([first, last], axis=1).astype(np.int64)


def indexed_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """CMHSE's DiDeMo clips from released frame indices ``(K, 2)``: ``f0 .. f1`` inclusive, the whole
    video when either index lies past the ``num_frames`` frames. Returns ``(K, 2)`` int64 as
    :func:`span_frames`."""
    frames = np.asarray(frames, dtype=np.int64).reshape(-1, 2)
    past = (frames > num_frames).any(axis=1)
    first = np.where(past, 0, np.clip(frames[:, 0], 0, num_frames - 1))
    last = np.where(past, num_frames - 1, np.clip(frames[:, 1], first, num_frames - 1))
    return np.stack([first, last], axis=1)


def uniform_frames(num_frames: int, parts: int) -> np.ndarray:
    """``(parts, 2)`` int64 first and last frames of ``parts`` equal parts of ``num_frames`` frames."""
    k = np.arange(parts, dtype=np.int64)
    first = k * num_frames // parts
    last = np.maximum((k + 1) * num_frames // parts - 1, first)
    return np.stack([first, last], axis=1)


def subsample(bounds: np.ndarray, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame indices of sequences ``[first, last]`` capped at ``max_frames`` each (CMHSE's rule).

    Args:
        bounds: ``(K, 2)`` first and last frame (inclusive) of each sequence.
        max_frames: the cap.

    Returns:
        ``(K, F)`` int64 indices (``F``: the longest kept length; entries past a sequence's length
        repeat its first frame and are padding) and ``(K,)`` int64 kept lengths.
    """
    first = bounds[:, 0]
    count = bounds[:, 1] - first + 1
    kept = np.minimum(count, max_frames)
    width = int(kept.max()) if len(kept) else 0
    step = np.where(count > max_frames, count / max_frames, 1.0)
    j = np.arange(width)
    offset = np.floor(j[None, :] * step[:, None]).astype(np.int64)
    offset = np.where(j[None, :] < kept[:, None], offset, 0)
    return first[:, None] + offset, kept


def clip_bounds(paragraph: Paragraph | None, num_frames: int, source: str, parts: int) -> np.ndarray:
    """``(K, 2)`` first/last frames of a video's clips by ``source`` (:data:`CLIP_SOURCES`).

    Raises:
        DataError: ``"spans"`` without a paragraph, or a non-positive duration.
    """
    if source == UNIFORM:
        return uniform_frames(num_frames, parts)
    if paragraph is None:
        raise DataError("clips from annotated segments (spans) need the video's paragraph")
    if not paragraph.duration > 0:
        raise DataError(f"video {paragraph.video_id}: duration {paragraph.duration} is not positive")
    sentences = paragraph.sentences
    if sentences and all("frames" in s.extra for s in sentences):
        released = [s.extra.get("released_frames", s.extra["frames"]) for s in sentences]
        return indexed_frames(np.asarray(released), num_frames)
    return span_frames(np.array([s.span for s in sentences]), paragraph.duration, num_frames)


@dataclass(frozen=True)
class RetrievalItem:
    """One video with its paragraph, ready for :func:`collate_retrieval`.

    Attributes:
        paragraph: the :class:`ParagraphItem` whose ``video`` is the whole video's frames, at most
            ``max_frames`` (``(0, D)`` for a text-only item; no words for a video-only one).
        clip_frames: ``(sum of clip_length, D)`` float32 the clips' frames, concatenated in order.
        clip_length: ``(K,)`` long frames per clip (``K = 0``: no clips).
    """

    paragraph: ParagraphItem
    clip_frames: Tensor
    clip_length: Tensor


@dataclass(kw_only=True)
class RetrievalBatch(ParagraphBatch):
    """A :class:`ParagraphBatch` (``video``: each whole video's frames, subsampled) with the frames of
    every clip.

    Attributes:
        clip_frames: ``(M, F, D)`` the ``M`` clips of the batch, row-major over ``clip_mask``
            (video 0's clips first), padded with zeros past ``clip_length``.
        clip_length: ``(M,)`` long frames per clip (>= 1).
        clip_mask: ``(B, N_C)`` bool, the real clips of each video (a prefix of the row); in the
            ``spans`` source clip ``k`` of a video is its sentence ``k``.
    """

    clip_frames: Tensor
    clip_length: Tensor
    clip_mask: Tensor


def _lengths_mask(lengths: Tensor) -> Tensor:
    width = int(lengths.max()) if len(lengths) else 0
    return torch.arange(width) < lengths[:, None]


def collate_retrieval(items: Sequence[RetrievalItem]) -> RetrievalBatch:
    """Pad ``items`` into one :class:`RetrievalBatch` (a DataLoader ``collate_fn``).

    Raises:
        ValueError: no items, or items whose clips have other feature sizes.
    """
    base = collate_paragraphs([it.paragraph for it in items])
    lengths = torch.cat([it.clip_length for it in items]).long()
    frames = torch.cat([it.clip_frames for it in items]).float()
    frame_mask = _lengths_mask(lengths)
    clip_frames = torch.zeros((*frame_mask.shape, frames.shape[-1]), dtype=frames.dtype)
    clip_frames[frame_mask] = frames
    counts = torch.tensor([len(it.clip_length) for it in items])
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return RetrievalBatch(
        **fields, clip_frames=clip_frames, clip_length=lengths, clip_mask=_lengths_mask(counts)
    )


def _spans(paragraph: Paragraph) -> Tensor:
    """``(S, 2)`` spans divided by the duration (the readers checked them), clipped to [0, 1]."""
    spans = np.array([s.span for s in paragraph.sentences], dtype=np.float64).reshape(-1, 2)
    return torch.from_numpy(np.clip(spans / paragraph.duration, 0.0, 1.0).astype(np.float32))


def text_item(paragraph: Paragraph, vocab: Vocabulary, video_dim: int) -> RetrievalItem:
    """A text-only item (no frames, no clips): to embed a paragraph alone.

    Raises:
        DataError: no sentence, or a sentence without a word token.
    """
    words, lengths = encode_paragraph(paragraph, vocab)
    return RetrievalItem(
        paragraph=ParagraphItem(
            video=torch.zeros((0, video_dim)),
            words=words,
            sentence_length=lengths,
            spans=_spans(paragraph) if paragraph.duration > 0 else torch.zeros((len(lengths), 2)),
            duration=float(paragraph.duration),
            video_id=paragraph.video_id,
            paragraph_index=paragraph.index,
            sentence_index=torch.tensor([s.index for s in paragraph.sentences], dtype=torch.long),
            sentence_keys=tuple(s.key for s in paragraph.sentences),
        ),
        clip_frames=torch.zeros((0, video_dim)),
        clip_length=torch.zeros(0, dtype=torch.long),
    )


def video_frames(
    video_id: str,
    features: np.ndarray,
    max_frames: int,
    source: str | None,
    parts: int,
    paragraph: Paragraph | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The whole video's frames (``(<= max_frames, D)``) and its clips' frames and lengths.

    Args:
        video_id: named in errors.
        features: ``(L, D)`` the video's feature frames.
        max_frames: cap per sequence.
        source: clip source (:data:`CLIP_SOURCES`), or None for no clips.
        parts: clips of the ``"uniform"`` source.
        paragraph: the video's annotated paragraph (``"spans"``).

    Raises:
        DataError: features that are not ``(L >= 1, D)``, or ``"spans"`` without a paragraph.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise DataError(f"video {video_id}: features of shape {features.shape}, expected (T >= 1, D)")
    frames = np.ascontiguousarray(features, dtype=np.float32)
    length = frames.shape[0]
    index, _ = subsample(np.array([[0, length - 1]]), max_frames)
    whole = torch.from_numpy(frames[index[0]])
    if source is None:
        return whole, torch.zeros((0, frames.shape[1])), torch.zeros(0, dtype=torch.long)
    bounds = clip_bounds(paragraph, length, source, parts)
    index, kept = subsample(bounds, max_frames)
    valid = np.arange(index.shape[1])[None, :] < kept[:, None]
    return whole, torch.from_numpy(frames[index[valid]]), torch.from_numpy(kept)


def video_item(
    paragraph: Paragraph,
    features: np.ndarray,
    text: tuple[Tensor, Tensor] | None,
    max_frames: int,
    source: str | None,
    parts: int,
) -> RetrievalItem:
    """The item of a video and its paragraph.

    Args:
        paragraph: the video's paragraph (its duration; its spans for the ``"spans"`` source).
        features: ``(L, D)`` the video's feature frames.
        text: the paragraph's word ids and words per sentence (:func:`encode_paragraph`), or None for
            the video side only (no words).
        max_frames, source, parts: as :func:`video_frames`.

    Raises:
        DataError: bad features, or ``"spans"`` without sentences.
    """
    whole, clip_frames, clip_length = video_frames(
        paragraph.video_id, features, max_frames, source, parts, paragraph
    )
    sentences = paragraph.sentences if text is not None else ()
    words, lengths = text if text is not None else (torch.zeros(0, dtype=torch.long),) * 2
    return RetrievalItem(
        paragraph=ParagraphItem(
            video=whole,
            words=words,
            sentence_length=lengths,
            spans=_spans(paragraph) if text is not None else torch.zeros((0, 2)),
            duration=float(paragraph.duration),
            video_id=paragraph.video_id,
            paragraph_index=paragraph.index,
            sentence_index=torch.tensor([s.index for s in sentences], dtype=torch.long),
            sentence_keys=tuple(s.key for s in sentences),
        ),
        clip_frames=clip_frames,
        clip_length=clip_length,
    )


def one_paragraph_per_video(paragraphs: Sequence[Paragraph], where: str) -> None:
    """Refuse a video with several paragraphs: a retrieval item is a video with its whole paragraph.

    Raises:
        DataError: naming the first such video and ``where`` the paragraphs came from.
    """
    seen: dict[str, int] = {}
    for p in paragraphs:
        seen[p.video_id] = seen.get(p.video_id, 0) + 1
    several = [v for v, n in seen.items() if n > 1]
    if several:
        raise DataError(
            f"{where}: video {several[0]} has {seen[several[0]]} paragraphs ({len(several)} video(s) "
            "have several): retrieval takes each video with its whole paragraph (data.max_sentences "
            "must be null)"
        )


class RetrievalDataset(Dataset[RetrievalItem]):
    """Videos with their whole paragraphs: one :class:`RetrievalItem` per video.

    Sentences are tokenised once here (bad records fail before training starts); features are read
    from the store on access.
    """

    def __init__(
        self,
        paragraphs: Sequence[Paragraph],
        store: FeatureStore,
        vocab: Vocabulary,
        max_frames: int,
        source: str | None,
        parts: int = 4,
        where: str = "retrieval data",
    ) -> None:
        """Check every paragraph against ``store`` and ``vocab``.

        Args:
            paragraphs: one per video (``where`` names them in errors).
            store: the feature store.
            vocab: the vocabulary.
            max_frames: frames per sequence at most.
            source: the clip source (:data:`CLIP_SOURCES`), or None (no clips).
            parts: clips per video of the ``"uniform"`` source.
            where: what the paragraphs are, for error messages.

        Raises:
            ConfigError: ``max_frames`` or ``parts`` below 1, an unknown source.
            DataError: a video without features, with several paragraphs, or a bad sentence.
        """
        if max_frames < 1 or parts < 1:
            raise ConfigError(f"retrieval data: max_frames and parts must be >= 1, got {max_frames}, {parts}")
        if source is not None and source not in CLIP_SOURCES:
            raise ConfigError(f"retrieval data: clip source must be one of {CLIP_SOURCES}, got {source!r}")
        one_paragraph_per_video(paragraphs, where)
        missing = sorted({p.video_id for p in paragraphs if p.video_id not in store})
        if missing:
            more = " ..." if len(missing) > 10 else ""
            raise DataError(
                f"{store.name}: no features for {len(missing)} video(s): {', '.join(missing[:10])}{more}"
            )
        self.paragraphs = list(paragraphs)
        self.store = store
        self.vocab = vocab
        self.max_frames = max_frames
        self.source = source
        self.parts = parts
        self._words = [encode_paragraph(p, vocab) for p in self.paragraphs]

    def word_ids(self) -> Tensor:
        """``(W,)`` word ids of every sentence, concatenated (for the unknown-word rate)."""
        if not self._words:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([words for words, _ in self._words])

    def __len__(self) -> int:
        return len(self.paragraphs)

    def __getitem__(self, index: int) -> RetrievalItem:
        paragraph = self.paragraphs[index]
        features = self.store.get(paragraph.video_id)
        if features.shape[1] != self.store.dim:
            raise DataError(
                f"{self.store.name}: features of video {paragraph.video_id!r} have {features.shape[1]} "
                f"channels, the store's first video's {self.store.dim}"
            )
        return video_item(paragraph, features, self._words[index], self.max_frames, self.source, self.parts)
