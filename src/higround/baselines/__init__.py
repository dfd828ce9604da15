"""Baselines every learned model is reported next to (``higround baseline``)."""

from higround.baselines.prior import FALLBACK_LEVELS, KEYED_BY, KeyedBy, PositionPrior, sentence_table

__all__ = ["FALLBACK_LEVELS", "KEYED_BY", "KeyedBy", "PositionPrior", "sentence_table"]
