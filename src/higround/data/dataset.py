"""Paragraph datasets: annotations + clip features + vocabulary -> :class:`ParagraphItem` s."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from higround.data.batching import ParagraphItem
from higround.data.features import FeatureStore, l2_normalize, resample
from higround.data.schema import Paragraph
from higround.errors import ConfigError, DataError
from higround.text.tokenizer import tokenize
from higround.text.vocab import Vocabulary

# The data units (``data.unit``, :attr:`higround.models.family.ModelFamily.unit`): what one sample is.
PARAGRAPH = "paragraph"  # a paragraph: all its sentences and the video (HSCNet)
SENTENCE = "sentence"  # one sentence and the video (sentence-grounding models: 2D-TAN, LGI, ...)
UNITS = (PARAGRAPH, SENTENCE)


def samples(paragraphs: Sequence[Paragraph], unit: str) -> list[Paragraph]:
    """The samples of ``unit``: ``paragraphs`` themselves, or their :func:`sentence_view`.

    Raises:
        ValueError: ``unit`` is not one of :data:`UNITS`.
    """
    if unit == PARAGRAPH:
        return list(paragraphs)
    if unit == SENTENCE:
        return sentence_view(paragraphs)
    raise ValueError(f"data unit must be one of {UNITS}, got {unit!r}")


def sentence_view(paragraphs: Sequence[Paragraph]) -> list[Paragraph]:
    """Sentence-grounding view: every sentence as its own one-sentence paragraph.

    Each keeps its video, duration and paragraph index; its sentence keeps its annotation index, so
    predictions map back to the original sentences.
    """
    return [Paragraph(p.video_id, p.duration, (s,), p.index) for p in paragraphs for s in p.sentences]


def encode_paragraph(paragraph: Paragraph, vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
    """Word ids of ``paragraph`` (sentences concatenated, ``(W,)`` long) and words per sentence (``(S,)``).

    Raises:
        DataError: the paragraph has no sentence, or a sentence has no word token.
    """
    if not paragraph.sentences:
        raise DataError(f"video {paragraph.video_id}: paragraph {paragraph.index} has no sentence")
    tokens = [tokenize(s.text) for s in paragraph.sentences]
    for sentence, toks in zip(paragraph.sentences, tokens, strict=True):
        if not toks:
            raise DataError(
                f"video {paragraph.video_id}: sentence {sentence.index} ({sentence.text!r}) has no word token"
            )
    words = torch.tensor([i for toks in tokens for i in vocab.encode(toks)], dtype=torch.long)
    return words, torch.tensor([len(t) for t in tokens], dtype=torch.long)


def _normalised_spans(paragraph: Paragraph) -> torch.Tensor:
    """``(S, 2)`` spans divided by the duration; a span outside [0, duration] raises DataError."""
    if not paragraph.duration > 0:
        raise DataError(f"video {paragraph.video_id}: duration {paragraph.duration} is not positive")
    spans = np.array([s.span for s in paragraph.sentences], dtype=np.float64) / paragraph.duration
    bad = (spans[:, 0] < 0) | (spans[:, 0] > spans[:, 1]) | (spans[:, 1] > 1) | ~np.isfinite(spans).all(1)
    if bad.any():
        s = paragraph.sentences[int(np.argmax(bad))]
        raise DataError(
            f"video {paragraph.video_id}: sentence {s.index} span {s.span} is not an ordered "
            f"span inside [0, {paragraph.duration}]"
        )
    return torch.from_numpy(spans.astype(np.float32))


def _clips(video_id: str, features: np.ndarray, num_clips: int, normalize: bool) -> torch.Tensor:
    """``(num_clips, D)`` float32 clip features, L2-normalised per clip when ``normalize``."""
    if features.ndim != 2 or features.shape[0] == 0:
        raise DataError(f"video {video_id}: features of shape {features.shape}, expected (T >= 1, D)")
    clips = resample(features, num_clips)
    return torch.from_numpy(
        np.ascontiguousarray(l2_normalize(clips) if normalize else clips, dtype=np.float32)
    )


# Per paragraph: word ids, words per sentence, normalised spans (checked once, reused per access).
_Text = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _text(paragraph: Paragraph, vocab: Vocabulary) -> _Text:
    return (*encode_paragraph(paragraph, vocab), _normalised_spans(paragraph))


def _item(
    paragraph: Paragraph, text: _Text, features: np.ndarray, num_clips: int, normalize: bool
) -> ParagraphItem:
    words, lengths, spans = text
    return ParagraphItem(
        video=_clips(paragraph.video_id, features, num_clips, normalize),
        words=words,
        sentence_length=lengths,
        spans=spans,
        duration=float(paragraph.duration),
        video_id=paragraph.video_id,
        paragraph_index=paragraph.index,
        sentence_index=torch.tensor([s.index for s in paragraph.sentences], dtype=torch.long),
        sentence_keys=tuple(s.key for s in paragraph.sentences),
    )


def make_item(
    paragraph: Paragraph, features: np.ndarray, vocab: Vocabulary, num_clips: int, normalize: bool = False
) -> ParagraphItem:
    """One item from a paragraph and its video's raw ``(T, D)`` clip features (no feature store needed).

    The features are resampled to ``num_clips`` (and L2-normalised per clip when ``normalize``);
    spans are divided by the duration. Bad sentences, spans or features raise DataError.
    """
    return _item(paragraph, _text(paragraph, vocab), features, num_clips, normalize)


class ParagraphDataset(Dataset[ParagraphItem]):
    """Paragraphs with their video features, one :class:`ParagraphItem` per paragraph.

    Sentences are tokenised and spans checked once here, so bad records fail before training starts;
    features are read from ``store`` on access (nothing is held in memory).
    """

    def __init__(
        self,
        paragraphs: Sequence[Paragraph],
        store: FeatureStore,
        vocab: Vocabulary,
        num_clips: int,
        normalize: bool = False,
    ) -> None:
        """Check every paragraph against ``store`` and ``vocab``; raises DataError on bad records."""
        if num_clips < 1:
            raise ConfigError(f"num_clips must be >= 1, got {num_clips}")
        missing = sorted({p.video_id for p in paragraphs if p.video_id not in store})
        if missing:
            more = " ..." if len(missing) > 10 else ""
            raise DataError(
                f"{store.name}: no features for {len(missing)} video(s): {', '.join(missing[:10])}{more}"
            )
        self.paragraphs = list(paragraphs)
        self.store = store
        self.vocab = vocab
        self.num_clips = num_clips
        self.normalize = normalize
        self._texts = [_text(p, vocab) for p in self.paragraphs]

    def word_ids(self) -> torch.Tensor:
        """``(W,)`` word ids of every sentence, concatenated (e.g. for the unknown-word rate)."""
        if not self._texts:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([words for words, _, _ in self._texts])

    def __len__(self) -> int:
        return len(self.paragraphs)

    def __getitem__(self, index: int) -> ParagraphItem:
        paragraph = self.paragraphs[index]
        features = self.store.get(paragraph.video_id)
        if features.shape[1] != self.store.dim:  # else a batch of mixed sizes fails in collation
            raise DataError(
                f"{self.store.name}: features of video {paragraph.video_id!r} have {features.shape[1]} "
                f"channels, those of the store's first video {self.store.video_ids()[0]!r} {self.store.dim}"
            )
        return _item(paragraph, self._texts[index], features, self.num_clips, self.normalize)
