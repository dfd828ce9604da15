"""Word vocabulary built from a training split; it travels inside checkpoints as plain JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from higround.errors import ConfigError
from higround.text.tokenizer import tokenize

PAD = "<pad>"
UNK = "<unk>"


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
        return cls(ranked if max_size is None else ranked[:max_size])

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; unknown words give :attr:`unk_id`."""
        ids = self._ids
        return [ids.get(t, self.unk_id) for t in tokens]

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
