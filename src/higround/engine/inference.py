"""Turning a family's predictions into per-sentence predictions in seconds, gathering them across ranks.

The model's raw output becomes :class:`~higround.models.family.GroundingPredictions` through its
family (``family.predictions(output, batch)``); everything here reads only that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from higround.data.batch import ParagraphBatch
from higround.data.schema import Paragraph
from higround.errors import ConfigError
from higround.metrics import PredictionRecord, grounding_metrics, thresholds_for
from higround.models.family import GroundingPredictions, ModelFamily


def paragraph_records(
    output: GroundingPredictions, batch: ParagraphBatch, paragraphs: Sequence[Paragraph]
) -> list[PredictionRecord]:
    """One predictions-file record per sentence of a batch, in seconds.

    ``paragraphs`` are the batch's rows as annotated (they give each sentence its key). A record holds
    the ranked spans (and their scores, when the model ranks), and, where the model has those
    levels, the sentence-level span, its paragraph's span, one span per word and a saliency score per
    real clip of the row's video (the clip grid of its features).
    """
    rows = [(p.video_id, p.index) for p in paragraphs]
    if rows != list(zip(batch.video_ids, batch.paragraph_index.tolist(), strict=True)):
        raise ConfigError("predictions: batch rows do not follow the annotation order")
    scale = batch.durations.double().cpu().numpy()

    def seconds(x: torch.Tensor) -> np.ndarray:  # (B, ...) normalised -> (B, ...) seconds
        return x.detach().double().cpu().numpy() * scale.reshape(-1, *([1] * (x.ndim - 1)))

    spans = seconds(output.spans)
    scores = output.scores.detach().double().cpu().numpy() if output.scores is not None else None
    sentence_spans = seconds(output.sentence_spans) if output.sentence_spans is not None else None
    paragraph = seconds(output.paragraph_span) if output.paragraph_span is not None else None
    words = word_mask = None
    if output.word_spans is not None and output.word_span_mask is not None:
        words, word_mask = seconds(output.word_spans), output.word_span_mask.cpu().numpy()
    saliency = output.saliency.detach().double().cpu().numpy() if output.saliency is not None else None
    clips = batch.video_mask.sum(dim=1).tolist()
    records = []
    for b, p in enumerate(paragraphs):
        for i, sentence in enumerate(p.sentences):
            records.append(
                PredictionRecord(
                    key=sentence.key,
                    video_id=p.video_id,
                    spans=tuple(_span(s) for s in spans[b, i]),
                    scores=None if scores is None else tuple(float(x) for x in scores[b, i]),
                    sentence_index=sentence.index,
                    paragraph_index=p.index,
                    paragraph_span=_span(paragraph[b]) if paragraph is not None else None,
                    sentence_span=_span(sentence_spans[b, i]) if sentence_spans is not None else None,
                    word_spans=None
                    if words is None or word_mask is None
                    else tuple(_span(w) for w in words[b, i][word_mask[b, i]]),
                    saliency=None
                    if saliency is None
                    else tuple(float(x) for x in saliency[b, i, : clips[b]]),
                )
            )
    return records


def _span(x: np.ndarray) -> tuple[float, float]:
    return (float(x[0]), float(x[1]))


@dataclass
class SentencePredictions:
    """One row per grounded sentence (flat numpy arrays, all of length N).

    Attributes:
        video_ids: ``(N,)`` object array of video ids.
        sentence_index: ``(N,)`` int64, the sentence's index in its video's annotation.
        spans: ``(N, 2)`` float64 predicted (start, end) in seconds.
        targets: ``(N, 2)`` float64 ground-truth (start, end) in seconds.
    """

    video_ids: np.ndarray
    sentence_index: np.ndarray
    spans: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.video_ids)

    @classmethod
    def from_batch(cls, output: GroundingPredictions, batch: ParagraphBatch) -> SentencePredictions:
        """The best span of every real sentence of ``batch``, scaled by their video's duration."""
        mask = batch.sentence_mask.cpu()
        durations = batch.durations.detach().double().cpu()
        per_sentence = durations[:, None].expand_as(mask)[mask]
        counts = mask.sum(dim=1).numpy()
        return cls(
            video_ids=np.repeat(np.asarray(batch.video_ids, dtype=object), counts),
            sentence_index=batch.sentence_index.cpu()[mask].numpy().astype(np.int64),
            spans=(output.best.detach().double().cpu()[mask] * per_sentence[:, None]).numpy(),
            targets=(batch.spans.detach().double().cpu()[mask] * per_sentence[:, None]).numpy(),
        )

    @classmethod
    def concatenate(cls, parts: Sequence[SentencePredictions]) -> SentencePredictions:
        """All rows of ``parts`` in order."""
        if not parts:
            pairs = np.zeros((0, 2))
            return cls(np.zeros(0, object), np.zeros(0, np.int64), pairs, pairs)
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def unique(self) -> SentencePredictions:
        """Rows with distinct (video, sentence index), first occurrence kept, sorted by that key.

        A distributed sampler pads the last batches by repeating samples; this drops the repeats, and
        the sort makes the order independent of how the data was split across ranks.
        """
        keys = np.char.add(self.video_ids.astype(str), "\x00")
        order = np.lexsort((self.sentence_index, keys))
        sorted_keys = keys[order]
        sorted_index = self.sentence_index[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (sorted_keys[1:] != sorted_keys[:-1]) | (sorted_index[1:] != sorted_index[:-1])
        keep = order[first]
        return type(self)(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})


