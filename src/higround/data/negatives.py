"""SHINE's hierarchical hard negatives: the released files' reader and an offline generator.

Reading (:mod:`higround.data.readers.shine`): :func:`load_negatives` joins a negatives ``.jsonl`` to
a loaded split by qid, giving each training query its :class:`QueryNegatives` (levels 1..3 of
rule-masked templates and of their refilled, "recomposed" queries).

Generating, for datasets without a release (:func:`generate_negatives`): every query is masked
progressively by word class and the masks refilled from the training vocabulary, in place of
SHINE's LLM (GPT-3.5) refill. The rule, for a query of ``n`` words:

1. Every word gets a class from a pluggable function (:data:`WordClasses`): ``verb``, ``noun``,
   ``closed`` (never masked: determiners, pronouns, auxiliaries, conjunctions, words with an
   apostrophe) or any other label (maskable at the third rank: ``preposition``, ``adjective``,
   ``adverb``, ``other``). The default, :class:`RuleWordClasses`, is a lexicon built from the
   training captions (no tagger, nothing downloaded); :func:`grammar_word_classes` gives the
   procedural benchmark's exact classes.
2. Words are ranked verbs, then nouns after the first verb (objects), then the other labels, then
   nouns before the first verb (the subject), each rank in sentence order: the priority SHINE's
   released masks show (level 1 the verb, level 2 adds objects, level 3 prepositions and the subject).
3. Level ``l`` masks the first ``k_l`` ranked words, ``k_l = min(C, max(k_{l-1} + 1,
   round(r_l * n)))`` (``C`` maskable words, half rounded up, ``r = (0.10, 0.30, 0.50)``: SHINE
   supp. Table 1). So every level masks a superset of the previous one's words, and at least one
   more while words are left.
4. Each level is refilled on its own: every masked word is replaced by a word of the same class and
   inflection (verbs ``-ing``/``-ed``/``-s``/bare, nouns ``-s``/bare) drawn from the training
   captions by frequency, never the word itself (a seeded numpy Generator per query,
   ``default_rng([seed, crc32(qid)])``: a query's draws do not depend on the order of the queries).

Rows are written in the released format (:func:`write_negatives`), so :func:`load_negatives` reads
both. docs/shine.md states the rule's limits and its statistics next to the released file's.

Training (:func:`negative_word_ids`): the negatives of a training split as the model's word ids, by
sentence key, which :class:`~higround.data.dataset.ParagraphDataset` attaches to its items
(``data.negatives`` of a recipe).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from higround.data.readers._io import iter_json_lines
from higround.data.readers.shine import (
    KINDS,
    LEVELS,
    MASK,
    Kind,
    Negatives,
    NegativeSkip,
    NegativesReport,
    QueryNegatives,
    load_negatives,
    negative_qid,
    qid_tag,
)
from higround.data.schema import GroundingDataset
from higround.data.synthetic import MANIFEST_FORMAT, PLACES
from higround.data.synthetic import Vocabulary as GrammarVocabulary
from higround.errors import ConfigError, DataError
from higround.io import atomic_write_text
from higround.text.vocab import Vocabulary

__all__ = [
    "ADJECTIVE",
    "ADVERB",
    "CLASSES",
    "CLOSED",
    "DEFAULT_RATIOS",
    "KINDS",
    "LEVELS",
    "MASK",
    "NOUN",
    "OTHER",
    "PREPOSITION",
    "VERB",
    "NegativeSkip",
    "Negatives",
    "NegativesReport",
    "QueryNegatives",
    "RuleWordClasses",
    "WordClasses",
    "check_ratios",
    "file_levels",
    "generate_negatives",
    "grammar_word_classes",
    "load_negatives",
    "manifest_word_classes",
    "mask_counts",
    "mask_levels",
    "masked_fractions",
    "negative_qid",
    "negative_word_ids",
    "qid_tag",
    "write_negatives",
]

VERB, NOUN, CLOSED = "verb", "noun", "closed"
PREPOSITION, ADJECTIVE, ADVERB, OTHER = "preposition", "adjective", "adverb", "other"
# The labels the built-in class functions give; a custom one may give any label (see WordClasses).
CLASSES = (VERB, NOUN, CLOSED, PREPOSITION, ADJECTIVE, ADVERB, OTHER)
# r_1, r_2, r_3 of SHINE supp. Table 1 ("which we keep as our default settings in all experiments").
DEFAULT_RATIOS = (0.10, 0.30, 0.50)

# A word of a query: letters/digits with inner apostrophes (the tokenizer's words, on the raw text so
# that the masked query keeps its punctuation and case).
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")

WordClasses = Callable[[str], str]
"""Maps a lower-case word to its class label: ``verb`` and ``noun`` are masked first and second,
``closed`` never; any other label is masked third and refilled only from words of the same label."""


def _lexicon(words: str) -> frozenset[str]:
    """The whitespace-separated ``words``."""
    return frozenset(words.split())


# Never masked: function words whose replacement changes no event (SHINE's masks never touch a/the/
# is/their/they/some/it: 0 of 6,571 "a", 0 of 3,791 "the" in the Charades-CG release).
_CLOSED_WORDS = _lexicon(
    """a an the this that these those some any another each every either neither no all both
    i me my mine you your yours he him his she her hers it its we us our ours they them their theirs
    myself yourself himself herself itself ourselves themselves themself oneself one ones
    someone somebody something anyone anybody anything everyone everybody everything nobody nothing
    who whom whose which what whoever whatever
    is are was were be been being am do does did doing done has have had having
    will would shall should can could may might must
    and or but nor so yet than then if because while when whereas though although as
    not n't"""
)
# Maskable at the third rank: prepositions and particles, common adverbs.
_PREPOSITIONS = _lexicon(
    """about above across after against along among around at away back before behind below beneath
    beside besides between beyond by down during for from in inside into near next of off on onto
    out outside over past round since through throughout to toward towards under underneath until up
    upon with within without together forward backward backwards"""
)
_ADVERBS = _lexicon("again also still just even only very too quite almost here there now once twice")
# Adjectives that follow a determiner as nouns do ("the red cup"): kept out of the noun votes. Words
# that are mostly verbs in captions (open, clean, dry, empty) and nouns (glass) are not listed.
_ADJECTIVES = _lexicon(
    """red blue green yellow white black brown gray grey orange pink purple small large big little
    tiny huge long short tall new old young hot cold full wooden plastic metal paper other same
    different few many several first second last next own whole entire nice good bad"""
)
# Context votes: a word after a subject or an auxiliary is a verb; after a determiner or a
# preposition that takes an object, a noun.
_VERB_AFTER = _lexicon(
    """person he she they someone somebody man woman boy girl people who
    is are was were be am to then also still just starts begins"""
)
_NOUN_AFTER = _lexicon(
    """a an the this that these those some another each every his her their its my your our
    of into onto in on at from with under behind near inside"""
)
_VERB_SUFFIXES = ("ing", "ed")
_ADVERB_SUFFIX = "ly"


