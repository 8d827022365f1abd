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


def test_overwrite_replaces_only_a_folder_of_its_own_kind(tmp_path):
    from benchmark.errors import SynthbenchError

    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(SynthbenchError, match="is not a task folder .no task.json in it.; refusing to replace"):
        with atomic_directory(mine, overwrite=True, replaces=("task.json", "a task folder")) as folder:
            (folder / "task.json").write_text("{}")
    assert (mine / "thesis.tex").read_text() == "years of work" and not (mine / "task.json").exists()
    # a folder of its own kind is replaced once the new one is complete
    task = tmp_path / "task"
    task.mkdir()
    (task / "task.json").write_text("old")
    with atomic_directory(task, overwrite=True, replaces=("task.json", "a task folder")) as folder:
        (folder / "task.json").write_text("new")
    assert (task / "task.json").read_text() == "new"


def test_library_generators_refuse_to_replace_a_users_folder(tmp_path):
    """The guard is in the library, not only in the CLI: Python callers are protected too."""
    from benchmark.errors import SynthbenchError
    from benchmark.generators.baselines import generate_baseline
    from benchmark.tasks import build_demo_task, load_task

    task = load_task(build_demo_task(tmp_path / "task", train_per_class=2, test_per_class=1, image_size=32))
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "notes.md").write_text("keep me")
    with pytest.raises(SynthbenchError, match="not a submission folder"):
        generate_baseline("duplicate", task, mine, multiplier=1, seed=0, overwrite=True)
    assert (mine / "notes.md").read_text() == "keep me"
