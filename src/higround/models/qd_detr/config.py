"""Every QD-DETR hyper-parameter, serialisable for checkpoints (defaults: the official QVHighlights
recipe, wjun0830/QD-DETR ``qd_detr/config.py`` and ``transformer.py``; docs/detr.md cites every one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from higround.errors import ConfigError
from higround.losses.shine import LOSS_TERMS as SHINE_TERMS
from higround.losses.shine import NEGATIVE_TERM, OTHER_VIDEO, ROLL
from higround.models.detr import DEFAULT_WEIGHTS, DETRConfig

# The two forms of the rank-contrastive loss (:func:`higround.losses.detr.rank_contrastive_loss`):
# the released code's mean log-probability of the positives, and S-Eq. 5's log of their summed
# probability (equal with one positive per rank).
MEAN_LOG = "mean_log"
LOG_SUM = "log_sum"
CONTRASTIVE_FORMS = (MEAN_LOG, LOG_SUM)
# Names of the loss terms of :class:`higround.losses.detr.QDDETRLoss` (besides "total"): the base's,
# then SHINE's two ranking terms (returned in training with a ``shine`` section).
LOSS_TERMS = (*DEFAULT_WEIGHTS, NEGATIVE_TERM, "saliency_contrast", *SHINE_TERMS)


@dataclass
class QDDETRConfig(DETRConfig):
    """QD-DETR (Moon et al., CVPR 2023): the fields of :class:`DETRConfig` and its own; official
    names in brackets.

    Attributes:
        activation: of every feed-forward block [``build_transformer``: ``activation='prelu'``].
        contrastive_tau: temperature of the rank-contrastive loss [``tau = 0.5``].
        contrastive_form: ``mean_log`` (the released code) or ``log_sum`` (S-Eq. 5 as printed).
        modulate_width: the width-modulated cross-attention of the anchor decoder, the sine query
            scaled by ``sigmoid(MLP(state)) / w_ref`` [modulate_t_attn: true].
        negative_other_video: the negative query of row ``i`` comes from the next row of *another*
            video (SHINE spec open point 7) instead of row ``i + 1`` (the release's batch roll).
            With SHINE this pass is SHINE's easy negative: ``shine.easy_negative`` must agree
            (``other_video`` with true, ``roll`` with false).
    """

    LABEL: ClassVar[str] = "qd_detr config"
    LOSS_TERMS: ClassVar[tuple[str, ...]] = LOSS_TERMS

    activation: str = "prelu"
    contrastive_tau: float = 0.5
    contrastive_form: str = MEAN_LOG
    modulate_width: bool = True
    negative_other_video: bool = False

    def __post_init__(self) -> None:
        """Check ranges; a bad value raises ConfigError naming the field."""
        super().__post_init__()
        if not self.contrastive_tau > 0:
            raise ConfigError(f"{self.LABEL}: contrastive_tau must be > 0, got {self.contrastive_tau}")
        if self.contrastive_form not in CONTRASTIVE_FORMS:
            raise ConfigError(
                f"{self.LABEL}: contrastive_form must be one of {list(CONTRASTIVE_FORMS)}, "
                f"got {self.contrastive_form!r}"
            )
        shine = self.shine_config
        if shine is not None and shine.easy_negative != self.easy_negative:
            raise ConfigError(
                f"{self.LABEL}: QD-DETR's negative pass is SHINE's easy negative: shine.easy_negative="
                f"{shine.easy_negative!r} needs negative_other_video={shine.easy_negative == OTHER_VIDEO} "
                f"(got {self.negative_other_video})"
            )

    @property
    def easy_negative(self) -> str:
        """How the negative pass picks each row's query: ``other_video`` with ``negative_other_video``,
        else the batch roll."""
        return OTHER_VIDEO if self.negative_other_video else ROLL
