"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared/data beside the repository, or $IHCSEG_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("IHCSEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real nucleus data sets; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set IHCSEG_SHARED_DATA)")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    """Mark tests that use the real data so they can be selected with -m."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)
