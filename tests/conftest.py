"""Shared fixtures: the reference data beside the project, skipping cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared/data from the project root (SYNTHBENCH_SHARED_DATA overrides it).
SHARED_DATA = Path(
    os.environ.get("SYNTHBENCH_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"reference data {path} is absent (only present beside the project checkout)")
    return path


@pytest.fixture(scope="session")
def aid6_root() -> Path:
    """../shared/data/aid6: six real AID aerial-scene classes (skip when absent)."""
    return _shared("aid6")


@pytest.fixture(scope="session")
def xbd_sample_root() -> Path:
    """../shared/data/xbd-sample: three real xBD tier3 pre/post tile pairs (skip when absent)."""
    return _shared("xbd-sample")
