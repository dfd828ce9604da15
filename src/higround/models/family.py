"""The model-family contract: what a model gives the engine, the checkpoints and the commands.

A family is a folder ``models/<family>/`` holding a typed config, the ``nn.Module``, its loss and a
function from the model's output to ranked spans, bundled in one :class:`ModelFamily` and named in
the one table of families (:data:`higround.models.registry.FAMILIES`). The engine (training,
evaluation, prediction, :class:`~higround.engine.Grounder`, the demo) reaches a model only through
this contract, never by its name; docs/families.md says how to add one.

Tasks. ``grounding`` (every family today): :attr:`ModelFamily.predictions` turns the output into a
:class:`GroundingPredictions`, ranked spans per sentence in ``[0, 1]`` (DETR-style models: their
scored span set, best first). ``retrieval`` (HSE): :attr:`ModelFamily.embeddings` turns the
output into :class:`RetrievalPredictions`, L2-normalised video and paragraph embeddings that the
retrieval metrics score (:mod:`higround.engine.retrieval`); the grounding paths (``predict``,
``ground``, :class:`~higround.engine.Grounder`) refuse such a family (:meth:`ModelFamily.check_task`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, cast

from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.data.dataset import PARAGRAPH, UNITS
from higround.errors import ConfigError

GROUNDING = "grounding"
# A retrieval family's output is embeddings (video, paragraph), scored by retrieval metrics, not spans.
RETRIEVAL = "retrieval"
TASKS = (GROUNDING, RETRIEVAL)
# Where a family's nn.Module keeps its word embedding (the initial word vectors) in its state dict:
# a checkpoint rebuilds the model from its weights alone, and a resumed run reuses the vectors.
EMBEDDING_KEY = "embedding.weight"


D = TypeVar("D")


class FamilyConfig(Protocol):
    """What the engine reads of every family's config (a dataclass such as ``HSCNetConfig``).

    ``video_dim`` and ``word_dim`` are filled from the data when a recipe leaves them null;
    ``num_clips`` is how many clips the data resamples every video to. ``loss_weights`` names the
    weight of each loss term (the keys of the loss's result, ``"total"`` aside). ``from_dict``
    raises :class:`~higround.errors.ConfigError` for an unknown key or a value out of range.
    """

    video_dim: int
    word_dim: int
    num_clips: int
    loss_weights: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that ``from_dict`` inverts."""
        ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The config of ``data``; ConfigError for an unknown key or a value out of range."""
        ...


def config_from_dict(cls: type[D], data: Mapping[str, Any], label: str) -> D:
    """``cls(**data)`` for a family's config dataclass, every failure a :class:`ConfigError`.

    ``label`` starts each message (``"tan2d config"``). Unknown keys are refused by name; a
    ``loss_weights`` mapping is copied; the dataclass's ``__post_init__`` checks the ranges.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label}: expected a mapping, got {type(data).__name__}")
    if not is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {unknown}")
    values = dict(data)
    if "loss_weights" in values:
        if not isinstance(values["loss_weights"], Mapping):
            raise ConfigError(f"{label}: loss_weights must be a mapping of term to weight")
        values["loss_weights"] = dict(values["loss_weights"])
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{label}: {err}") from err


def check_at_least(config: object, label: str, names: Sequence[str], minimum: int) -> None:
    """Refuse a config whose field among ``names`` is below ``minimum``.

    Raises:
        ConfigError: ``"<label>: <name> must be >= <minimum>, got <value>"`` for the first such field.
    """
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            raise ConfigError(f"{label}: {name} must be >= {minimum}, got {value}")


def check_loss_weights(label: str, weights: Mapping[str, float], terms: Sequence[str]) -> None:
    """Refuse a weight for a term the loss does not return, or a negative weight (ConfigError)."""
    unknown = sorted(set(weights) - set(terms))
    if unknown:
        raise ConfigError(f"{label}: unknown loss_weights {unknown}; known: {list(terms)}")
    negative = sorted(k for k, w in weights.items() if not w >= 0)
    if negative:
        raise ConfigError(f"{label}: loss_weights must be >= 0, not for {negative}")


class DictConfig:
    """``to_dict``/``from_dict`` of a config dataclass; ``LABEL`` starts its error messages."""

    LABEL: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` inverts it."""
        return asdict(cast(Any, self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """A config from :meth:`to_dict` output; unknown keys or bad values raise ConfigError."""
        return config_from_dict(cls, data, cls.LABEL)


class FamilyConfigBase(DictConfig):
    """What every family's config dataclass shares besides its fields: the dict round trip and the
    weight of a loss term (1 unless the recipe's ``loss_weights`` sets it)."""

    loss_weights: dict[str, float]

    def weight(self, term: str) -> float:
        """The weight of loss ``term`` (1 unless set in :attr:`loss_weights`)."""
        return float(self.loss_weights.get(term, 1.0))


C = TypeVar("C", bound=FamilyConfig)
O = TypeVar("O")  # noqa: E741  # the model's output type


@dataclass(frozen=True)
class GroundingPredictions:
    """A grounding model's answer for a :class:`ParagraphBatch`; spans normalised to ``[0, 1]``.

    Padded sentences (``batch.sentence_mask`` False) hold anything. Optional levels are ``None``
    when the model has no such level.

    Attributes:
        spans: ``(B, N_S, K, 2)`` ranked (start, end) per sentence, best first, ``K >= 1``; the
            first is the answer R1 and mIoU score.
        scores: ``(B, N_S, K)`` one confidence per span (higher is better), or ``None`` when the
            model regresses its spans without ranking proposals.
        sentence_spans: ``(B, N_S, 2)`` a sentence-level prediction besides the answer (HSCNet's
            sentence decoder).
        paragraph_span: ``(B, 2)`` a paragraph-level prediction (HSCNet's paragraph decoder).
        word_spans: ``(B, N_S, M, 2)`` one span per word token (``M``: longest sentence).
        word_span_mask: ``(B, N_S, M)`` the real words of ``word_spans``.
        saliency: ``(B, N_S, N_V)`` a score per clip of the batch's video (higher: more salient;
            padded clips hold anything), the highlight detection of DETR-style models; records
            keep the row's real clips (``PredictionRecord.saliency``).
    """

    spans: Tensor
    scores: Tensor | None = None
    sentence_spans: Tensor | None = None
    paragraph_span: Tensor | None = None
    word_spans: Tensor | None = None
    word_span_mask: Tensor | None = None
    saliency: Tensor | None = None

    def __post_init__(self) -> None:
        if self.spans.ndim != 4 or self.spans.shape[-1] != 2 or self.spans.shape[2] < 1:
            raise ValueError(
                f"grounding predictions: spans must be (B, N_S, K >= 1, 2), got {tuple(self.spans.shape)}"
            )
        if self.scores is not None and self.scores.shape != self.spans.shape[:-1]:
            raise ValueError(
                f"grounding predictions: scores {tuple(self.scores.shape)} do not match spans "
                f"{tuple(self.spans.shape)}"
            )
        if self.saliency is not None and (
            self.saliency.ndim != 3 or self.saliency.shape[:2] != self.spans.shape[:2]
        ):
            raise ValueError(
                f"grounding predictions: saliency {tuple(self.saliency.shape)} is not (B, N_S, N_V) "
                f"for spans {tuple(self.spans.shape)}"
            )

    @property
    def best(self) -> Tensor:
        """``(B, N_S, 2)`` the top-ranked span of every sentence."""
        return self.spans[:, :, 0]


@dataclass(frozen=True)
class RetrievalPredictions:
    """A retrieval model's answer for a batch: L2-normalised embeddings in one joint space, scored
    by their dot product (cosine). A side the batch does not carry (a text-only batch has no video) is
    ``None``.

    Attributes:
        videos: ``(B, D)`` one embedding per video of the batch, or None.
        paragraphs: ``(B, D)`` one embedding per paragraph, or None.
    """

    videos: Tensor | None
    paragraphs: Tensor | None

    def __post_init__(self) -> None:
        for name in ("videos", "paragraphs"):
            value = getattr(self, name)
            if value is not None and value.ndim != 2:
                raise ValueError(f"retrieval predictions: {name} must be (B, D), got {tuple(value.shape)}")


@dataclass(frozen=True)
class ModelFamily(Generic[C, O]):
    """One model family: its name, task, config class and how to build and read its model.

    Attributes:
        name: the family's key in the table and in recipes (``model.family``), checkpoints and
            predictions files (``"model"``); also the folder ``models/<name>/`` and ``configs/<name>/``.
        title: how tables and reports name it (``HSCNet``).
        task: :data:`GROUNDING` (or the reserved :data:`RETRIEVAL`).
        config_class: the typed config; ``config_class.from_dict(mapping)`` validates a recipe's
            ``model`` section (without its ``family`` key) and ``config_class()`` gives the defaults.
        build_model: ``(config, word_vectors)`` to the ``nn.Module``; ``word_vectors`` is the
            ``(vocabulary, word_dim)`` initial embedding, kept as :data:`EMBEDDING_KEY`. The module
            maps a :class:`ParagraphBatch` to its output and keeps its config as ``.config``.
        build_loss: ``config`` to a module mapping ``(output, batch)`` to a dict of named loss terms
            and ``"total"`` (what is optimised); every term is logged as ``train/<term>``.
        predictions: ``(output, batch)`` to :class:`GroundingPredictions`.
        unit: the sample the model consumes (:data:`higround.data.dataset.UNITS`): ``"paragraph"``
            (a row is a paragraph, all its sentences; HSCNet) or ``"sentence"`` (a row is one sentence
            and its video, ``N_S == 1``; sentence-grounding models). A recipe's ``data.unit`` defaults
            to it; a sentence family refuses ``data.unit=paragraph``.
        embeddings: a :data:`RETRIEVAL` family's ``(output, batch)`` to :class:`RetrievalPredictions`
            (the retrieval engine refuses such a family without it; its ``predictions`` is never
            called by the engine).
        cpu_bf16: whether ``trainer.precision: auto`` trains a recipe's ``model`` section (every
            key present: the family's defaults under the recipe's values; dimensions from the data
            may still be null) with bf16 autocast on a CPU with BF16 instructions
            (:func:`higround.engine.trainer.resolve_precision`). Set from the family's own
            measurements: faster per step than float32 at that size, and the same accuracy over 3
            seeds (docs/benchmarks.md). None (the default): float32.
    """

    name: str
    title: str
    config_class: type[C]
    build_model: Callable[[C, Tensor], nn.Module]
    build_loss: Callable[[C], nn.Module]
    predictions: Callable[[O, ParagraphBatch], GroundingPredictions]
    task: str = GROUNDING
    unit: str = PARAGRAPH
    embeddings: Callable[[O, ParagraphBatch], RetrievalPredictions] | None = None
    cpu_bf16: Callable[[Mapping[str, Any]], bool] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"model family {self.name}: task must be one of {TASKS}, got {self.task!r}")
        if self.unit not in UNITS:
            raise ValueError(f"model family {self.name}: unit must be one of {UNITS}, got {self.unit!r}")

    def config(self, values: Mapping[str, Any]) -> C:
        """The family's config of a ``model`` section (its ``family`` key, if any, dropped)."""
        config: C = self.config_class.from_dict({k: v for k, v in values.items() if k != "family"})
        return config

    def defaults(self) -> dict[str, Any]:
        """The default config as a dict."""
        return self.config_class().to_dict()

    def check_task(self, what: str) -> None:
        """Refuse a family whose task the engine does not run yet (``what``: the action, for the message)."""
        if self.task != GROUNDING:
            raise ConfigError(
                f"model family {self.name} is a {self.task} model: {what} runs grounding families only"
            )
