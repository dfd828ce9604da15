"""Timeline pictures of grounding results, in the spirit of Figures 3, 4 and S1 of HSCNet.

A picture is a stack of panels, one per paragraph (or video). A panel has an optional strip of
video thumbnails along its time axis and one row per sentence-level result: ground truth, final
predictions, sentence-level predictions, word-level spans, each kind in its own colour::

    panel = TimelinePanel("v_abc", 120.0, [TimelineRow("S1 gt", [(3.0, 20.5)], "gt", "a man ...")])
    save_timeline([panel], "timeline.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here or on servers; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np

from higround.errors import ConfigError
from higround.io import atomic_write_bytes

__all__ = ["KIND_COLOURS", "TimelinePanel", "TimelineRow", "save_timeline"]

# Colour-blind-safe palette (Okabe-Ito).
KIND_COLOURS = {
    "gt": "#009E73",
    "final": "#D55E00",
    "sentence": "#0072B2",
    "word": "#CC79A7",
    "paragraph": "#E69F00",
    "pred": "#56B4E9",
}
_ROW_HEIGHT_IN = 0.32
_STRIP_HEIGHT_IN = 0.9
_TITLE_HEIGHT_IN = 0.45


@dataclass(frozen=True)
class TimelineRow:
    """One row of bars: a label on the left, one bar per span (seconds), optional text."""

    label: str
    spans: Sequence[tuple[float, float]]
    kind: str = "pred"
    text: str = ""


@dataclass(frozen=True)
class TimelinePanel:
    """One video's rows on a shared time axis ``[0, duration]``, thumbnails above them."""

    title: str
    duration: float
    rows: Sequence[TimelineRow]
    thumbnails: Sequence[tuple[float, np.ndarray]] = ()


def _check(panel: TimelinePanel) -> None:
    if not np.isfinite(panel.duration) or panel.duration <= 0:
        raise ConfigError(f"timeline panel {panel.title!r}: duration must be > 0, got {panel.duration}")
    for row in panel.rows:
        if row.kind not in KIND_COLOURS:
            raise ConfigError(
                f"timeline panel {panel.title!r}, row {row.label!r}: unknown kind {row.kind!r}; "
                f"expected one of {sorted(KIND_COLOURS)}"
            )


def _draw_thumbnails(ax: plt.Axes, panel: TimelinePanel) -> None:
    # Each thumbnail is centred on its time and keeps its aspect ratio in data units.
    height = 1.0
    for time, image in panel.thumbnails:
        h, w = image.shape[:2]
        width = panel.duration / max(len(panel.thumbnails), 1)
        width = min(width, height * w / h * panel.duration / 8.0)
        left = float(np.clip(time - width / 2, 0.0, panel.duration - width))
        ax.imshow(image, extent=(left, left + width, 0.0, height), aspect="auto")
    ax.set_xlim(0, panel.duration)
    ax.set_ylim(0, height)
    ax.axis("off")


def _draw_rows(ax: plt.Axes, panel: TimelinePanel) -> None:
    n = len(panel.rows)
    for i, row in enumerate(panel.rows):
        y = n - 1 - i  # first row on top
        bars = [(s, max(e - s, panel.duration * 2e-3)) for s, e in row.spans]
        ax.broken_barh(bars, (y - 0.35, 0.7), color=KIND_COLOURS[row.kind], alpha=0.85)
        if row.text:
            start = min((s for s, _ in row.spans), default=0.0)
            ax.text(start, y, f" {row.text}", va="center", ha="left", fontsize=7, clip_on=True)
    ax.set_yticks(range(n), [row.label for row in reversed(panel.rows)], fontsize=7)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(0, panel.duration)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("time (s)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)


def save_timeline(panels: Sequence[TimelinePanel], path: str | Path, *, dpi: int = 120) -> Path:
    """Draw ``panels`` one under another and write the PNG atomically; returns the path."""
    if not panels:
        raise ConfigError("save_timeline: no panels to draw")
    for panel in panels:
        _check(panel)
    heights: list[float] = []
    for panel in panels:
        if panel.thumbnails:
            heights.append(_STRIP_HEIGHT_IN)
        heights.append(_TITLE_HEIGHT_IN + _ROW_HEIGHT_IN * max(len(panel.rows), 1))
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(10, sum(heights) + 0.5), height_ratios=heights, squeeze=False
    )
    k = 0
    for panel in panels:
        if panel.thumbnails:
            _draw_thumbnails(axes[k, 0], panel)
            axes[k, 0].set_title(panel.title, fontsize=9, loc="left")
            k += 1
        else:
            axes[k, 0].set_title(panel.title, fontsize=9, loc="left")
        _draw_rows(axes[k, 0], panel)
        k += 1
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOURS.values()]
    used = {row.kind for panel in panels for row in panel.rows}
    legend = [(h, k_) for h, k_ in zip(handles, KIND_COLOURS, strict=True) if k_ in used]
    if legend:
        fig.legend(*zip(*legend, strict=True), loc="upper right", fontsize=7, ncol=len(legend))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write_bytes(Path(path), buffer.getvalue())
