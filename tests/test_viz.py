"""The timeline picture: bars land where their spans say, thumbnails draw, bad input is named."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from higround.errors import ConfigError
from higround.viz.timeline import KIND_COLOURS, TimelinePanel, TimelineRow, save_timeline


def _colour_columns(png: Path, hex_colour: str) -> np.ndarray:
    """Columns of the picture holding pixels of ``hex_colour`` (alpha-blended bars are close)."""
    image = mpimg.imread(png)[..., :3]
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    close = np.abs(image - (0.85 * rgb + 0.15)).max(axis=-1) < 0.04
    return np.flatnonzero(close.any(axis=0))


def test_bar_sits_at_its_span(tmp_path: Path) -> None:
    row = TimelineRow("S1", [(50.0, 100.0)], "gt", "a man runs")
    path = save_timeline([TimelinePanel("v", 100.0, [row])], tmp_path / "t.png")
    cols = _colour_columns(path, KIND_COLOURS["gt"])
    width = mpimg.imread(path).shape[1]
    assert cols.size > 0
    # The bar covers the right half of the axis: it starts past the middle of the picture and
    # reaches its right part; the axis spans most of the width.
    assert 0.45 * width < cols.min() < 0.65 * width
    assert cols.max() > 0.85 * width
    assert not list(tmp_path.glob(".*tmp"))  # written through a temp file, nothing left behind


def test_thumbnails_and_several_panels(tmp_path: Path) -> None:
    frame = np.zeros((32, 48, 3), np.uint8)
    frame[..., 0] = 255
    panels = [
        TimelinePanel(
            "video",
            20.0,
            [TimelineRow("S1", [(1.0, 5.0)], "final"), TimelineRow("S1 w", [(2.0, 3.0)], "word", "cut")],
            thumbnails=[(t, frame) for t in (2.0, 10.0, 18.0)],
        ),
        TimelinePanel("second", 10.0, [TimelineRow("S1", [(0.0, 10.0)], "sentence")]),
    ]
    path = save_timeline(panels, tmp_path / "many.png")
    image = mpimg.imread(path)[..., :3]
    assert (np.abs(image - [1.0, 0.0, 0.0]).max(axis=-1) < 0.05).sum() > 100  # red thumbnails drawn


def test_bad_panels_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'v'.*duration"):
        save_timeline([TimelinePanel("v", 0.0, [])], tmp_path / "x.png")
    with pytest.raises(ConfigError, match=r"'S1'.*unknown kind 'blue'"):
        save_timeline([TimelinePanel("v", 5.0, [TimelineRow("S1", [(0, 1)], "blue")])], tmp_path / "x.png")
    with pytest.raises(ConfigError, match="no panels"):
        save_timeline([], tmp_path / "x.png")
