"""The main job (`synthbench demo`) end to end on a small demo task: every stage runs and links up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmark.errors import SynthbenchError
from benchmark.pipeline import DEMO_GENERATOR_ID, run_demo
from benchmark.results import load_result
from benchmark.tasks import load_task

SMALL = dict(seeds=2, image_size=64, train_per_class=10, test_per_class=5, baselines=("classic", "duplicate"))


@pytest.mark.slow
def test_demo_runs_every_stage_in_parallel_workers_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    paths = run_demo(out, workers=2, progress=False, **SMALL)
    printed = capsys.readouterr().out

    task = load_task(paths["task"])
    assert task.info["is_demo"] and task.class_counts("train_real") == {c: 10 for c in task.classes}
    ids = {DEMO_GENERATOR_ID, "baseline__classic", "baseline__duplicate"}
    assert {p.name for p in paths["submissions"].iterdir()} == ids
    for sub_id in ids:
        record = load_result(paths["submissions"] / sub_id / "results" / "efficientnet-lite0__linear-probe.json")
        assert record["provenance"]["finished"] is not None
        assert {r["setting"] for r in record["runs"]} == {
            "real", *(f"{kind}@{k}" for kind in ("synthetic", "mixed") for k in (1, 2, 3, 4))
        }
        assert {r["seed"] for r in record["runs"]} == {0, 1}
        assert record["summary"]["real"]["macro_f1_mean"] > 1 / 6  # far from chance on the demo task
        assert f"{sub_id}: {40 * 6} images, valid" in printed
    # the train_real basis makes `real` the same model for every submission of the task
    reals = {
        sub_id: [r["predictions"] for r in load_result(
            paths["submissions"] / sub_id / "results" / "efficientnet-lite0__linear-probe.json"
        )["runs"] if r["setting"] == "real"]
        for sub_id in ids
    }
    assert len({json.dumps(v) for v in reals.values()}) == 1
    board = json.loads((paths["site"].parent / "leaderboard.json").read_text())
    assert board["is_demo"]
    assert paths["site"].exists() and "finished in" in printed

    # a rerun reuses the task, the submissions, the features and the records: nothing is recomputed
    run_demo(out, workers=1, progress=False, **SMALL)
    printed = capsys.readouterr().out
    gate = {sub_id: "leakage gate skipped: harness-made baseline" for sub_id in ids}
    gate[DEMO_GENERATOR_ID] = "leakage gate passed"  # the generated-track submission is gated by default
    for sub_id in ids:
        assert f"{sub_id}: {40 * 6} images, valid ({gate[sub_id]}); 0 runs, 0 images encoded" in printed

    # a rerun asking for another task size is refused, not silently served the old task
    with pytest.raises(SynthbenchError, match="holds a demo task of 10 train and 5 test images per class, not the 20"):
        run_demo(out, workers=1, progress=False, **{**SMALL, "train_per_class": 20})


def test_demo_refuses_bad_worker_counts(tmp_path):
    with pytest.raises(SynthbenchError, match="--workers must be at least 1"):
        run_demo(tmp_path / "demo", workers=0, progress=False, **SMALL)
    assert not (tmp_path / "demo").exists()


def test_demo_command_help_lists_its_options():
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "demo", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--out", "--seeds", "--workers", "--leakage", "--image-size", "--train-per-class"):
        assert flag in result.stdout
