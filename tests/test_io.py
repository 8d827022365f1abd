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


# ----------------------------------------------------------------------------------------------
# Recovery: temporary files of killed writers are removed on the next start, live ones kept
# ----------------------------------------------------------------------------------------------

_KILLED_WRITER = """
import os, signal, sys, tempfile
from pathlib import Path
from benchmark.io import _temp_prefix
target = Path(sys.argv[1])
fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target), suffix=".tmp")
os.write(fd, b'{"half": ')
print(tmp, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write: no cleanup runs
"""


def _killed_writer_leftover(target) -> "os.PathLike":
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == -9, done.stderr
    leftover = Path(done.stdout.strip())
    assert leftover.is_file() and leftover.name.startswith(f".{target.name}.") and leftover.name.endswith(".tmp")
    return leftover


def test_a_killed_writers_temporary_record_is_removed_by_the_next_write(tmp_path):
    record = tmp_path / "record.json"
    leftover = _killed_writer_leftover(record)
    atomic_write_json(record, {"a": 1})
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_live_and_foreign_temporary_files_are_kept_until_stale(tmp_path):
    import subprocess
    import sys
    import time

    from benchmark.io import FOREIGN_TEMP_AGE_S, _host_tag, _temp_prefix, remove_stale_temp_files

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        target = tmp_path / "record.json"
        mine = tmp_path / f"{_temp_prefix(target)}abc.tmp"  # this process: a write in progress
        live = tmp_path / f".record.json.{_host_tag()}-{sleeper.pid}.abc.tmp"  # another live process's
        foreign = tmp_path / ".record.json.other-host-1.abc.tmp"
        old_foreign = tmp_path / ".record.json.other-host-2.abc.tmp"
        unrelated = tmp_path / ".notes.txt"
        for path in (mine, live, foreign, old_foreign, unrelated):
            path.write_text("x")
        stale = time.time() - FOREIGN_TEMP_AGE_S - 60
        os.utime(old_foreign, (stale, stale))
        removed = remove_stale_temp_files(tmp_path)
        assert removed == [old_foreign]
        assert all(p.exists() for p in (mine, live, foreign, unrelated))
        sleeper.kill()
        sleeper.wait()
        assert remove_stale_temp_files(tmp_path) == [live]  # its writer is gone now
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_feature_cache_removes_killed_writers_shard_temporaries(tmp_path):
    import numpy as np

    from benchmark.backbones import TINY_CONFIGS, load_backbone
    from benchmark.features import FeatureCache
    from benchmark.images import ImageRef, encode_png
    from benchmark.io import sha256_bytes
    from PIL import Image

    backbone = load_backbone("efficientnet-lite0", random_init_config=TINY_CONFIGS["efficientnet-lite0"], image_size=32)
    cache = FeatureCache(tmp_path)
    folder = cache.directory(backbone)
    folder.mkdir(parents=True)
    leftover = _killed_writer_leftover(folder / "shard-0123.safetensors")
    rng = np.random.default_rng(0)
    data = [encode_png(Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))) for _ in range(3)]
    cache.features(backbone, [ImageRef(sha256_bytes(d), d) for d in data], progress=False)
    assert not leftover.exists()
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
