"""A seeded, learnable procedural grounding benchmark in the real on-disk formats.

:func:`generate_dataset` writes, under one folder, ActivityNet-Captions-layout annotations
(``train.json``, ``val.json``, ``test.json``: ``{video_id: {duration, timestamps, sentences, ...}}``)
and one HDF5 feature store (``features.h5``, ``{video_id}`` -> ``(T, D)`` float32), so the real
readers and stores load it unchanged::

    paths = generate_dataset("runs/synthetic", SyntheticConfig(seed=0))
    ds = load_dataset("activitynet_captions", paths.root, "test")
    store = open_store(paths.features)

Every video has a person (the sentences' subject) and background entities visible throughout, and
an ordered sequence of events; the paragraph describes some of them in temporal order, the others
are distractors whose concepts the paragraph never names. A clip's feature is the sum of the fixed
random embeddings of the concepts visible in it (the event's object and adjective over the whole
event, each verb of a compound sentence over its own sub-interval, in order) plus Gaussian noise, so
words, sentences and the paragraph each have something to find. Design choices: docs/synthetic.md.

Run ``python -m higround.data.synthetic OUT [--seed N] [--noise X] ...`` to write one from the shell.
"""

from __future__ import annotations

import argparse
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from higround.data.features import write_hdf5_store
from higround.errors import ConfigError
from higround.io import atomic_write_text

__all__ = [
    "MANIFEST_FORMAT",
    "SPLITS",
    "SyntheticConfig",
    "SyntheticPaths",
    "Vocabulary",
    "concept_embeddings",
    "generate_dataset",
    "held_out_pairs",
    "main",
    "vocabulary",
]

MANIFEST_FORMAT = "higround.synthetic.v1"
SPLITS = ("train", "val", "test")

# Word pools, in the order the vocabulary-size knobs take them (the first N). All are plain GloVe
# words, so the default word vectors cover every token.
SUBJECTS = ("man", "woman", "boy", "girl", "chef", "player", "worker", "child")
VERBS = (
    "peels", "chops", "washes", "cuts", "stirs", "pours", "opens", "closes", "carries", "throws",
    "lifts", "drops", "pushes", "pulls", "paints", "cleans", "folds", "fills", "shakes", "rinses",
    "slices", "grabs", "kicks", "holds",
)  # fmt: skip
OBJECTS = (
    "kiwis", "apples", "carrots", "onions", "potatoes", "bowl", "cup", "knife", "box", "ball",
    "door", "bottle", "towel", "pan", "plate", "shirt", "chair", "bag", "book", "rope", "bucket",
    "brush", "jar", "lid",
)  # fmt: skip
ADJECTIVES = ("red", "blue", "green", "yellow", "small", "large", "wooden", "white")
# Background entities with the preposition a sentence uses to name them.
PLACES = (
    ("table", "on"), ("kitchen", "in"), ("window", "near"), ("garden", "in"), ("floor", "on"),
    ("sink", "by"), ("garage", "in"), ("counter", "on"),
)  # fmt: skip
# Text-only words: no visual counterpart, as many words of real captions.
ADVERBS = ("slowly", "quickly", "carefully", "again", "twice", "gently")

# Events never cover more than this fraction of a video, so some background is always left.
MAX_COVER = 0.9
# Where a compound sentence's first verb hands over to the second, as a fraction of the event.
SPLIT_RANGE = (0.35, 0.65)
# Visual weight of an adjective relative to its object (a colour is a weaker cue than the thing).
ADJECTIVE_WEIGHT = 0.5
# Seen verb-object pairs every verb / object keeps when pairs are held out (compound sentences and
# repeated objects need more than one seen verb per object).
MIN_SEEN_PER_VERB = 2
MIN_SEEN_PER_OBJECT = 3

IntRange = tuple[int, int]
FloatRange = tuple[float, float]


