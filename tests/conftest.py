"""Shared fixtures: the real benchmark files in ``../shared/data`` beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; CI always has it beside the checkout."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real benchmark files not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA
