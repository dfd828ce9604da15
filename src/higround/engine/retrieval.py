"""Training and evaluating a ``retrieval`` family (docs/families.md, docs/hse.md).

One sample is one video with its whole paragraph (:mod:`higround.data.retrieval`); a batch's other
rows are its negatives (in-batch negatives, CMHSE). Validation embeds the whole validation split
(every video and every paragraph), scores the ``(P, V)`` cosine similarity with
:func:`higround.metrics.paragraph_video_metrics` in both directions and logs ``val/p2v/R@1`` ...
``val/v2p/mean_rank`` (fractions and 1-based ranks) and ``val/rsum``, the sum of R@1, R@5 and R@50
over both directions (CMHSE's model-selection score ``currscore``, divided by 100). ``val/rsum`` is
what the best checkpoint and early stopping follow (:data:`RETRIEVAL_MONITOR`).

What the engine reads of a retrieval family's config besides the contract's fields
(:class:`RetrievalConfig`): ``num_clips`` (frames per encoded sequence at most), ``uniform_clips``
and ``clip_source(training)`` (what a clip is: ``"spans"``, ``"uniform"`` or ``None``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from higround.data.dataset import PARAGRAPH
from higround.data.retrieval import RetrievalDataset, collate_retrieval
from higround.engine.config import AUTO_MODEL_KEYS, Config
from higround.engine.datamodule import EpochShuffleSampler, GroundingDataModule
from higround.engine.module import FamilyModule, GroundingModule
from higround.errors import ConfigError
from higround.metrics.retrieval import RankConvention, paragraph_video_metrics
from higround.models.family import RETRIEVAL, ModelFamily, RetrievalPredictions
from higround.text.vocab import UnknownWords, Vocabulary, log_unknown_words

log = logging.getLogger(__name__)

# What a retrieval run's best checkpoint and early stopping follow (higher is better).
RETRIEVAL_MONITOR = "val/rsum"
# The recalls of CMHSE's rsum: R@1, R@5 and its "r10", which is R@50.
RSUM_KS = (1, 5, 50)


class RetrievalConfig(Protocol):
    """What the retrieval engine reads of a retrieval family's config (e.g. ``HSEConfig``)."""

    num_clips: int
    uniform_clips: int

    def clip_source(self, training: bool) -> str | None:
        """``"spans"``, ``"uniform"`` or None (no clips), in training or at evaluation."""
        ...


def retrieval_family(config: Config, what: str) -> ModelFamily[Any, Any]:
    """The recipe's family, checked to be a retrieval family with embeddings.

    Raises:
        ConfigError: a grounding family, or a retrieval family without ``embeddings``.
    """
    family = config.family
    if family.task != RETRIEVAL or family.embeddings is None:
        raise ConfigError(f"model family {family.name} is not a retrieval model with embeddings: {what}")
    return family


def retrieval_config(config: Config) -> RetrievalConfig:
    """The family config of ``config``'s model section (dimensions the data decides set to 1)."""
    values = {**config.model, **{k: config.model.get(k) or 1 for k in AUTO_MODEL_KEYS}}
    return cast(RetrievalConfig, config.family.config(values))


