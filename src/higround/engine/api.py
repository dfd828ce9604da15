"""Python API: ground a paragraph in a video's clip features with a trained checkpoint.

>>> grounder = Grounder.from_checkpoint("runs/hscnet_tacos/checkpoints/best.ckpt")  # doctest: +SKIP
>>> result = grounder.ground(features, "A man opens the fridge. He takes out a carrot.", 92.4)
>>> result.spans  # doctest: +SKIP
[(3.1, 10.8), (10.2, 21.5)]

The paragraph is one string (split into sentences by :func:`higround.text.split_sentences`) or the
list of its sentences. A query with more unknown words (outside the checkpoint's vocabulary) than
:data:`higround.text.UNKNOWN_WARN_RATE` gives an :class:`~higround.text.UnknownWordsWarning`;
``result.unknown_rate`` holds the rate of every query.

On a video file (features extracted with the checkpoint's backbone, see docs/own_video.md):

>>> video = grounder.encode_video("kitchen.mp4")  # doctest: +SKIP
>>> grounder.ground_video(video, "A man opens the fridge. He takes out a carrot.").spans  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from higround.data.batching import collate_paragraphs
from higround.data.dataset import make_item, samples
from higround.data.features import l2_normalize
from higround.data.schema import Paragraph, Sentence, Span
from higround.devices import resolve_device
from higround.engine.checkpoint import load_checkpoint
from higround.engine.config import Config
from higround.engine.inference import inference_autocast, paragraph_records
from higround.errors import DataError
from higround.models.family import FamilyConfig
from higround.text.sentences import split_sentences
from higround.text.tokenizer import tokenize
from higround.text.vocab import UnknownWordsWarning, Vocabulary
from higround.video.extract import VideoFeatures, encode_video
from higround.video.grounding import check_settings, plan_extraction
from higround.video.settings import FeatureSettings, settings_from_config

if TYPE_CHECKING:
    from higround.video.backbones import Backbone

_VIDEO = "<input>"  # the video id named in error messages about API input


@dataclass(frozen=True)
class GroundingResult:
    """The groundings of one paragraph, in seconds.

    Attributes:
        spans: the final (start, end) of every sentence, in order (the model's answer: its best span).
        sentence_spans: the sentence-level spans (HSCNet: the sentence decoder's, before the final
            grounding head; ``None`` when the model has no such level).
        paragraph_span: the paragraph decoder's span (``None`` when the model has no such level).
        word_spans: per sentence, the span of each of its word tokens (``None`` without word decoder).
        words: per sentence, its word tokens (as the model read them).
        duration: the video duration the spans were scaled by.
        unknown_rate: the share of those tokens outside the checkpoint's vocabulary (read as ``<unk>``).
    """

    spans: list[Span]
    sentence_spans: list[Span] | None
    paragraph_span: Span | None
    word_spans: list[list[Span]] | None
    words: list[list[str]]
    duration: float
    unknown_rate: float


class Grounder:
    """A trained model with its vocabulary and feature settings, ready to ground paragraphs."""

    def __init__(
        self,
        model: torch.nn.Module,
        vocab: Vocabulary,
        config: Config,
        device: str | torch.device = "cpu",
        precision: str = "32-true",
    ):
        """Wrap ``model`` (moved to ``device``, eval mode) of the family ``config`` names, trained with
        ``vocab`` and ``config``; ``precision`` ``bf16-mixed`` grounds under bfloat16 autocast
        (:func:`~higround.engine.inference.inference_autocast`).

        Raises:
            ConfigError: an unknown precision, or a family that does not ground.
        """
        inference_autocast(device, precision)  # refuses an unknown precision before any work
        self.precision = precision
        self.device = torch.device(device)
        self.family = config.family
        self.family.check_task("grounding")
        self.model = model.to(self.device).eval()
        self.model_config = cast(FamilyConfig, self.model.config)  # the contract: a model keeps its config
        self.vocab = vocab
        self.config = config
        self.source = "model"  # named in error messages; the file for a loaded checkpoint
        # Backbones loaded by encode_video, kept so that grounding many videos loads the weights once.
        self._backbones: dict[tuple[str, str, str], Backbone] = {}

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "32-true"
    ) -> Grounder:
        """Load a training checkpoint (``.ckpt``) or exported weights (``.safetensors`` + ``.json``).

        The file alone suffices: it carries the weights, word vectors, config and vocabulary.
        """
        loaded = load_checkpoint(path)
        grounder = cls(loaded.build_model(), loaded.vocab, loaded.config, device, precision)
        grounder.source = str(path)
        return grounder

    @property
    def num_clips(self) -> int:
        """``N^V``: clips the features are resampled to."""
        return int(self.model_config.num_clips)

    @property
    def video_dim(self) -> int:
        """The clip feature size the model expects."""
        return int(self.model_config.video_dim)

    def ground(
        self, features: np.ndarray, sentences: str | Sequence[str], duration: float
    ) -> GroundingResult:
        """Ground a paragraph (its sentences, in order) in a video.

        Args:
            features: ``(T, D)`` clip features of the video, extracted as for training (same
                backbone, same ``D``); resampled to :attr:`num_clips`.
            sentences: the paragraph: one string, split by :func:`~higround.text.split_sentences`,
                or its sentences.
            duration: the video duration in seconds.

        Warns:
            UnknownWordsWarning: more than :data:`~higround.text.UNKNOWN_WARN_RATE` of the words
                are outside the checkpoint's vocabulary.

        Raises:
            DataError: features of the wrong shape or with non-finite values, no sentence, a sentence
                without a word (named by index and text), or a non-positive duration.
        """
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] != self.video_dim:
            raise DataError(
                f"video {_VIDEO}: features of shape {features.shape}, "
                f"the model expects (T >= 1, {self.video_dim})"
            )
        if not np.isfinite(features).all():
            raise DataError(f"video {_VIDEO}: features hold non-finite values")
        if not (np.isfinite(duration) and duration > 0):
            raise DataError(f"video {_VIDEO}: duration {duration} is not a positive number of seconds")
        texts = _sentences(sentences, _VIDEO)
        words = [tokenize(text) for text in texts]
        paragraph = Paragraph(
            _VIDEO,
            float(duration),
            tuple(Sentence(text, 0.0, float(duration), i, f"{_VIDEO}#{i}") for i, text in enumerate(texts)),
        )
        if self.config.data.normalize:  # training normalised each clip before resampling (in the store)
            features = l2_normalize(features)
        # One row: the paragraph; or, for a sentence-unit model, one row per sentence.
        rows = samples([paragraph], self.config.unit)
        items = [make_item(row, features, self.vocab, self.num_clips) for row in rows]
        ids = torch.cat([item.words for item in items])
        unknown = self.vocab.unknown_words(ids)
        if unknown.too_many:
            flat = [w for ws in words for w in ws]
            unseen = sorted({flat[i] for i in np.flatnonzero(ids.numpy() == Vocabulary.unk_id)})
            warnings.warn(
                unknown.warning(f"{self.source}: the query", unseen), UnknownWordsWarning, stacklevel=2
            )
        batch = collate_paragraphs(items).to(self.device)
        with torch.inference_mode():
            with inference_autocast(self.device, self.precision):
                raw = self.model(batch)
            output = self.family.predictions(raw, batch)
        records = paragraph_records(output, batch, rows)
        return GroundingResult(
            spans=[r.spans[0] for r in records],
            sentence_spans=None
            if records[0].sentence_span is None
            else cast(list[Span], [r.sentence_span for r in records]),
            paragraph_span=records[0].paragraph_span,
            word_spans=None if records[0].word_spans is None else [list(r.word_spans or ()) for r in records],
            words=words,
            duration=float(duration),
            unknown_rate=unknown.rate,
        )

    @property
    def feature_settings(self) -> FeatureSettings | None:
        """How the training features were extracted (``None``: not recorded, e.g. released features)."""
        return settings_from_config(self.config)

    def encode_video(
        self,
        path: str | Path,
        *,
        backbone: str | None = None,
        fps: float | None = None,
        weights: str | Path | None = None,
        batch_size: int = 16,
        device: str = "auto",
        on_batch: Callable[[int], None] | None = None,
    ) -> VideoFeatures:
        """Extract a video's clip features the way the training features were extracted.

        ``backbone`` / ``fps`` override the checkpoint's settings (required when it records none);
        settings that do not fit the model are refused before decoding.

        Raises:
            ConfigError: no known settings, or settings (feature size, backbone, clip length) that do
                not fit the model.
            DataError: the file is not a decodable video.
        """
        from higround.video.backbones import build_backbone

        settings = plan_extraction(self.feature_settings, self.video_dim, self.source, backbone, fps)
        target = resolve_device(device)
        key = (settings.backbone, str(weights), str(target))
        if key not in self._backbones:
            self._backbones[key] = build_backbone(settings.backbone, weights, target)
        return encode_video(path, self._backbones[key], settings, batch_size, on_batch)

    def ground_video(self, video: VideoFeatures, paragraph: str | Sequence[str]) -> GroundingResult:
        """Ground a paragraph (one string, split by :func:`~higround.text.split_sentences`, or its
        sentences) in a video's features from :meth:`encode_video` or a feature store.

        Raises:
            ConfigError: the features do not fit the model (feature size, backbone, clip length).
            DataError: no sentence, or a sentence without a word.
        """
        check_settings(
            self.feature_settings, self.video_dim, video.settings, self.source, dim=video.features.shape[1]
        )
        return self.ground(video.features, _sentences(paragraph, repr(video.video_id)), video.duration)


def _sentences(paragraph: str | Sequence[str], video: str) -> list[str]:
    """The sentences of ``paragraph`` (a string is split, never read as a list of characters).

    Raises:
        DataError: no sentence, a sentence that is not a string, or one without a word token.
    """
    sentences = split_sentences(paragraph) if isinstance(paragraph, str) else list(paragraph)
    if not sentences:
        raise DataError(f"video {video}: the paragraph holds no sentence")
    for i, text in enumerate(sentences):
        if not isinstance(text, str):
            raise DataError(f"video {video}: sentence {i} is a {type(text).__name__}, not a string")
        if not tokenize(text):
            raise DataError(f"video {video}: sentence {i} ({text!r}) has no word token")
    return sentences
