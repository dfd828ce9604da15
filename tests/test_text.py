"""Tokenizer, vocabulary and word-vector loaders."""

from __future__ import annotations

import gzip
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from higround.errors import ConfigError, DataError
from higround.text import (
    GLOVE_6B_50D,
    LEARNED,
    UNKNOWN_WARN_RATE,
    UnknownWords,
    Vocabulary,
    load_word_vectors,
    log_unknown_words,
    read_word_vectors,
    tokenize,
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("A man is playing a guitar.", ["a", "man", "is", "playing", "a", "guitar"]),
        ("  The person's shirt -- red!!", ["the", "person", "'s", "shirt", "red"]),
        ("He doesn't stop; they're done", ["he", "does", "n't", "stop", "they", "'re", "done"]),
        ("She\u2019ll go at 5 o'clock", ["she", "'ll", "go", "at", "5", "o'clock"]),
        ("'quoted' words, the boys' ball", ["quoted", "words", "the", "boys", "ball"]),
        ("A t-shirt and 3.5 km_long", ["a", "t", "shirt", "and", "3", "5", "km", "long"]),
        ("Café ÉTÉ", ["café", "été"]),
        ("... ?!", []),
        ("", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_vocab_build_order_ids_and_encode() -> None:
    vocab = Vocabulary.build(["the cat sat", "The dog sat.", "a dog, the end"])
    # counts: the 3, dog 2, sat 2, then a/cat/end once each; ties alphabetical.
    assert vocab.words == ["<pad>", "<unk>", "the", "dog", "sat", "a", "cat", "end"]
    assert len(vocab) == 8
    assert vocab.encode(["the", "sat", "zebra", "<pad>"]) == [2, 4, 1, 0]
    assert vocab.encode_text("A zebra sat!") == [5, 1, 4]
    assert (vocab.pad_id, vocab.unk_id) == (0, 1)
    assert "dog" in vocab and "zebra" not in vocab


def test_vocab_min_count_max_size() -> None:
    texts = ["the cat sat", "The dog sat.", "a dog, the end"]
    assert Vocabulary.build(texts, min_count=2).words[2:] == ["the", "dog", "sat"]
    assert Vocabulary.build(texts, max_size=2).words[2:] == ["the", "dog"]
    # A cap that keeps no word is an error naming it (every word would be <unk>); no text, no words.
    with pytest.raises(ConfigError, match=r"^vocabulary: max_size=0 keeps none of the 6 distinct words"):
        Vocabulary.build(texts, max_size=0)
    with pytest.raises(ConfigError, match=r"^vocabulary: min_count=4 keeps none"):
        Vocabulary.build(texts, min_count=4)
    assert Vocabulary.build([], max_size=0).words == ["<pad>", "<unk>"]
    with pytest.raises(ConfigError):
        Vocabulary.build(texts, min_count=0)


def test_vocab_round_trip_through_json() -> None:
    vocab = Vocabulary.build(["b a c a", "c a"])
    back = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert back == vocab and back.words == ["<pad>", "<unk>", "a", "c", "b"]
    with pytest.raises(ConfigError, match="duplicate"):
        Vocabulary.from_dict({"words": ["a", "a"]})
    with pytest.raises(ConfigError, match="duplicate"):
        Vocabulary.from_dict({"words": ["<unk>"]})
    with pytest.raises(ConfigError):
        Vocabulary.from_dict({"words": "abc"})


def _glove_lines() -> list[str]:
    return [
        "the 0.1 0.2 0.3\n",
        "cat 1 2 3\n",
        ". . . 9 9 9\n",  # a word with spaces (as in glove.840B): skipped
        "unused 5 5 5\n",
        "cat 7 7 7\n",  # duplicate: the first entry wins
        "dog -1.5 0 2.5\n",
    ]


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary(["the", "cat", "dog", "zebra"])


def _check_small(vectors: torch.Tensor, vocab: Vocabulary) -> None:
    assert vectors.shape == (6, 3) and vectors.dtype == torch.float32
    assert torch.equal(vectors[0], torch.zeros(3))
    assert torch.allclose(vectors[2], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.equal(vectors[3], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(vectors[4], torch.tensor([-1.5, 0.0, 2.5]))
    assert vectors[1].abs().sum() > 0 and vectors[5].abs().sum() > 0  # <unk>, zebra: random


def test_glove_text_loader(tmp_path: Path, vocab: Vocabulary) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("".join(_glove_lines()))
    vectors, stats = read_word_vectors(vocab, path)
    _check_small(vectors, vocab)
    assert (stats.dim, stats.words, stats.found, stats.missing) == (3, 4, 3, ("zebra",))
    assert stats.coverage == pytest.approx(0.75)
    # Seeded: same seed same rows, another seed other random rows; found rows never change.
    assert torch.equal(read_word_vectors(vocab, path)[0], vectors)
    other = read_word_vectors(vocab, path, seed=1)[0]
    assert not torch.equal(other[5], vectors[5]) and torch.equal(other[:5][2:], vectors[:5][2:])


def test_glove_text_header_gz_zip(tmp_path: Path, vocab: Vocabulary) -> None:
    with gzip.open(tmp_path / "v.txt.gz", "wt") as f:
        f.write("6 3\n" + "".join(_glove_lines()))  # word2vec-style header
    _check_small(read_word_vectors(vocab, tmp_path / "v.txt.gz")[0], vocab)
    with zipfile.ZipFile(tmp_path / "v.zip", "w") as z:
        z.writestr("glove.txt", "".join(_glove_lines()))
    _check_small(read_word_vectors(vocab, tmp_path / "v.zip", dim=3)[0], vocab)


def test_glove_text_errors(tmp_path: Path, vocab: Vocabulary) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("the 0.1 0.2 0.3\ncat 1 2\n")
    with pytest.raises(DataError, match=r"bad.txt: line 2 \(word 'cat'\) has 2 values, expected 3"):
        read_word_vectors(vocab, bad)
    bad.write_text("the 0.1 x 0.3\n")
    with pytest.raises(DataError, match="line 1"):
        read_word_vectors(vocab, bad)
    bad.write_text("apple 1 2 3\n")
    with pytest.raises(DataError, match="none of the 4 vocabulary words"):
        read_word_vectors(vocab, bad)
    good = tmp_path / "good.txt"
    good.write_text("".join(_glove_lines()))
    with pytest.raises(DataError, match="has 3 values, expected 4"):
        read_word_vectors(vocab, good, dim=4)
    with pytest.raises(ConfigError, match="not 'glove-6b-50d'"):
        read_word_vectors(vocab, tmp_path / "absent.txt")


def test_npy_loader(tmp_path: Path, vocab: Vocabulary) -> None:
    matrix = np.array([[0.1, 0.2, 0.3], [1, 2, 3], [5, 5, 5], [-1.5, 0, 2.5]], dtype=np.float32)
    np.save(tmp_path / "vec.npy", matrix)
    (tmp_path / "vec.vocab.txt").write_text("the\ncat\nunused\ndog\n")
    vectors, stats = read_word_vectors(vocab, str(tmp_path / "vec.npy"))
    _check_small(vectors, vocab)
    assert stats.missing == ("zebra",)
    with pytest.raises(ConfigError, match="has 3-d vectors, expected 300"):
        read_word_vectors(vocab, tmp_path / "vec.npy", dim=300)
    (tmp_path / "vec.vocab.txt").write_text("the\ncat\n")
    with pytest.raises(DataError, match=r"has 4 rows but .*vec.vocab.txt lists 2 words"):
        read_word_vectors(vocab, tmp_path / "vec.npy")


def test_learned(vocab: Vocabulary) -> None:
    vectors, stats = read_word_vectors(vocab, LEARNED, dim=8)
    assert vectors.shape == (6, 8) and torch.equal(vectors[0], torch.zeros(8))
    assert (stats.found, stats.coverage) == (0, 0.0)
    assert read_word_vectors(vocab, LEARNED)[0].shape == (6, 300)


def test_glove_6b_50d_default_is_real_glove(caplog: pytest.LogCaptureFixture) -> None:
    vocab = Vocabulary.build(["the man and the woman ate a kiwi", "qqzxv"])
    with caplog.at_level(logging.INFO, logger="higround.text.embeddings"):
        vectors = load_word_vectors(vocab, GLOVE_6B_50D)
    assert "7/8 vocabulary words found (87.5%), dim 50" in caplog.text  # all but "qqzxv"
    assert vectors.shape == (len(vocab), 50)
    the = vectors[vocab.id_of("the")]
    assert the[:2].tolist() == pytest.approx([0.418, 0.24968])

    def cos(a: str, b: str) -> float:
        return float(torch.cosine_similarity(vectors[vocab.id_of(a)], vectors[vocab.id_of(b)], dim=0))

    assert cos("man", "woman") > 0.8 > cos("man", "kiwi")
    _, stats = read_word_vectors(vocab, GLOVE_6B_50D)
    assert stats.missing == ("qqzxv",)
    # Random rows share the scale of GloVe rows (GloVe 6B 50-d values have std ~0.4-0.7).
    assert 0.2 < float(vectors[vocab.id_of("qqzxv")].std()) < 1.5


def test_glove_6b_50d_covers_clitics() -> None:
    vocab = Vocabulary.build(["He's sure they don't can't won't I'm we've she'll you'd they're"])
    assert read_word_vectors(vocab, GLOVE_6B_50D)[1].missing == ()


def test_unknown_word_rate_counts_unk_among_the_tokens() -> None:
    vocab = Vocabulary.build(["a man opens the fridge"])
    ids = vocab.encode_text("A zebra opens the gate")  # zebra, gate -> <unk>
    assert vocab.unknown_words(ids) == UnknownWords(2, 5)
    padded = torch.tensor([ids, [*vocab.encode_text("a man"), 0, 0, 0]])  # (B, W) with <pad> ids
    counts = vocab.unknown_words(padded)
    assert (counts.unknown, counts.tokens, counts.rate) == (2, 7, 2 / 7)
    assert counts.too_many and not vocab.unknown_words(np.array(ids[:1])).too_many
    assert vocab.unknown_words([]).rate == 0.0
    assert counts.describe() == "28.6 % unknown words (2 of 7 tokens are <unk>)"
    assert UNKNOWN_WARN_RATE == 0.20


def test_unknown_word_rate_is_logged_and_warned_above_the_threshold(caplog: pytest.LogCaptureFixture) -> None:
    vocab = Vocabulary.build(["a man opens the fridge"])
    log = logging.getLogger("higround.test")
    with caplog.at_level(logging.INFO, logger="higround.test"):
        low = log_unknown_words("split 'val'", vocab, vocab.encode_text("a man opens the gate"), log)
        high = log_unknown_words("split 'test'", vocab, vocab.encode_text("zebras eat the gate"), log)
    assert (low.rate, high.rate) == (0.2, 0.75)  # exactly at the threshold is not above it
    (info, warning) = caplog.records
    assert info.levelno == logging.INFO and info.getMessage() == (
        "split 'val': 20.0 % unknown words (1 of 5 tokens are <unk>)"
    )
    assert warning.levelno == logging.WARNING and warning.getMessage().startswith(
        "split 'test': 75.0 % unknown words (3 of 4 tokens are <unk>); more than 20 % of the words"
    )
