"""Python API: rank a feature store's videos for a paragraph (and paragraphs for a video) with a
retrieval checkpoint (HSE, FSE), then ground the paragraph in the best videos.

>>> retriever = Retriever.from_checkpoint("runs/hse_synthetic/checkpoints/best.ckpt")  # doctest: +SKIP
>>> index = retriever.index("features.h5", annotations="data/activitynet", split="val_2")  # doctest: +SKIP
>>> retriever.retrieve("A man opens the fridge. He takes out a carrot.", index, top=5)  # doctest: +SKIP
[VideoHit(rank=1, video_id='v_x', score=0.81), ...]
>>> retriever.rank_paragraphs("v_x", index, top=5)  # doctest: +SKIP
>>> ground_hits(Grounder.from_checkpoint("hscnet.ckpt"), index, paragraph, hits)  # doctest: +SKIP

**The embedding cache.** :meth:`Retriever.index` embeds every video of the store once and keeps the
result in one ``.npz`` file (written atomically): ``cache=`` names it, else it is
``<cache dir>/<key>.npz`` with the cache dir ``$HIGROUND_CACHE_DIR``, else
``$XDG_CACHE_HOME/higround/retrieval``, else ``~/.cache/higround/retrieval``. The key is the SHA-256
of what the embeddings depend on: the checkpoint file(s), the feature store (file, or every file of
a folder store) and, when the clips come from annotated segments, the annotation file, each by
resolved path, size and modification time (a content hash of a multi-GB store would take longer
than embedding it), plus the store's entry template, the split, the bad-record policy and the clip
source. A cache whose key matches is reused; one whose key differs (the checkpoint or the store
changed) is recomputed and overwritten; a file that is not a cache of this format is an error
(delete it, or pass ``refresh=True``).

**Which videos.** With annotations, the split's annotated videos (each must be in the store); the
``spans`` clip source (HSE's protocol: each sentence's annotated segment is a clip) needs them.
Without (FSE, or ``model.eval_clips=uniform``), every video of the store.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from higround.data.features import FeatureStore, open_store
from higround.data.readers import OnBad, load_annotation_file, load_dataset
from higround.data.retrieval import (
    SPANS,
    RetrievalItem,
    collate_retrieval,
    one_paragraph_per_video,
    text_item,
    video_item,
)
from higround.data.schema import GroundingDataset, Paragraph, Sentence
from higround.engine.checkpoint import load_checkpoint, sidecar_path
from higround.engine.config import Config
from higround.engine.retrieval import RetrievalConfig, retrieval_family
from higround.errors import ConfigError, DataError
from higround.io import atomic_write_bytes
from higround.models.family import FamilyConfig
from higround.text.sentences import split_sentences
from higround.text.tokenizer import tokenize
from higround.text.vocab import UnknownWords, UnknownWordsWarning, Vocabulary

if TYPE_CHECKING:
    from higround.engine.api import Grounder, GroundingResult

CACHE_FORMAT = "higround.retrieval-cache.v1"
_QUERY = "<query>"  # the video id of a query paragraph (it has none)


@dataclass(frozen=True)
class VideoHit:
    """One ranked video: ``rank`` (1 = best), its id and cosine ``score``."""

    rank: int
    video_id: str
    score: float


@dataclass(frozen=True)
class ParagraphHit:
    """One ranked paragraph: ``rank``, the video it describes, its cosine ``score`` and text."""

    rank: int
    video_id: str
    score: float
    text: str


@dataclass
class VideoIndex:
    """The embeddings of a store's videos.

    Attributes:
        video_ids: the candidates, in store (or annotation) order.
        embeddings: ``(V, D)`` float32 L2-normalised, row ``i`` of ``video_ids[i]``.
        features: the feature store they were read from.
        paragraphs: the annotated paragraph of each video (empty without annotations).
        cache: the cache file.
        reused: whether the embeddings were read from the cache rather than computed.
    """

    video_ids: list[str]
    embeddings: np.ndarray
    features: Path
    paragraphs: dict[str, Paragraph] = field(default_factory=dict)
    cache: Path | None = None
    reused: bool = False

    def __len__(self) -> int:
        return len(self.video_ids)

    def position(self, video_id: str) -> int:
        """The row of ``video_id``.

        Raises:
            DataError: the video is not among the candidates (the nearest ids named).
        """
        try:
            return self.video_ids.index(video_id)
        except ValueError:
            near = [v for v in self.video_ids if v.startswith(video_id[:3])][:3] or self.video_ids[:3]
            raise DataError(
                f"video {video_id!r} is not among the {len(self)} videos of {self.features}"
                + (" with annotations" if self.paragraphs else "")
                + f" (e.g. {', '.join(near)})"
            ) from None


def cache_dir() -> Path:
    """Where embedding caches go by default (module docstring)."""
    if os.environ.get("HIGROUND_CACHE_DIR"):
        return Path(os.environ["HIGROUND_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "higround" / "retrieval"


def fingerprint(path: str | Path) -> dict[str, Any]:
    """A file's (or a folder's files') identity for the cache key: resolved path, size, mtime.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"not found: {path}")
    real = os.path.realpath(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_file():
                stat = entry.stat()
                digest.update(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return {"path": real, "files": digest.hexdigest()}
    stat = path.stat()
    return {"path": real, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _paragraph_of(sentences: Sequence[str], video_id: str = _QUERY) -> Paragraph:
    """A query paragraph (no times, no duration): sentences only."""
    rows = tuple(Sentence(text, 0.0, 0.0, i, f"{video_id}#{i}") for i, text in enumerate(sentences))
    return Paragraph(video_id, 0.0, rows)


def query_sentences(paragraph: str | Sequence[str]) -> list[str]:
    """The sentences of a query (a string is split by :func:`~higround.text.split_sentences`).

    Raises:
        DataError: no sentence, or one without a word token.
    """
    sentences = split_sentences(paragraph) if isinstance(paragraph, str) else list(paragraph)
    if not sentences:
        raise DataError("the query paragraph holds no sentence")
    for i, text in enumerate(sentences):
        if not isinstance(text, str) or not tokenize(text):
            raise DataError(f"query sentence {i} ({text!r}) has no word token")
    return sentences


class Retriever:
    """A trained retrieval model with its vocabulary, ready to embed and rank."""

    def __init__(
        self, model: torch.nn.Module, vocab: Vocabulary, config: Config, device: str | torch.device = "cpu"
    ) -> None:
        """Wrap ``model`` (moved to ``device``, eval mode) of the retrieval family ``config`` names.

        Raises:
            ConfigError: the family is not a retrieval family.
        """
        self.family = retrieval_family(config, "retrieve takes a retrieval checkpoint (HSE, FSE)")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.model_config = cast(FamilyConfig, self.model.config)
        self.settings = cast(RetrievalConfig, self.model.config)
        self.vocab = vocab
        self.config = config
        self.source = "model"
        self.checkpoint: Path | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Retriever:
        """Load a training checkpoint (``.ckpt``) or exported weights (``.safetensors`` + ``.json``)."""
        loaded = load_checkpoint(path)
        retriever = cls(loaded.build_model(), loaded.vocab, loaded.config, device)
        retriever.source = str(path)
        retriever.checkpoint = Path(path)
        return retriever

    @property
    def clip_source(self) -> str | None:
        """What a clip is when this model embeds a video (``"spans"``, ``"uniform"``, None: FSE)."""
        return self.settings.clip_source(False)

    @property
    def video_dim(self) -> int:
        """The frame feature size the model takes."""
        return int(self.model_config.video_dim)

    def _embed(self, items: Sequence[RetrievalItem], side: str, batch_size: int) -> np.ndarray:
        """``(len(items), D)`` embeddings of one side (``"videos"``/``"paragraphs"``) of ``items``."""
        embed = self.family.embeddings
        assert embed is not None  # retrieval_family checked it
        parts = []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                batch = collate_retrieval(items[start : start + batch_size]).to(self.device)
                out = getattr(embed(self.model(batch), batch), side)
                parts.append(out.float().cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def embed_paragraphs(
        self, paragraphs: Sequence[str | Sequence[str]], batch_size: int = 64
    ) -> tuple[np.ndarray, UnknownWords]:
        """``(P, D)`` L2-normalised embeddings of paragraphs (strings are split into sentences), and
        the count of their words outside the checkpoint's vocabulary.

        Raises:
            DataError: a paragraph without sentences, or a sentence without words.
        """
        items = [text_item(_paragraph_of(query_sentences(p)), self.vocab, self.video_dim) for p in paragraphs]
        ids = torch.cat([it.paragraph.words for it in items]) if items else torch.zeros(0, dtype=torch.long)
        return self._embed(items, "paragraphs", batch_size), self.vocab.unknown_words(ids)

    def _paragraph_embeddings(self, paragraphs: Sequence[Paragraph], batch_size: int) -> np.ndarray:
        items = [text_item(p, self.vocab, self.video_dim) for p in paragraphs]
        return self._embed(items, "paragraphs", batch_size)

    def embed_videos(
        self,
        features: Sequence[np.ndarray],
        paragraphs: Sequence[Paragraph | None] | None = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """``(V, D)`` L2-normalised embeddings of videos given as ``(T, D)`` frame features.

        ``paragraphs`` (one per video) give the annotated segments of the ``spans`` clip source
        (HSE's protocol); the other sources need none.

        Raises:
            ConfigError: the ``spans`` source without paragraphs.
            DataError: features of the wrong shape.
        """
        if self.clip_source == SPANS and (paragraphs is None or any(p is None for p in paragraphs)):
            raise ConfigError(
                f"{self.source}: its videos' clips are their annotated segments (model.eval_clips=spans, "
                "HSE's protocol): give each video's annotated paragraph (annotations=...), or use a "
                "model trained with model.eval_clips=uniform"
            )
        rows = list(paragraphs) if paragraphs is not None else [None] * len(features)
        items = []
        for i, (frames, paragraph) in enumerate(zip(features, rows, strict=True)):
            frames = np.asarray(frames)
            video_id = paragraph.video_id if paragraph is not None else f"video {i}"
            if frames.ndim != 2 or frames.shape[1] != self.video_dim:
                raise DataError(
                    f"video {video_id}: features of shape {frames.shape}, the model takes "
                    f"(T, {self.video_dim})"
                )
            owner = paragraph if paragraph is not None else Paragraph(video_id, 0.0, ())
            items.append(
                video_item(
                    owner,
                    frames,
                    None,
                    self.settings.num_clips,
                    self.clip_source,
                    self.settings.uniform_clips,
                )
            )
        return self._embed(items, "videos", batch_size)

    def _annotations(
        self, annotations: str | Path, split: str | None, dataset: str | None, on_bad: str
    ) -> GroundingDataset:
        name = dataset or self.config.data.dataset
        path = Path(annotations)
        if path.is_dir():
            if split is None:
                raise ConfigError(f"annotations {path} is a folder: give the split to read (--split, split=)")
            return load_dataset(name, path, split, on_bad=cast(OnBad, on_bad))
        return load_annotation_file(name, path, on_bad=cast(OnBad, on_bad))

    def _cache_key(
        self,
        features: Path,
        feature_key: str | None,
        annotations: Path | None,
        split: str | None,
        on_bad: str,
    ) -> str:
        """The SHA-256 of everything the store's embeddings depend on (module docstring)."""
        checkpoint = self.checkpoint
        if checkpoint is None:
            raise ConfigError(
                "a cache needs a retriever loaded from a checkpoint (Retriever.from_checkpoint)"
            )
        files = [fingerprint(checkpoint)]
        if checkpoint.suffix == ".safetensors":
            files.append(fingerprint(sidecar_path(checkpoint)))
        parts = {
            "format": CACHE_FORMAT,
            "checkpoint": files,
            "features": fingerprint(features),
            "feature_key": feature_key,
            "normalize": self.config.data.normalize,
            "clips": self.clip_source,
            "annotations": None if annotations is None else fingerprint(annotations),
            "split": split,
            "on_bad": on_bad,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def index(
        self,
        features: str | Path,
        *,
        annotations: str | Path | None = None,
        split: str | None = None,
        dataset: str | None = None,
        feature_key: str | None = None,
        cache: str | Path | None = None,
        refresh: bool = False,
        on_bad: str = "error",
        batch_size: int = 32,
    ) -> VideoIndex:
        """Embed a store's videos once, through the cache (module docstring).

        Args:
            features: the feature store (an HDF5 file, or a folder of .npy/.npz).
            annotations: an annotation file, or a folder with ``split``: the candidate videos and, for
                the ``spans`` clip source, their segments. None: every video of the store.
            split: the split to read from an annotation folder.
            dataset: the annotations' benchmark (default: the checkpoint's ``data.dataset``).
            feature_key: the store's entry template (default: the checkpoint's; ``"auto"``: detect).
            cache: the cache file (default: under :func:`cache_dir`).
            refresh: recompute (and overwrite) the cache whatever it holds.
            on_bad: the annotations' bad-record policy.
            batch_size: videos per batch.

        Raises:
            ConfigError: the ``spans`` source without annotations; an annotation folder without split.
            DataError: a corrupt cache, annotated videos missing from the store, bad features or
                annotations, a store whose features do not fit the model.
            FileNotFoundError: a path that does not exist.
        """
        store_path = Path(features)
        key_template = self.config.data.feature_key if feature_key is None else feature_key
        key_template = None if key_template == "auto" else key_template
        store = open_store(store_path, key_template, normalize=self.config.data.normalize)
        if self.clip_source == SPANS and annotations is None:
            raise ConfigError(
                f"{self.source}: its videos' clips are their annotated segments (HSE's protocol, "
                "model.eval_clips=spans): give the annotations (--annotations A --split S), or train "
                "with model.eval_clips=uniform to retrieve without them"
            )
        paragraphs: dict[str, Paragraph] = {}
        annotation_file: Path | None = None
        if annotations is not None:
            loaded = self._annotations(annotations, split, dataset, on_bad)
            annotation_file = Path(loaded.report.source)
            rows = loaded.paragraphs()
            one_paragraph_per_video(rows, str(annotation_file))
            paragraphs = {p.video_id: p for p in rows}
            missing = [v for v in paragraphs if v not in store]
            if missing:
                raise DataError(
                    f"{store.name}: no features for {len(missing)} annotated video(s) of {annotation_file}: "
                    f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
                )
            ids = list(paragraphs)
        else:
            ids = store.video_ids()
        if store.dim != self.video_dim:
            raise DataError(
                f"{store.name}: features have {store.dim} channels but the model of {self.source} takes "
                f"{self.video_dim} (model.video_dim)"
            )
        key = self._cache_key(store_path, key_template, annotation_file, split, on_bad)
        path = Path(cache) if cache is not None else cache_dir() / f"{key[:24]}.npz"
        if not refresh:
            stored = read_cache(path, key)
            if stored is not None:
                return VideoIndex(ids, stored[1], store_path, paragraphs, path, reused=True)
        embeddings = self._embed_store(store, ids, paragraphs, batch_size)
        write_cache(path, key, ids, embeddings)
        return VideoIndex(ids, embeddings, store_path, paragraphs, path, reused=False)

    def _embed_store(
        self, store: FeatureStore, ids: list[str], paragraphs: dict[str, Paragraph], batch_size: int
    ) -> np.ndarray:
        """Embed ``ids`` from ``store`` ``batch_size`` at a time (only one batch's features in memory)."""
        parts = []
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            rows: list[Paragraph | None] = [paragraphs.get(v) for v in chunk]
            owners = [p if p is not None else Paragraph(v, 0.0, ()) for v, p in zip(chunk, rows, strict=True)]
            parts.append(
                self.embed_videos(
                    [store.get(v) for v in chunk],
                    owners if self.clip_source == SPANS else None,
                    batch_size,
                )
            )
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)

    def retrieve(self, paragraph: str | Sequence[str], index: VideoIndex, top: int = 10) -> list[VideoHit]:
        """The ``top`` videos of ``index`` for a paragraph, best first (cosine of the embeddings).

        Warns:
            UnknownWordsWarning: too many of the paragraph's words are outside the vocabulary.

        Raises:
            DataError: an empty paragraph or index.
        """
        if not len(index):
            raise DataError(f"{index.features}: no video to rank")
        query, unknown = self.embed_paragraphs([paragraph])
        if unknown.too_many:
            warnings.warn(unknown.warning(f"{self.source}: the query"), UnknownWordsWarning, stacklevel=2)
        scores = index.embeddings @ query[0]
        order = np.argsort(-scores, kind="stable")[:top]
        return [VideoHit(r + 1, index.video_ids[i], float(scores[i])) for r, i in enumerate(order)]

    def rank_paragraphs(
        self,
        video_id: str,
        index: VideoIndex,
        top: int = 10,
        paragraphs: Sequence[Paragraph] | None = None,
        batch_size: int = 64,
    ) -> list[ParagraphHit]:
        """The ``top`` paragraphs for a video of ``index``, best first.

        Args:
            video_id: a video of the index.
            index: from :meth:`index`.
            top: how many to return.
            paragraphs: the candidates (default: the index's annotated paragraphs).
            batch_size: paragraphs per batch.

        Raises:
            ConfigError: no candidate paragraphs (an index without annotations, none given).
            DataError: the video is not in the index.
        """
        row = index.position(video_id)
        candidates = list(paragraphs) if paragraphs is not None else list(index.paragraphs.values())
        if not candidates:
            raise ConfigError("no paragraphs to rank: give the annotations whose paragraphs to rank")
        scores = self._paragraph_embeddings(candidates, batch_size) @ index.embeddings[row]
        order = np.argsort(-scores, kind="stable")[:top]
        return [
            ParagraphHit(
                r + 1,
                candidates[i].video_id,
                float(scores[i]),
                " ".join(s.text.strip() for s in candidates[i].sentences),
            )
            for r, i in enumerate(order)
        ]


def read_cache(path: Path, key: str) -> tuple[list[str], np.ndarray] | None:
    """The cached (ids, embeddings) of ``path`` when its key is ``key``; None when the file is absent
    or holds another key (stale: to be recomputed).

    Raises:
        DataError: the file is not a cache of :data:`CACHE_FORMAT` (truncated, corrupt, foreign).
    """
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in ("format", "key", "video_ids", "embeddings")}
    except Exception as err:  # numpy raises many types for a file that is not such an archive
        why = " ".join(str(err).split()) or type(err).__name__
        raise DataError(
            f"{path}: not a higround embedding cache, or truncated or corrupt ({why}): delete it, or "
            "rebuild it (--refresh-cache; Python: refresh=True)"
        ) from None
    if str(arrays["format"]) != CACHE_FORMAT or arrays["embeddings"].ndim != 2:
        raise DataError(
            f"{path}: not a {CACHE_FORMAT} file: delete it, or rebuild it (--refresh-cache; refresh=True)"
        )
    if str(arrays["key"]) != key:
        return None
    return [str(v) for v in arrays["video_ids"]], np.asarray(arrays["embeddings"], dtype=np.float32)


def write_cache(path: Path, key: str, video_ids: Sequence[str], embeddings: np.ndarray) -> None:
    """Write a cache file atomically (a ``.npz``: format, key, video ids, embeddings)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        format=np.array(CACHE_FORMAT),
        key=np.array(key),
        video_ids=np.array(list(video_ids), dtype=str),
        embeddings=np.asarray(embeddings, dtype=np.float32),
    )
    atomic_write_bytes(path, buffer.getvalue())


def ground_hits(
    grounder: Grounder, index: VideoIndex, paragraph: str | Sequence[str], hits: Sequence[VideoHit]
) -> list[GroundingResult]:
    """Ground ``paragraph`` in each retrieved video with a grounding checkpoint (the chain
    retrieve -> ground). A video's duration comes from the index's annotations, else from the store.

    Raises:
        DataError: a video whose duration is known to neither (give annotations to the index).
    """
    from higround.video.extract import MissingDurationError, read_video_features

    results = []
    for hit in hits:
        annotated = index.paragraphs.get(hit.video_id)
        try:
            video = read_video_features(
                index.features, hit.video_id, annotated.duration if annotated is not None else None
            )
        except MissingDurationError:
            raise DataError(
                f"{index.features} records no duration for video {hit.video_id!r}: give the annotations "
                "that hold it (--annotations A --split S) to ground in it"
            ) from None
        results.append(grounder.ground_video(video, query_sentences(paragraph)))
    return results
