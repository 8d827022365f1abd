"""Every long stage prints its wall time: `task build`, `task verify`, `validate` (stderr: its
stdout is the report), `run-all`, and `run` (tests/test_run_encodes_once.py)."""

from __future__ import annotations

import re

import pytest

from benchmark.cli import main


@pytest.mark.slow
def test_task_build_verify_validate_and_run_all_print_their_wall_time(tmp_path, capsys):
    from benchmark.generators.demo_editor import generate_demo_editor
    from benchmark.tasks import load_task

    task_dir = tmp_path / "task"
    assert main(["task", "build", "demo", "--train-per-class", "4", "--test-per-class", "2", "--out", str(task_dir),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    assert re.search(r"^task build: wall time \d+ s$", capsys.readouterr().out, re.M)
    assert main(["task", "verify", str(task_dir), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert re.search(r"^task verify: wall time \d+ s$", capsys.readouterr().out, re.M)

    submission = generate_demo_editor(load_task(task_dir), tmp_path / "subs" / "tester__editor", multiplier=1)
    assert main(["validate", str(submission), "--task", str(task_dir), "--no-leakage"]) == 3
    captured = capsys.readouterr()
    assert re.search(r"^validate: wall time \d+ s$", captured.err, re.M) and "wall time" not in captured.out

    assert main(["run-all", "--task", str(task_dir), "--submissions", str(tmp_path / "subs"), "--settings", "real",
                 "--seeds", "1", "--image-size", "32", "--device", "cpu", "--no-leakage", "--no-progress",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert re.search(r"^run-all: wall time \d+ s$", capsys.readouterr().out, re.M)
