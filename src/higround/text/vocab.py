"""Word vocabulary built from a training split; it travels inside checkpoints as plain JSON.

Also the unknown-word rate of text read with a vocabulary (:meth:`Vocabulary.unknown_words`), and
its report: text whose words mostly fall outside the vocabulary grounds poorly, and says so.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from higround.errors import ConfigError
from higround.text.tokenizer import tokenize

PAD = "<pad>"
UNK = "<unk>"
# Above this share of <unk> tokens a split or a query is reported with a warning (docs/text.md).
# Measured with the vocabulary of each benchmark's training split, every released evaluation split
# stays below it (at most 15.0 %: Charades-CG novel_word, built from words unseen in training; the
# others 0.4-8.0 %), while text from elsewhere read with a benchmark's checkpoint gave 26-31 %.
UNKNOWN_WARN_RATE = 0.20


class UnknownWordsWarning(UserWarning):
    """A query whose share of unknown words exceeds :data:`UNKNOWN_WARN_RATE`."""


@dataclass(frozen=True)
class UnknownWords:
    """How many word tokens of some text a vocabulary does not know.

    Attributes:
        unknown: tokens that encode to ``<unk>``.
        tokens: all tokens (padding excluded).
    """

    unknown: int
    tokens: int

    @property
    def rate(self) -> float:
        """``unknown / tokens`` (0.0 for no token)."""
        return self.unknown / self.tokens if self.tokens else 0.0

    @property
    def too_many(self) -> bool:
        """Whether the rate exceeds :data:`UNKNOWN_WARN_RATE`."""
        return self.rate > UNKNOWN_WARN_RATE

    def describe(self) -> str:
        """``"12.5 % unknown words (3 of 24 tokens are <unk>)"``."""
        return f"{100 * self.rate:.1f} % unknown words ({self.unknown} of {self.tokens} tokens are {UNK})"

    def warning(self, what: str, words: Sequence[str] = ()) -> str:
        """The warning about ``what`` (``"split 'test'"``) for a rate above the threshold, naming up
        to five of the unknown ``words`` when given."""
        named = f" (unknown: {', '.join(words[:5])}{' ...' if len(words) > 5 else ''})" if words else ""
        return (
            f"{what}: {self.describe()}{named}; more than {100 * UNKNOWN_WARN_RATE:.0f} % of the words "
            "are unknown to the model (another dataset, language or spelling than its training text?), "
            "so its groundings are unreliable"
        )


class Vocabulary:
    """Word <-> id map. Id 0 is ``<pad>``, id 1 is ``<unk>``; every other word follows in order.

    Words outside the vocabulary encode to ``<unk>`` (id 1).
    """

    pad_id = 0
    unk_id = 1

    def __init__(self, words: Sequence[str]) -> None:
        """A vocabulary of ``words`` (without the two special tokens), in id order from 2."""
        self._words = [PAD, UNK, *words]
        self._ids = {w: i for i, w in enumerate(self._words)}
        if len(self._ids) != len(self._words):
            dupes = sorted(w for w, n in Counter(self._words).items() if n > 1)
            raise ConfigError(f"vocabulary: duplicate or reserved word(s) {dupes[:10]}")

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """Count the tokens of ``texts`` (e.g. a training split's sentences) and keep the frequent ones.

        Words seen fewer than ``min_count`` times are dropped; ``max_size`` caps the number of words
        kept besides ``<pad>`` and ``<unk>``. Order is by count (descending), ties alphabetical, so
        the same texts always give the same ids.

        Raises:
            ConfigError: ``min_count`` or ``max_size`` out of range, or so strict that no word of
                ``texts`` is kept (every word would read as ``<unk>``). Texts without any word give an
                empty vocabulary.
        """
        if min_count < 1:
            raise ConfigError(f"vocabulary: min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 0:
            raise ConfigError(f"vocabulary: max_size must be >= 0, got {max_size}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text))
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        kept = ranked if max_size is None else ranked[:max_size]
        if counts and not kept:
            top, seen = counts.most_common(1)[0]
            limit = f"min_count={min_count}" if not ranked else f"max_size={max_size}"
            raise ConfigError(
                f"vocabulary: {limit} keeps none of the {len(counts)} distinct words of the training "
                f"text (the most frequent, {top!r}, is seen {seen} times): every word would be {UNK}; "
                "lower text.min_count or raise text.max_vocab"
            )
        return cls(kept)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; unknown words give :attr:`unk_id`."""
        ids = self._ids
        return [ids.get(t, self.unk_id) for t in tokens]

    def unknown_words(self, ids: torch.Tensor | np.ndarray | Sequence[int]) -> UnknownWords:
        """Count the ``<unk>`` ids among the token ids ``ids`` (any shape; ``<pad>`` ids are not
        tokens and are not counted)."""
        array = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        tokens = int(np.count_nonzero(array != self.pad_id))
        return UnknownWords(int(np.count_nonzero(array == self.unk_id)), tokens)

    def encode_text(self, text: str) -> list[int]:
        """Ids of the tokens of ``text`` (see :func:`higround.text.tokenize`)."""
        return self.encode(tokenize(text))

    def id_of(self, word: str) -> int:
        """The id of ``word`` (:attr:`unk_id` when absent)."""
        return self._ids.get(word, self.unk_id)

    def word(self, index: int) -> str:
        """The word with id ``index``."""
        return self._words[index]

    @property
    def words(self) -> list[str]:
        """Every word in id order, the special tokens first (a copy)."""
        return list(self._words)

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._words == other._words

    def __hash__(self) -> int:
        return hash(tuple(self._words))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (stored in checkpoints); :meth:`from_dict` inverts it."""
        return {"pad": PAD, "unk": UNK, "words": self._words[2:]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_dict` output; a malformed dict raises ConfigError."""
        words = data.get("words") if isinstance(data, Mapping) else None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ConfigError("vocabulary: expected a mapping with a 'words' list of strings")
        if data.get("pad", PAD) != PAD or data.get("unk", UNK) != UNK:
            raise ConfigError(
                f"vocabulary: special tokens {data.get('pad')!r}/{data.get('unk')!r} differ from {PAD}/{UNK}"
            )
        return cls(words)


def log_unknown_words(
    what: str, vocab: Vocabulary, ids: torch.Tensor | np.ndarray | Sequence[int], logger: logging.Logger
) -> UnknownWords:
    """Log the unknown-word rate of the token ``ids`` of ``what`` (``"split 'test'"``): at INFO, or
    as a warning above :data:`UNKNOWN_WARN_RATE`. Returns the counts."""
    counts = vocab.unknown_words(ids)
    if counts.too_many:
        logger.warning(counts.warning(what))
    else:
        logger.info("%s: %s", what, counts.describe())
    return counts
