"""Evaluating and predicting a split with a trained checkpoint (one process, fp32)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from higround.data.batch import ParagraphBatch
from higround.devices import resolve_device
from higround.engine.checkpoint import load_checkpoint
from higround.engine.config import Config, merge
from higround.engine.datamodule import GroundingDataModule
from higround.engine.inference import paragraph_records, predict_loader
from higround.engine.retrieval import data_module
from higround.errors import DataError
from higround.metrics import PredictionRecord
from higround.models.family import GroundingPredictions

# ``feature_key`` that asks for the store's layout to be detected, not the checkpoint's template
# (a template always holds ``{video_id}``, so no template is spelled so).
DETECT_FEATURE_KEY = "auto"


@dataclass
class SplitRun:
    """A checkpoint's model (of the family its config names), its data and the device, ready to run
    over a split."""

    config: Config
    data: GroundingDataModule
    model: torch.nn.Module
    device: torch.device

    def batches(self, split: str) -> Iterator[tuple[GroundingPredictions, ParagraphBatch]]:
        """(predictions, batch) pairs over ``split`` in file order."""
        loader = self.data.loader(split, pin_memory=self.device.type == "cuda")
        yield from predict_loader(self.model, self.config.family, loader, self.device)

    def records(self, split: str) -> list[PredictionRecord]:
        """The predictions-file records of every sentence of ``split``, in annotation order (either
        data unit: the rows are the data's samples)."""
        rows = self.data.samples(split)
        records: list[PredictionRecord] = []
        start = 0
        for output, batch in self.batches(split):
            records += paragraph_records(output, batch, rows[start : start + len(batch)])
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
    on_bad: str | None = None,
) -> SplitRun:
    """Load a checkpoint and point its recipe's data at the given paths.

    Paths default to the ones stored in the checkpoint's recipe (training stores them absolute; a
    relative one, from an older checkpoint, is read against the current folder). The training run's
    ``data.limit`` is not inherited (evaluation covers the whole split unless ``limit`` is given); the
    vocabulary is the checkpoint's. ``on_bad`` overrides the recipe's bad-record policy (``data.on_bad``).
    ``feature_key="auto"`` (:data:`DETECT_FEATURE_KEY`) detects the store's layout instead of using
    the recipe's template, as ``data.feature_key: null`` does in training.

    Raises:
        FileNotFoundError: a path taken from the checkpoint's recipe does not exist (the message names
            the checkpoint and the option that overrides it).
        DataError: the feature store's clips have another size than the model's ``video_dim``.
    """
    loaded = load_checkpoint(path)
    stored = loaded.config.data
    for key, value, given_path, option in (
        ("root", stored.root, annotations_root, "--annotations-root DIR"),
        ("features", stored.features, features, "--features FILE"),
    ):
        if given_path is None and value is not None and not Path(value).exists():
            where = "" if Path(value).is_absolute() else f" (relative: read against {Path.cwd()})"
            raise FileNotFoundError(
                f"{value}{where} not found: it is data.{key} of the checkpoint {loaded.path}'s recipe; "
                f"pass {option} to read it from elsewhere"
            )
    given = {
        "root": annotations_root,
        "features": features,
        "feature_key": feature_key,
        "eval_batch_size": batch_size,
        "num_workers": num_workers,
        "on_bad": on_bad,
    }
    data: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    data["limit"] = limit
    if feature_key == DETECT_FEATURE_KEY:
        data["feature_key"] = None
    config = Config.from_dict(merge(loaded.config.to_dict(), {"data": data}))
    target = resolve_device(device)
    model = loaded.build_model().to(target)
    split_data = data_module(config, vocab=loaded.vocab)  # a retrieval family's own for retrieval
    _check_feature_size(split_data, loaded.model_config.video_dim, loaded.path, features is None)
    return SplitRun(config, split_data, model, target)


def _check_feature_size(data: GroundingDataModule, video_dim: int, checkpoint: Path, stored: bool) -> None:
    """Refuse a store whose clip features differ in size from the model's input, naming both sizes,
    the store and where its path came from (``stored``: the checkpoint's recipe, else ``--features``)."""
    store = data.store
    if store.dim == video_dim:
        return
    source = " (data.features of the checkpoint's recipe)" if stored else ""
    raise DataError(
        f"{store.name}{source}: clip features have {store.dim} channels but the model of {checkpoint} "
        f"takes {video_dim} (model.video_dim): give --features a store of the {video_dim}-d features "
        "it was trained on"
    )
