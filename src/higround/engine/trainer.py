"""The ``lightning.Trainer`` of a recipe, and a whole training run (:func:`fit`)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import StrategyRegistry
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from higround.data.batch import ParagraphBatch
from higround.devices import cpu_has_bf16
from higround.engine.checkpoint import (
    LoadedCheckpoint,
    atomic_torch_save,
    export_safetensors,
    load_checkpoint,
)
from higround.engine.config import Config, check_resume, save_config
from higround.engine.datamodule import GroundingDataModule
from higround.engine.module import FamilyModule
from higround.engine.retrieval import data_module, module_class, monitor
from higround.errors import ConfigError, DataError
from higround.io import check_writable
from higround.models.family import EMBEDDING_KEY
from higround.text.embeddings import GLOVE_6B_50D, LEARNED
from higround.video.settings import record_store_settings

log = logging.getLogger(__name__)

MONITOR = "val/mIoU"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O whose saves are atomic on the local filesystem."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` to ``path`` through a temp file in the same folder."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_torch_save(checkpoint, path)


class ThroughputCallback(Callback):
    """Shows training throughput (paragraphs per second, all ranks together) in the progress bar.

    Measured between consecutive batch ends, so data loading counts; smoothed over recent batches.
    """

    def __init__(self, smoothing: float = 0.9) -> None:
        """``smoothing``: weight of the running average against the newest batch."""
        self.smoothing = smoothing
        self._last: float | None = None
        self._rate: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start timing the epoch's first batch."""
        self._last = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Log the smoothed paragraphs/s of the batch just done."""
        now = time.perf_counter()
        if self._last is not None and now > self._last:
            size = len(batch) if isinstance(batch, ParagraphBatch) else 0
            rate = size * trainer.world_size / (now - self._last)
            self._rate = (
                rate if self._rate is None else self.smoothing * self._rate + (1 - self.smoothing) * rate
            )
            pl_module.log("para/s", self._rate, prog_bar=True, logger=False, on_step=True, on_epoch=False)
        self._last = now


class RecipeEarlyStopping(EarlyStopping):
    """EarlyStopping whose patience stays the recipe's after resuming.

    Lightning's restores the checkpoint's patience with the wait count, which would silently drop a
    ``trainer.early_stopping_patience`` override of the resumed run.
    """

    @property
    def state_key(self) -> str:
        """Lightning's own key, so the state of either class restores into the other."""
        return f"EarlyStopping{ {'monitor': self.monitor, 'mode': self.mode}!r}"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the wait count and best score, keeping this run's patience."""
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience


