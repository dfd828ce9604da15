"""Text side: tokenisation, the vocabulary and initial word vectors."""

from higround.text.embeddings import GLOVE_6B_50D, LEARNED, VectorStats, load_word_vectors, read_word_vectors
from higround.text.sentences import split_sentences
from higround.text.tokenizer import tokenize
from higround.text.vocab import (
    PAD,
    UNK,
    UNKNOWN_WARN_RATE,
    UnknownWords,
    UnknownWordsWarning,
    Vocabulary,
    log_unknown_words,
)

__all__ = [
    "GLOVE_6B_50D",
    "LEARNED",
    "PAD",
    "UNK",
    "UNKNOWN_WARN_RATE",
    "UnknownWords",
    "UnknownWordsWarning",
    "VectorStats",
    "Vocabulary",
    "load_word_vectors",
    "log_unknown_words",
    "read_word_vectors",
    "split_sentences",
    "tokenize",
]
