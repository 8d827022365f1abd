"""Recovery without hands: `synthbench run` killed with SIGKILL at any point, then run again,
writes the same record as an uninterrupted run, and leaves no temporary file behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-leakage", "--device", "cpu", "--no-progress", "--settings", "real,synthetic@1,mixed@1", "--seeds", "2",
        "--image-size", "32"]


def _run(submission: Path, task: Path, out: Path, cache: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "benchmark.cli", "run", "--submission", str(submission), "--task", str(task),
               "--out", str(out), "--cache-dir", str(cache), *ARGS]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def comparable(record: dict) -> dict:
    """A record without what legitimately differs between two runs of it (timings, dates)."""
    runs = [{k: v for k, v in run.items() if k != "seconds"} for run in record["runs"]]
    for run in runs:
        run["params"] = {k: v for k, v in run["params"].items() if "second" not in k}
    return {**{k: v for k, v in record.items() if k not in ("provenance", "runs")}, "runs": runs}


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", ["features", "first-runs"])
def test_a_killed_run_reruns_to_the_uninterrupted_record(tmp_path, kill_after):
    from benchmark.generators.baselines import generate_baseline
    from benchmark.tasks import load_task
    from benchmark.tasks.demo import build_demo_task

    task = build_demo_task(tmp_path / "task", train_per_class=10, test_per_class=5, image_size=48)
    submission = generate_baseline("duplicate", load_task(task), tmp_path / "a" / "baseline__duplicate", multiplier=2, seed=0)
    other = tmp_path / "b" / "baseline__duplicate"
    shutil.copytree(submission, other)

    whole = _run(submission, task, tmp_path / "whole.json", tmp_path / "cache-a")
    assert whole.wait(timeout=600) == 0, whole.stderr.read()[-3000:]

    killed_out, cache = tmp_path / "out" / "record.json", tmp_path / "cache-b"
    victim = _run(other, task, killed_out, cache)
    # "features": as soon as the cache has its first shard; "first-runs": as soon as the record is
    # first written (the grid rewrites it after each setting, so later runs are still to come).
    # Polled rather than slept for: a fixed delay kills too late on a fast machine.
    written = (lambda: list(cache.rglob("index.json"))) if kill_after == "features" else killed_out.exists
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None and not written():
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    rerun = _run(other, task, killed_out, cache)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()[-3000:]
    assert comparable(json.loads(killed_out.read_text())) == comparable(json.loads((tmp_path / "whole.json").read_text()))
    leftovers = [p for p in list(cache.rglob("*.tmp")) + list(killed_out.parent.glob("*.tmp"))]
    assert leftovers == []
