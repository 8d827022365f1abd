"""The whole flow on real aerial images, through the `synthbench` CLI, as a user runs it:

    task build imagefolder (deduplicated) -> task verify
    -> generate classic | mixup | cutmix | duplicate -> run (leakage gate on) for each

On real imagery a task can hold near-duplicates across its splits and the gate can be fooled by
flat regions: either refuses the harness's own baselines. This test fails, naming every refused
baseline and the gate's reasons, if `run` refuses any of them. It is sized for CI on 2 CPU cores
(20 train / 20 test images per class, ratio 1:1, one seed, 96 px backbone input; about 2-3
minutes) and skips when ../shared/data/aid6 is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark import cli

pytestmark = pytest.mark.slow

BASELINES = ("classic", "mixup", "cutmix", "duplicate")
PER_CLASS = 20
IMAGE_SIZE = 96
SETTINGS = "real,synthetic@1,mixed@1"


def synthbench(capsys, *argv: str) -> tuple[int, str]:
    """Run the console script's `main` in this process; (exit code, stdout + stderr)."""
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_every_baseline_of_a_real_task_is_scored_with_the_gate_on(aid6_root, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "feature-cache"
    monkeypatch.setenv("SYNTHBENCH_CACHE", str(cache))
    task = tmp_path / "task"

    code, output = synthbench(
        capsys, "task", "build", "imagefolder", aid6_root, "--out", task, "--train-per-class", PER_CLASS,
        "--test-per-class", PER_CLASS, "--device", "cpu", "--no-progress",
    )
    assert code == 0, output
    assert "near-duplicates of test images removed from training:" in output
    code, output = synthbench(capsys, "task", "verify", task, "--device", "cpu", "--no-progress")
    assert code == 0, output

    refused = {}
    for name in BASELINES:
        submission = tmp_path / "submissions" / f"baseline__{name}"
        code, output = synthbench(
            capsys, "generate", name, "--task", task, "--out", submission, "--multiplier", 1, "--no-progress"
        )
        assert code == 0, f"generate {name}:\n{output}"
        code, output = synthbench(
            capsys, "run", "--task", task, "--submission", submission, "--seeds", 1, "--settings", SETTINGS,
            "--image-size", IMAGE_SIZE, "--device", "cpu", "--no-progress",
        )
        if code != 0:
            refused[name] = output[-3000:]
            continue
        record = json.loads(next((submission / "results").glob("*.json")).read_text())
        assert record.get("leakage_checked") is not False, f"{name}: scored without the gate"
    assert not refused, "refused baselines:\n" + "\n".join(f"--- {name}:\n{out}" for name, out in refused.items())
