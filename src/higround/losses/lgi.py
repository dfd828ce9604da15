"""LGI's training objective (Mun et al., CVPR 2020, 3.5; official ``TGRegressionCriterion``,
``TAGLoss`` and ``DQALoss``): boundary regression, temporal attention guidance, distinct query
attention, as tensor functions and the :class:`LGILoss` module that weighs them with the terms of the
optional Sscs branch (Ding et al., ICCV 2021, eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.losses.span import masked_mean
from higround.models.lgi.config import LGIConfig
from higround.models.lgi.model import LGIOutput

# Added to the attention inside the log of the TAG loss (official TAGLoss).
TAG_EPS = 1e-8


def boundary_loss(boundaries: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """``SmoothL1(t^_s, t_s) + SmoothL1(t^_e, t_e)`` (beta 1), each averaged over the rows where ``mask``.

    Args:
        boundaries: ``(B, 2)`` regressed ``(t^_s, t^_e)``.
        targets: ``(B, 2)`` normalised ground truth.
        mask: ``(B,)`` rows that count.
    """
    per_row = F.smooth_l1_loss(boundaries, targets, reduction="none").sum(dim=-1)
    return masked_mean(per_row, mask)


def guided_clips(spans: Tensor, video_mask: Tensor) -> Tensor:
    """``(B, T)`` the ground-truth clips ``g`` of the TAG loss, at clip resolution.

    The official rule (``utils.timestamp_to_featstamp`` and ``CharadesDataset.generate_labels``),
    with ``T_b`` the real clips of row ``b``: ``s = min(round(t_s T_b), T_b - 1)``,
    ``e = max(round(t_e T_b), s + 1)``, clips ``s..e`` inclusive; clips past ``T_b`` never count
    (the official mask can reach one padded clip, whose attention is 0, adding ``-log 1e-8``).
    Rounding is half to even, as Python's ``round``. Every row with a real clip has a guided clip.

    Args:
        spans: ``(B, 2)`` normalised ground-truth spans.
        video_mask: ``(B, T)`` real clips (a prefix of each row).
    """
    clips = video_mask.sum(dim=1, keepdim=True).to(spans.dtype)  # (B, 1)
    start = torch.minimum(torch.round(spans[:, :1] * clips), clips - 1)
    end = torch.maximum(torch.round(spans[:, 1:] * clips), start + 1)
    index = torch.arange(video_mask.shape[1], device=spans.device, dtype=spans.dtype)[None]
    return (index >= start) & (index <= end) & video_mask


def temporal_attention_guidance_loss(attention: Tensor, guided: Tensor, mask: Tensor) -> Tensor:
    """``L_tag = -sum_t g_t log(a_t + 1e-8) / sum_t g_t``, averaged over the rows where ``mask``.

    Args:
        attention: ``(B, T)`` the regression's temporal attention ``a``.
        guided: ``(B, T)`` bool ``g`` (see :func:`guided_clips`).
        mask: ``(B,)`` rows that count.
    """
    g = guided.to(attention.dtype)
    per_row = -(g * torch.log(attention + TAG_EPS)).sum(dim=1) / g.sum(dim=1).clamp_min(1.0)
    return masked_mean(per_row, mask & guided.any(dim=1))


def distinct_query_attention_loss(attention: Tensor, lam: float, mask: Tensor) -> Tensor:
    """``L_dqa = ||A A^T - lambda I||_F^2``, averaged over the rows where ``mask``.

    Args:
        attention: ``(B, N, L)`` the phrases' word attentions ``A`` (0 on padded words, so padding
            does not change ``A A^T``).
        lam: ``lambda``.
        mask: ``(B,)`` rows that count.
    """
    gram = attention @ attention.transpose(1, 2)  # (B, N, N)
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    return masked_mean((gram - lam * eye).square().sum(dim=(1, 2)), mask)


class LGILoss(nn.Module):
    """``boundary + w_tag L_tag + w_dqa L_dqa`` (official weights 1 and 1), plus the Sscs terms.

    Terms: ``"boundary"`` (SmoothL1 on start and end), ``"tag"`` (when
    ``temporal_attention_guidance``), ``"dqa"`` (when ``distinct_query_attention``), the Sscs terms
    the model put in its output (``"sscs_contrast"``, ``"sscs_caption"``: training only, with an
    ``sscs`` section; weighted by Sscs's lambda_1 and lambda_2), and ``"total"``, their sum weighted
    by ``config.loss_weights``. A batch row is one sentence (the sentence unit); rows whose sentence
    is padding (``sentence_mask`` False) never count. In eval mode the output holds no Sscs term,
    so ``total`` (the validation loss) is LGI's own.
    """

    def __init__(self, config: LGIConfig) -> None:
        """The objective of the model built from ``config``."""
        super().__init__()
        self.config = config

    def forward(self, output: LGIOutput, batch: ParagraphBatch) -> dict[str, Tensor]:
        """Every active term (unweighted) and ``"total"``, their weighted sum."""
        config = self.config
        if batch.spans.shape[1] != 1:
            raise ConfigError(f"lgi loss: one sentence per row expected, got {batch.spans.shape[1]}")
        spans, rows = batch.spans[:, 0], batch.sentence_mask[:, 0]
        terms = {"boundary": boundary_loss(output.boundaries, spans, rows)}
        if config.temporal_attention_guidance:
            guided = guided_clips(spans, batch.video_mask)
            terms["tag"] = temporal_attention_guidance_loss(output.temporal_attention, guided, rows)
        if config.distinct_query_attention:
            if output.phrase_attention is None:
                raise ConfigError(
                    "lgi loss: the model output has no phrase attention; model and loss configs differ"
                )
            terms["dqa"] = distinct_query_attention_loss(output.phrase_attention, config.dqa_lambda, rows)
        terms.update(output.sscs)
        total = sum((config.weight(name) * value for name, value in terms.items()), spans.new_zeros(()))
        return {**terms, "total": total}
