"""The executors without a cluster: the Slurm config, planning, resuming and the local executor."""

from __future__ import annotations

import json

import shutil
from pathlib import Path

import pytest
import yaml

from benchmark.errors import SynthbenchError
from benchmark.executors import (
    DEFAULT_SLURM_CONFIG,
    GridOptions,
    Unit,
    expected_runs,
    find_submissions,
    load_slurm_config,
    plan_units,
    run_units,
    scheduler_states,
    unit_state,
)
from benchmark.protocol import PROTOCOLS

# ----------------------------------------------------------------------------------------------
# configs/slurm.yaml
# ----------------------------------------------------------------------------------------------


def test_shipped_slurm_config_covers_every_job_kind():
    config = load_slurm_config()
    assert config.source == DEFAULT_SLURM_CONFIG
    assert set(config.jobs) == {"encode", *PROTOCOLS}
    # The official grid runs on GPUs: every kind of job asks for one.
    assert all(request.gpus >= 1 for request in config.jobs.values())
    assert config.folder.is_absolute()


def _write_config(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(DEFAULT_SLURM_CONFIG.read_text())
    raw.update(changes)
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_slurm_config_names_unknown_key_and_file(tmp_path):
    path = _write_config(tmp_path, partitoin="gpu")
    with pytest.raises(SynthbenchError, match=r"slurm\.yaml: unknown key\(s\) partitoin"):
        load_slurm_config(path)


def test_slurm_config_rejects_bad_requests(tmp_path):
    raw = yaml.safe_load(DEFAULT_SLURM_CONFIG.read_text())
    raw["jobs"]["fine-tune"]["time_min"] = 0
    path = tmp_path / "zero.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SynthbenchError, match=r"zero\.yaml: jobs\.fine-tune: .*time_min >= 1"):
        load_slurm_config(path)
    raw["jobs"]["fine-tune"] = {"gpus": 1, "cpus": 4}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SynthbenchError, match=r"jobs\.fine-tune: needs exactly the keys"):
        load_slurm_config(path)
    raw["jobs"] = {"pretraining": {"gpus": 1, "cpus": 1, "mem_gb": 1, "time_min": 1}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SynthbenchError, match=r"jobs\.pretraining: unknown job kind"):
        load_slurm_config(path)


def test_slurm_config_missing_kind_is_named(tmp_path):
    raw = yaml.safe_load(DEFAULT_SLURM_CONFIG.read_text())
    del raw["jobs"]["zero-shot"]
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_slurm_config(path)
    with pytest.raises(SynthbenchError, match=r"partial\.yaml: no 'jobs\.zero-shot' entry"):
        config.request("zero-shot")


def test_slurm_config_overrides_and_version(tmp_path):
    config = load_slurm_config(None, folder=str(tmp_path / "jobs"), poll_seconds=0.5)
    assert config.folder == tmp_path / "jobs"
    assert config.poll_seconds == 0.5
    path = _write_config(tmp_path, schema_version=2)
    with pytest.raises(SynthbenchError, match="schema_version 2 not supported"):
        load_slurm_config(path)


def test_find_submissions(tmp_path):
    with pytest.raises(SynthbenchError, match="no submission folders"):
        find_submissions(tmp_path)
    (tmp_path / "b__x").mkdir()
    (tmp_path / "b__x" / "submission.yaml").write_text("id: b__x\n")
    (tmp_path / "a__y").mkdir()
    (tmp_path / "a__y" / "submission.yaml").write_text("id: a__y\n")
    (tmp_path / "notes").mkdir()
    assert [p.name for p in find_submissions(tmp_path)] == ["a__y", "b__x"]


def test_scheduler_states_of_unknown_jobs_is_empty():
    # Whatever the machine (with or without Slurm), ids nobody submitted have no state.
    if shutil.which("squeue") is None:
        pytest.skip("no squeue on this machine")
    assert scheduler_states(["999999991", "999999992_3"]) == {}


