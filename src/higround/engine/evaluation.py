"""Evaluating and predicting a split with a trained checkpoint (one process, fp32)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from higround.data.batch import ParagraphBatch
from higround.data.schema import Paragraph
from higround.engine.checkpoint import LoadedCheckpoint, load_checkpoint
from higround.engine.config import Config, merge
from higround.engine.datamodule import GroundingDataModule
from higround.engine.inference import predict_loader
from higround.errors import ConfigError
from higround.metrics import PredictionRecord
from higround.models.hscnet import HSCNet, HSCNetOutput


def paragraph_records(
    output: HSCNetOutput, batch: ParagraphBatch, paragraphs: Sequence[Paragraph]
) -> list[PredictionRecord]:
    """One predictions-file record per sentence of a batch, in seconds.

    ``paragraphs`` are the batch's rows as annotated (they give each sentence its key). A record holds
    the final span, the sentence decoder's span, and, where the model has those levels, its
    paragraph's span and one span per word.
    """
    rows = [(p.video_id, p.index) for p in paragraphs]
    if rows != list(zip(batch.video_ids, batch.paragraph_index.tolist(), strict=True)):
        raise ConfigError("predictions: batch rows do not follow the annotation order")
    scale = batch.durations.double().cpu().numpy()

    def seconds(x: torch.Tensor) -> np.ndarray:  # (B, ...) normalised -> (B, ...) seconds
        return x.detach().double().cpu().numpy() * scale.reshape(-1, *([1] * (x.ndim - 1)))

    spans, sentence_spans = seconds(output.spans), seconds(output.sentence_spans)
    paragraph = seconds(output.paragraph_span) if output.paragraph_span is not None else None
    words = word_mask = None
    if output.word_spans is not None and output.word_span_mask is not None:
        words, word_mask = seconds(output.word_spans), output.word_span_mask.cpu().numpy()
    records = []
    for b, p in enumerate(paragraphs):
        for i, sentence in enumerate(p.sentences):
            records.append(
                PredictionRecord(
                    key=sentence.key,
                    video_id=p.video_id,
                    spans=(_span(spans[b, i]),),
                    sentence_index=sentence.index,
                    paragraph_index=p.index,
                    paragraph_span=_span(paragraph[b]) if paragraph is not None else None,
                    sentence_span=_span(sentence_spans[b, i]),
                    word_spans=None
                    if words is None or word_mask is None
                    else tuple(_span(w) for w in words[b, i][word_mask[b, i]]),
                )
            )
    return records


def _span(x: np.ndarray) -> tuple[float, float]:
    return (float(x[0]), float(x[1]))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; any other name as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available")
    return torch.device(device)


@dataclass
class SplitRun:
    """A checkpoint's model, its data and the device, ready to run over a split."""

    checkpoint: LoadedCheckpoint
    config: Config
    data: GroundingDataModule
    model: HSCNet
    device: torch.device

    def batches(self, split: str) -> Iterator[tuple[HSCNetOutput, ParagraphBatch]]:
        """(output, batch) pairs over ``split`` in file order."""
        loader = self.data.loader(split, pin_memory=self.device.type == "cuda")
        yield from predict_loader(self.model, loader, self.device)

    def records(self, split: str) -> list[PredictionRecord]:
        """The predictions-file records of every sentence of ``split``, in annotation order."""
        paragraphs = self.data.paragraphs(split)
        records: list[PredictionRecord] = []
        start = 0
        for output, batch in self.batches(split):
            records += paragraph_records(output, batch, paragraphs[start : start + len(batch)])
            start += len(batch)
        return records


def open_checkpoint(
    path: str | Path,
    *,
    annotations_root: str | None = None,
    features: str | None = None,
    feature_key: str | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str = "auto",
) -> SplitRun:
    """Load a checkpoint and point its recipe's data at the given paths.

    Paths default to the ones stored in the checkpoint's recipe. The training run's ``data.limit`` is
    not inherited (evaluation covers the whole split unless ``limit`` is given); the vocabulary is the
    checkpoint's.
    """
    loaded = load_checkpoint(path)
    given = {
        "root": annotations_root,
        "features": features,
        "feature_key": feature_key,
        "eval_batch_size": batch_size,
        "num_workers": num_workers,
    }
    data: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    data["limit"] = limit
    config = Config.from_dict(merge(loaded.config.to_dict(), {"data": data}))
    target = resolve_device(device)
    model = loaded.build_model().to(target)
    return SplitRun(loaded, config, GroundingDataModule(config, vocab=loaded.vocab), model, target)