def _is_number(value: object, *, integer: bool) -> bool:
    """An int (``integer``), else a finite int or float; never a bool."""
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int)
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty knobs of the procedural benchmark (defaults: a small, clearly learnable set).

    Attributes:
        seed: everything (vocabulary embeddings, held-out pairs, every video) follows from it.
        train_videos, val_videos, test_videos: videos (= paragraphs) per split.
        num_clips: ``T``, clips per video (uniform in time).
        feature_dim: ``D``, feature dimensions; concept embeddings are random unit vectors in it.
        duration: video duration range in seconds (uniform).
        sentences: sentences per paragraph, inclusive range (= mentioned events).
        distractors: unmentioned events per video, inclusive range.
        event_length: event length as a fraction of the video, uniform range (shrunk together when
            a video's events would cover more than 90% of it).
        compound_fraction: probability that a sentence has two verbs ("peels and chops").
        repeat_object: probability that a sentence acts on the previous sentence's object with
            another verb (then only the verbs tell the two events apart).
        adjective_fraction: probability that an object gets an adjective (visible with it).
        place_fraction: probability that a sentence names a background entity ("on the table").
        adverb_fraction: probability of a text-only adverb ("slowly").
        num_subjects, num_verbs, num_objects, num_adjectives, num_places: vocabulary sizes (the
            first N words of each pool).
        scene_size: background entities per video (besides the person).
        held_out_pairs: fraction of verb-object pairs never shown in train (text or video).
        unseen_fraction: probability that a val/test sentence uses a held-out pair.
        noise: expected norm of a clip's Gaussian noise relative to a concept embedding (unit norm);
            the per-dimension standard deviation is ``noise / sqrt(feature_dim)``.
    """

    seed: int = 0
    train_videos: int = 600
    val_videos: int = 100
    test_videos: int = 100
    num_clips: int = 64
    feature_dim: int = 64
    duration: FloatRange = (60.0, 180.0)
    sentences: IntRange = (2, 5)
    distractors: IntRange = (0, 2)
    event_length: FloatRange = (0.06, 0.16)
    compound_fraction: float = 0.3
    repeat_object: float = 0.2
    adjective_fraction: float = 0.4
    place_fraction: float = 0.3
    adverb_fraction: float = 0.2
    num_subjects: int = 4
    num_verbs: int = 12
    num_objects: int = 16
    num_adjectives: int = 6
    num_places: int = 6
    scene_size: int = 2
    held_out_pairs: float = 0.2
    unseen_fraction: float = 0.25
    noise: float = 1.0

    def __post_init__(self) -> None:
        problems = self._type_problems()
        if not problems:
            # Ranges may arrive as lists (YAML, argparse): store tuples so the config stays hashable.
            for name in ("duration", "sentences", "distractors", "event_length"):
                object.__setattr__(self, name, tuple(getattr(self, name)))
            problems = self._problems()
        if problems:
            raise ConfigError("synthetic config: " + "; ".join(problems))

    def _type_problems(self) -> list[str]:
        """Values of another type than the field's default (knobs arrive untyped from YAML)."""
        out = []
        for f in fields(self):
            value, default = getattr(self, f.name), f.default
            if isinstance(default, tuple):
                integer = isinstance(default[0], int)
                pair = isinstance(value, list | tuple) and len(value) == 2
                if not (pair and all(_is_number(v, integer=integer) for v in value)):
                    kind = "integers" if integer else "finite numbers"
                    out.append(f"{f.name} must be a range [low, high] of two {kind}, got {value!r}")
            elif not _is_number(value, integer=isinstance(default, int)):
                kind = "an integer" if isinstance(default, int) else "a finite number"
                out.append(f"{f.name} must be {kind}, got {value!r}")
        return out

    def _problems(self) -> list[str]:
        out = []
        if self.seed < 0:
            out.append(f"seed must be >= 0, got {self.seed}")
        for name in ("train_videos", "val_videos", "test_videos"):
            if getattr(self, name) < 0:
                out.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("num_clips", "feature_dim", "num_subjects", "num_adjectives", "num_places"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name, pool in (
            ("num_subjects", SUBJECTS),
            ("num_verbs", VERBS),
            ("num_objects", OBJECTS),
            ("num_adjectives", ADJECTIVES),
            ("num_places", PLACES),
        ):
            if getattr(self, name) > len(pool):
                out.append(f"{name} must be at most {len(pool)} (the word pool), got {getattr(self, name)}")
        for name in ("sentences", "distractors", "duration", "event_length"):
            value = getattr(self, name)
            if len(value) != 2 or not 0 <= value[0] <= value[1]:
                out.append(f"{name} must be a range (low, high) with 0 <= low <= high, got {value}")
        if out:
            return out  # the checks below index the ranges
        if self.sentences[0] < 1:
            out.append(f"sentences must start at 1 or more, got {self.sentences}")
        if self.duration[0] <= 0:
            out.append(f"duration must be positive, got {self.duration}")
        if not (self.event_length[0] > 0 and self.event_length[1] <= MAX_COVER):
            out.append(f"event_length must lie in (0, {MAX_COVER}], got {self.event_length}")
        # A new object per sentence must stay available, and a distractor needs an unmentioned one.
        if self.num_objects < self.sentences[1] + (1 if self.distractors[1] > 0 else 0):
            out.append(
                f"num_objects ({self.num_objects}) must exceed the longest paragraph ({self.sentences[1]}) "
                "so every sentence and distractor can get its own object"
            )
        if self.num_verbs < MIN_SEEN_PER_OBJECT:
            out.append(f"num_verbs must be >= {MIN_SEEN_PER_OBJECT}, got {self.num_verbs}")
        if self.scene_size > self.num_places:
            out.append(f"scene_size ({self.scene_size}) must be at most num_places ({self.num_places})")
        for name in (
            "compound_fraction",
            "repeat_object",
            "adjective_fraction",
            "place_fraction",
            "adverb_fraction",
            "unseen_fraction",
        ):
            if not 0 <= getattr(self, name) <= 1:
                out.append(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.held_out_pairs <= 0.5:
            out.append(f"held_out_pairs must lie in [0, 0.5], got {self.held_out_pairs}")
        if self.noise < 0:
            out.append(f"noise must be >= 0, got {self.noise}")
        return out

    def videos(self, split: str) -> int:
        """Number of videos of ``split`` (``train``, ``val`` or ``test``)."""
        return {"train": self.train_videos, "val": self.val_videos, "test": self.test_videos}[split]


@dataclass(frozen=True)
class Vocabulary:
    """The words a config uses, by role (each tuple in pool order)."""

    subjects: tuple[str, ...]
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    adjectives: tuple[str, ...]
    places: tuple[tuple[str, str], ...]
    adverbs: tuple[str, ...] = ADVERBS

    def concepts(self) -> list[str]:
        """Every word with a visual embedding (adverbs have none), in a fixed order."""
        return [*self.subjects, *self.verbs, *self.objects, *self.adjectives, *(p for p, _ in self.places)]


@dataclass(frozen=True)
class SyntheticPaths:
    """Where :func:`generate_dataset` wrote the benchmark."""

    root: Path
    features: Path
    manifest: Path
    annotations: dict[str, Path] = field(default_factory=dict)


def vocabulary(config: SyntheticConfig) -> Vocabulary:
    """The first ``num_*`` words of each pool."""
    return Vocabulary(
        SUBJECTS[: config.num_subjects],
        VERBS[: config.num_verbs],
        OBJECTS[: config.num_objects],
        ADJECTIVES[: config.num_adjectives],
        PLACES[: config.num_places],
    )


def concept_embeddings(config: SyntheticConfig) -> dict[str, np.ndarray]:
    """Unit-norm float64 ``(D,)`` embedding of every visual concept.

    Each is drawn from a generator seeded by ``(seed, crc32(word))``, so a word keeps its embedding
    when the vocabulary-size knobs change.
    """
    out = {}
    for word in vocabulary(config).concepts():
        rng = np.random.default_rng([config.seed, zlib.crc32(word.encode("utf-8"))])
        v = rng.standard_normal(config.feature_dim)
        out[word] = v / np.linalg.norm(v)
    return out


def held_out_pairs(config: SyntheticConfig) -> list[tuple[str, str]]:
    """The (verb, object) pairs train never shows, sorted.

    Pairs are taken in a seeded random order while every verb keeps at least 2 and every object at
    least 3 seen pairs; so the set may be smaller than ``held_out_pairs`` asks when that is high.
    """
    vocab = vocabulary(config)
    pairs = [(v, o) for v in vocab.verbs for o in vocab.objects]
    wanted = round(config.held_out_pairs * len(pairs))
    seen_verb = dict.fromkeys(vocab.verbs, len(vocab.objects))
    seen_object = dict.fromkeys(vocab.objects, len(vocab.verbs))
    held: list[tuple[str, str]] = []
    order = np.random.default_rng([config.seed, 1]).permutation(len(pairs))
    for i in order:
        if len(held) == wanted:
            break
        v, o = pairs[i]
        if seen_verb[v] > MIN_SEEN_PER_VERB and seen_object[o] > MIN_SEEN_PER_OBJECT:
            held.append((v, o))
            seen_verb[v] -= 1
            seen_object[o] -= 1
    return sorted(held)


@dataclass(frozen=True)
class _Event:
    """One event of a video: its object (and adjective) and its verbs in order."""

    obj: str
    verbs: tuple[str, ...]
    adjective: str | None
    mentioned: bool
    novel: bool = False


class _Sampler:
    """Draws videos for one config; all randomness comes from the per-video generator."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.vocab = vocabulary(config)
        self.embeddings = concept_embeddings(config)
        self.held = held_out_pairs(config)
        self.held_set = held = set(self.held)
        # Sorted lists only: iterating a set of strings is not reproducible across processes.
        self.seen_verbs = {o: [v for v in self.vocab.verbs if (v, o) not in held] for o in self.vocab.objects}

    @staticmethod
    def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
        return items[int(rng.integers(len(items)))]

    def _mentioned(self, rng: np.random.Generator, count: int, allow_novel: bool) -> list[_Event]:
        """The paragraph's events, in order; each (verbs, object) is unique in the paragraph."""
        c = self.config
        events: list[_Event] = []
        used_objects: list[str] = []
        for k in range(count):
            novel = allow_novel and bool(self.held) and rng.random() < c.unseen_fraction
            fresh = [o for o in self.vocab.objects if o not in used_objects]
            obj, verbs = "", list[str]()
            if novel:
                pairs = [p for p in self.held if p[1] in fresh]
                if pairs:
                    v, obj = self._pick(rng, pairs)
                    verbs = [v]
                novel = bool(verbs)
            if not verbs and k > 0 and rng.random() < c.repeat_object:
                obj = events[-1].obj
                done = {v for e in events if e.obj == obj for v in e.verbs}
                options = [v for v in self.seen_verbs[obj] if v not in done]
                verbs = [self._pick(rng, options)] if options else []
            if not verbs:
                obj = self._pick(rng, fresh)
                verbs = [self._pick(rng, self.seen_verbs[obj])]
            if rng.random() < c.compound_fraction:
                done = {v for e in events if e.obj == obj for v in e.verbs} | set(verbs)
                options = [v for v in self.seen_verbs[obj] if v not in done]
                if options:
                    verbs.append(self._pick(rng, options))
            adjective = (
                self._pick(rng, self.vocab.adjectives) if rng.random() < c.adjective_fraction else None
            )
            events.append(_Event(obj, tuple(verbs), adjective, True, novel))
            if obj not in used_objects:
                used_objects.append(obj)
        return events

    def _distractors(self, rng: np.random.Generator, count: int, mentioned: list[_Event]) -> list[_Event]:
        """Events of seen pairs whose verb, object and adjective the paragraph never names (fewer when
        no such pair is left)."""
        words = {e.obj for e in mentioned} | {v for e in mentioned for v in e.verbs}
        options = [
            (v, o) for o in self.vocab.objects if o not in words for v in self.seen_verbs[o] if v not in words
        ]
        adjectives = [a for a in self.vocab.adjectives if a not in {e.adjective for e in mentioned}]
        out = []
        for _ in range(count):
            if not options:
                break
            v, o = self._pick(rng, options)
            adjective = None
            if adjectives and rng.random() < self.config.adjective_fraction:
                adjective = self._pick(rng, adjectives)
            out.append(_Event(o, (v,), adjective, False))
            options = [p for p in options if p[1] != o]
        return out

    def _timeline(self, rng: np.random.Generator, count: int, duration: float) -> np.ndarray:
        """``(count, 2)`` ordered, non-overlapping event spans in seconds (2 decimals)."""
        lo, hi = self.config.event_length
        lengths = rng.uniform(lo, hi, count)
        if lengths.sum() > MAX_COVER:
            lengths *= MAX_COVER / lengths.sum()
        gaps = rng.dirichlet(np.ones(count + 1)) * (1.0 - lengths.sum())
        starts = np.cumsum(gaps[:count]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        spans = np.stack([starts, starts + lengths], axis=1) * duration
        return np.minimum(np.round(spans, 2), duration)

    def _sentence(
        self, rng: np.random.Generator, subject: str, scene: list[tuple[str, str]], e: _Event
    ) -> str:
        c = self.config
        words = ["The", subject, " and ".join(e.verbs), "the"]
        if e.adjective:
            words.append(e.adjective)
        words.append(e.obj)
        if rng.random() < c.adverb_fraction:
            words.append(self._pick(rng, self.vocab.adverbs))
        if rng.random() < c.place_fraction:
            place, prep = self._pick(rng, scene)
            words += [prep, "the", place]
        return " ".join(words) + "."

    def video(self, split: str, index: int) -> tuple[dict[str, Any], np.ndarray]:
        """The annotation record and ``(T, D)`` float32 features of one video."""
        c = self.config
        rng = np.random.default_rng([c.seed, SPLITS.index(split) + 2, index])
        duration = round(float(rng.uniform(*c.duration)), 2)
        subject = self._pick(rng, self.vocab.subjects)
        chosen = rng.choice(len(self.vocab.places), size=c.scene_size, replace=False)
        scene = [self.vocab.places[i] for i in sorted(chosen)]
        n_sentences = int(rng.integers(c.sentences[0], c.sentences[1] + 1))
        n_distractors = int(rng.integers(c.distractors[0], c.distractors[1] + 1))
        mentioned = self._mentioned(rng, n_sentences, allow_novel=split != "train")
        distractors = self._distractors(rng, n_distractors, mentioned)
        # Interleave: distractors at random places, the mentioned events keep their order.
        slots = rng.permutation(len(mentioned) + len(distractors)) < len(mentioned)
        queue_m, queue_d = iter(mentioned), iter(distractors)
        events = [next(queue_m) if is_m else next(queue_d) for is_m in slots]
        spans = self._timeline(rng, len(events), duration)

        segments: list[tuple[float, float, np.ndarray]] = []  # (start, end, visual vector)
        record: dict[str, Any] = {"duration": duration, "timestamps": [], "sentences": []}
        verb_spans, novels, distractors_out = [], [], []
        for e, (start, end) in zip(events, spans.tolist(), strict=True):
            look = self.embeddings[e.obj] + (
                ADJECTIVE_WEIGHT * self.embeddings[e.adjective] if e.adjective else 0.0
            )
            segments.append((start, end, look))
            cuts = [start]
            if len(e.verbs) == 2:
                cuts.append(round(start + rng.uniform(*SPLIT_RANGE) * (end - start), 2))
            cuts.append(end)
            parts = [[cuts[i], cuts[i + 1]] for i in range(len(e.verbs))]
            segments += [(s, t, self.embeddings[v]) for (s, t), v in zip(parts, e.verbs, strict=True)]
            if not e.mentioned:
                distractors_out.append(
                    {"timestamp": [start, end], "verb": e.verbs[0], "object": e.obj, "adjective": e.adjective}
                )
                continue
            record["timestamps"].append([start, end])
            record["sentences"].append(self._sentence(rng, subject, scene, e))
            verb_spans.append(parts)
            novels.append(
                {"v-n": [[v, e.obj] for v in e.verbs if (v, e.obj) in self.held_set]} if e.novel else {}
            )
        record["novels"] = novels
        record["verb_timestamps"] = verb_spans
        record["distractors"] = distractors_out
        record["subject"] = subject
        record["scene"] = [p for p, _ in scene]
        background = self.embeddings[subject] + sum(self.embeddings[p] for p, _ in scene)
        return record, self._features(rng, duration, segments, background)

    def _features(
        self,
        rng: np.random.Generator,
        duration: float,
        segments: list[tuple[float, float, np.ndarray]],
        background: np.ndarray,
    ) -> np.ndarray:
        """Background + segments weighted by their overlap with each clip + noise, ``(T, D)`` float32."""
        c = self.config
        edges = np.linspace(0.0, duration, c.num_clips + 1)
        bounds = np.array([(s, e) for s, e, _ in segments]).reshape(-1, 2)
        vectors = np.array([v for _, _, v in segments]).reshape(-1, c.feature_dim)
        overlap = np.minimum(edges[1:, None], bounds[None, :, 1]) - np.maximum(
            edges[:-1, None], bounds[None, :, 0]
        )
        weights = np.clip(overlap, 0.0, None) / (duration / c.num_clips)  # (T, segments) in [0, 1]
        noise = rng.standard_normal((c.num_clips, c.feature_dim)) * (c.noise / np.sqrt(c.feature_dim))
        return (background[None] + weights @ vectors + noise).astype(np.float32)


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def generate_dataset(out_dir: str | Path, config: SyntheticConfig | None = None) -> SyntheticPaths:
    """Write the benchmark of ``config`` (default :class:`SyntheticConfig`) under ``out_dir``.

    Writes ``train.json``, ``val.json``, ``test.json`` (ActivityNet-Captions layout: read them with
    ``load_dataset("activitynet_captions", out_dir, split)``), ``features.h5`` (``{video_id}`` ->
    ``(num_clips, feature_dim)`` float32 with attributes ``duration`` and ``clip_seconds``) and
    ``synthetic.json`` (the config, vocabulary and held-out pairs). Every file is written atomically;
    the same config gives byte-identical annotations and equal feature arrays.

    Besides ``duration``/``timestamps``/``sentences``, each video record holds ``verb_timestamps``
    (per sentence, one span per verb in order), ``novels`` (per sentence, ``{"v-n": [[verb,
    object]]}`` for a held-out composition, else ``{}``, as Charades-CG's ``novel_composition``),
    ``distractors`` (``{timestamp, verb, object, adjective}`` of each unmentioned event), ``subject`` and
    ``scene``; readers keep them in ``Video.extra`` /
    ``Sentence.extra``.
    """
    config = config or SyntheticConfig()
    root = Path(out_dir)
    sampler = _Sampler(config)
    features: dict[str, np.ndarray] = {}
    attrs: dict[str, dict[str, float]] = {}
    annotations = {}
    for split in SPLITS:
        records = {}
        for i in range(config.videos(split)):
            video_id = f"syn_{split}_{i:05d}"
            records[video_id], features[video_id] = sampler.video(split, i)
            duration = records[video_id]["duration"]
            attrs[video_id] = {"duration": duration, "clip_seconds": duration / config.num_clips}
        annotations[split] = root / f"{split}.json"
        _write_json(annotations[split], records)
    store = root / "features.h5"
    write_hdf5_store(store, features, attrs=attrs)
    vocab = vocabulary(config)
    manifest = root / "synthetic.json"
    _write_json(
        manifest,
        {
            "format": MANIFEST_FORMAT,
            "config": asdict(config),
            "dataset": "activitynet_captions",
            "features": store.name,
            "annotations": {s: p.name for s, p in annotations.items()},
            "vocabulary": {**asdict(vocab), "places": [p for p, _ in vocab.places]},
            "held_out_pairs": [list(p) for p in sampler.held],
        },
    )
    return SyntheticPaths(root, store, manifest, annotations)


def _parser() -> argparse.ArgumentParser:
    """One ``--knob`` per :class:`SyntheticConfig` field, typed from its default."""
    parser = argparse.ArgumentParser(
        prog="python -m higround.data.synthetic", description="Write the procedural grounding benchmark."
    )
    parser.add_argument("out_dir", help="folder to write train/val/test.json, features.h5, synthetic.json")
    defaults = SyntheticConfig()
    for f in fields(SyntheticConfig):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, tuple):
            kind = type(value[0])
            parser.add_argument(flag, type=kind, nargs=2, metavar=("LOW", "HIGH"), help=f"default {value}")
        else:
            parser.add_argument(flag, type=type(value), help=f"default {value}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: write a benchmark and print where."""
    args = vars(_parser().parse_args(argv))
    out_dir = args.pop("out_dir")
    config = SyntheticConfig(**{k: v for k, v in args.items() if v is not None})
    paths = generate_dataset(out_dir, config)
    counts = ", ".join(f"{s} {config.videos(s)}" for s in SPLITS)
    print(f"wrote {paths.root}: {counts} videos; features {paths.features}; manifest {paths.manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