def test_grid_options_encoding_defaults_follow_device_and_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert GridOptions(device="cpu").encoding() == (64, 0)
    assert GridOptions(device="cpu", batch_size=8, num_workers=3).encoding() == (8, 3)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert GridOptions(device="auto").encoding() == (256, 8)  # a local GPU run: big batches, 8 workers
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert GridOptions(device="auto").encoding() == (256, 5)  # a job: its CPUs but one
    assert GridOptions(device="cpu").encoding() == (64, 5)
    assert GridOptions(device="auto", num_workers=0).workers() == 0


def test_expected_runs_follow_options():
    unit = Unit("task", "/tmp/sub", "efficientnet-lite0", "linear-probe",
                GridOptions(seeds=(0, 1), settings=("real", "mixed@1")))
    assert expected_runs(unit) == [("real", 0), ("real", 1), ("mixed@1", 0), ("mixed@1", 1)]
    with pytest.raises(SynthbenchError, match="unknown setting 'mixed@9'"):
        expected_runs(Unit("task", "/tmp/sub", "b", "linear-probe", GridOptions(settings=("mixed@9",))))


# ----------------------------------------------------------------------------------------------
# A small real grid on the demo task (shared with tests/test_slurm.py)
# ----------------------------------------------------------------------------------------------

#: Real images per class in the small demo task; baselines then need 10x that to be valid (100).
SMALL_TRAIN_PER_CLASS = 10
SMALL_SETTINGS = ("real", "synthetic@1", "mixed@1")
SMALL_SEEDS = (0, 1)
#: A smaller C grid and 2 folds keep each run well under a second on 2 CPU cores.
SMALL_OVERRIDES = {"linear-probe": {"C_grid": [0.1, 10.0], "cv_folds": 2}}
SMALL_IMAGE_SIZE = 32


def build_small_grid(root: Path, baselines=("duplicate", "classic")) -> tuple[Path, Path]:
    """The demo task (10 real + 5 test images per class) and baseline submissions of 100/class."""
    from benchmark.generators.baselines import generate_baseline
    from benchmark.tasks import load_task
    from benchmark.tasks.demo import build_demo_task

    task_dir = build_demo_task(root / "task", train_per_class=SMALL_TRAIN_PER_CLASS, test_per_class=5, image_size=48)
    task = load_task(task_dir)
    submissions = root / "submissions"
    for name in baselines:
        generate_baseline(name, task, submissions / f"baseline__{name}", multiplier=10, seed=0)
    return Path(task_dir), submissions


def small_options(cache_dir: Path, **changes) -> GridOptions:
    values = dict(
        seeds=SMALL_SEEDS, settings=SMALL_SETTINGS, cache_dir=str(cache_dir), device="cpu",
        image_size=SMALL_IMAGE_SIZE, protocol_overrides=SMALL_OVERRIDES,
    )
    values.update(changes)
    return GridOptions(**values)


def comparable(record: dict) -> dict:
    """A record without what legitimately differs between two runs of it (timings, host, ...)."""
    runs = [{k: v for k, v in run.items() if k != "seconds"} for run in record["runs"]]
    for run in runs:  # the probe's own timing is a parameter too
        run["params"] = {k: v for k, v in run["params"].items() if "second" not in k}
    kept = {k: v for k, v in record.items() if k not in ("provenance", "runs")}
    return {**kept, "runs": runs}


@pytest.fixture(scope="module")
def small_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("small-grid")
    task_dir, submissions = build_small_grid(root)
    return task_dir, submissions, root


def _fresh_copy(submissions: Path, dest: Path) -> Path:
    shutil.copytree(submissions, dest, ignore=shutil.ignore_patterns("results"))
    return dest


