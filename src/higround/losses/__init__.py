"""Training losses: span regression, HSCNet's alignment and weak word losses, and its total objective."""

from higround.losses.alignment import alignment_loss, clip_positives, paragraph_alignment_loss, word_positives
from higround.losses.hscnet import HSCNetLoss
from higround.losses.shine import ShineConfig, coarse_ranking_loss, fine_ranking_loss, negative_pair_loss
from higround.losses.span import giou_loss, hull_span, l1_loss, span_giou
from higround.losses.weak_word import word_subset_loss, word_union_loss

__all__ = [
    "HSCNetLoss",
    "ShineConfig",
    "alignment_loss",
    "clip_positives",
    "coarse_ranking_loss",
    "fine_ranking_loss",
    "giou_loss",
    "hull_span",
    "l1_loss",
    "negative_pair_loss",
    "paragraph_alignment_loss",
    "span_giou",
    "word_positives",
    "word_subset_loss",
    "word_union_loss",
]
