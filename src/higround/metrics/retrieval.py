"""Cross-modal retrieval metrics (video <-> paragraph): recall at rank k, median and mean rank."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["ranks_of", "retrieval_metrics"]


def ranks_of(similarity: npt.ArrayLike, gt_index: npt.ArrayLike) -> np.ndarray:
    """1-based rank of each query's correct candidate: ``(Q, C)`` similarities, ``(Q,)`` indices.

    Ties are broken against the query: the rank counts every candidate scoring at least as high as
    the correct one, so a constant similarity ranks it last, never first.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    index = np.asarray(gt_index)
    if sim.ndim != 2 or index.shape != (sim.shape[0],):
        raise ValueError(f"need (Q, C) similarities and (Q,) indices, got {sim.shape} and {index.shape}")
    if not np.issubdtype(index.dtype, np.integer) or ((index < 0) | (index >= sim.shape[1])).any():
        raise ValueError(f"gt_index must hold integers in [0, {sim.shape[1]})")
    if np.isnan(sim).any():
        raise ValueError("similarity holds NaN")
    correct = sim[np.arange(len(index)), index]
    return (sim >= correct[:, None]).sum(axis=1)


def retrieval_metrics(
    similarity: npt.ArrayLike, gt_index: npt.ArrayLike, ks: Sequence[int] = (1, 5, 10, 50)
) -> dict[str, float]:
    """Recall at rank k and rank statistics of the correct candidates.

    Returns:
        ``R@k``: fraction of queries whose correct candidate ranks k or better (1-based);
        ``median_rank`` and ``mean_rank`` of the correct candidates (1 is best).
    """
    ranks = ranks_of(similarity, gt_index)
    if not len(ranks):
        raise ValueError("no queries to rank")
    out = {f"R@{k}": float((ranks <= k).mean()) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = float(ranks.mean())
    return out