def test_local_executor_runs_then_resumes_only_what_is_missing(small_grid, tmp_path):
    from benchmark.grid import finalise
    from benchmark.results import load_result, write_result

    task_dir, submissions, _ = small_grid
    subs = _fresh_copy(submissions, tmp_path / "submissions")
    options = small_options(tmp_path / "cache")
    units = plan_units(task_dir, find_submissions(subs), backbones=["efficientnet-lite0"],
                       protocols=["linear-probe"], options=options)
    assert [Path(u.submission).name for u in units] == ["baseline__classic", "baseline__duplicate"]
    assert all(unit_state(u).status == "missing" for u in units)

    report = run_units(units, executor="local", validation="no-leakage", progress=False)
    assert report.ok, report.summary()
    assert sorted(report.succeeded) == sorted(u.key for u in units)
    first = {u.key: load_result(u.record_path) for u in units}
    for unit, record in first.items():
        assert {(r["setting"], r["seed"]) for r in record["runs"]} == {(s, k) for s in SMALL_SETTINGS for k in SMALL_SEEDS}

    # A rerun finds everything complete and touches nothing.
    stamps = {u.key: u.record_path.stat().st_mtime_ns for u in units}
    again = run_units(units, executor="local", validation="no-leakage", progress=False)
    assert again.submitted == [] and sorted(again.already_complete) == sorted(stamps)
    assert {u.key: u.record_path.stat().st_mtime_ns for u in units} == stamps

    # Drop one run (as a job killed after a checkpoint write would leave it): only it is redone.
    unit = units[0]
    record = load_result(unit.record_path)
    record["runs"] = [r for r in record["runs"] if (r["setting"], r["seed"]) != ("mixed@1", 1)]
    write_result(unit.record_path, finalise(record))
    state = unit_state(unit)
    assert state.status == "incomplete" and state.pending == [("mixed@1", 1)]
    resumed = run_units(units, executor="local", validation="no-leakage", progress=False)
    assert resumed.submitted == [unit.key] and resumed.ok
    redone = load_result(unit.record_path)
    assert redone["provenance"]["runs_computed"] == 1
    assert redone["provenance"]["runs_reused"] == len(SMALL_SETTINGS) * len(SMALL_SEEDS) - 1
    assert comparable(redone) == comparable(first[unit.key])


def test_record_of_another_recipe_is_not_complete(small_grid, tmp_path):
    task_dir, submissions, _ = small_grid
    subs = _fresh_copy(submissions, tmp_path / "submissions")
    options = small_options(tmp_path / "cache")
    units = plan_units(task_dir, [subs / "baseline__duplicate"], backbones=["efficientnet-lite0"], options=options)
    assert run_units(units, executor="local", validation="no-leakage", progress=False).ok

    from dataclasses import replace

    from benchmark.executors import _Context

    other = small_options(tmp_path / "cache", protocol_overrides={"linear-probe": {"C_grid": [1.0], "cv_folds": 2}})
    changed = plan_units(task_dir, [subs / "baseline__duplicate"], backbones=["efficientnet-lite0"], options=other)[0]
    unchecked = replace(units[0], options=replace(units[0].options, leakage_checked=False))
    assert _Context([unchecked]).state(unchecked).status == "complete"
    # a gated run-all takes the --no-leakage record up again (its runs reused) to rewrite it as checked
    assert _Context([units[0]]).state(units[0]).status == "incomplete"
    state = _Context([changed]).state(changed)
    assert state.status == "missing" and "protocol_params" in state.detail
    # More seeds than the record holds: incomplete, with exactly the new runs pending.
    more = plan_units(task_dir, [subs / "baseline__duplicate"], backbones=["efficientnet-lite0"],
                      options=small_options(tmp_path / "cache", seeds=(0, 1, 2)))[0]
    state = _Context([more]).state(more)
    assert state.status == "incomplete" and sorted(state.pending) == sorted((s, 2) for s in SMALL_SETTINGS)