class RetrievalDataModule(GroundingDataModule):
    """The data of a retrieval recipe: one item per video with its whole paragraph, its frames and
    clips (:class:`~higround.data.retrieval.RetrievalDataset`), batched by
    :func:`~higround.data.retrieval.collate_retrieval`.

    Annotations, vocabulary, word vectors and the feature store are the grounding data module's;
    a training loader builds its clips as the family trains (``clip_source(True)``), any other as
    it evaluates (``clip_source(False)``).
    """

    def __init__(self, config: Config, vocab: Vocabulary | None = None) -> None:
        """Data of ``config`` (a retrieval family's paragraph recipe).

        Raises:
            ConfigError: another data unit than ``paragraph``, or ``data.max_sentences`` set.
        """
        super().__init__(config, vocab)
        retrieval_family(config, "the retrieval data module serves retrieval families")
        if config.unit != PARAGRAPH:
            raise ConfigError(
                "config: a retrieval family takes data.unit=paragraph (a video with its paragraph)"
            )
        if config.data.max_sentences is not None:
            raise ConfigError(
                "config: data.max_sentences must be null for retrieval: an item is a video with its "
                "whole paragraph"
            )
        self.model_settings = retrieval_config(config)
        self._retrieval: dict[tuple[str, bool], RetrievalDataset] = {}

    def retrieval_dataset(self, split: str, training: bool = False) -> RetrievalDataset:
        """The dataset of ``split`` with the clips of training (``training``) or evaluation."""
        key = (split, training)
        if key not in self._retrieval:
            settings = self.model_settings
            self._retrieval[key] = RetrievalDataset(
                self.samples(split),
                self.store,
                self.vocab,
                settings.num_clips,
                settings.clip_source(training),
                settings.uniform_clips,
                where=f"split {split!r}",
            )
            if split not in self._unknown:
                words = self._retrieval[key].word_ids()
                self._unknown[split] = log_unknown_words(f"split {split!r}", self.vocab, words, log)
        return self._retrieval[key]

    def dataset(self, split: str) -> Any:
        """The evaluation dataset of ``split`` (:meth:`retrieval_dataset`)."""
        return self.retrieval_dataset(split)

    def unknown_words(self, split: str) -> UnknownWords:
        """The unknown-word counts of ``split`` (counted once, when its dataset is built)."""
        if split not in self._unknown:
            self.retrieval_dataset(split)
        return self._unknown[split]

    def setup(self, stage: str) -> None:
        """Build the datasets ``stage`` needs."""
        data = self.config.data
        if stage == "fit":
            self.retrieval_dataset(data.train_split, training=True)
        if stage in ("fit", "validate") and data.val_split is not None:
            self.retrieval_dataset(data.val_split)
        if stage in ("test", "predict"):
            self.retrieval_dataset(data.test_split)

    def loader(self, split: str, *, train: bool = False, pin_memory: bool | None = None) -> DataLoader:
        """A DataLoader over ``split``'s videos: seeded per-epoch shuffling when ``train``."""
        data = self.config.data
        dataset = self.retrieval_dataset(split, training=train)
        workers = data.num_workers
        return DataLoader(
            dataset,
            batch_size=data.batch_size if train else (data.eval_batch_size or data.batch_size),
            sampler=EpochShuffleSampler(len(dataset), self.config.seed, self._epoch()) if train else None,
            collate_fn=collate_retrieval,
            num_workers=workers,
            pin_memory=self._pin_memory() if pin_memory is None else pin_memory,
            persistent_workers=data.persistent_workers and workers > 0,
        )


@dataclass
class Embeddings:
    """The embeddings of a split: row ``i`` of ``videos`` and ``paragraphs`` is video ``video_ids[i]``
    and its paragraph (float32 numpy, L2-normalised)."""

    video_ids: list[str]
    videos: np.ndarray
    paragraphs: np.ndarray

    def __len__(self) -> int:
        return len(self.video_ids)

    @classmethod
    def concatenate(cls, parts: Sequence[Embeddings]) -> Embeddings:
        """All rows of ``parts`` in order."""
        if not parts:
            return cls([], np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32))
        return cls(
            [v for p in parts for v in p.video_ids],
            np.concatenate([p.videos for p in parts]),
            np.concatenate([p.paragraphs for p in parts]),
        )

    def unique(self) -> Embeddings:
        """Rows with distinct video ids, the first kept, sorted by id (a distributed sampler repeats
        samples to even out the ranks; the sort makes the order independent of the split)."""
        ids = np.asarray(self.video_ids, dtype=object)
        _, first = np.unique(ids.astype(str), return_index=True)
        return Embeddings([self.video_ids[i] for i in first], self.videos[first], self.paragraphs[first])


def batch_embeddings(predictions: RetrievalPredictions, video_ids: Sequence[str]) -> Embeddings:
    """The rows of one batch's predictions (both sides needed)."""
    if predictions.videos is None or predictions.paragraphs is None:
        raise ConfigError("retrieval: a training or evaluation batch embeds both videos and paragraphs")
    return Embeddings(
        list(video_ids),
        predictions.videos.detach().float().cpu().numpy(),
        predictions.paragraphs.detach().float().cpu().numpy(),
    )