def _words(text: str) -> list[re.Match[str]]:
    """The word spans of ``text``."""
    return list(_WORD.finditer(text))


def _listed(word: str) -> str | None:
    """The class of ``word`` fixed by the word lists and the ``-ly`` rule, or None."""
    if word in _CLOSED_WORDS or "'" in word or word.isdigit():
        return CLOSED
    if word in _PREPOSITIONS:
        return PREPOSITION
    if word in _ADJECTIVES:
        return ADJECTIVE
    if word in _ADVERBS or (word.endswith(_ADVERB_SUFFIX) and len(word) > 4):
        return ADVERB
    return None


@dataclass(frozen=True)
class RuleWordClasses:
    """A dependency-free word-class lexicon built from training captions (the generator's default).

    Word lists name the function words (``closed``: never masked), prepositions and particles,
    common adjectives and adverbs; ``-ly`` words are adverbs. Every other word is a verb or a noun by
    the majority of its contexts in the captions: after a subject (``person``, ``he``, ...) or an
    auxiliary (``is``, ``to``, ...) it votes verb, after a determiner or an object-taking
    preposition it votes noun. A word without a majority (no votes, or a tie) is a verb when it ends
    in ``-ing``/``-ed``, else ``other``.

    Limits: one class per word type whatever its use (``drink`` in "takes a drink" and "starts to
    drink" gets the majority class); adjectives missing from the list after a determiner count as
    nouns; words never seen after those contexts fall to the suffix rule. docs/shine.md measures it
    against the verbs SHINE's released file masks first.

    Attributes:
        verbs: words voted verb.
        nouns: words voted noun.
    """

    verbs: frozenset[str]
    nouns: frozenset[str]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> RuleWordClasses:
        """The lexicon of ``texts`` (a training split's queries)."""
        verb_votes: Counter[str] = Counter()
        noun_votes: Counter[str] = Counter()
        for text in texts:
            words = [m.group().lower() for m in _words(text)]
            for prev, word in itertools.pairwise(words):
                if _listed(word) is not None:
                    continue
                if prev in _VERB_AFTER:
                    verb_votes[word] += 1
                elif prev in _NOUN_AFTER:
                    noun_votes[word] += 1
        voted = set(verb_votes) | set(noun_votes)
        verbs = frozenset(w for w in voted if verb_votes[w] > noun_votes[w])
        nouns = frozenset(w for w in voted if noun_votes[w] > verb_votes[w])
        return cls(verbs, nouns)

    def __call__(self, word: str) -> str:
        """The class of the lower-case ``word``."""
        fixed = _listed(word)
        if fixed is not None:
            return fixed
        if word in self.verbs:
            return VERB
        if word in self.nouns:
            return NOUN
        return VERB if word.endswith(_VERB_SUFFIXES) else OTHER


