"""Paragraph datasets: annotations + clip features + vocabulary -> :class:`ParagraphItem` s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset

from higround.data.batching import ParagraphItem
from higround.data.features import FeatureStore, l2_normalize, resample
from higround.data.readers.qvhighlights import EXTRA_FIELDS
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


def _normalised(paragraph: Paragraph, spans: np.ndarray, owners: list[int]) -> torch.Tensor:
    """``(N, 2)`` ``spans`` (seconds; row i of sentence ``owners[i]``) divided by the duration; a span
    outside [0, duration] raises DataError naming its sentence."""
    if not paragraph.duration > 0:
        raise DataError(f"video {paragraph.video_id}: duration {paragraph.duration} is not positive")
    normalised = spans / paragraph.duration
    bad = (
        (normalised[:, 0] < 0)
        | (normalised[:, 0] > normalised[:, 1])
        | (normalised[:, 1] > 1)
        | ~np.isfinite(normalised).all(1)
    )
    if bad.any():
        row = int(np.argmax(bad))
        s, span = paragraph.sentences[owners[row]], (float(spans[row, 0]), float(spans[row, 1]))
        raise DataError(
            f"video {paragraph.video_id}: sentence {s.index} span {span} "
            f"is not an ordered span inside [0, {paragraph.duration}]"
        )
    return torch.from_numpy(normalised.astype(np.float32))


def _normalised_spans(paragraph: Paragraph) -> torch.Tensor:
    """``(S, 2)`` spans divided by the duration; a span outside [0, duration] raises DataError."""
    spans = np.array([s.span for s in paragraph.sentences], dtype=np.float64).reshape(-1, 2)
    return _normalised(paragraph, spans, list(range(len(paragraph.sentences))))


def _normalised_windows(paragraph: Paragraph) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, 2)`` every ground-truth window (:attr:`Sentence.all_windows`) divided by the duration,
    sentence after sentence, and ``(S,)`` the windows per sentence; bad windows raise DataError."""
    windows = [s.all_windows for s in paragraph.sentences]
    owners = [i for i, w in enumerate(windows) for _ in w]
    spans = np.array([span for w in windows for span in w], dtype=np.float64).reshape(-1, 2)
    counts = torch.tensor([len(w) for w in windows], dtype=torch.long)
    return _normalised(paragraph, spans, owners), counts


def _clips(
    video_id: str, features: np.ndarray, num_clips: int, normalize: bool, native: bool = False
) -> torch.Tensor:
    """``(num_clips, D)`` float32 clip features, L2-normalised per clip when ``normalize``; with
    ``native`` a video of at most ``num_clips`` clips keeps its own ``(T, D)``."""
    if features.ndim != 2 or features.shape[0] == 0:
        raise DataError(f"video {video_id}: features of shape {features.shape}, expected (T >= 1, D)")
    clips = features if native and features.shape[0] <= num_clips else resample(features, num_clips)
    return torch.from_numpy(
        np.ascontiguousarray(l2_normalize(clips) if normalize else clips, dtype=np.float32)
    )


