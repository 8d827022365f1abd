"""Shared fixtures of the benchmark suites: the reference data beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared/data beside the project (as in tests/conftest.py; SYNTHBENCH_SHARED_DATA overrides it).
SHARED_DATA = Path(os.environ.get("SYNTHBENCH_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="module")
def aid6_root() -> Path:
    path = SHARED_DATA / "aid6"
    if not path.is_dir():
        pytest.skip(f"reference data {path} is absent (only present beside the project checkout)")
    return path


@pytest.fixture(scope="module")
def setup_dir(tmp_path_factory) -> Path:
    """Where built tasks and submissions are kept: SYNTHBENCH_BENCH_RUN_SETUP, else a temporary folder."""
    kept = os.environ.get("SYNTHBENCH_BENCH_RUN_SETUP")
    return Path(kept) if kept else tmp_path_factory.mktemp("run-bench-setup")