class PlateauSchedule(Callback):
    """``optim.scheduler: plateau``: ReduceLROnPlateau stepped on a validation metric after every
    validation, before the epoch's checkpoints are written.

    Lightning's own scheduler handling steps it after the checkpoints, so ``last.ckpt`` would miss the
    epoch's step and a resumed run would train at another rate than an uninterrupted one; as a
    callback (run before the checkpoint callbacks) its state is in every checkpoint and restored.
    """

    def __init__(self, monitor: str, mode: str, factor: float, patience: int) -> None:
        """The settings of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` and the metric it reads."""
        self.monitor, self.mode, self.factor, self.patience = monitor, mode, factor, patience
        self.scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self._restored: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        """One schedule per run."""
        return "PlateauSchedule"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Build the schedule on the (restored) optimiser, with the checkpoint's state if resumed."""
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            trainer.optimizers[0],
            mode="max" if self.mode == "max" else "min",
            factor=self.factor,
            patience=self.patience,
        )
        if self._restored is not None:
            self.scheduler.load_state_dict(self._restored)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Step on the monitored metric of the validation just done (not the sanity check)."""
        if trainer.sanity_checking or self.scheduler is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            known = ", ".join(sorted(k for k in trainer.callback_metrics if k.startswith("val/")))
            raise ConfigError(
                f"config: optim.plateau_monitor {self.monitor!r} is not logged; logged: {known}"
            )
        self.scheduler.step(float(value))

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state (best value, bad-epoch count), or what was restored before it exists."""
        if self.scheduler is not None:
            return dict(self.scheduler.state_dict())
        return dict(self._restored or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's state until the optimiser exists (:meth:`on_train_start`)."""
        self._restored = dict(state_dict)


class StepSchedule(Callback):
    """``optim.scheduler: step``: before every training epoch ``e`` the rate is set to
    ``optim.lr * optim.step_gamma ** (e // optim.step_epochs)`` (HSE's ``adjust_learning_rate``).

    A function of the epoch alone, so a resumed run trains at the rates of an uninterrupted one with
    no state to restore.
    """

    def __init__(self, lr: float, gamma: float, epochs: int) -> None:
        """The base rate, the factor and the epochs between two steps."""
        self.lr, self.gamma, self.epochs = lr, gamma, epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Set the epoch's rate on every parameter group."""
        rate = self.lr * self.gamma ** (trainer.current_epoch // self.epochs)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = rate


def resolve_accelerator(config: Config) -> str:
    """``trainer.accelerator``, with ``auto`` resolved to ``gpu`` when CUDA is available, else ``cpu``."""
    name = config.trainer.accelerator
    if name == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return name


def resolve_precision(config: Config) -> str:
    """``trainer.precision``, with ``auto`` resolved per device and family.

    ``auto`` is ``bf16-mixed`` on a CPU with BF16 instructions (:func:`higround.devices.cpu_has_bf16`)
    for a config its family measured faster there at the same accuracy (``ModelFamily.cpu_bf16``:
    HSCNet from ``hidden_dim`` 128 up, docs/benchmarks.md), else ``32-true``. On a GPU it is
    ``32-true``: at the paper's shapes a training step is bound by kernel launches, not arithmetic,
    and on an H100 bf16 autocast only adds cast kernels (ActivityNet recipe: 544 paragraphs/s in
    fp32 against 293 in bf16-mixed, docs/benchmarks.md).
    """
    if config.trainer.precision != "auto":
        return config.trainer.precision
    family = config.family
    if family.cpu_bf16 is None or resolve_accelerator(config) != "cpu" or not cpu_has_bf16():
        return "32-true"
    return "bf16-mixed" if family.cpu_bf16({**family.defaults(), **config.model}) else "32-true"


def run_dir(config: Config) -> Path:
    """The run's folder: ``output_dir/name`` (the same on every rank, so no rank races for a name)."""
    return Path(config.output_dir) / config.name


def check_trainer_settings(config: Config) -> None:
    """Refuse a ``trainer.accelerator`` or ``trainer.strategy`` that the installed Lightning does not
    know, naming the key and the names it knows; cheap, so :func:`fit` calls it before reading data.

    Raises:
        ConfigError: an unknown accelerator or strategy name; a plateau schedule without validation.
    """
    trainer = config.trainer
    # The names Lightning's Trainer accepts: its registries plus the aliases it takes itself.
    accelerators = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
    if trainer.accelerator not in accelerators:
        raise ConfigError(
            f"config: trainer.accelerator={trainer.accelerator} is not an accelerator of Lightning "
            f"{L.__version__}; known: {', '.join(accelerators)}"
        )
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if trainer.strategy.lower() not in strategies:  # Lightning matches strategy names in lower case
        raise ConfigError(
            f"config: trainer.strategy={trainer.strategy} is not a strategy of Lightning {L.__version__}; "
            f"known: {', '.join(strategies)}"
        )
    if config.optim.scheduler == "plateau" and config.data.val_split is None:
        raise ConfigError(
            "config: optim.scheduler=plateau steps on a validation metric, but data.val_split is null; "
            "set data.val_split or optim.scheduler=none"
        )


def build_trainer(config: Config, directory: Path) -> L.Trainer:
    """The Trainer of ``config`` writing into ``directory``.

    Callbacks: the best by val mIoU (val rsum for a retrieval family, :mod:`higround.engine.retrieval`;
    ``checkpoints/best.ckpt``), a checkpoint after every epoch
    (``checkpoints/epoch=NNN.ckpt``, the newest ``trainer.keep_epoch_checkpoints`` of them, plus
    ``last.ckpt``), EarlyStopping on the same metric, the schedule (``optim.scheduler``), the throughput
    display. Loggers: TensorBoard (``tensorboard/``) and CSV (``csv/``), a new version per (re)start.
    Every checkpoint is written atomically (:class:`AtomicCheckpointIO`).

    Every checkpoint stores every callback's state, and the checkpoint callbacks run in list order
    (Lightning moves them after the others, keeping their order): the best-by-val one comes first,
    so that ``epoch=NNN.ckpt`` and ``last.ckpt`` hold its state *after* the epoch's validation and a
    run resumed from them still knows that epoch's score. A retrained epoch overwrites its file.

    Accelerator and strategy names are checked before, by :func:`fit` (:func:`check_trainer_settings`).

    Raises:
        ConfigError: Lightning refuses the hardware settings (more devices than the machine has, a
            device list for the CPU, ...), naming the ``trainer.*`` keys and Lightning's reason.
    """
    trainer_config = config.trainer
    has_val = config.data.val_split is not None
    checkpoints = directory / "checkpoints"
    followed = monitor(config, MONITOR)  # val/mIoU; val/rsum for a retrieval family
    callbacks: list[Callback] = []
    keep = trainer_config.keep_epoch_checkpoints
    if has_val:
        callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoints,
                filename="best",
                monitor=followed,
                mode="max",
                save_top_k=1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    callbacks += [
        ModelCheckpoint(
            dirpath=checkpoints,
            filename="epoch={epoch:03d}",
            auto_insert_metric_name=False,
            # The newest N by epoch number (Lightning's "epoch" is always a monitor candidate).
            monitor=None if keep is None else "epoch",
            mode="max",
            save_top_k=-1 if keep is None else keep,
            save_last=True,
            enable_version_counter=False,
        ),
        ThroughputCallback(),
    ]
    optim = config.optim
    if optim.scheduler == "plateau":
        callbacks.append(
            PlateauSchedule(
                optim.plateau_monitor, optim.plateau_mode, optim.plateau_factor, optim.plateau_patience
            )
        )
    if optim.scheduler == "step":
        callbacks.append(StepSchedule(optim.lr, optim.step_gamma, optim.step_epochs))
    if has_val and trainer_config.early_stopping_patience is not None:
        callbacks.append(
            RecipeEarlyStopping(followed, mode="max", patience=trainer_config.early_stopping_patience)
        )
    # Caught: what Lightning raises for settings it cannot honour here, such as a device list for
    # the CPU (TypeError) or an accelerator or precision whose package is missing (ImportError).
    try:
        return _trainer(config, directory, callbacks)
    except (MisconfigurationException, ValueError, TypeError, ImportError) as err:
        settings = " ".join(
            f"trainer.{key}={getattr(trainer_config, key)}"
            for key in ("accelerator", "devices", "num_nodes", "strategy", "precision")
        )
        reason = " ".join(str(err).split())  # one line
        raise ConfigError(f"config: Lightning cannot set up {settings}: {reason}") from err


def _trainer(config: Config, directory: Path, callbacks: list[Callback]) -> L.Trainer:
    trainer_config = config.trainer
    has_val = config.data.val_split is not None
    return L.Trainer(
        accelerator=resolve_accelerator(config),
        devices=trainer_config.devices,
        num_nodes=trainer_config.num_nodes,
        strategy=trainer_config.strategy,
        precision=resolve_precision(config),  # type: ignore[arg-type]
        max_epochs=trainer_config.max_epochs,
        gradient_clip_val=trainer_config.gradient_clip_val,
        accumulate_grad_batches=trainer_config.accumulate_grad_batches,
        check_val_every_n_epoch=trainer_config.check_val_every_n_epoch,
        limit_val_batches=None if has_val else 0,
        num_sanity_val_steps=None if has_val else 0,
        log_every_n_steps=trainer_config.log_every_n_steps,
        deterministic=trainer_config.deterministic,
        enable_progress_bar=trainer_config.progress_bar,
        default_root_dir=directory,
        callbacks=callbacks,
        logger=[TensorBoardLogger(directory, name="tensorboard"), CSVLogger(directory, name="csv")],
        plugins=[AtomicCheckpointIO()],
    )


@dataclass
class TrainResult:
    """Where a training run left its outputs.

    Attributes:
        run_dir: the run folder (config.yaml, checkpoints/, tensorboard/, csv/).
        best_checkpoint: the best checkpoint by val mIoU (retrieval: val rsum; the last one without
            validation).
        last_checkpoint: the checkpoint after the last epoch.
        weights: the best checkpoint's weights exported as safetensors (JSON sidecar beside it).
        best_score: the best val mIoU or rsum (``None`` without validation).
        global_zero: whether this process is rank 0 (the one that reports).
        monitor: the validation metric ``best_score`` is (``val/mIoU``, or ``val/rsum``).
    """

    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    weights: Path | None
    best_score: float | None
    global_zero: bool = True
    monitor: str = MONITOR


def _check_run_dir(config: Config, directory: Path) -> None:
    check_writable(directory, "run folder (output_dir/name)", directory=True)
    checkpoints = directory / "checkpoints"
    if config.resume is None:
        if any(checkpoints.glob("*.ckpt")):
            raise ConfigError(
                f"run folder {directory} already holds checkpoints: pass resume=CHECKPOINT to continue, "
                "or another name=/output_dir= for a new run"
            )
    elif os.path.realpath(Path(config.resume).parent) != os.path.realpath(checkpoints):
        # The callbacks' state (best score, best.ckpt) belongs to the checkpoint's own folder.
        raise ConfigError(
            f"resume: {config.resume} is not in this run's checkpoints folder {checkpoints}: a resumed "
            "run continues in its checkpoint's run folder; set output_dir= and name= to that run's"
        )


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(path))


def resolve_paths(config: Config) -> Config:
    """``config`` with ``data.root``, ``data.features``, ``data.text_features``, ``resume`` and a
    ``text.word_vectors`` file made absolute, so that the run's config.yaml and checkpoints name the
    files wherever they are read."""
    text = config.text
    vectors = text.word_vectors
    if vectors not in (GLOVE_6B_50D, LEARNED) and Path(vectors).expanduser().exists():
        text = replace(text, word_vectors=str(_absolute(vectors)))
    data = replace(
        config.data,
        root=_absolute(config.data.root),
        features=_absolute(config.data.features),
        text_features=_absolute(config.data.text_features),
    )
    return replace(config, data=data, text=text, resume=_absolute(config.resume))


def _vectors_name(source: str) -> str:
    """A word-vector source by name: the file name without ``.txt``/``.gz``/``.zip``/``.npy``."""
    name = Path(source).name
    while Path(name).suffix in (".txt", ".gz", ".zip", ".npy"):
        name = Path(name).stem
    return name


def paper_notes(config: Config) -> list[str]:
    """The departures from the paper's setting that ``config`` makes (``text.paper_word_vectors``)."""
    paper = config.text.paper_word_vectors
    used = config.text.word_vectors
    if paper is None or _vectors_name(used) == paper:
        return []
    return [
        f"text.word_vectors={used} is not the paper's {paper}: "
        "results are not comparable with the paper's table"
    ]


def _with_notes(config: Config, notes: list[str]) -> Config:
    return replace(config, notes=[*config.notes, *(n for n in notes if n not in config.notes)])


def _check_splits(config: Config, data: GroundingDataModule) -> None:
    for role, split in (("train", config.data.train_split), ("val", config.data.val_split)):
        if split is not None and not data.paragraphs(split):
            raise DataError(
                f"data: the {role} split {split!r} ({config.data.dataset} in {config.data.root}) holds no "
                f"paragraph: nothing to {'train' if role == 'train' else 'validate'} on "
                f"(check data.{role}_split and the split's annotation file)"
            )


def build_module(
    config: Config, data: GroundingDataModule, resume: LoadedCheckpoint | None = None
) -> FamilyModule:
    """The LightningModule of ``config``: word vectors from ``text.word_vectors``, or from the
    ``resume`` checkpoint's embedding (whose recipe must then agree, see
    :func:`~higround.engine.config.check_resume`)."""
    vectors = data.word_vectors() if resume is None else resume.state_dict[EMBEDDING_KEY]
    model_config = config.model_config(video_dim=data.store.dim, word_dim=int(vectors.shape[1]))
    if resume is not None:
        check_resume(config.with_model(model_config), resume.config, resume.path)
    return module_class(config)(config, model_config, data.vocab, vectors)


def fit(config: Config) -> TrainResult:
    """Train ``config`` end to end; resumes exactly from ``config.resume`` when set.

    Checks that the run folder can be written, makes the data paths absolute, seeds everything,
    builds data, model and Trainer, writes ``config.yaml`` into the run folder, trains, and exports
    the best checkpoint's weights to ``model.safetensors`` (+ ``model.json``). A paper recipe run
    with other word vectors than the paper's warns and says so in the config's ``notes``.

    Raises:
        OutputError: the run folder cannot be written.
        ConfigError: a bad recipe, a run folder that already holds checkpoints (without resume), or a
            resume whose recipe changes what its checkpoint fixes.
        DataError: bad annotations or features, or a train/val split without a paragraph.
    """
    config = resolve_paths(config)
    check_trainer_settings(config)  # before the data is read
    directory = run_dir(config)
    _check_run_dir(config, directory)
    L.seed_everything(config.seed, workers=True, verbose=False)
    # Resuming takes the vocabulary and word vectors from the checkpoint, not from the data again.
    resume = load_checkpoint(config.resume) if config.resume is not None else None
    data = data_module(config, vocab=resume.vocab if resume is not None else None)
    # Checkpoints carry the backbone and clip sampling of extracted features (for `higround ground`).
    config = record_store_settings(config, data.store.name)
    notes = paper_notes(config)
    config = _with_notes(config, notes)
    module = build_module(config, data, resume)
    _check_splits(config, data)
    for note in notes:  # once every check has passed: training starts
        log.warning("not the paper's setting: %s", note)
    trainer = build_trainer(config, directory)
    if trainer.is_global_zero:
        save_config(config, directory / "config.yaml")
    trainer.fit(module, datamodule=data, ckpt_path=config.resume)

    checkpoints = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]  # type: ignore[attr-defined]
    followed = monitor(config, MONITOR)
    every = next(c for c in checkpoints if c.monitor != followed)  # the per-epoch one, with last.ckpt
    best = next((c for c in checkpoints if c.monitor == followed), None)
    last = Path(every.last_model_path) if every.last_model_path else None
    best_path = Path(best.best_model_path) if best is not None and best.best_model_path else last
    score = float(best.best_model_score) if best is not None and best.best_model_score is not None else None
    weights = None
    if trainer.is_global_zero and best_path is not None:
        weights, _ = export_safetensors(best_path, directory / "model.safetensors")
    return TrainResult(directory, best_path, last, weights, score, trainer.is_global_zero, followed)
