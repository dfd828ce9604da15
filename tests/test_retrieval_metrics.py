"""Retrieval metrics on hand-made similarity matrices: both directions, both rank conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from higround.metrics import (
    format_hse,
    paragraph_video_metrics,
    rank_metrics,
    ranks_of,
    ranks_of_any,
    retrieval_metrics,
)

# Paragraphs x videos; paragraph i belongs to video i.
S = np.array(
    [
        [0.9, 0.1, 0.2, 0.3],
        [0.8, 0.5, 0.1, 0.2],
        [0.7, 0.6, 0.4, 0.0],
        [0.5, 0.4, 0.35, 0.3],
    ]
)
# p2v (rows): 0.9 is the row's best -> 1; 0.5 behind 0.8 -> 2; 0.4 behind 0.7, 0.6 -> 3; 0.3 last -> 4.
P2V_RANKS = [1, 2, 3, 4]
# v2p (columns): 0.9 best -> 1; 0.5 behind 0.6 -> 2; 0.4 best -> 1; 0.3 ties paragraph 0's 0.3 -> 2.
V2P_RANKS = [1, 2, 1, 2]


def test_ranks_of_both_directions() -> None:
    assert ranks_of(S).tolist() == P2V_RANKS
    assert ranks_of(S.T).tolist() == V2P_RANKS
    assert ranks_of(np.eye(3)).tolist() == [1, 1, 1]


def test_higround_convention_both_directions() -> None:
    metrics = paragraph_video_metrics(S)
    assert metrics == pytest.approx(
        {
            # ranks 1, 2, 3, 4: median (2 + 3) / 2 = 2.5, mean 10 / 4 = 2.5.
            "p2v/R@1": 0.25,
            "p2v/R@5": 1.0,
            "p2v/R@10": 1.0,
            "p2v/R@50": 1.0,
            "p2v/median_rank": 2.5,
            "p2v/mean_rank": 2.5,
            # ranks 1, 2, 1, 2: median 1.5, mean 1.5.
            "v2p/R@1": 0.5,
            "v2p/R@5": 1.0,
            "v2p/R@10": 1.0,
            "v2p/R@50": 1.0,
            "v2p/median_rank": 1.5,
            "v2p/mean_rank": 1.5,
        }
    )
    assert metrics["p2v/R@1"] == retrieval_metrics(S)["R@1"]


def test_hse_convention_both_directions() -> None:
    metrics = paragraph_video_metrics(S, convention="hse")
    assert metrics == pytest.approx(
        {
            # 0-based ranks 0, 1, 2, 3: medr = floor(median 1.5) + 1 = 2, meanr = 1.5 + 1 = 2.5.
            "p2v/r1": 25.0,
            "p2v/r5": 100.0,
            "p2v/r10": 100.0,
            "p2v/medr": 2.0,
            "p2v/meanr": 2.5,
            "p2v/sum": 225.0,
            # 0-based ranks 0, 1, 0, 1: medr = floor(0.5) + 1 = 1, meanr = 0.5 + 1 = 1.5.
            "v2p/r1": 50.0,
            "v2p/r5": 100.0,
            "v2p/r10": 100.0,
            "v2p/medr": 1.0,
            "v2p/meanr": 1.5,
            "v2p/sum": 250.0,
            "rsum": 475.0,
        }
    )
    assert format_hse(metrics) == (
        "Video to Paragraph: 50.0, 100.0, 100.0, 1.0, 1.5\n"
        "Paragraph to Video: 25.0, 100.0, 100.0, 2.0, 2.5\n"
        "Currscore: 475.0"
    )


def test_identity_is_perfect_in_both_conventions() -> None:
    assert retrieval_metrics(np.eye(3)) == {
        "R@1": 1.0,
        "R@5": 1.0,
        "R@10": 1.0,
        "R@50": 1.0,
        "median_rank": 1.0,
        "mean_rank": 1.0,
    }
    hse = retrieval_metrics(np.eye(3), convention="hse")
    assert hse == {"r1": 100.0, "r5": 100.0, "r10": 100.0, "medr": 1.0, "meanr": 1.0, "sum": 300.0}


def test_hse_r10_is_recall_at_50() -> None:
    # One query, 60 candidates scoring 0, -1, ..., -59: candidate k ranks k + 1.
    row = -np.arange(60.0)[None, :]
    at_50 = retrieval_metrics(row, [49])  # rank 50
    assert at_50["R@10"] == 0.0 and at_50["R@50"] == 1.0 and at_50["median_rank"] == 50.0
    hse_50 = retrieval_metrics(row, [49], convention="hse")  # 0-based 49 < 50
    assert hse_50 == {"r1": 0.0, "r5": 0.0, "r10": 100.0, "medr": 50.0, "meanr": 50.0, "sum": 100.0}
    hse_51 = retrieval_metrics(row, [50], convention="hse")  # 0-based 50: not < 50
    assert hse_51["r10"] == 0.0 and hse_51["medr"] == 51.0


def test_median_rules_differ_on_an_even_count() -> None:
    ranks = [1, 2, 3, 4]
    assert rank_metrics(ranks)["median_rank"] == 2.5  # np.median of 1-based ranks
    assert rank_metrics(ranks, convention="hse")["medr"] == 2.0  # floor(1.5) + 1
    assert rank_metrics([1, 2, 4], convention="hse")["medr"] == 2.0 == rank_metrics([1, 2, 4])["median_rank"]


def test_ties_count_against_the_query() -> None:
    # Constant scores: every correct candidate ties all 3 -> rank 3 (never 1).
    assert ranks_of(np.ones((3, 3))).tolist() == [3, 3, 3]
    constant = retrieval_metrics(np.ones((3, 3)), convention="hse")
    assert constant["r1"] == 0.0 and constant["medr"] == 3.0 and constant["meanr"] == 3.0
    # A tie with one other candidate costs one place; a strictly lower one costs nothing.
    assert ranks_of([[0.5, 0.5, 0.1]], [0]).tolist() == [2]
    assert ranks_of([[0.5, 0.4, 0.1]], [0]).tolist() == [1]


def test_non_square_with_explicit_index() -> None:
    # Two queries over five candidates: query 0's is candidate 3 (behind 0.9, 0.8 -> 3), query 1's is
    # candidate 0 (best -> 1).
    sim = [[0.1, 0.9, 0.8, 0.7, 0.0], [0.6, 0.2, 0.3, 0.4, 0.5]]
    metrics = retrieval_metrics(sim, [3, 0], ks=(1, 3))
    assert metrics == pytest.approx({"R@1": 0.5, "R@3": 1.0, "median_rank": 2.0, "mean_rank": 2.0})
    with pytest.raises(ValueError, match="needs gt_index"):
        retrieval_metrics(sim)


def test_several_paragraphs_per_video() -> None:
    # Paragraphs 0 and 1 belong to video 0, paragraph 2 to video 1; video 2 has none.
    sim = np.array([[0.3, 0.2, 0.95], [0.4, 0.5, 0.1], [0.5, 0.6, 0.2]])
    video_of = np.array([0, 0, 1])
    # p2v: 0.3 behind 0.95 -> 2; 0.4 behind 0.5 -> 2; 0.6 best -> 1.
    assert ranks_of(sim, video_of).tolist() == [2, 2, 1]
    # v2p: video 0's best paragraph (1, 0.4) is behind paragraph 2's 0.5 -> 2 (paragraph 0's 0.3 is
    # its own, not a wrong one); video 1's (2, 0.6) is best -> 1; video 2 is not a query.
    positive = np.array([[True, True, False], [False, False, True]])
    assert ranks_of_any(sim.T[:2], positive).tolist() == [2, 1]
    metrics = paragraph_video_metrics(sim, video_of, ks=(1,))
    assert metrics == pytest.approx(
        {
            "p2v/R@1": 1 / 3,
            "p2v/median_rank": 2.0,
            "p2v/mean_rank": 5 / 3,
            "v2p/R@1": 0.5,
            "v2p/median_rank": 1.5,
            "v2p/mean_rank": 1.5,
        }
    )


def test_matches_the_argsort_position_without_ties_and_is_invariant() -> None:
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((40, 70)).astype(np.float32)
    gt = rng.integers(0, 70, 40)
    # CMHSE's rank: the position of the correct candidate in the descending argsort, 0-based.
    position = np.argmax(np.argsort(sim, axis=1)[:, ::-1] == gt[:, None], axis=1)
    ranks = ranks_of(sim, gt)
    assert ranks.tolist() == (position + 1).tolist()
    # Reordering the candidates (and the indices with them), or a monotone rescaling, changes nothing.
    perm = rng.permutation(70)
    assert ranks_of(sim[:, perm], np.argsort(perm)[gt]).tolist() == ranks.tolist()
    assert ranks_of(3 * sim + 1, gt).tolist() == ranks.tolist()
    # A CPU torch tensor is accepted as is.
    assert ranks_of(torch.from_numpy(sim), torch.from_numpy(gt)).tolist() == ranks.tolist()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ranks_of([[np.nan, 1.0]], [0]), "NaN"),
        (lambda: ranks_of([[0.1, 1.0]], [2]), r"\[0, 2\)"),
        (lambda: ranks_of([0.1, 1.0]), "queries, candidates"),
        (lambda: retrieval_metrics(S, ks=(1, 50), convention="hse"), "pass no ks"),
        (lambda: retrieval_metrics(S, ks=(0,)), "ks must be"),
        (lambda: retrieval_metrics(S, convention="cmhse"), "unknown rank convention"),  # type: ignore[arg-type]
        (lambda: ranks_of_any(S, np.zeros((4, 4), bool)), "at least one"),
        (lambda: rank_metrics([0, 1]), "1-based"),
        (lambda: rank_metrics([]), "non-empty"),
    ],
)
def test_mistakes_are_named(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
