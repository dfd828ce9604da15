"""Splitting a paragraph into sentences (``higround ground --text``).

Rule: a sentence ends at a newline, or at a run of ``.``, ``!`` or ``?`` followed by whitespace or
the end of the text. The terminators stay with their sentence, surrounding whitespace is stripped,
pieces without a letter or digit are dropped, and the order is kept. A ``.`` inside a token
(``3.5 kg``, ``www.x.org``) does not end a sentence; one before a space does (``Mr. Smith`` splits).
"""

from __future__ import annotations

import re

# Split after a terminator run that precedes whitespace, and at every line break.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\s*[\r\n]+\s*")
_WORD = re.compile(r"[^\W_]")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` in order (rule in the module docstring).

    >>> split_sentences("A man enters. He sits down!\\nThen he waves")
    ['A man enters.', 'He sits down!', 'Then he waves']
    """
    return [s.strip() for s in _BOUNDARY.split(text) if _WORD.search(s)]
