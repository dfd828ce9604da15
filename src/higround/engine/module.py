"""The LightningModules: a model family's model and loss, Adam, and validation with the one evaluator.

:class:`FamilyModule` holds what every task shares (the model, its loss, the per-batch reseeding,
the logged loss terms, the optimiser, the checkpoint payload); :class:`GroundingModule` validates
grounding families with R1@m / mIoU, :class:`higround.engine.retrieval.RetrievalModule` retrieval
families with the retrieval metrics.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from higround.data.batch import ParagraphBatch
from higround.engine.checkpoint import CHECKPOINT_KEY, checkpoint_payload
from higround.engine.config import Config
from higround.engine.inference import SentencePredictions, gather_predictions, score
from higround.models.family import FamilyConfig
from higround.text.vocab import Vocabulary


class FamilyModule(L.LightningModule):
    """Trains the model of the recipe's family (``model.family``, :mod:`higround.models.registry`)
    with the family's loss, whatever its task; validation is the subclass's.

    Logged: ``train/loss`` and ``train/<term>`` (every loss term, per epoch). Checkpoints carry the
    config and vocabulary (see :mod:`higround.engine.checkpoint`).
    """

    def __init__(
        self, config: Config, model_config: FamilyConfig, vocab: Vocabulary, word_vectors: Tensor
    ) -> None:
        """``model_config``: of the family ``config`` names; ``word_vectors``: the
        ``(len(vocab), model_config.word_dim)`` initial embedding."""
        super().__init__()
        self.config = config
        self.family = config.family
        self.model_config = model_config
        self.vocab = vocab
        self.model = self.family.build_model(model_config, word_vectors)
        self.criterion = self.family.build_loss(model_config)

    def forward(self, batch: ParagraphBatch) -> Any:
        """The model's output for ``batch``."""
        return self.model(batch)

    def on_train_batch_start(self, batch: ParagraphBatch, batch_idx: int) -> None:
        """Reseed the RNG (dropout) from (seed, rank, epoch, batch): a resumed run draws exactly what
        an uninterrupted one would, whatever else consumed random numbers in between."""
        key = [self.config.seed, self.global_rank, self.current_epoch, batch_idx]
        torch.manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))

    def training_step(self, batch: ParagraphBatch, batch_idx: int) -> Tensor:
        """One optimisation step's loss; every term is logged."""
        losses = self.criterion(self.model(batch), batch)
        size = len(batch)
        self.log("loss", losses["total"], prog_bar=True, logger=False, batch_size=size)
        self.log_dict(
            {f"train/{'loss' if k == 'total' else k}": v.detach() for k, v in losses.items()},
            on_step=False,
            on_epoch=True,
            batch_size=size,
            sync_dist=True,
        )
        return losses["total"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """``optim.optimizer`` (Adam or AdamW) on the trainable parameters (``optim.lr``,
        ``optim.weight_decay``); the optional schedules are callbacks of :mod:`higround.engine.trainer`."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        optim = self.config.optim
        cls = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=optim.lr, weight_decay=optim.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the config and the vocabulary beside the weights."""
        checkpoint[CHECKPOINT_KEY] = checkpoint_payload(self.config, self.model_config, self.vocab)


class GroundingModule(FamilyModule):
    """Trains a grounding family (:class:`FamilyModule`); validates the family's predictions with
    R1@m / mIoU.

    Logged besides the training terms: ``val/loss``, ``val/mIoU`` and ``val/R1@<m>`` (the dataset's
    thresholds, or ``eval.thresholds``). Validation predictions of every rank are gathered
    (duplicates from distributed padding dropped) before the metrics are computed, so a multi-GPU run
    reports the numbers a one-GPU run would.
    """

    def __init__(
        self, config: Config, model_config: FamilyConfig, vocab: Vocabulary, word_vectors: Tensor
    ) -> None:
        """As :class:`FamilyModule`; a family of another task is refused (ConfigError)."""
        config.family.check_task("training")
        super().__init__(config, model_config, vocab, word_vectors)
        self._val_parts: list[SentencePredictions] = []

    def on_validation_epoch_start(self) -> None:
        """Forget the previous validation's predictions."""
        self._val_parts = []

    def validation_step(self, batch: ParagraphBatch, batch_idx: int) -> None:
        """Validation loss, and this batch's predictions kept for the epoch's metrics."""
        output = self.model(batch)
        losses = self.criterion(output, batch)
        self.log("val/loss", losses["total"], on_epoch=True, batch_size=len(batch), sync_dist=True)
        self._val_parts.append(SentencePredictions.from_batch(self.family.predictions(output, batch), batch))

    def on_validation_epoch_end(self) -> None:
        """R1@m and mIoU over the whole validation split, gathered from every rank."""
        predictions = gather_predictions(self._val_parts)
        self._val_parts = []
        if len(predictions) == 0:
            return
        evaluation = self.config.eval
        metrics = score(predictions, self.config.data.dataset, evaluation.thresholds, evaluation.inclusive)
        # Every rank holds the same gathered set, hence the same values: the mean over ranks
        # (sync_dist) leaves them unchanged and keeps Lightning from warning.
        self.log_dict({f"val/{k}": float(v) for k, v in metrics.items() if k != "mIoU"}, sync_dist=True)
        self.log("val/mIoU", float(metrics["mIoU"]), prog_bar=True, sync_dist=True)
