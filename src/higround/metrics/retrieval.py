"""Cross-modal retrieval metrics (paragraph <-> video): recall at rank k, median and mean rank.

A similarity matrix ``(Q, C)`` scores every query against every candidate (higher is better); each
query has one correct candidate (``gt_index``, by default the diagonal), or several (a video with
several paragraphs, in the video -> paragraph direction). Everything runs on whole arrays.

**Ranks** are 1-based: a correct candidate's rank is the number of candidates whose similarity is
``>=`` its own. Ties count *against* the query, so a constant similarity ranks every correct
candidate last and a degenerate model never scores. With several correct candidates the rank is the
best-ranked one's: 1 + the number of wrong candidates scoring ``>=`` it.

Two conventions turn ranks into numbers (``convention=``; docs/retrieval.md):

``"higround"`` (default): fractions in [0, 1], keys that say what they compute.
    ``R@k`` (k in ``ks``, default 1, 5, 10, 50) = fraction of queries with rank <= k;
    ``median_rank`` = ``np.median`` of the ranks (x.5 when the two middle ranks differ);
    ``mean_rank`` = their mean.

``"hse"``: HSE's evaluation (CMHSE ``evaluation.py``, ``i2t`` / ``t2i``), key for key, in percent.
    ``r1``, ``r5`` = percent of queries with 0-based rank < 1, < 5;
    ``r10`` = percent with 0-based rank **< 50** (the key says 10, the code computes R@50);
    ``medr`` = floor(median of the 0-based ranks) + 1 (= the floor of the 1-based median);
    ``meanr`` = mean 0-based rank + 1; ``sum`` = r1 + r5 + r10 (its model-selection score; over both
    directions ``rsum``). CMHSE ranks by ``numpy.argsort``, whose order among equal scores is
    arbitrary; here ties count against the query as above, so the numbers are CMHSE's whenever the
    similarity has no ties (always, in practice, for real embeddings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

__all__ = [
    "RETRIEVAL_KS",
    "RankConvention",
    "format_hse",
    "paragraph_video_metrics",
    "rank_metrics",
    "ranks_of",
    "ranks_of_any",
    "retrieval_metrics",
]

RankConvention = Literal["higround", "hse"]
# The recalls reported by default: the video-paragraph retrieval papers' R@1/5/10 and HSE's R@50.
RETRIEVAL_KS: tuple[int, ...] = (1, 5, 10, 50)
# CMHSE's r1, r5, "r10": 0-based rank below 1, 5 and 50.
_HSE_CUTS = {"r1": 1, "r5": 5, "r10": 50}
_DIRECTIONS = ("p2v", "v2p")


def _similarity(similarity: npt.ArrayLike) -> np.ndarray:
    """``similarity`` as a float array ``(Q, C)`` (float32 kept: no copy of a large matrix)."""
    sim = np.asarray(similarity)
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be (queries, candidates), got shape {sim.shape}")
    if np.isnan(sim).any():
        raise ValueError("similarity holds NaN")
    return sim


def _indices(index: npt.ArrayLike | None, queries: int, candidates: int, name: str) -> np.ndarray:
    """Checked ``(Q,)`` candidate indices; the diagonal when ``index`` is None (square only)."""
    if index is None:
        if queries != candidates:
            raise ValueError(f"a {queries} x {candidates} similarity needs {name} (no diagonal)")
        return np.arange(queries)
    out = np.asarray(index)
    if out.shape != (queries,):
        raise ValueError(f"{name} must have one entry per query ({queries},), got shape {out.shape}")
    if not np.issubdtype(out.dtype, np.integer) or ((out < 0) | (out >= candidates)).any():
        raise ValueError(f"{name} must hold integers in [0, {candidates})")
    return out


def ranks_of(similarity: npt.ArrayLike, gt_index: npt.ArrayLike | None = None) -> np.ndarray:
    """1-based rank of each query's correct candidate (ties count against the query).

    Args:
        similarity: ``(Q, C)`` scores, higher is better.
        gt_index: ``(Q,)`` the correct candidate of each query; None: query i's is candidate i
            (a square matrix).

    Returns:
        ``(Q,)`` integer ranks in [1, C].

    Raises:
        ValueError: wrong shapes, indices out of range, NaN scores.
    """
    sim = _similarity(similarity)
    queries, candidates = sim.shape
    index = _indices(gt_index, queries, candidates, "gt_index")
    correct = sim[np.arange(len(index)), index]
    return (sim >= correct[:, None]).sum(axis=1)


def ranks_of_any(similarity: npt.ArrayLike, positive: npt.ArrayLike) -> np.ndarray:
    """1-based rank of each query's best-ranked correct candidate: 1 + wrong candidates scoring >= it.

    With one correct candidate per row this is :func:`ranks_of`.

    Args:
        similarity: ``(Q, C)`` scores, higher is better.
        positive: ``(Q, C)`` booleans, True for a query's correct candidates (at least one a row).

    Returns:
        ``(Q,)`` integer ranks in [1, C].

    Raises:
        ValueError: shapes differ, a row without a correct candidate, NaN scores.
    """
    sim = _similarity(similarity)
    mask = np.asarray(positive)
    if mask.shape != sim.shape or mask.dtype != np.bool_:
        raise ValueError(f"positive must be booleans of the similarity's shape {sim.shape}")
    if not mask.any(axis=1).all():
        raise ValueError("every query needs at least one correct candidate in positive")
    best = np.where(mask, sim, -np.inf).max(axis=1)
    return 1 + ((sim >= best[:, None]) & ~mask).sum(axis=1)


def rank_metrics(
    ranks: npt.ArrayLike, ks: Sequence[int] | None = None, convention: RankConvention = "higround"
) -> dict[str, float]:
    """Recalls and rank statistics of 1-based ``ranks`` in the chosen convention (module docstring).

    Args:
        ranks: ``(Q,)`` 1-based ranks of the correct candidates.
        ks: the recalls ``R@k`` to report (default :data:`RETRIEVAL_KS`); the ``"hse"`` convention
            has fixed keys and takes none.
        convention: ``"higround"`` (fractions, ``R@k``, ``median_rank``, ``mean_rank``) or ``"hse"``
            (CMHSE's ``r1``, ``r5``, ``r10`` = R@50, ``medr``, ``meanr``, ``sum``, in percent).

    Returns:
        The metrics by key.

    Raises:
        ValueError: no ranks, a rank below 1, a k below 1, ``ks`` with ``"hse"``, an unknown convention.
    """
    rank = np.asarray(ranks)
    if rank.ndim != 1 or not len(rank):
        raise ValueError(f"need a non-empty (Q,) array of ranks, got shape {rank.shape}")
    if (rank < 1).any():
        raise ValueError("ranks are 1-based: got a rank below 1")
    if convention == "hse":
        if ks is not None:
            raise ValueError("the 'hse' convention has fixed keys r1, r5, r10 (= R@50): pass no ks")
        rank0 = rank - 1
        # As CMHSE computes them: 100.0 * count / n, floor of the 0-based median + 1, mean + 1.
        out = {key: 100.0 * int((rank0 < cut).sum()) / len(rank0) for key, cut in _HSE_CUTS.items()}
        out["medr"] = float(np.floor(np.median(rank0)) + 1)
        out["meanr"] = float(rank0.mean() + 1)
        out["sum"] = out["r1"] + out["r5"] + out["r10"]
        return out
    if convention != "higround":
        known = ", ".join(get_args(RankConvention))
        raise ValueError(f"unknown rank convention {convention!r}; known: {known}")
    cuts = RETRIEVAL_KS if ks is None else tuple(ks)
    if not cuts or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in cuts):
        raise ValueError(f"ks must be integers >= 1, got {list(cuts)}")
    metrics = {f"R@{k}": float((rank <= k).mean()) for k in cuts}
    metrics["median_rank"] = float(np.median(rank))
    metrics["mean_rank"] = float(rank.mean())
    return metrics


def retrieval_metrics(
    similarity: npt.ArrayLike,
    gt_index: npt.ArrayLike | None = None,
    ks: Sequence[int] | None = None,
    convention: RankConvention = "higround",
) -> dict[str, float]:
    """Metrics of one retrieval direction: :func:`ranks_of`, then :func:`rank_metrics`.

    Args:
        similarity: ``(Q, C)`` query-candidate scores, higher is better.
        gt_index: ``(Q,)`` each query's correct candidate; None: the diagonal (square matrix).
        ks: recall cut-offs (``"higround"`` only; default 1, 5, 10, 50).
        convention: ``"higround"`` or ``"hse"`` (module docstring).

    Returns:
        ``R@k``, ``median_rank``, ``mean_rank`` (fractions and 1-based ranks), or CMHSE's keys.

    Raises:
        ValueError: see :func:`ranks_of` and :func:`rank_metrics`.
    """
    return rank_metrics(ranks_of(similarity, gt_index), ks, convention)


def paragraph_video_metrics(
    similarity: npt.ArrayLike,
    video_of: npt.ArrayLike | None = None,
    ks: Sequence[int] | None = None,
    convention: RankConvention = "higround",
) -> dict[str, float]:
    """Both directions of video-paragraph retrieval from one ``(paragraphs, videos)`` similarity.

    ``p2v/``: each paragraph ranks every video (its own is ``video_of``). ``v2p/``: each video that
    has a paragraph ranks every paragraph; with several (``video_of`` not one-to-one) the best-ranked
    one counts (:func:`ranks_of_any`); a video without a paragraph is only a candidate.

    Args:
        similarity: ``(P, V)`` scores of paragraph i against video j, higher is better.
        video_of: ``(P,)`` the video of each paragraph; None: paragraph i is video i's (square).
        ks: recall cut-offs (``"higround"`` only).
        convention: ``"higround"`` or ``"hse"``; the ``"hse"`` result adds ``rsum``, the sum of both
            directions' ``sum`` (CMHSE's model-selection score).

    Returns:
        The metrics of :func:`rank_metrics` prefixed ``p2v/`` and ``v2p/`` (e.g. ``p2v/R@1``).

    Raises:
        ValueError: see :func:`ranks_of` and :func:`rank_metrics`.
    """
    sim = _similarity(similarity)
    paragraphs, videos = sim.shape
    owner = _indices(video_of, paragraphs, videos, "video_of")
    positive = owner[None, :] == np.arange(videos)[:, None]  # (V, P): video j's paragraphs
    queried = positive.any(axis=1)
    ranks = {"p2v": ranks_of(sim, owner), "v2p": ranks_of_any(sim.T[queried], positive[queried])}
    out = {
        f"{direction}/{key}": value
        for direction in _DIRECTIONS
        for key, value in rank_metrics(ranks[direction], ks, convention).items()
    }
    if convention == "hse":
        out["rsum"] = out["p2v/sum"] + out["v2p/sum"]
    return out


def format_hse(metrics: Mapping[str, float]) -> str:
    """The lines CMHSE's ``validate`` logs, from :func:`paragraph_video_metrics` with ``"hse"``.

    ``Video to Paragraph: r1, r5, r10, medr, meanr`` (``%.1f``), the same for ``Paragraph to
    Video``, and ``Currscore: rsum``; remember that ``r10`` is R@50.

    Raises:
        KeyError: ``metrics`` is not an ``"hse"`` result of both directions.
    """
    keys = ("r1", "r5", "r10", "medr", "meanr")
    lines = [
        f"{title}: " + ", ".join(f"{metrics[f'{direction}/{key}']:.1f}" for key in keys)
        for title, direction in (("Video to Paragraph", "v2p"), ("Paragraph to Video", "p2v"))
    ]
    lines.append(f"Currscore: {metrics['rsum']:.1f}")
    return "\n".join(lines)
