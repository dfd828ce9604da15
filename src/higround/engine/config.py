"""Training configuration: layered YAML files, ``key=value`` overrides and typed validation.

A config file is a YAML mapping with the sections of :class:`Config`. A top-level ``base:`` entry
(a path relative to the file, or a list of them) names files merged underneath it, so a dataset
recipe only states what differs from its family's ``configs/<family>/base.yaml``. Overrides use dotted keys
(``data.features=/x.hdf5 trainer.devices=2 model.loss_weights.grounding_l1=2``); their values are
parsed as YAML (``null``, numbers, ``[0.3, 0.5]``). Every key is checked against the typed schema:
an unknown key or a value of the wrong type raises :class:`~higround.errors.ConfigError` naming it.
The ``model`` section is checked against the config class of the family it names
(``model.family``, default ``hscnet``; :mod:`higround.models.registry`).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from higround.data.dataset import PARAGRAPH, SENTENCE, UNITS
from higround.data.readers.shine import KINDS as NEGATIVE_KINDS
from higround.errors import ConfigError
from higround.io import atomic_write_text
from higround.models.family import FamilyConfig, ModelFamily
from higround.models.registry import DEFAULT_FAMILY, get_family

# Model dimensions the engine fills from the data: clip feature size and word-vector size.
AUTO_MODEL_KEYS = ("video_dim", "word_dim")
# Integers a recipe may hold: what fits a 64-bit int (torch and numpy take no larger).
INT_RANGE = (-(2**63), 2**63 - 1)
# Seeds numpy, torch and Lightning's seed_everything all take.
SEED_RANGE = (0, 2**32 - 1)
# ``trainer.devices`` as a string, the forms Lightning parses besides "auto" and a count ("2", "-1"):
# a comma-separated list of device indices ("0,1", "1,").
_DEVICE_LIST = re.compile(r"(\s*\d+\s*,)+(\s*\d+\s*)?")


@dataclass
class DataConfig:
    """Where the annotations and features are, and how they are batched.

    Attributes:
        dataset: reader name (``higround data list``), e.g. ``tacos_paragraphs``.
        root: the benchmark's annotation folder (or a data root holding it).
        features: the feature store (one HDF5 file or a folder of .npy/.npz files).
        feature_key: entry template in the store, e.g. ``{video_id}/c3d_features``; null: detected.
        normalize: L2-normalise every clip feature.
        native_clips: keep each video's own clips when it has at most ``model.num_clips`` (batches
            pad to the longest; a longer video is resampled to ``num_clips``) instead of resampling
            every video to ``num_clips``: the features' clip grid, as the DETR-style models read it
            (QVHighlights' 2-s clips, which its saliency scores index).
        text_features: pre-extracted token features of every query (one HDF5 file or a folder of
            .npy/.npz), one ``(L, D)`` entry per sentence keyed by its key (QVHighlights: the
            ``qid``); ``.npz`` files hold it as ``last_hidden_state`` (the peers' CLIP text
            features). Null: the model reads the words (word vectors).
        text_feature_key: the entry template of ``text_features``, ``{video_id}`` standing for the
            sentence key (Moment-DETR's release: ``qid{video_id}.npz``); null: detected.
        text_normalize: L2-normalise every token feature (the peers' default).
        negatives: SHINE's hard negatives of the training queries, a ``.jsonl`` of the released
            format (``higround data negatives`` writes one) joined to the training split by qid;
            training batches then carry each query's negatives as word ids
            (:attr:`~higround.data.batch.ParagraphBatch.negative_words`) for a model with a
            ``model.shine`` section. Evaluation and prediction never read it. Null: none.
        negatives_kind: which hierarchy of that file: ``recomposed`` (the refilled queries, as
            SHINE trains) or ``masked`` (the ``<mask>`` templates).
        train_split, val_split, test_split: split names; ``val_split: null`` trains without validation.
        max_sentences: split paragraphs into chunks of at most this many sentences (all splits).
        on_bad: ``error`` or ``skip`` bad annotation records.
        unit: what one sample is: ``paragraph`` (all sentences of a paragraph with their video) or
            ``sentence`` (one sentence with its video, for sentence-grounding models); null: the model
            family's unit (:attr:`~higround.models.family.ModelFamily.unit`; HSCNet: paragraph).
        limit: keep only the first N paragraphs of every split (smoke tests, debugging); in the
            sentence unit too (the samples are then those paragraphs' sentences).
        batch_size: samples (paragraphs or sentences, see ``unit``) per training batch (per device).
        eval_batch_size: samples per evaluation batch (null: ``batch_size``).
        num_workers: DataLoader worker processes.
        pin_memory: pin host memory (null: when training on a GPU).
        persistent_workers: keep workers alive between epochs (ignored without workers).
    """

    dataset: str = "tacos_paragraphs"
    root: str | None = None
    features: str | None = None
    feature_key: str | None = None
    normalize: bool = False
    native_clips: bool = False
    text_features: str | None = None
    text_feature_key: str | None = None
    text_normalize: bool = True
    negatives: str | None = None
    negatives_kind: str = "recomposed"
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str = "test"
    max_sentences: int | None = None
    on_bad: str = "error"
    unit: str | None = None
    limit: int | None = None
    batch_size: int = 16
    eval_batch_size: int | None = None
    num_workers: int = 4
    pin_memory: bool | None = None
    persistent_workers: bool = True

    def __post_init__(self) -> None:
        if self.on_bad not in ("error", "skip"):
            raise ConfigError(f"config: data.on_bad must be 'error' or 'skip', got {self.on_bad!r}")
        if self.unit is not None and self.unit not in UNITS:
            choices = " or ".join(repr(u) for u in UNITS)
            raise ConfigError(f"config: data.unit must be {choices} (or null), got {self.unit!r}")
        if self.negatives_kind not in NEGATIVE_KINDS:
            choices = " or ".join(repr(k) for k in NEGATIVE_KINDS)
            raise ConfigError(f"config: data.negatives_kind must be {choices}, got {self.negatives_kind!r}")
        _at_least(self, "data", ("batch_size", "eval_batch_size", "limit", "max_sentences"), 1)
        _at_least(self, "data", ("num_workers",), 0)


@dataclass
class TextConfig:
    """Vocabulary and initial word vectors.

    Attributes:
        word_vectors: ``glove-6b-50d`` (offline default), ``learned``, a GloVe text file such as
            ``glove.840B.300d.txt`` (the paper), or a ``.npy`` matrix with ``<stem>.vocab.txt``.
        min_count: keep training-split words seen at least this often.
        max_vocab: keep at most this many words (null: all).
        paper_word_vectors: the vectors of the paper a recipe follows, by file name without its
            suffixes (``glove.840B.300d``); when ``word_vectors`` is another source, training warns
            and adds a line to the run's ``notes``. Null: the recipe follows no paper.
    """

    word_vectors: str = "glove-6b-50d"
    min_count: int = 1
    max_vocab: int | None = None
    paper_word_vectors: str | None = None

    def __post_init__(self) -> None:
        # max_vocab=0 would keep no word: every sentence would read as <unk> only.
        _at_least(self, "text", ("min_count", "max_vocab"), 1)


SCHEDULERS = ("none", "plateau", "step")


OPTIMIZERS = ("adam", "adamw")


@dataclass
class OptimConfig:
    """Adam (HSCNet 4.2: learning rate 1e-4, no weight decay), optionally with ReduceLROnPlateau.

    Attributes:
        optimizer: ``adam`` (``weight_decay`` is an L2 term added to the gradient) or ``adamw``
            (decoupled weight decay, Loshchilov & Hutter; Moment-DETR's and QD-DETR's optimiser).
        lr, weight_decay: the optimiser's.
        scheduler: ``none`` (a constant rate) or ``plateau``: ``torch.optim.lr_scheduler.
            ReduceLROnPlateau`` stepped after every validation on ``plateau_monitor`` (a logged
            metric such as ``val/loss`` or ``val/mIoU``), in direction ``plateau_mode``, multiplying the
            rate by ``plateau_factor`` after ``plateau_patience`` validations without improvement
            (2D-TAN's recipes; docs/tan2d.md); or ``step``: the rate of epoch ``e`` is
            ``lr * step_gamma ** (e // step_epochs)`` (HSE's ``lr_update``: x0.1 every 10 epochs).
    """

    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    scheduler: str = "none"
    plateau_monitor: str = "val/loss"
    plateau_mode: str = "min"
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    step_epochs: int = 10
    step_gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"config: optim.optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not self.lr > 0:
            raise ConfigError(f"config: optim.lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"config: optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"config: optim.scheduler must be one of {list(SCHEDULERS)}, got {self.scheduler!r}"
            )
        if self.plateau_mode not in ("min", "max"):
            raise ConfigError(f"config: optim.plateau_mode must be min or max, got {self.plateau_mode!r}")
        if not 0 < self.plateau_factor < 1:
            raise ConfigError(f"config: optim.plateau_factor must be in (0, 1), got {self.plateau_factor}")
        _at_least(self, "optim", ("plateau_patience",), 0)
        _at_least(self, "optim", ("step_epochs",), 1)
        if not 0 < self.step_gamma <= 1:
            raise ConfigError(f"config: optim.step_gamma must be in (0, 1], got {self.step_gamma}")
        if not self.plateau_monitor.startswith("val/"):
            raise ConfigError(
                "config: optim.plateau_monitor must be a validation metric (val/loss, val/mIoU, "
                f"val/R1@<m>), got {self.plateau_monitor!r}"
            )


@dataclass
class TrainerConfig:
    """Settings of the ``lightning.Trainer`` and its callbacks.

    Attributes:
        max_epochs: epochs to train (EarlyStopping may stop earlier).
        accelerator: ``auto``, ``cpu``, ``gpu``/``cuda``, ...
        devices: devices per node (a count, ``-1`` or ``auto`` for all visible ones).
        num_nodes: machines (multi-node DDP).
        strategy: ``auto`` (DDP when more than one device), ``ddp``, ...
        precision: ``auto`` (``32-true``: faster than bf16 at the paper's shapes, see the trainer) or any
            Lightning precision string.
        gradient_clip_val: clip the gradient norm to this value (null: no clipping, as the paper).
        accumulate_grad_batches: batches per optimiser step.
        early_stopping_patience: validations without a better val mIoU before stopping (null: never).
        keep_epoch_checkpoints: how many of the newest ``epoch=NNN.ckpt`` to keep (null: all); a
            full-size model's checkpoint with Adam's state is hundreds of MB, and a 500-epoch recipe
            would fill a disk. ``best.ckpt`` and ``last.ckpt`` are kept whatever the value.
        check_val_every_n_epoch: validate every N epochs.
        log_every_n_steps: logging interval.
        deterministic: ask torch for deterministic kernels.
        progress_bar: show the progress bar.
    """

    max_epochs: int = 50
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    early_stopping_patience: int | None = 10
    keep_epoch_checkpoints: int | None = None
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    deterministic: bool = False
    progress_bar: bool = True

    def __post_init__(self) -> None:
        keys = ("max_epochs", "num_nodes", "accumulate_grad_batches", "check_val_every_n_epoch")
        _at_least(self, "trainer", (*keys, "log_every_n_steps"), 1)
        _at_least(self, "trainer", ("early_stopping_patience",), 0)
        _at_least(self, "trainer", ("keep_epoch_checkpoints",), 1)
        if self.gradient_clip_val is not None and not self.gradient_clip_val > 0:
            raise ConfigError(f"config: trainer.gradient_clip_val must be > 0, got {self.gradient_clip_val}")
        self._check_devices()
        self._check_precision()

    def _check_devices(self) -> None:
        """``devices`` as Lightning's Trainer parses it: a count >= 1, -1 (all), ``auto`` or a
        list of device indices such as ``"0,1"``."""
        devices = self.devices
        if isinstance(devices, int):
            valid = devices >= 1 or devices == -1
        else:
            try:
                count = int(devices)  # "2", "-1"
            except ValueError:
                valid = devices == "auto" or _DEVICE_LIST.fullmatch(devices) is not None
            else:
                valid = count >= 1 or count == -1
        if not valid:
            raise ConfigError(
                "config: trainer.devices must be a count >= 1, -1 or auto (all visible devices), or a "
                f"list of device indices such as '0,1'; got {devices!r}"
            )

    def _check_precision(self) -> None:
        """``precision`` is ``auto`` or one of the precision values of the installed Lightning."""
        if self.precision == "auto":
            return
        # Imported only here: Lightning adds a second to the import of a config, which `auto` avoids.
        from lightning.fabric.plugins.precision.precision import (
            _PRECISION_INPUT_STR,
            _PRECISION_INPUT_STR_ALIAS,
        )

        # YAML reads 16 or 32 as a number: the str field holds it as "16", which Lightning accepts.
        accepted = (
            "auto",
            *typing.get_args(_PRECISION_INPUT_STR),
            *typing.get_args(_PRECISION_INPUT_STR_ALIAS),
        )
        if self.precision not in accepted:
            raise ConfigError(
                f"config: trainer.precision must be one of {', '.join(accepted)}; got {self.precision!r}"
            )


@dataclass
class EvalConfig:
    """Evaluation settings.

    Attributes:
        thresholds: tIoU thresholds of the R1@m columns (null: the dataset's Table 1 columns).
        inclusive: a hit is IoU >= m (true: LGI, Moment-DETR, HSCNet's peers) or IoU > m (false:
            2D-TAN's rule); validation and ``evaluate --checkpoint`` use it unless told otherwise.
    """

    thresholds: list[float] | None = None
    inclusive: bool = True

    def __post_init__(self) -> None:
        if self.thresholds is not None and not all(0 < t <= 1 for t in self.thresholds):
            raise ConfigError(f"config: eval.thresholds must lie in (0, 1], got {self.thresholds}")


@dataclass
class FeaturesConfig:
    """How the clip features were extracted, so ``higround ground`` can extract a new video alike.

    Training fills it from a store written by ``higround extract`` (see docs/own_video.md); for other
    stores it stays null unless set by hand. A value set here that differs from the store's is an error.

    Attributes:
        backbone: the visual backbone (``higround extract --list``).
        fps: frames sampled per second.
        clip_frames: sampled frames per clip.
        stride: sampled frames between clip starts.
    """

    backbone: str | None = None
    fps: float | None = None
    clip_frames: int | None = None
    stride: int | None = None

    def __post_init__(self) -> None:
        _at_least(self, "features", ("clip_frames", "stride"), 1)
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"config: features.fps must be > 0, got {self.fps}")


@dataclass
class Config:
    """A whole training recipe.

    Attributes:
        name: run name (the folder under ``output_dir``).
        seed: seeds model initialisation, shuffling and dropout.
        output_dir: where run folders are created.
        resume: a checkpoint to resume training from (exactly, see docs/training.md).
        notes: remarks stored with the run; training adds one for every departure from the paper's
            setting it detects (``text.paper_word_vectors``).
        data, text, optim, trainer, eval, features: the sections above.
        model: ``family`` (a name of :data:`higround.models.registry.FAMILIES`, default ``hscnet``)
            and the fields of that family's config class (e.g. :class:`~higround.models.hscnet.HSCNetConfig`);
            ``video_dim`` and ``word_dim`` may be null (taken from the features and word vectors).
    """

    name: str = "hscnet"
    seed: int = 0
    output_dir: str = "runs"
    resume: str | None = None
    notes: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: dict[str, Any] = field(default_factory=lambda: default_model_section())
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)

    def __post_init__(self) -> None:
        low, high = SEED_RANGE
        if not low <= self.seed <= high:
            raise ConfigError(f"config: seed must be an integer in [{low}, 2**32 - 1], got {self.seed}")
        if self.data.unit == PARAGRAPH and self.family.unit == SENTENCE:
            raise ConfigError(
                f"config: data.unit=paragraph, but model family {self.family.name} grounds one sentence per "
                "sample: drop data.unit (or set data.unit=sentence)"
            )

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-serialisable dict; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Validate a nested mapping against the schema (missing keys take their defaults).

        Raises:
            ConfigError: an unknown key, a value of the wrong type or out of range.
        """
        return typing.cast(Config, _build(cls, data, ""))

    @property
    def unit(self) -> str:
        """The data unit of this recipe: ``data.unit``, else its model family's."""
        return self.data.unit or self.family.unit

    @property
    def family(self) -> ModelFamily[Any, Any]:
        """The model family the ``model`` section names."""
        return get_family(self.model.get("family", DEFAULT_FAMILY))

    def with_model(self, model_config: FamilyConfig) -> Config:
        """This recipe with ``model`` set to ``model_config`` (dimensions filled in), family kept."""
        return replace(self, model={"family": self.family.name, **model_config.to_dict()})

    def model_config(self, video_dim: int | None = None, word_dim: int | None = None) -> Any:
        """The family's config of this recipe (e.g. :class:`~higround.models.hscnet.HSCNetConfig`),
        with null dimensions filled from the data.

        Raises:
            ConfigError: a dimension is still unknown, or the recipe fixes one that differs from the data.
        """
        values = dict(self.model)
        for key, found in (("video_dim", video_dim), ("word_dim", word_dim)):
            given = values.get(key)
            if given is not None and found is not None and given != found:
                source = "features" if key == "video_dim" else "word vectors"
                raise ConfigError(
                    f"config: model.{key}={given} but the {source} have {found} channels "
                    f"(set model.{key}={found} or null to take it from the data)"
                )
            if given is None:
                if found is None:
                    raise ConfigError(f"config: model.{key} is unknown; set it or give the data")
                values[key] = found
        return self.family.config(values)


# Keys a resumed run may set to other values than its checkpoint's recipe: where the files are, the
# hardware, how long to train and what to report. Every other key shapes the model, its vocabulary,
# its data or the optimisation done so far, which a resumed run cannot change (docs/training.md).
RESUME_FREE_KEYS = frozenset(
    {
        "name",
        "output_dir",
        "resume",
        "notes",
        "data.root",
        "data.features",
        "data.feature_key",
        "data.text_features",
        "data.text_feature_key",
        "data.negatives",
        "data.on_bad",
        "data.test_split",
        "data.eval_batch_size",
        "data.num_workers",
        "data.pin_memory",
        "data.persistent_workers",
        "text.paper_word_vectors",
        "trainer.max_epochs",
        "trainer.accelerator",
        "trainer.devices",
        "trainer.num_nodes",
        "trainer.strategy",
        "trainer.precision",
        "trainer.early_stopping_patience",
        "trainer.keep_epoch_checkpoints",
        "trainer.check_val_every_n_epoch",
        "trainer.log_every_n_steps",
        "trainer.deterministic",
        "trainer.progress_bar",
        "eval.thresholds",
    }
)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value and key != "loss_weights":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_conflicts(recipe: Config, stored: Config) -> list[tuple[str, Any, Any]]:
    """``(key, recipe value, checkpoint value)`` of every key a resumed run cannot change.

    ``recipe`` is the resumed run's config and ``stored`` its checkpoint's; both with the model
    dimensions and ``features`` section filled in, as training stores them. A word-vector file is
    compared by file name: on resume the vectors come from the checkpoint, the file is not read.
    """
    ours, theirs = _flatten(recipe.to_dict()), _flatten(stored.to_dict())
    conflicts = []
    for key in sorted(ours.keys() | theirs.keys()):
        mine, old = ours.get(key), theirs.get(key)
        if key in RESUME_FREE_KEYS or mine == old:
            continue
        if key == "text.word_vectors" and Path(str(mine)).name == Path(str(old)).name:
            continue
        conflicts.append((key, mine, old))
    return conflicts


def check_resume(recipe: Config, stored: Config, checkpoint: str | Path) -> None:
    """Refuse a resumed run whose recipe changes a key the checkpoint fixes (see :func:`resume_conflicts`).

    Raises:
        ConfigError: naming the first such key, the recipe's and the checkpoint's value.
    """
    conflicts = resume_conflicts(recipe, stored)
    if not conflicts:
        return
    key, mine, old = conflicts[0]
    more = f" (and {', '.join(k for k, _, _ in conflicts[1:])})" if len(conflicts) > 1 else ""
    raise ConfigError(
        f"resume: {key}={_yaml_value(mine)} in the recipe but {_yaml_value(old)} in the checkpoint "
        f"{checkpoint}{more}: "
        "a resumed run keeps the model, vocabulary, data and optimisation of its checkpoint; "
        f"drop the override or set {key}={_yaml_value(old)} (a new run needs another name=)"
    )


def _yaml_value(value: Any) -> str:
    """``value`` as an override's right-hand side (YAML flow style, one line)."""
    text: str = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    return text.removesuffix("\n...").strip()


def default_model_section(family: str = DEFAULT_FAMILY) -> dict[str, Any]:
    """``family`` and its config's defaults, with the data-given dimensions left null."""
    values = {"family": family, **get_family(family).defaults()}
    values.update(dict.fromkeys(AUTO_MODEL_KEYS))
    return values


def _at_least(obj: object, section: str, names: Sequence[str], low: int) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < low:
            raise ConfigError(f"config: {section}.{name} must be >= {low}, got {value}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class _RangeError(ConfigError):
    """A value of the right type out of range (tried options of a union stop at it)."""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the type hint ``tp``; raises ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
        else:
            for option in options:
                if option is type(None):
                    continue
                try:
                    return _coerce(value, option, key)
                except _RangeError:
                    raise  # the value has this option's type: its range is what is wrong
                except ConfigError:
                    continue
    elif origin is dict and isinstance(value, Mapping):
        key_type, value_type = typing.get_args(tp)
        return {_coerce(k, key_type, key): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    elif origin is list and isinstance(value, list | tuple):
        (item_type,) = typing.get_args(tp)
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = INT_RANGE
            if not low <= value <= high:
                raise _RangeError(f"config: {key} must be an integer in [-2**63, 2**63 - 1], got {value}")
            return value
    elif tp is float:
        number: float | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = float(value) if abs(value) < 2**1024 else math.inf  # float() would overflow
        elif isinstance(value, float):
            number = value
        elif isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string: accept any float literal.
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None:
            # No setting of a recipe has a meaning for inf or NaN (a learning rate, a loss weight).
            if not math.isfinite(number):
                raise _RangeError(f"config: {key} must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"config: {key} must be {_type_name(tp)}, got {value!r}")


def _unknown(key: str, known: Sequence[str]) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    prefix = key[: -len(leaf)]
    near = difflib.get_close_matches(leaf, known, n=1)
    hint = f" (did you mean '{prefix}{near[0]}'?)" if near else f" (known: {', '.join(known)})"
    return ConfigError(f"config: unknown key '{key}'{hint}")


def _model_hints(family: ModelFamily[Any, Any]) -> dict[str, Any]:
    # The dataclass fields only: class-level constants (a config's LABEL) are not recipe keys.
    every = typing.get_type_hints(family.config_class)
    hints = {f.name: every[f.name] for f in fields(family.config_class)}
    for key in AUTO_MODEL_KEYS:
        hints[key] = int | None
    hints["family"] = str
    return hints


def _model_section(data: Any, key: str) -> dict[str, Any]:
    """The ``model`` section: its family's config fields typed, null dimensions allowed, ranges checked."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: {key} must be a mapping, got {data!r}")
    name = data.get("family", DEFAULT_FAMILY)
    family = get_family(name, f"config: {key}.family") if isinstance(name, str) else None
    if family is None:
        raise ConfigError(f"config: {key}.family must be the name of a model family, got {name!r}")
    hints = _model_hints(family)
    values = default_model_section(family.name)
    for name, value in data.items():
        if name not in hints:
            raise _unknown(f"{key}.{name}", sorted(hints))
        values[name] = _coerce(value, hints[name], f"{key}.{name}")
    # Range checks of the family's config itself, with placeholder dimensions where the data will decide.
    family.config({**values, **{k: values[k] or 1 for k in AUTO_MODEL_KEYS}})
    return values


def _build(cls: type, data: Any, prefix: str) -> Any:
    """An instance of dataclass ``cls`` from a mapping, recursing into nested sections."""
    where = prefix.rstrip(".") or "the config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: {where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    values: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in known:
            raise _unknown(key, known)
        tp = hints[name]
        if name == "model" and cls is Config:
            values[name] = _model_section(value, key)
        elif isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
            values[name] = _build(tp, value, f"{key}.")
        else:
            values[name] = _coerce(value, tp, key)
    return cls(**values)


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, any other value of ``update`` replaces the base's."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"key {key!r} given twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and where it is."""
    if not isinstance(err, yaml.MarkedYAMLError) or err.problem is None:
        return " ".join(str(err).split())
    mark = err.problem_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{err.problem}{where}"


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a config file with its ``base:`` files merged underneath.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: the file (or a base) is not UTF-8 YAML holding a mapping without repeated keys, a
            base is missing or not a file name, or the bases form a cycle.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"config: {path} includes itself through 'base'")
    if path.is_dir():
        raise ConfigError(f"config: {path} is a folder, not a YAML file")
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_RecipeLoader)  # a SafeLoader
    except UnicodeDecodeError as err:
        raise ConfigError(f"config: {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {path} is not valid YAML: {_yaml_problem(err)}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping, got {type(data).__name__}")
    bases = data.pop("base", None)
    bases = [] if bases is None else [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"config: {path}: 'base' must be a file name or a list of them, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        if not (path.parent / base).is_file():
            raise ConfigError(f"config: {path}: base {base!r} is not a file ({path.parent / base})")
        merged = merge(merged, read_yaml(path.parent / base, (*_seen, path)))
    return merge(merged, data)


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML).

    Raises:
        ConfigError: an item has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"config: override {item!r} is not of the form section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, dict) and value and all(v is None for v in value.values()):
            value = raw  # YAML reads a key template such as {video_id} as a set; keep the text
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"config: override {item!r} conflicts with an earlier one")
            node = child
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """The validated :class:`Config` of a YAML file (or the defaults) with ``key=value`` overrides.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: an unknown key, a wrong type or an out-of-range value (named in the message).
    """
    raw = read_yaml(path) if path is not None else {}
    return Config.from_dict(merge(raw, parse_overrides(overrides)))


def save_config(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML, atomically (temp file beside ``path`` + ``os.replace``)."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