def clip_labels(paragraph: Paragraph, clips: int, grid: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The highlight labels of the paragraph's sentences on its ``clips`` clips, or None.

    A sentence's labels (QVHighlights' ``relevant_clip_ids`` and ``saliency_scores`` in
    :attr:`Sentence.extra`) index the ``grid`` clips of the video's features: a relevant clip scores
    the sum of its annotators' scores (Moment-DETR's ``agg_scores``), every other clip 0; ids past
    the features (``>= grid``) are dropped. When the features were resampled (``clips != grid``) the
    labels are resampled alike (:func:`~higround.data.features.resample`; a clip is relevant when at
    least half of what it covers is).

    Returns:
        ``(S, clips)`` float32 scores and ``(S, clips)`` bool relevance; None when no sentence has labels.

    Raises:
        DataError: only some sentences of the paragraph have labels.
    """
    ids_field, scores_field = EXTRA_FIELDS
    labelled = [ids_field in s.extra for s in paragraph.sentences]
    if not any(labelled):
        return None
    if not all(labelled):
        s = paragraph.sentences[labelled.index(False)]
        raise DataError(f"video {paragraph.video_id}: sentence {s.index} has no {ids_field!r}, others have")
    scores = np.zeros((grid, len(paragraph.sentences)), dtype=np.float64)
    relevant = np.zeros_like(scores)
    for i, s in enumerate(paragraph.sentences):
        ids = np.asarray(s.extra[ids_field], dtype=np.int64).reshape(-1)
        summed = np.asarray(s.extra[scores_field], dtype=np.float64).reshape(len(ids), -1).sum(axis=1)
        keep = (ids >= 0) & (ids < grid)
        scores[ids[keep], i] = summed[keep]
        relevant[ids[keep], i] = 1.0
    if clips != grid:
        scores, relevant = resample(scores, clips), resample(relevant, clips)
    return torch.from_numpy(scores.T.astype(np.float32)), torch.from_numpy(relevant.T >= 0.5)


# Per paragraph: word ids, words per sentence, normalised spans, every window and the windows per
# sentence (checked once, reused per access).
_Text = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
# Per sentence key: the word ids of each of its hard negative queries, level 1 first (SHINE).
NegativeIds = Mapping[str, Sequence[Sequence[int]]]


def negative_tensors(paragraph: Paragraph, negatives: NegativeIds) -> tuple[torch.Tensor, torch.Tensor]:
    """The paragraph's hard negatives as an item carries them: ``(N,)`` word ids of every
    sentence's negatives concatenated (sentence order, level 1 first) and ``(S, H)`` their lengths.

    Raises:
        DataError: a sentence without negatives, sentences with different numbers of them, or a
            negative without a word.
    """
    rows = []
    for sentence in paragraph.sentences:
        if sentence.key not in negatives:
            raise DataError(f"video {paragraph.video_id}: sentence {sentence.key!r} has no hard negatives")
        rows.append(negatives[sentence.key])
    if len({len(r) for r in rows}) > 1 or not all(all(ids) for ids in rows):
        raise DataError(
            f"video {paragraph.video_id}: every sentence needs the same number of non-empty hard "
            f"negatives, got {[[len(ids) for ids in r] for r in rows]} words"
        )
    words = torch.tensor([i for r in rows for ids in r for i in ids], dtype=torch.long)
    return words, torch.tensor([[len(ids) for ids in r] for r in rows], dtype=torch.long)


def _text(paragraph: Paragraph, vocab: Vocabulary) -> _Text:
    return (
        *encode_paragraph(paragraph, vocab),
        _normalised_spans(paragraph),
        *_normalised_windows(paragraph),
    )


def _item(
    paragraph: Paragraph,
    text: _Text,
    features: np.ndarray,
    num_clips: int,
    normalize: bool,
    native: bool = False,
    text_features: Sequence[np.ndarray] | None = None,
    negatives: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> ParagraphItem:
    words, lengths, spans, windows, window_count = text
    video = _clips(paragraph.video_id, features, num_clips, normalize, native)
    labels = clip_labels(paragraph, video.shape[0], features.shape[0])
    item = ParagraphItem(
        video=video,
        words=words,
        sentence_length=lengths,
        spans=spans,
        duration=float(paragraph.duration),
        video_id=paragraph.video_id,
        paragraph_index=paragraph.index,
        sentence_index=torch.tensor([s.index for s in paragraph.sentences], dtype=torch.long),
        sentence_keys=tuple(s.key for s in paragraph.sentences),
        windows=windows,
        window_count=window_count,
        clip_saliency=None if labels is None else labels[0],
        clip_relevant=None if labels is None else labels[1],
        text_features=None
        if text_features is None
        else torch.from_numpy(np.concatenate(text_features).astype(np.float32)),
    )
    if negatives is None:
        return item
    return replace(item, negative_words=negatives[0], negative_length=negatives[1])


def make_item(
    paragraph: Paragraph,
    features: np.ndarray,
    vocab: Vocabulary,
    num_clips: int,
    normalize: bool = False,
    *,
    native_clips: bool = False,
    text_features: Sequence[np.ndarray] | None = None,
    negatives: NegativeIds | None = None,
) -> ParagraphItem:
    """One item from a paragraph and its video's raw ``(T, D)`` clip features (no feature store needed).

    The features are resampled to ``num_clips`` (with ``native_clips``: only when ``T > num_clips``;
    then L2-normalised per clip when ``normalize``); spans and every window are divided by the
    duration; highlight labels, when the sentences have them, follow the clips (:func:`clip_labels`).
    ``text_features``: one ``(L_s, D_t)`` array of token features per sentence; ``negatives``: the
    hard negatives' word ids by sentence key (:func:`negative_tensors`). Bad sentences, spans,
    features or negatives raise DataError.
    """
    hard = None if negatives is None else negative_tensors(paragraph, negatives)
    return _item(
        paragraph, _text(paragraph, vocab), features, num_clips, normalize, native_clips, text_features, hard
    )


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
        *,
        native_clips: bool = False,
        text_store: FeatureStore | None = None,
        negatives: NegativeIds | None = None,
    ) -> None:
        """Check every paragraph against ``store`` and ``vocab``; raises DataError on bad records.

        ``native_clips``: a video of at most ``num_clips`` clips keeps its own clips (batches pad),
        a longer one is resampled to ``num_clips``. ``text_store``: pre-extracted token features, one
        ``(L, D_t)`` entry per sentence keyed by its :attr:`~higround.data.schema.Sentence.key`.
        ``negatives``: the word ids of every sentence's hard negatives by its key
        (:func:`higround.data.negatives.negative_word_ids`; SHINE's training data): each item then
        carries them (:func:`negative_tensors`).
        """
        if num_clips < 1:
            raise ConfigError(f"num_clips must be >= 1, got {num_clips}")
        for source, ids, what in (
            (store, [p.video_id for p in paragraphs], "video(s)"),
            (text_store, [s.key for p in paragraphs for s in p.sentences], "sentence key(s)"),
        ):
            missing = [] if source is None else sorted({i for i in ids if i not in source})
            if source is not None and missing:
                more = " ..." if len(missing) > 10 else ""
                raise DataError(
                    f"{source.name}: no features for {len(missing)} {what}: {', '.join(missing[:10])}{more}"
                )
        self.paragraphs = list(paragraphs)
        self.store = store
        self.vocab = vocab
        self.num_clips = num_clips
        self.normalize = normalize
        self.native_clips = native_clips
        self.text_store = text_store
        self._texts = [_text(p, vocab) for p in self.paragraphs]
        self._negatives = (
            None if negatives is None else [negative_tensors(p, negatives) for p in self.paragraphs]
        )

    def word_ids(self) -> torch.Tensor:
        """``(W,)`` word ids of every sentence, concatenated (e.g. for the unknown-word rate)."""
        if not self._texts:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([text[0] for text in self._texts])

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
        tokens = None
        if self.text_store is not None:
            store = self.text_store
            tokens = [store.get(s.key) for s in paragraph.sentences]
            if any(t.shape[1] != store.dim for t in tokens):
                bad = next(
                    s.key for s, t in zip(paragraph.sentences, tokens, strict=True) if t.shape[1] != store.dim
                )
                raise DataError(
                    f"{store.name}: token features of {bad!r} have another size than the store's "
                    f"first entry {store.video_ids()[0]!r} ({store.dim})"
                )
        hard = None if self._negatives is None else self._negatives[index]
        return _item(
            paragraph,
            self._texts[index],
            features,
            self.num_clips,
            self.normalize,
            self.native_clips,
            tokens,
            hard,
        )