def grammar_word_classes(vocab: GrammarVocabulary) -> WordClasses:
    """The exact classes of the procedural benchmark's words (:mod:`higround.data.synthetic`).

    Verbs are verbs; subjects, objects and places nouns; adjectives, adverbs and the places'
    prepositions by their role; every other word (``the``, ``and``) closed.
    """
    table = dict.fromkeys((p for _, p in PLACES), PREPOSITION)
    table.update(dict.fromkeys(vocab.adjectives, ADJECTIVE))
    table.update(dict.fromkeys(vocab.adverbs, ADVERB))
    table.update(dict.fromkeys((*vocab.subjects, *vocab.objects, *(p for p, _ in vocab.places)), NOUN))
    table.update(dict.fromkeys(vocab.verbs, VERB))
    return lambda word: table.get(word, CLOSED)


def manifest_word_classes(path: str | Path) -> WordClasses:
    """:func:`grammar_word_classes` of the vocabulary in a procedural benchmark's ``synthetic.json``.

    Raises:
        DataError: the file cannot be read, is not JSON, or is not a manifest of this format.
    """
    file = Path(path)
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{file}: cannot read the procedural benchmark's manifest: {err}") from None
    vocab = manifest.get("vocabulary") if isinstance(manifest, dict) else None
    if not isinstance(vocab, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{file}: not a {MANIFEST_FORMAT} manifest (the synthetic.json of the benchmark)")
    try:
        places = tuple((p, "") for p in vocab["places"])
        roles = {k: tuple(vocab[k]) for k in ("subjects", "verbs", "objects", "adjectives", "adverbs")}
    except (KeyError, TypeError) as err:
        raise DataError(f"{file}: the manifest's vocabulary lacks {err}") from None
    return grammar_word_classes(GrammarVocabulary(places=places, **roles))


def check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    """``ratios`` as floats, strictly increasing in (0, 1].

    Raises:
        ConfigError: not numbers, empty, outside (0, 1] or not increasing.
    """
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise ConfigError(f"shine negatives: masking ratios must be numbers, got {ratios!r}") from None
    if (
        not values
        or not all(0 < r <= 1 for r in values)
        or any(a >= b for a, b in itertools.pairwise(values))
    ):
        raise ConfigError(
            f"shine negatives: masking ratios must increase strictly within (0, 1], got {list(values)}"
        )
    return values


def mask_counts(words: int, maskable: int, ratios: Sequence[float] = DEFAULT_RATIOS) -> list[int]:
    """Words masked at each level: ``k_l = min(C, max(k_{l-1} + 1, round(r_l * n)))`` (rule 3).

    Args:
        words: ``n``, the query's words.
        maskable: ``C``, how many of them may be masked.
        ratios: ``r_1 < r_2 < ...``, one per level.
    """
    counts, previous = [], 0
    for ratio in check_ratios(ratios):
        previous = min(maskable, max(previous + 1, math.floor(ratio * words + 0.5)))
        counts.append(previous)
    return counts


def mask_levels(classes: Sequence[str], ratios: Sequence[float] = DEFAULT_RATIOS) -> list[list[int]]:
    """The word positions masked at each level (sorted; each level a superset of the one before).

    Ranks: verbs, nouns after the first verb, the other maskable labels, nouns before it (the
    subject); sentence order within a rank (rules 2-3 of the module docstring). A query whose every
    word is closed has all its words maskable, in sentence order.
    """
    rank_of = {VERB: 0, NOUN: 1, CLOSED: 4}
    ranks = np.array([rank_of.get(c, 2) for c in classes], dtype=np.int64)
    verbs = np.flatnonzero(ranks == 0)
    first_verb = int(verbs[0]) if len(verbs) else len(classes)
    ranks[(ranks == 1) & (np.arange(len(classes)) < first_verb)] = 3
    if not (ranks < 4).any():
        ranks[:] = 0
    order = np.lexsort((np.arange(len(classes)), ranks))  # by rank, then position
    order = order[ranks[order] < 4]
    return [sorted(order[:k].tolist()) for k in mask_counts(len(classes), len(order), ratios)]


def _form(word: str, cls: str) -> str:
    """The inflection a refill keeps: a verb's ``-ing``, ``-ed``, ``-s`` (not ``-ss``) or bare form, a
    noun's ``-s`` or bare form; other classes have one form."""
    plural = word.endswith("s") and not word.endswith("ss")
    if cls == VERB:
        return "ing" if word.endswith("ing") else "ed" if word.endswith("ed") else "s" if plural else ""
    return ("s" if plural else "") if cls == NOUN else ""


class _Pool:
    """Words with their training counts; draws by frequency, never the word being replaced."""

    def __init__(self, words: Sequence[str], counts: Mapping[str, int]) -> None:
        self.words = list(words)
        self.cumulative = np.cumsum([counts[w] for w in words], dtype=np.float64)

    def draw(self, word: str, rng: np.random.Generator) -> str | None:
        """A word other than ``word``, or None when the pool has no other.

        Draws from the whole pool and redraws on ``word``: the same law as a draw with ``word``
        removed, without rebuilding the weights per draw.
        """
        if self.words == [word]:
            return None
        while True:
            pick = int(np.searchsorted(self.cumulative, rng.random() * self.cumulative[-1], side="right"))
            drawn = self.words[min(pick, len(self.words) - 1)]
            if drawn != word:
                return drawn


class _Refills:
    """Training words by class and inflection (rule 4): a refill of ``opens`` is a verb in ``-s``,
    then any verb, then any training word when the class has no other word."""

    def __init__(self, texts: Iterable[str], classes: WordClasses) -> None:
        counts: Counter[str] = Counter(m.group().lower() for t in texts for m in _words(t))
        by_key: dict[tuple[str, str], list[str]] = {}
        for word in sorted(counts):
            cls = classes(word)
            by_key.setdefault((cls, _form(word, cls)), []).append(word)
            by_key.setdefault((cls, "*"), []).append(word)
            by_key.setdefault(("*", "*"), []).append(word)
        self.pools = {key: _Pool(words, counts) for key, words in by_key.items()}

    def draw(self, word: str, cls: str, rng: np.random.Generator) -> str:
        """A replacement of ``word`` (of class ``cls``) other than itself."""
        for key in ((cls, _form(word, cls)), (cls, "*"), ("*", "*")):
            pool = self.pools.get(key)
            drawn = pool.draw(word, rng) if pool is not None else None
            if drawn is not None:
                return drawn
        raise ConfigError(f"shine negatives: the training text has no word to replace {word!r} with")


def _cased(word: str, like: str) -> str:
    """``word`` with the first letter upper-cased when ``like``'s is."""
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _substitute(text: str, spans: Sequence[re.Match[str]], replace: Mapping[int, str]) -> str:
    """``text`` with word ``i`` (of ``spans``) replaced by ``replace[i]``."""
    pieces, last = [], 0
    for i in sorted(replace):
        pieces += [text[last : spans[i].start()], replace[i]]
        last = spans[i].end()
    return "".join([*pieces, text[last:]])


def generate_negatives(
    dataset: GroundingDataset,
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    word_classes: WordClasses | None = None,
    tag: str | None = None,
) -> list[dict[str, Any]]:
    """Hierarchical negatives of every sentence of ``dataset`` (a training split), as released rows.

    Args:
        dataset: the split whose queries are masked; its captions are also the refill vocabulary and
            (by default) the word-class lexicon.
        ratios: the masking ratio of each level (SHINE supp. Table 1: 0.10, 0.30, 0.50); the number
            of levels is their count.
        seed: seeds every query's generator (with the crc32 of its qid).
        word_classes: the class of a lower-case word (default :meth:`RuleWordClasses.from_texts` of
            the split's queries; :func:`grammar_word_classes` for the procedural benchmark).
        tag: the qids' split tag (default :func:`qid_tag`).

    Returns:
        One row per sentence in dataset order: ``qid, query, duration, vid, relevant_windows,
        masked_queries, recomposed_queries`` (level 1 first).

    Raises:
        ConfigError: bad ratios or seed.
    """
    ratios = check_ratios(ratios)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"shine negatives: seed must be an integer >= 0, got {seed!r}")
    pairs = list(dataset.sentences())
    texts = [s.text for _, s in pairs]
    classes = word_classes or RuleWordClasses.from_texts(texts)
    refills = _Refills(texts, classes)
    tag = qid_tag(dataset.name, dataset.split) if tag is None else tag
    rows = []
    for paragraph, sentence in pairs:
        qid = negative_qid(paragraph.video_id, tag, sentence.index)
        rng = np.random.default_rng([seed, zlib.crc32(qid.encode("utf-8"))])
        spans = _words(sentence.text)
        lowered = [m.group().lower() for m in spans]
        word_class = [classes(w) for w in lowered]
        masked, recomposed = [], []
        for positions in mask_levels(word_class, ratios):
            masked.append(_substitute(sentence.text, spans, dict.fromkeys(positions, MASK)))
            fills = {
                i: _cased(refills.draw(lowered[i], word_class[i], rng), spans[i].group()) for i in positions
            }
            recomposed.append(_substitute(sentence.text, spans, fills))
        rows.append(
            {
                "qid": qid,
                "query": sentence.text,
                "duration": paragraph.duration,
                "vid": paragraph.video_id,
                "relevant_windows": [list(w) for w in sentence.all_windows],
                "masked_queries": masked,
                "recomposed_queries": recomposed,
            }
        )
    return rows