def gather_predictions(parts: Iterable[SentencePredictions]) -> SentencePredictions:
    """This rank's predictions joined with every other rank's (no-op without torch.distributed),
    duplicates dropped: every rank gets the same full set, so metrics equal a one-device run."""
    local = SentencePredictions.concatenate(list(parts))
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[SentencePredictions | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        local = SentencePredictions.concatenate([g for g in gathered if g is not None])
    return local.unique()


# Inference precisions, named as ``trainer.precision`` names them (Lightning), and their autocast
# dtype (None: no autocast, float32 throughout).
INFERENCE_PRECISIONS: dict[str, torch.dtype | None] = {"32-true": None, "bf16-mixed": torch.bfloat16}


def inference_autocast(
    device: torch.device | str, precision: str = "32-true"
) -> contextlib.AbstractContextManager[Any]:
    """The autocast context that runs a model at ``precision`` on ``device``.

    ``bf16-mixed`` runs matrix products (linear layers, attention, LSTMs) in bfloat16 under
    ``torch.autocast`` and everything autocast keeps in float32 (normalisation, softmax, losses) in
    float32, as ``trainer.precision: bf16-mixed`` trains; on a CPU with BF16 instructions
    (:func:`higround.devices.cpu_has_bf16`) that is faster than float32. HSCNet runs its span heads
    in float32 even so: the demo's trained model (docs/demo.md) moved its test spans by at most
    0.3 % of the video (mean 0.05 %; mIoU 51.73 against 51.74 in float32), random tiny models by
    under 0.1 % (tests/test_hscnet_speedups.py); a family whose heads run in bfloat16 returns spans
    on a grid of 2^-8 of the video near its end. ``32-true``: no autocast.

    Raises:
        ConfigError: a precision not in :data:`INFERENCE_PRECISIONS`.
    """
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(
            f"inference precision {precision!r} is not one of {', '.join(INFERENCE_PRECISIONS)}"
        )
    dtype = INFERENCE_PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def predict_loader(
    model: torch.nn.Module,
    family: ModelFamily[Any, Any],
    loader: Iterable[ParagraphBatch],
    device: torch.device | str,
    precision: str = "32-true",
) -> Iterable[tuple[GroundingPredictions, ParagraphBatch]]:
    """Run ``model`` of ``family`` (eval mode, no gradients, at ``precision``: see
    :func:`inference_autocast`) over ``loader``; yields its predictions and the batch, on ``device``.

    Raises:
        ConfigError: an unknown ``precision``.
    """
    autocast = inference_autocast(device, precision)  # checked before the first batch is read
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            moved = batch.to(device)
            with autocast:
                output = model(moved)
            yield family.predictions(output, moved), moved


def score(
    predictions: SentencePredictions,
    dataset: str,
    thresholds: Sequence[float] | None = None,
    inclusive: bool = True,
) -> dict[str, float]:
    """``R1@m`` and ``mIoU`` (fractions) of the final spans, by :func:`higround.metrics.grounding_metrics`.

    ``thresholds`` default to the benchmark's Table 1 columns (:func:`higround.metrics.thresholds_for`);
    ``inclusive``: a hit is IoU >= m, else IoU > m.
    """
    columns = thresholds if thresholds is not None else thresholds_for(dataset)
    return grounding_metrics(predictions.spans, predictions.targets, columns, inclusive)
