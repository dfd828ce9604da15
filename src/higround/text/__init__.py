"""Text side: tokenisation, the vocabulary and initial word vectors."""

from higround.text.embeddings import GLOVE_6B_50D, LEARNED, VectorStats, load_word_vectors, read_word_vectors
from higround.text.sentences import split_sentences
from higround.text.tokenizer import tokenize
from higround.text.vocab import PAD, UNK, Vocabulary

__all__ = [
    "GLOVE_6B_50D",
    "LEARNED",
    "PAD",
    "UNK",
    "VectorStats",
    "Vocabulary",
    "load_word_vectors",
    "read_word_vectors",
    "split_sentences",
    "tokenize",
]
