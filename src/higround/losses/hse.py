"""HSE's objectives (CMHSE ``loss.py``, ``decoder/loss.py``, ``model.py`` ``train_emb``), H-1 ... H-7.

The main paper's equation numbers are not in our material; the terms are numbered as in
docs/hse.md and spec §3 and tied to the supplement's names ("low-match", "low-cluster",
"high-cluster", "reconstruction", tau):

* ``VSE_a(A, B)`` (:func:`vse_hinge`, VSE++'s sum of hinges without hard-negative mining): for
  row-aligned L2-normalised ``A, B`` (``N x D``) and ``S = A B^T``,
  ``sum_k sum_{l != k} [a - S_kk + S_kl]_+ + [a - S_kk + S_lk]_+``, divided by ``N^2`` (CMHSE
  ``--norm``), by ``N`` (the supplement: "normalized by its batch size") or not at all.
* H-1 match ``VSE(v, p)``; H-2 context match ``VSE(v_ctx, p_ctx)``; H-3 high cluster
  ``(VSE(v, v) + VSE(p, p)) / 2``; H-4 low match ``VSE(c, s)`` over all ``M`` clips and sentences of
  the batch (clip ``k``'s positive is its own sentence; the other clips of its video are
  negatives); H-5 low cluster ``(VSE(c, c) + VSE(s, s)) / 2`` (hats: L2-normalised).
* H-6 reconstruction (weight tau = 5e-4): the mean L2 distance of the decoded clips / sentences to
  the (detached, unnormalised) clip / sentence embeddings, clips plus sentences (CMHSE
  ``EuclideanLoss``: not squared); H-7 (weight tau_low = 1e-4): the same for the decoded frames
  and word vectors.

Every function runs on whole batches; margin 0.2 everywhere (supp. §1).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.models.hse.config import HSEConfig
from higround.models.hse.model import HSEOutput

MARGIN = 0.2


def _divisor(rows: int, columns: int, norm: str) -> float:
    if norm == "n_squared":
        return float(rows * columns)
    if norm == "n":
        return float(rows)
    if norm == "none":
        return 1.0
    raise ValueError(f"norm must be n_squared, n or none, got {norm!r}")


def vse_hinge(a: Tensor, b: Tensor, margin: float = MARGIN, norm: str = "n_squared") -> Tensor:
    """VSE++'s bidirectional sum of hinges over the in-batch negatives (CMHSE ``ContrastiveLoss``,
    ``max_violation=False``).

    Args:
        a: ``(N, D)`` L2-normalised, row ``k`` matched with ``b[k]``.
        b: ``(N, D)`` L2-normalised.
        margin: ``alpha``.
        norm: ``n_squared`` (divide by ``N * N``), ``n`` (by ``N``) or ``none``.

    Returns:
        The scalar loss.

    Raises:
        ValueError: ``a`` and ``b`` have other shapes, or an unknown ``norm``.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"vse_hinge: a {tuple(a.shape)} and b {tuple(b.shape)} must be equal (N, D)")
    scores = a @ b.T
    diagonal = scores.diagonal()
    off = ~torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    cost_b = (margin + scores - diagonal[:, None]).clamp(min=0)  # a_k ranks every b_l
    cost_a = (margin + scores - diagonal[None, :]).clamp(min=0)  # b_l ranks every a_k
    total = (cost_b * off).sum() + (cost_a * off).sum()
    return total / _divisor(len(a), len(b), norm)


def cluster_hinge(x: Tensor, y: Tensor, margin: float = MARGIN, norm: str = "n_squared") -> Tensor:
    """The cluster loss of two modalities, ``(VSE(x, x) + VSE(y, y)) / 2`` (H-3, H-5): it penalises two
    different items of one modality whose cosine exceeds ``1 - margin``.

    Args:
        x: ``(N, D)`` L2-normalised items of one modality (videos, clips).
        y: ``(N', D)`` L2-normalised items of the other (paragraphs, sentences).
        margin, norm: as :func:`vse_hinge`.
    """
    return (vse_hinge(x, x, margin, norm) + vse_hinge(y, y, margin, norm)) / 2


def euclidean_recon(recon: Tensor, target: Tensor, norm: str = "n_squared") -> Tensor:
    """Mean (``norm='none'``: sum) over rows of ``||recon - target||_2``, no gradient to ``target``
    (CMHSE ``EuclideanLoss`` on detached targets; H-6, H-7).

    Args:
        recon: ``(N, D)`` reconstructions.
        target: ``(N, D)`` what they reconstruct (detached here).
        norm: ``none`` sums, anything else averages.

    Raises:
        ValueError: the shapes differ.
    """
    if recon.shape != target.shape:
        raise ValueError(f"euclidean_recon: {tuple(recon.shape)} vs {tuple(target.shape)}")
    distance = (recon - target.detach()).norm(dim=-1)
    return distance.sum() if norm == "none" else distance.mean()


class HSELoss(nn.Module):
    """The terms of :meth:`HSEConfig.terms` and their weighted sum ``"total"`` (H-8)."""

    def __init__(self, config: HSEConfig) -> None:
        """Weights, switches, margin and normalisation of ``config``."""
        super().__init__()
        self.config = config

    def forward(self, output: HSEOutput, batch: ParagraphBatch) -> dict[str, Tensor]:
        """Every switched-on term (unweighted) and ``"total"``, the weighted sum.

        Raises:
            ValueError: the output lacks what a term needs (a side, or training-mode decoders).
        """
        del batch  # everything is in the output, row-aligned
        config = self.config
        margin, norm = config.margin, config.norm

        def need(name: str) -> Tensor:
            value = getattr(output, name)
            if value is None:
                raise ValueError(f"hse loss: the output has no {name} (both sides, training mode)")
            return cast(Tensor, value)

        def unit(name: str) -> Tensor:
            return F.normalize(need(name), dim=-1)

        def rec(recon: str, target: str) -> Tensor:
            return euclidean_recon(need(recon), need(target), norm)

        # term -> how it is computed from the output (H-1 ... H-7)
        compute = {
            "match": lambda: vse_hinge(unit("videos"), unit("paragraphs"), margin, norm),
            "context_match": lambda: vse_hinge(
                unit("video_context"), unit("paragraph_context"), margin, norm
            ),
            "high_cluster": lambda: cluster_hinge(unit("videos"), unit("paragraphs"), margin, norm),
            "low_match": lambda: vse_hinge(unit("clips"), unit("sentences"), margin, norm),
            "low_cluster": lambda: cluster_hinge(unit("clips"), unit("sentences"), margin, norm),
            "reconstruction": lambda: rec("clip_recon", "clips") + rec("sentence_recon", "sentences"),
            "reconstruction_low": lambda: (
                rec("frame_recon", "frame_target") + rec("word_recon", "word_target")
            ),
        }
        terms = {term: compute[term]() for term in config.terms()}
        terms["total"] = torch.stack([config.weight(k) * v for k, v in terms.items()]).sum()
        return terms
