"""Atomic writes give files and folders the modes plain open()/mkdir() would (the umask's)."""

from __future__ import annotations

import os
import stat

import pytest

from benchmark.io import atomic_directory, atomic_write_json


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "record.json", {"a": 1})
        with atomic_directory(tmp_path / "site") as folder:
            atomic_write_json(folder / "leaderboard.json", {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "record.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "site").stat().st_mode) == dir_mode
    assert stat.S_IMODE((tmp_path / "site" / "leaderboard.json").stat().st_mode) == file_mode