def gather_embeddings(parts: Iterable[Embeddings]) -> Embeddings:
    """This rank's embeddings joined with every other rank's (no-op without torch.distributed), one
    row per video: every rank gets the same full set."""
    local = Embeddings.concatenate(list(parts))
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[Embeddings | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        local = Embeddings.concatenate([g for g in gathered if g is not None and len(g)])
    return local.unique()


def rsum(metrics: dict[str, float]) -> float:
    """R@1 + R@5 + R@50 over both directions of a ``"higround"`` result (CMHSE's rsum / 100)."""
    return sum(metrics[f"{d}/R@{k}"] for d in ("p2v", "v2p") for k in RSUM_KS)


def retrieval_scores(embeddings: Embeddings, convention: RankConvention = "higround") -> dict[str, float]:
    """Both directions' metrics of a split's embeddings, paragraph ``i`` belonging to video ``i``.

    ``"higround"``: ``p2v/R@1`` ... ``v2p/mean_rank`` (R@1, 5, 10, 50 as fractions) and ``rsum``;
    ``"hse"``: CMHSE's keys in percent (``r10`` is R@50) and its ``rsum``.

    Raises:
        ValueError: no rows.
    """
    similarity = embeddings.paragraphs @ embeddings.videos.T  # (P, V) cosine
    metrics = paragraph_video_metrics(similarity, convention=convention)
    if convention == "higround":
        metrics["rsum"] = rsum(metrics)
    return metrics


class RetrievalModule(FamilyModule):
    """Trains a retrieval family with its loss over in-batch negatives; validates by ranking the whole
    validation split in both directions (module docstring for the logged keys)."""

    def __init__(
        self, config: Config, model_config: Any, vocab: Vocabulary, word_vectors: torch.Tensor
    ) -> None:
        """As :class:`~higround.engine.module.FamilyModule`, for a retrieval family.

        Raises:
            ConfigError: the recipe's family is not a retrieval family with embeddings.
        """
        embed = retrieval_family(config, "training with the retrieval engine").embeddings
        super().__init__(config, model_config, vocab, word_vectors)
        self.embed = embed
        self._val_parts: list[Embeddings] = []

    def on_validation_epoch_start(self) -> None:
        """Forget the previous validation's embeddings."""
        self._val_parts = []

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Keep this batch's video and paragraph embeddings for the epoch's ranking."""
        assert self.embed is not None
        self._val_parts.append(batch_embeddings(self.embed(self.model(batch), batch), batch.video_ids))

    def on_validation_epoch_end(self) -> None:
        """Rank the whole validation split (gathered from every rank) and log both directions."""
        embeddings = gather_embeddings(self._val_parts)
        self._val_parts = []
        if len(embeddings) == 0:
            return
        metrics = retrieval_scores(embeddings)
        # Every rank holds the same set, hence the same values (sync_dist keeps Lightning quiet).
        self.log_dict({f"val/{k}": float(v) for k, v in metrics.items() if k != "rsum"}, sync_dist=True)
        self.log(RETRIEVAL_MONITOR, float(metrics["rsum"]), prog_bar=True, sync_dist=True)


def embed_loader(
    model: torch.nn.Module,
    family: ModelFamily[Any, Any],
    loader: Iterable[Any],
    device: torch.device | str,
) -> Embeddings:
    """Embed every batch of ``loader`` with ``model`` (eval mode, no gradients), both sides."""
    embed = family.embeddings
    if embed is None:
        raise ConfigError(f"model family {family.name} has no embeddings")
    model.eval()
    parts = []
    with torch.inference_mode():
        for batch in loader:
            moved = batch.to(device)
            parts.append(batch_embeddings(embed(model(moved), moved), moved.video_ids))
    return Embeddings.concatenate(parts)


# --- what differs by task: the engine asks here instead of naming families ------------------------


def data_module(config: Config, vocab: Vocabulary | None = None) -> GroundingDataModule:
    """The data module of ``config``'s task: :class:`RetrievalDataModule` for a retrieval family,
    else the grounding one."""
    if config.family.task == RETRIEVAL:
        return RetrievalDataModule(config, vocab)
    return GroundingDataModule(config, vocab)


def module_class(config: Config) -> type[FamilyModule]:
    """The LightningModule class of ``config``'s task."""
    return RetrievalModule if config.family.task == RETRIEVAL else GroundingModule


def monitor(config: Config, grounding: str) -> str:
    """The validation metric the best checkpoint and early stopping follow: :data:`RETRIEVAL_MONITOR`
    for a retrieval family, else ``grounding`` (the trainer's ``val/mIoU``)."""
    return RETRIEVAL_MONITOR if config.family.task == RETRIEVAL else grounding
