"""Evaluation for every model: temporal IoU, grounding recall/mIoU, Rank n@m after NMS,
QVHighlights moment-retrieval mAP and highlight detection (HL mAP, HIT@1), retrieval recall, and the
predictions file format.

All metrics run on whole numpy arrays (padded with masks where queries differ in length) and return
fractions in [0, 1]; :func:`format_metrics` prints them in percent. Definitions, conventions and the
peers they follow are in docs/evaluation.md.
"""

from higround.metrics.grounding import (
    DEFAULT_THRESHOLDS,
    MR_THRESHOLDS,
    best_window_iou,
    check_thresholds,
    grounding_metrics,
    mean_iou,
    recall_at_iou,
    threshold_label,
    thresholds_for,
)
from higround.metrics.highlight import (
    HL_LEVELS,
    SaliencyInputs,
    highlight_metrics,
    saliency_average_precision,
    saliency_inputs,
)
from higround.metrics.iou import pairwise_temporal_iou, temporal_iou
from higround.metrics.moment_retrieval import (
    LENGTH_BUCKETS,
    MAX_PREDICTIONS,
    average_precision,
    moment_retrieval_metrics,
)
from higround.metrics.predictions import (
    FORMAT,
    PredictionRecord,
    Predictions,
    read_moment_detr,
    read_predictions,
    write_predictions,
)
from higround.metrics.ranking import RankedSpans, nms_keep, pad_ranked, rank_recall
from higround.metrics.retrieval import (
    RETRIEVAL_KS,
    RankConvention,
    format_hse,
    paragraph_video_metrics,
    rank_metrics,
    ranks_of,
    ranks_of_any,
    retrieval_metrics,
)
from higround.metrics.scoring import (
    Alignment,
    align_predictions,
    evaluate,
    format_metrics,
    score_alignment,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FORMAT",
    "HL_LEVELS",
    "LENGTH_BUCKETS",
    "MAX_PREDICTIONS",
    "MR_THRESHOLDS",
    "RETRIEVAL_KS",
    "Alignment",
    "PredictionRecord",
    "Predictions",
    "RankConvention",
    "RankedSpans",
    "SaliencyInputs",
    "align_predictions",
    "average_precision",
    "best_window_iou",
    "check_thresholds",
    "evaluate",
    "format_hse",
    "format_metrics",
    "grounding_metrics",
    "highlight_metrics",
    "mean_iou",
    "moment_retrieval_metrics",
    "nms_keep",
    "pad_ranked",
    "pairwise_temporal_iou",
    "paragraph_video_metrics",
    "rank_metrics",
    "rank_recall",
    "ranks_of",
    "ranks_of_any",
    "read_moment_detr",
    "read_predictions",
    "recall_at_iou",
    "retrieval_metrics",
    "saliency_average_precision",
    "saliency_inputs",
    "score_alignment",
    "temporal_iou",
    "threshold_label",
    "thresholds_for",
    "write_predictions",
]
