"""Data for training and evaluation: annotations, vocabulary, word vectors, features, DataLoaders."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import cast

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from higround.data.batching import collate_paragraphs
from higround.data.dataset import SENTENCE, ParagraphDataset, samples
from higround.data.features import FeatureStore, open_store
from higround.data.negatives import negative_word_ids
from higround.data.readers import OnBad, load_dataset
from higround.data.readers.shine import Kind
from higround.data.schema import GroundingDataset, Paragraph
from higround.engine.config import Config
from higround.errors import ConfigError
from higround.text.embeddings import read_word_vectors
from higround.text.vocab import UnknownWords, Vocabulary, log_unknown_words

log = logging.getLogger(__name__)

# Where a ``.npz`` of token features holds them: the peers' CLIP text features (Moment-DETR's
# ``StartEndDataset``, ``q_feat_type="last_hidden_state"``).
TEXT_FEATURE_FIELD = "last_hidden_state"


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``seed + epoch``, independent of the global RNG.

    Lightning calls :meth:`set_epoch` before every training epoch (also after resuming), so a run
    resumed from a checkpoint sees the same order as an uninterrupted one. Under DDP, Lightning wraps
    it in a distributed sampler that splits this order across ranks. Lightning sets the epoch only
    after a process's first training iterator exists, and a loader with workers draws indices as
    soon as it exists: the sampler is therefore built already set to the trainer's current epoch.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0) -> None:
        """Shuffle ``range(size)``, starting at ``epoch``."""
        self.size = size
        self.seed = seed
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class GroundingDataModule(L.LightningDataModule):
    """Datasets of one recipe; the vocabulary comes from the TRAIN split unless one is given.

    Annotation files are read once per split and kept (they are small); clip features are read from
    the feature store on access. ``max_sentences`` and ``limit`` apply to every split. A sample is
    a paragraph or one sentence, by the recipe's unit (:attr:`Config.unit`: ``data.unit``, else the
    model family's); either way the batches are :class:`~higround.data.batch.ParagraphBatch` es.
    """

    def __init__(self, config: Config, vocab: Vocabulary | None = None) -> None:
        """Data of ``config``; pass ``vocab`` (from a checkpoint) to skip reading the training split."""
        super().__init__()
        self.config = config
        self._vocab = vocab
        self._store: FeatureStore | None = None
        self._text_store: FeatureStore | None = None
        self._read: dict[str, GroundingDataset] = {}
        self._annotations: dict[str, GroundingDataset] = {}
        self._datasets: dict[str, ParagraphDataset] = {}
        self._training: ParagraphDataset | None = None
        self._unknown: dict[str, UnknownWords] = {}

    def annotations(self, split: str) -> GroundingDataset:
        """The annotations of ``split`` as loaded by the reader, cut to the first ``data.limit``
        paragraphs when set (videos keep only those paragraphs; videos left without one are dropped).

        Raises:
            ConfigError: ``data.root`` is not set.
            DataError: a bad annotation record (unless ``data.on_bad=skip``).
        """
        if split not in self._annotations:
            data = self.config.data
            dataset = self._whole(split)
            if data.limit is not None:
                kept = {(p.video_id, p.index) for p in dataset.paragraphs()[: data.limit]}
                videos = [
                    replace(v, paragraphs=tuple(p for p in v.paragraphs if (p.video_id, p.index) in kept))
                    for v in dataset.videos
                ]
                dataset = replace(dataset, videos=[v for v in videos if v.paragraphs])
            self._annotations[split] = dataset
        return self._annotations[split]

    def _whole(self, split: str) -> GroundingDataset:
        """The annotations of ``split`` as the reader loads them, before ``data.limit`` (read once)."""
        if split not in self._read:
            data = self.config.data
            if data.root is None:
                raise ConfigError("config: data.root is not set (pass data.root=ANNOTATION_FOLDER)")
            self._read[split] = load_dataset(
                data.dataset,
                data.root,
                split,
                on_bad=cast(OnBad, data.on_bad),
                max_sentences=data.max_sentences,
            )
            log.info(self._read[split].report.summary())
        return self._read[split]

    def paragraphs(self, split: str) -> list[Paragraph]:
        """The paragraphs of ``split`` in file order (see :meth:`annotations`)."""
        return self.annotations(split).paragraphs()

    @property
    def unit(self) -> str:
        """What one sample is: ``"paragraph"`` or ``"sentence"`` (:attr:`Config.unit`)."""
        return self.config.unit

    def samples(self, split: str) -> list[Paragraph]:
        """The samples of ``split`` in file order, one per row of its batches: the paragraphs, or
        in the sentence unit every sentence as a one-sentence paragraph
        (:func:`~higround.data.dataset.sentence_view`)."""
        return samples(self.paragraphs(split), self.unit)

    @property
    def vocab(self) -> Vocabulary:
        """The vocabulary: given, or built from the training split's sentences."""
        if self._vocab is None:
            text = self.config.text
            sentences = (s.text for p in self.paragraphs(self.config.data.train_split) for s in p.sentences)
            self._vocab = Vocabulary.build(sentences, min_count=text.min_count, max_size=text.max_vocab)
        return self._vocab

    def word_vectors(self) -> Tensor:
        """The ``(len(vocab), E)`` initial embedding from ``text.word_vectors`` (logs its coverage)."""
        source = self.config.text.word_vectors
        vectors, stats = read_word_vectors(self.vocab, source, seed=self.config.seed)
        log.info("word vectors %s: %d/%d words found, dim %d", source, stats.found, stats.words, stats.dim)
        return vectors

    @property
    def store(self) -> FeatureStore:
        """The feature store of ``data.features`` (opened on first use).

        Raises:
            ConfigError: ``data.features`` is not set.
        """
        if self._store is None:
            data = self.config.data
            if data.features is None:
                raise ConfigError("config: data.features is not set (pass data.features=FEATURE_FILE)")
            self._store = open_store(data.features, data.feature_key, normalize=data.normalize)
        return self._store

    @property
    def text_store(self) -> FeatureStore | None:
        """The token features of ``data.text_features`` (opened on first use; ``.npz`` entries under
        ``last_hidden_state``), or None: the model reads the words.

        Raises:
            ConfigError: token features with the paragraph unit (a row would hold several queries).
        """
        data = self.config.data
        if data.text_features is None:
            return None
        if self.unit != SENTENCE:
            raise ConfigError("config: data.text_features needs the sentence unit (one query per sample)")
        if self._text_store is None:
            self._text_store = open_store(
                data.text_features,
                data.text_feature_key,
                normalize=data.text_normalize,
                npz_field=TEXT_FEATURE_FIELD,
            )
        return self._text_store

    @property
    def num_clips(self) -> int:
        """``N^V``: clips every video is resampled to (``model.num_clips``)."""
        return int(self.config.model["num_clips"])

    def dataset(self, split: str) -> ParagraphDataset:
        """The :class:`ParagraphDataset` of ``split``'s :meth:`samples` (built once; records checked
        on construction)."""
        if split not in self._datasets:
            # Normalisation, when asked, is done by the store (data.normalize); not twice.
            self._datasets[split] = ParagraphDataset(
                self.samples(split),
                self.store,
                self.vocab,
                self.num_clips,
                native_clips=self.config.data.native_clips,
                text_store=self.text_store,
            )
            self._unknown[split] = log_unknown_words(
                f"split {split!r}", self.vocab, self._datasets[split].word_ids(), log
            )
        return self._datasets[split]

    def training_dataset(self) -> ParagraphDataset:
        """The dataset training batches come from: the training split's, with every query's hard
        negatives attached when ``data.negatives`` is set (joined to the whole split, so that
        ``data.limit`` keeps the file valid; :func:`~higround.data.negatives.negative_word_ids`)."""
        data = self.config.data
        if data.negatives is None:
            return self.dataset(data.train_split)
        if self._training is None:
            plain = self.dataset(data.train_split)
            negatives = negative_word_ids(
                data.negatives, self._whole(data.train_split), self.vocab, cast(Kind, data.negatives_kind)
            )
            self._training = ParagraphDataset(
                plain.paragraphs,
                self.store,
                self.vocab,
                self.num_clips,
                native_clips=data.native_clips,
                text_store=self.text_store,
                negatives=negatives,
            )
        return self._training

    def unknown_words(self, split: str) -> UnknownWords:
        """The unknown-word counts of ``split`` against the vocabulary (counted, and logged, once
        when its dataset is built)."""
        self.dataset(split)
        return self._unknown[split]

    def setup(self, stage: str) -> None:
        """Build the datasets ``stage`` needs (on every rank)."""
        data = self.config.data
        if stage == "fit":
            self.training_dataset()
        if stage in ("fit", "validate") and data.val_split is not None:
            self.dataset(data.val_split)
        if stage in ("test", "predict"):
            self.dataset(data.test_split)

    def _pin_memory(self) -> bool:
        if self.config.data.pin_memory is not None:
            return self.config.data.pin_memory
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _epoch(self) -> int:
        # The epoch Lightning will pass to set_epoch: restored from the checkpoint when resuming
        # (trainer.current_epoch is updated only later, after the first iterator exists).
        if self.trainer is None:
            return 0
        progress = self.trainer.fit_loop.epoch_progress.current  # a _ProcessedTracker, typed as its base
        return int(progress.processed)  # type: ignore[attr-defined]

    def loader(self, split: str, *, train: bool = False, pin_memory: bool | None = None) -> DataLoader:
        """A DataLoader over ``split``: seeded per-epoch shuffling when ``train``, file order otherwise;
        training batches of the training split carry its hard negatives (:meth:`training_dataset`)."""
        data = self.config.data
        dataset = self.training_dataset() if train and split == data.train_split else self.dataset(split)
        workers = data.num_workers
        return DataLoader(
            dataset,
            batch_size=data.batch_size if train else (data.eval_batch_size or data.batch_size),
            sampler=EpochShuffleSampler(len(dataset), self.config.seed, self._epoch()) if train else None,
            collate_fn=collate_paragraphs,
            num_workers=workers,
            pin_memory=self._pin_memory() if pin_memory is None else pin_memory,
            persistent_workers=data.persistent_workers and workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self.loader(self.config.data.train_split, train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches (empty list when ``data.val_split`` is null)."""
        split = self.config.data.val_split
        return self.loader(split) if split is not None else []  # type: ignore[return-value]

    def test_dataloader(self) -> DataLoader:
        """Test batches."""
        return self.loader(self.config.data.test_split)

    def predict_dataloader(self) -> DataLoader:
        """Test batches, for ``trainer.predict``."""
        return self.loader(self.config.data.test_split)