def test_local_executor_reports_an_invalid_submission_and_runs_the_rest(small_grid, tmp_path):
    from benchmark.generators.baselines import generate_baseline
    from benchmark.tasks import load_task

    task_dir, submissions, _ = small_grid
    subs = _fresh_copy(submissions, tmp_path / "submissions")
    shutil.rmtree(subs / "baseline__classic")
    # 10 images per class (1 x the task's real count), then one class cut to 4: validation fails.
    task = load_task(task_dir)
    short = generate_baseline("classic", task, subs / "baseline__short", multiplier=1, seed=0)
    rows = [json.loads(line) for line in (short / "metadata.jsonl").read_text().splitlines()]
    first = [r for r in rows if r["label"] == task.classes[0]]
    for row in first[4:]:
        (short / row["file_name"]).unlink()
    (short / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r not in first[4:]))
    units = plan_units(task_dir, find_submissions(subs), backbones=["efficientnet-lite0"],
                       options=small_options(tmp_path / "cache"))
    report = run_units(units, executor="local", validation="no-leakage", progress=False)
    assert not report.ok
    assert [f.what for f in report.failures] == ["baseline__short / efficientnet-lite0 / linear-probe"]
    assert "failed validation" in report.failures[0].message and "at least 10 are needed" in report.failures[0].message
    assert report.succeeded == [u.key for u in units if "duplicate" in u.submission]
    assert not (subs / "baseline__short" / "results").exists()
    with pytest.raises(SynthbenchError, match="1 unit\\(s\\) failed"):
        report.raise_if_failed()


def test_no_leakage_is_refused_for_official_records(small_grid, tmp_path):
    task_dir, submissions, _ = small_grid
    units = plan_units(task_dir, [submissions / "baseline__duplicate"], backbones=["efficientnet-lite0"],
                       options=small_options(tmp_path / "cache", official=True))
    with pytest.raises(SynthbenchError, match="official records need the leakage gate"):
        run_units(units, executor="local", validation="no-leakage")


def test_run_all_reports_an_unreadable_submission_and_runs_the_rest(small_grid, tmp_path, capsys):
    """One broken submission.yaml must not stop a campaign (docs/SCALE.md: its units fail)."""
    from benchmark.cli import main

    task_dir, submissions, _ = small_grid
    subs = _fresh_copy(submissions, tmp_path / "submissions")
    shutil.rmtree(subs / "baseline__classic")
    broken = shutil.copytree(subs / "baseline__duplicate", subs / "team__broken")
    meta = (broken / "submission.yaml").read_text().replace("track: open", "track: generative")
    (broken / "submission.yaml").write_text(meta.replace("id: baseline__duplicate", "id: team__broken"))
    with pytest.raises(SynthbenchError):
        plan_units(task_dir, find_submissions(subs), backbones=["efficientnet-lite0"], options=small_options(tmp_path))
    code = main(["run-all", "--task", str(task_dir), "--submissions", str(subs), "--seeds", "1",
                 "--settings", "real,mixed@1", "--image-size", str(SMALL_IMAGE_SIZE), "--cache-dir",
                 str(tmp_path / "cache"), "--device", "cpu", "--no-leakage", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "team__broken (every unit): submission cannot be read" in out and "track" in out
    # counts that add up (#13): the broken folder plans no unit, so it is counted apart, not as a failed unit
    assert "1 unit(s)" in out and "of the 1 started: 1 succeeded, 0 failed" in out
    assert "1 submission folder(s) could not be read" in out
    assert (subs / "baseline__duplicate" / "results" / "efficientnet-lite0__linear-probe.json").exists()


def test_a_record_without_the_more_real_runs_is_not_complete_on_a_task_with_extra_real(tmp_path):
    """run_grid adds more-real@k to the default settings on a task with train_real_extra; the
    planner must expect them too, or a record interrupted before them passes for complete."""
    from types import SimpleNamespace

    from benchmark.executors import GridOptions, Unit, expected_runs
    from benchmark.tasks.record import EXTRA_SPLIT

    unit = Unit("task", str(tmp_path / "sub"), "efficientnet-lite0", "linear-probe", GridOptions(seeds=(0,)))
    plain, extra = SimpleNamespace(splits={"train_real", "test"}), SimpleNamespace(splits={"train_real", "test", EXTRA_SPLIT})
    base = {s for s, _ in expected_runs(unit, plain)}
    assert base == {s for s, _ in expected_runs(unit)} and not any(s.startswith("more-real@") for s in base)
    assert {s for s, _ in expected_runs(unit, extra)} - base == {f"more-real@{k}" for k in (1, 2, 3, 4)}
    # named settings are run as named: nothing added
    named = Unit("task", str(tmp_path / "sub"), "efficientnet-lite0", "linear-probe", GridOptions(seeds=(0,), settings=("real",)))
    assert expected_runs(named, extra) == [("real", 0)]
