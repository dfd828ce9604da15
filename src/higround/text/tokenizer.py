"""Sentence tokenisation for GloVe-style word vectors.

Lower-case, keep runs of letters/digits (with apostrophes inside a word), drop punctuation, and
split English clitics the way the Penn-Treebank tokenizer behind GloVe's vocabularies does
(``he's`` -> ``he 's``, ``don't`` -> ``do n't``), so they find their own vectors instead of
falling out of the vocabulary.
"""

from __future__ import annotations

import re

# Typographic apostrophes/primes written in place of "'".
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "`": "'"})
# A clitic glued to a preceding letter/digit; a space is put in front of it.
_CLITIC = re.compile(r"(?<=[^\W_])(n't|'(?:s|re|ve|ll|d|m))\b")
# A word (letters/digits, inner apostrophes allowed) or a detached clitic; everything else is dropped.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|'(?:s|re|ve|ll|d|m)\b")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lower-case word tokens; punctuation is dropped.

    >>> tokenize("The man's shirt -- isn't it red?")
    ['the', 'man', "'s", 'shirt', 'is', "n't", 'it', 'red']

    The result may be empty (e.g. ``"..."``); callers decide whether that is an error.
    """
    text = _CLITIC.sub(r" \1", text.lower().translate(_APOSTROPHES))
    return _TOKEN.findall(text)