def write_negatives(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as JSON lines atomically (the released format); returns ``path``."""
    text = "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)
    return atomic_write_text(path, text)


def masked_fractions(rows: Iterable[Mapping[str, Any]]) -> list[float]:
    """Mean fraction of a query's words that each level masks (``<mask>`` count / words of
    ``query``), over ``rows`` of a negatives file (released or generated)."""
    totals: list[float] = []
    count = 0
    for row in rows:
        words = max(len(_words(row["query"])), 1)
        fractions = [q.count(MASK) / words for q in row["masked_queries"]]
        totals = [a + b for a, b in zip(totals, fractions, strict=True)] if totals else fractions
        count += 1
    return [t / count for t in totals] if count else []


def file_levels(path: str | Path) -> int:
    """Negatives per kind and row of a negatives file: the length of its first row's
    ``recomposed_queries`` (3 in the releases; the generator writes one per masking ratio), or
    :data:`LEVELS` when the file has no such first row (:func:`load_negatives` then names the problem).

    Raises:
        DataError: the first line is not valid JSON or UTF-8.
    """
    file = Path(path)
    if not file.is_file():
        return LEVELS
    for _, row in iter_json_lines(file):
        queries = row.get("recomposed_queries") if isinstance(row, dict) else None
        return len(queries) if isinstance(queries, list) and queries else LEVELS
    return LEVELS


def negative_word_ids(
    path: str | Path, dataset: GroundingDataset, vocab: Vocabulary, kind: Kind = "recomposed"
) -> dict[str, list[list[int]]]:
    """The word ids of every sentence's hard negatives, by sentence key, level 1 first.

    :func:`load_negatives` joins ``path`` to ``dataset`` (every sentence must have exactly one row;
    the rows' level count is the file's, :func:`file_levels`), and each negative of ``kind`` is
    encoded with the model's vocabulary (:meth:`QueryNegatives.encode`; unknown words are ``<unk>``).

    Args:
        path: a negatives ``.jsonl`` (released or generated).
        dataset: the training split the file was made for (uncut: every row must join).
        vocab: the model's vocabulary.
        kind: ``"recomposed"`` (the refilled queries, released) or ``"masked"`` (the templates).

    Returns:
        ``{sentence key: [ids of level 1, ids of level 2, ...]}``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FixableDataError: a bad row or a sentence without one (:func:`load_negatives`).
        DataError: a negative without a word token (naming the file, the qid and the level).
        ConfigError: an unknown ``kind``.
    """
    if kind not in KINDS:
        raise ConfigError(f"shine negatives: kind must be one of {KINDS}, got {kind!r}")
    negatives = load_negatives(path, dataset, levels=file_levels(path))
    table: dict[str, list[list[int]]] = {}
    for key, query in negatives.queries.items():
        ids = query.encode(vocab, kind)
        empty = [level for level, words in enumerate(ids, start=1) if not words]
        if empty:
            text = query.hierarchy(kind)[empty[0] - 1]
            raise DataError(
                f"{path}: qid {query.qid!r}: {kind} negative {empty[0]} ({text!r}) has no word token"
            )
        table[key] = ids
    return table
