"""The Slurm executor against a real single-node Slurm (scripts/slurm-up.sh), through `synthbench run-all`.

Needs the Slurm and munge binaries (`apt-get install -y slurm-wlm munge`) and root to start the
cluster, or a running cluster that $SLURM_CONF points at; skips otherwise. The cluster is started
once per session on free ports under a temporary $SLURM_TMP and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from benchmark.executors import TERMINAL_STATES, find_submissions, scheduler_states
from benchmark.results import load_result

from tests.test_executors import (  # the same small demo grid as the local-executor tests
    SMALL_IMAGE_SIZE,
    SMALL_SEEDS,
    SMALL_SETTINGS,
    build_small_grid,
    comparable,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def _sinfo_ok(env: dict) -> bool:
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and any(state in result.stdout for state in ("idle", "mix", "alloc"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A Slurm cluster to submit to: the one $SLURM_CONF names, or a fresh one from slurm-up.sh."""
    if shutil.which("sbatch") is None:
        pytest.skip("Slurm is not installed (apt-get install -y slurm-wlm munge)")
    if os.environ.get("SLURM_CONF") and _sinfo_ok(dict(os.environ)):
        yield Path(os.environ["SLURM_CONF"])
        return
    if os.geteuid() != 0:
        pytest.skip("starting a local Slurm needs root (or export SLURM_CONF of a running cluster)")
    # Outside pytest's private (0700) temp root, so that munged (as the munge user) can reach it;
    # short, as the munge socket path must stay under the 108-byte limit of Unix sockets.
    slurm_tmp = Path(tempfile.mkdtemp(prefix="synthbench-slurm-", dir="/tmp"))
    slurm_tmp.chmod(0o755)
    env = dict(os.environ, SLURM_TMP=str(slurm_tmp), SLURM_CTLD_PORT=str(_free_port()), SLURM_D_PORT=str(_free_port()))
    env.pop("SLURM_CONF", None)
    up = subprocess.run([str(ROOT / "scripts" / "slurm-up.sh")], env=env, capture_output=True, text=True, timeout=180)
    if up.returncode != 0:
        subprocess.run([str(ROOT / "scripts" / "slurm-down.sh"), "--purge"], env=env, capture_output=True)
        pytest.fail(f"scripts/slurm-up.sh failed:\n{up.stdout}\n{up.stderr}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(slurm_tmp / "etc" / "slurm.conf")
    try:
        yield Path(os.environ["SLURM_CONF"])
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        subprocess.run([str(ROOT / "scripts" / "slurm-down.sh"), "--purge"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-grid")
    task_dir, submissions = build_small_grid(root)
    return task_dir, submissions, root


def _slurm_config(path: Path, folder: Path) -> Path:
    """CPU-only requests the one-node test cluster can satisfy (two 1-CPU jobs at a time)."""
    request = {"gpus": 0, "cpus": 1, "mem_gb": 1.5, "time_min": 15}
    config = {
        "schema_version": 1,
        "folder": str(folder),
        "partition": None,
        "array_parallelism": 4,
        "poll_seconds": 1,
        "max_num_timeout": 1,
        "setup": [],
        "additional": {},
        "jobs": {kind: dict(request) for kind in ("encode", "linear-probe", "fine-tune", "zero-shot", "checkpoint")},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def synthbench(argv: list[str]) -> int:
    """The project's command line, in this process (jobs then run sys.executable, like the tests)."""
    from benchmark import cli

    if "benchmark.executors" in cli.COMMAND_MODULES:
        return cli.main(argv)
    # Until run-all is listed in benchmark/cli.py: the same subcommand from its own module.
    from benchmark import executors

    parser = argparse.ArgumentParser(prog="synthbench")
    executors.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _run_all(task_dir: Path, submissions: Path, cache: Path, executor: str, *extra: str) -> list[str]:
    """`synthbench run-all` for the small grid (full linear-probe recipe, 2 seeds, 3 settings)."""
    return [
        "run-all", "--task", str(task_dir), "--submissions", str(submissions),
        "--backbones", "efficientnet-lite0", "--protocols", "linear-probe",
        "--settings", ",".join(SMALL_SETTINGS), "--seed-list", ",".join(map(str, SMALL_SEEDS)),
        "--cache-dir", str(cache), "--device", "cpu", "--image-size", str(SMALL_IMAGE_SIZE),
        # The leakage gate takes minutes on 600 images per submission on 2 CPU cores; it has its
        # own tests. Everything else of validation still runs, once per submission.
        "--no-leakage", "--no-progress", "--executor", executor, *extra,
    ]


def _records(submissions: Path) -> dict[str, dict]:
    return {
        folder.name: load_result(folder / "results" / "efficientnet-lite0__linear-probe.json")
        for folder in find_submissions(submissions)
    }


def _all_job_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.fixture(scope="module")
def local_reference(grid, tmp_path_factory):
    """The small grid run in-process by `synthbench run-all --executor local` (its own cache)."""
    task_dir, submissions, _ = grid
    root = tmp_path_factory.mktemp("local-reference")
    copy = shutil.copytree(submissions, root / "submissions", ignore=shutil.ignore_patterns("results"))
    assert synthbench(_run_all(task_dir, copy, root / "cache", "local")) == 0
    return _records(copy)


def test_slurm_grid_matches_local_and_a_rerun_submits_nothing(slurm_cluster, grid, local_reference, tmp_path, capsys):
    task_dir, submissions, _ = grid
    subs = shutil.copytree(submissions, tmp_path / "submissions", ignore=shutil.ignore_patterns("results"))
    config = _slurm_config(tmp_path / "slurm.yaml", tmp_path / "jobs")
    cache = tmp_path / "cache"

    capsys.readouterr()
    assert synthbench(_run_all(task_dir, subs, cache, "slurm", "--slurm-config", str(config))) == 0
    out = capsys.readouterr().out
    assert "2 unit(s): 0 already complete, 2 submitted" in out and "2 succeeded, 0 failed" in out, out

    # One encode job, then one job array whose jobs found every image already cached.
    state = json.loads((tmp_path / "jobs" / "units.json").read_text())
    encode_id = state["encode"]["efficientnet-lite0"]["job_id"]
    unit_jobs = [entry["job_id"] for entry in state["units"].values()]
    assert len(unit_jobs) == 2 and len({job.split("_")[0] for job in unit_jobs}) == 1
    assert all(entry["outcome"] == "succeeded" for entry in state["units"].values())
    records = _records(subs)
    for name, record in records.items():
        assert record["provenance"]["images_encoded"] == 0, name
        assert record["provenance"]["host"]  # written by the job

    # Same predictions and metrics as the local run (provenance differs: host, times, threads).
    assert set(records) == set(local_reference)
    for name in records:
        assert comparable(records[name]) == comparable(local_reference[name]), name
    assert int(encode_id) < min(int(job.split("_")[0]) for job in unit_jobs)

    # A rerun submits nothing and leaves the records alone.
    stamps = {p: p.stat().st_mtime_ns for p in subs.glob("*/results/*.json")}
    jobs_before = _all_job_ids()
    capsys.readouterr()
    assert synthbench(_run_all(task_dir, subs, cache, "slurm", "--slurm-config", str(config))) == 0
    out = capsys.readouterr().out
    assert "2 unit(s): 2 already complete, 0 submitted" in out, out
    assert _all_job_ids() == jobs_before
    assert {p: p.stat().st_mtime_ns for p in subs.glob("*/results/*.json")} == stamps


def _wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


#: Imported by every Python the jobs start while its folder is on PYTHONPATH: the linear probe's
#: runner then logs each run it starts and blocks in run HANG_AT_RUN, so that the test kills a job
#: that is certainly half-way through its unit (a small unit can otherwise end before scancel lands).
_HANG_HOOK = """
import os
import time
from pathlib import Path

if os.environ.get("SYNTHBENCH_TEST_HANG_AT_RUN"):
    from benchmark.protocols import LinearProbeRunner

    _log = Path(os.environ["SYNTHBENCH_TEST_RUN_LOG"])
    _hang_at = int(os.environ["SYNTHBENCH_TEST_HANG_AT_RUN"])
    _fit_predict = LinearProbeRunner.fit_predict

    def fit_predict(self, *args, **kwargs):
        with _log.open("a") as log:
            log.write(f"job {os.environ.get('SLURM_JOB_ID')}: run started\\n")
        if len(_log.read_text().splitlines()) == _hang_at:
            time.sleep(900)  # until killed (the job's time limit is 15 min)
        return _fit_predict(self, *args, **kwargs)

    LinearProbeRunner.fit_predict = fit_predict
"""
HANG_AT_RUN = 3


def test_killed_job_leaves_no_partial_record_and_is_resubmitted(
    slurm_cluster, grid, local_reference, tmp_path, capsys, monkeypatch
):
    task_dir, submissions, _ = grid
    subs = tmp_path / "submissions"
    shutil.copytree(submissions / "baseline__classic", subs / "baseline__classic",
                    ignore=shutil.ignore_patterns("results"))
    config = _slurm_config(tmp_path / "slurm.yaml", tmp_path / "jobs")
    cache = tmp_path / "cache"
    record_path = subs / "baseline__classic" / "results" / "efficientnet-lite0__linear-probe.json"
    hook = tmp_path / "hang-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_HANG_HOOK)
    run_log = tmp_path / "runs.log"
    # The jobs inherit this environment (sbatch exports it); this process is unaffected.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("SYNTHBENCH_TEST_HANG_AT_RUN", str(HANG_AT_RUN))
    monkeypatch.setenv("SYNTHBENCH_TEST_RUN_LOG", str(run_log))

    assert synthbench(_run_all(task_dir, subs, cache, "slurm", "--slurm-config", str(config), "--no-wait")) == 0
    monkeypatch.undo()  # the resubmission below runs normally
    state = json.loads((tmp_path / "jobs" / "units.json").read_text())
    (entry,) = state["units"].values()
    job_id = entry["job_id"]

    # Kill the job once it is blocked in its third run: two runs computed, the unit half-way.
    _wait_for(lambda: run_log.is_file() and len(run_log.read_text().splitlines()) >= HANG_AT_RUN, 300,
              f"job {job_id} to reach run {HANG_AT_RUN} of its unit")
    subprocess.run(["scancel", "--signal=KILL", "--full", job_id], check=True)

    def ended() -> str | None:
        state = scheduler_states([job_id]).get(job_id)
        return state if state in TERMINAL_STATES else None

    final = _wait_for(ended, 120, f"job {job_id} to end")
    assert final in ("CANCELLED", "FAILED"), final
    assert not (Path(entry["stdout"]).parent / f"{job_id}_0_result.pkl").exists()  # it never returned
    assert len(run_log.read_text().splitlines()) == HANG_AT_RUN

    # No partial file: either no record at all or a complete, valid earlier write (run_grid
    # checkpoints every 30 s; this unit is shorter), and no temporary file left behind.
    results = record_path.parent
    leftovers = [p.name for p in results.iterdir()] if results.exists() else []
    assert leftovers in ([], [record_path.name]), leftovers
    if record_path.exists():
        load_result(record_path)  # validates

    # The next run-all resubmits exactly that unit, which completes with the local result.
    capsys.readouterr()
    assert synthbench(_run_all(task_dir, subs, cache, "slurm", "--slurm-config", str(config))) == 0
    out = capsys.readouterr().out
    assert "1 unit(s): 0 already complete, 1 submitted" in out and "1 succeeded, 0 failed" in out, out
    state = json.loads((tmp_path / "jobs" / "units.json").read_text())
    (entry,) = state["units"].values()
    assert entry["job_id"] != job_id and entry["outcome"] == "succeeded"
    assert comparable(load_result(record_path)) == comparable(local_reference["baseline__classic"])


def test_failed_encode_job_cancels_its_grid_jobs_and_is_reported(slurm_cluster, grid, tmp_path):
    from benchmark.executors import plan_units, run_units

    from tests.test_executors import small_options

    task_dir, submissions, _ = grid
    subs = tmp_path / "submissions"
    broken = shutil.copytree(submissions / "baseline__duplicate", subs / "baseline__duplicate",
                             ignore=shutil.ignore_patterns("results"))
    # An image that no longer decodes: as if the file changed after the submission was validated
    # (validation="none" below stands for that earlier validation).
    victim = sorted((broken / "images").rglob("*.png"))[0]
    victim.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    config = _slurm_config(tmp_path / "slurm.yaml", tmp_path / "jobs")
    units = plan_units(task_dir, [broken], backbones=["efficientnet-lite0"], options=small_options(tmp_path / "cache"))

    report = run_units(units, executor="slurm", slurm_config=config, validation="none", progress=False)
    assert not report.ok and report.succeeded == []
    by_what = {failure.what: failure for failure in report.failures}
    assert set(by_what) == {"encode efficientnet-lite0", "baseline__duplicate / efficientnet-lite0 / linear-probe"}
    encode = by_what["encode efficientnet-lite0"]
    assert encode.message.startswith("raised ") and victim.name in encode.message
    assert Path(encode.stderr).is_file() and victim.name in Path(encode.stderr).read_text()
    grid_job = by_what["baseline__duplicate / efficientnet-lite0 / linear-probe"]
    assert grid_job.state == "CANCELLED" and "ended without a result" in grid_job.message
    assert f"encode job {encode.job_id} ended" in grid_job.message
    assert not units[0].record_path.exists()
    state = json.loads((tmp_path / "jobs" / "units.json").read_text())
    assert state["units"][units[0].key]["outcome"] == "failed"
