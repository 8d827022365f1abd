"""The Slurm executor: configs/slurm.yaml, the jobs submitit runs (one encode job per backbone,
one job array per backbone and protocol), submitting, waiting and collecting their outcomes."""

from __future__ import annotations

import datetime as _dt
import getpass
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from ..errors import HarnessError, SynthbenchError
from ..io import atomic_write_json
from ..protocol import PROTOCOLS
from .plan import Failure, GridOptions, RunReport, Unit, UnitState, _Context, encode_features, run_unit

log = logging.getLogger(__name__)

#: The Slurm requests shipped with the project (copy it and pass --slurm-config to change them).
DEFAULT_SLURM_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "slurm.yaml"
SLURM_CONFIG_SCHEMA_VERSION = 1
#: Slurm job states after which a job will not run again (squeue %T / sacct State names).
#: PREEMPTED is not among them: submitit requeues a pre-empted job (it then shows as pending), so
#: the waiting loop treats it like a state it cannot see and gives it a few polls.
TERMINAL_STATES = frozenset(
    {
        "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
        "DEADLINE", "REVOKED", "SPECIAL_EXIT",
    }
)
#: Consecutive polls a job may be invisible to the scheduler (or pre-empted, not requeued) before
#: it is called finished: squeue can briefly miss a job that was just submitted or requeued.
UNSEEN_POLLS = 3
#: The name of the file (inside the Slurm folder) that remembers which job ran which unit.
STATE_FILE = "units.json"


# ----------------------------------------------------------------------------------------------
# Slurm configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRequest:
    """Resources of one kind of job."""

    gpus: int
    cpus: int
    mem_gb: float
    time_min: int


@dataclass(frozen=True)
class SlurmConfig:
    """configs/slurm.yaml, checked."""

    folder: Path
    jobs: dict[str, JobRequest]
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = 32
    poll_seconds: float = 15.0
    max_num_timeout: int = 3
    setup: tuple[str, ...] = ()
    additional: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def request(self, kind: str) -> JobRequest:
        try:
            return self.jobs[kind]
        except KeyError:
            raise SynthbenchError(
                f"{self.source}: no 'jobs.{kind}' entry (have: {', '.join(self.jobs)})"
            ) from None


_TOP_KEYS = {
    "schema_version", "folder", "partition", "account", "qos", "array_parallelism", "poll_seconds",
    "max_num_timeout", "setup", "additional", "jobs",
}
_JOB_KEYS = {"gpus", "cpus", "mem_gb", "time_min"}


def load_slurm_config(path: str | os.PathLike | None = None, **overrides: Any) -> SlurmConfig:
    """Read and check a Slurm config (default: configs/slurm.yaml); `overrides` replace top-level keys.

    Errors name the file and the key: unknown keys, missing job kinds, non-positive requests.
    """
    path = Path(path) if path else DEFAULT_SLURM_CONFIG
    if not path.is_file():
        raise SynthbenchError(f"{path}: Slurm config not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SynthbenchError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise SynthbenchError(f"{path}: expected a mapping at the top level")
    raw.update(overrides)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise SynthbenchError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TOP_KEYS))})")
    version = raw.get("schema_version", SLURM_CONFIG_SCHEMA_VERSION)
    if version != SLURM_CONFIG_SCHEMA_VERSION:
        raise SynthbenchError(f"{path}: schema_version {version} not supported (this harness reads {SLURM_CONFIG_SCHEMA_VERSION})")
    jobs_raw = raw.get("jobs") or {}
    if not isinstance(jobs_raw, dict):
        raise SynthbenchError(f"{path}: 'jobs' must map a job kind to its requests")
    jobs = {}
    for kind, request in jobs_raw.items():
        where = f"{path}: jobs.{kind}"
        if kind != "encode" and kind not in PROTOCOLS:
            raise SynthbenchError(f"{where}: unknown job kind (use 'encode' or a protocol: {', '.join(PROTOCOLS)})")
        if not isinstance(request, dict) or set(request) != _JOB_KEYS:
            got = sorted(request) if isinstance(request, dict) else request
            raise SynthbenchError(f"{where}: needs exactly the keys {', '.join(sorted(_JOB_KEYS))} (got {got})")
        try:
            job = JobRequest(int(request["gpus"]), int(request["cpus"]), float(request["mem_gb"]), int(request["time_min"]))
        except (TypeError, ValueError):
            raise SynthbenchError(f"{where}: requests must be numbers (got {request})") from None
        if job.gpus < 0 or job.cpus < 1 or job.mem_gb <= 0 or job.time_min < 1:
            raise SynthbenchError(f"{where}: gpus >= 0, cpus >= 1, mem_gb > 0 and time_min >= 1 required (got {request})")
        jobs[kind] = job
    for name in ("setup",):
        if not isinstance(raw.get(name) or [], list):
            raise SynthbenchError(f"{path}: '{name}' must be a list of shell lines")
    if not isinstance(raw.get("additional") or {}, dict):
        raise SynthbenchError(f"{path}: 'additional' must map sbatch options to values")
    return SlurmConfig(
        folder=Path(raw.get("folder") or "runs/slurm").expanduser().resolve(),
        jobs=jobs,
        partition=raw.get("partition"),
        account=raw.get("account"),
        qos=raw.get("qos"),
        array_parallelism=int(raw.get("array_parallelism", 32)),
        poll_seconds=float(raw.get("poll_seconds", 15)),
        max_num_timeout=int(raw.get("max_num_timeout", 3)),
        setup=tuple(raw.get("setup") or ()),
        additional=dict(raw.get("additional") or {}),
        source=path,
    )


# ----------------------------------------------------------------------------------------------
# The jobs (submitit pickles these callables and the Unit, never participant data)
# ----------------------------------------------------------------------------------------------


def _limit_threads_to_allocation() -> None:
    """Inside a Slurm job, use the CPUs Slurm gave us (torch would otherwise take every core)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if cpus.isdigit():
        import torch

        torch.set_num_threads(int(cpus))


class UnitJob:
    """The callable a grid job runs (submitit pickles this object and the Unit, nothing else).

    `checkpoint` makes it requeue itself when Slurm signals the time limit or a preemption; the
    requeued job calls `run_unit` again and `run_grid` resumes from the record.
    """

    def __call__(self, unit: Unit) -> dict[str, Any]:
        _limit_threads_to_allocation()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        log.info("unit %s -> %s", unit.label, unit.record_path)
        return run_unit(unit, validated=True, progress=False)  # validated before submission

    def checkpoint(self, unit: Unit) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(UnitJob(), unit)


class EncodeJob:
    """The callable of the per-backbone encode job (see `encode_features`)."""

    def __call__(self, task_source: str, submissions: list[str], backbone: str, options: GridOptions) -> dict:
        _limit_threads_to_allocation()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        log.info("encoding %d submission(s) and the task with %s", len(submissions), backbone)
        return encode_features(task_source, submissions, backbone, options, progress=False)

    def checkpoint(self, *args: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(EncodeJob(), *args)


# ----------------------------------------------------------------------------------------------
# Slurm executor
# ----------------------------------------------------------------------------------------------


def reads_feature_cache(protocol: str) -> bool:
    """Whether `protocol` reads frozen features from the cache (then its jobs wait for an encode job)."""
    from ..protocols import RUNNERS

    return bool(RUNNERS[protocol].needs_features)


def _require_slurm() -> None:
    missing = [b for b in ("sbatch", "squeue", "srun") if shutil.which(b) is None]
    if missing:
        raise HarnessError(
            f"--executor slurm needs the Slurm client commands on PATH (missing: {', '.join(missing)}); "
            "run on a login node of the cluster, or start a local one with scripts/slurm-up.sh"
        )


def scheduler_states(job_ids: Iterable[str]) -> dict[str, str]:
    """Slurm's state of each job id ('123' or '123_4'), from squeue and, where it has accounting, sacct.

    A job the scheduler no longer knows is absent from the answer (finished jobs leave squeue after
    MinJobAge; clusters without accounting have no sacct).
    """
    job_ids = sorted(set(job_ids))
    if not job_ids:
        return {}
    wanted = set(job_ids)
    main_ids = sorted({j.split("_")[0] for j in job_ids})
    states: dict[str, str] = {}

    def parse(text: str) -> None:
        for line in text.splitlines():
            job_id, _, state = line.strip().partition("|")
            state = state.split()[0].rstrip("+") if state.strip() else ""
            if job_id in wanted and state and job_id not in states:
                states[job_id] = state

    # -r: one line per array element; -t all: finished jobs too (while slurmctld remembers them).
    squeue = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T"],
        capture_output=True, text=True,
    )
    if squeue.returncode == 0:
        parse(squeue.stdout)
    else:
        log.debug("squeue failed: %s", squeue.stderr.strip())
    if wanted - set(states) and shutil.which("sacct"):
        sacct = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-o", "JobID,State", *[a for m in main_ids for a in ("-j", m)]],
            capture_output=True, text=True,
        )
        if sacct.returncode == 0:
            parse(sacct.stdout)
    return states


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _StateFile:
    """`<folder>/units.json`: for each unit key, the last job that ran it and how that ended."""

    def __init__(self, folder: Path):
        self.path = folder / STATE_FILE
        self.data: dict[str, Any] = {"schema_version": 1, "units": {}, "encode": {}}
        if self.path.is_file():
            import json

            try:
                loaded = json.loads(self.path.read_text())
                if isinstance(loaded, dict) and loaded.get("schema_version") == 1:
                    self.data = loaded
            except ValueError:
                log.warning("%s: unreadable, starting a fresh one", self.path)

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def _job_folder(config: SlurmConfig) -> Path:
    return config.folder / "jobs"


def _make_executor(config: SlurmConfig, kind: str, name: str, dependency: str | None):
    import submitit

    request = config.request(kind)
    executor = submitit.SlurmExecutor(
        folder=_job_folder(config), max_num_timeout=config.max_num_timeout, python=sys.executable
    )
    additional = dict(config.additional)
    if dependency:
        # The grid jobs start only once the encode job succeeded, and are cancelled if it failed
        # (otherwise they would wait forever with DependencyNeverSatisfied).
        additional.update({"dependency": dependency, "kill-on-invalid-dep": "yes"})
    parameters: dict[str, Any] = {
        "job_name": name,
        "time": request.time_min,
        "cpus_per_task": request.cpus,
        "mem": f"{int(round(request.mem_gb * 1024))}M",
        "array_parallelism": config.array_parallelism,
        "additional_parameters": additional,
    }
    if request.gpus:
        parameters["gpus_per_node"] = request.gpus
    for key in ("partition", "account", "qos"):
        if getattr(config, key):
            parameters[key] = getattr(config, key)
    if config.setup:
        parameters["setup"] = list(config.setup)
    executor.update_parameters(**parameters)
    return executor


def _job(config: SlurmConfig, job_id: str):
    import submitit

    return submitit.SlurmJob(folder=_job_folder(config), job_id=job_id)


def _read_outcome(job) -> tuple[str, Any] | None:
    """('success', value) or ('error', traceback text) from submitit's result file; None if absent.

    The file is written by our own job code (submitit's pickle of UnitJob's return value).
    """
    from submitit.core.utils import pickle_load

    path = job.paths.result_pickle
    if not path.exists():
        return None
    try:
        return pickle_load(path)
    except Exception as exc:  # noqa: BLE001 - a truncated file is reported, not raised
        return ("error", f"unreadable result file {path}: {exc}")


def submit_slurm(
    units: Sequence[Unit], config: SlurmConfig, report: RunReport, context: _Context, *, validation: str = "full"
) -> dict[str, str]:
    """Submit the units that need work; returns {unit key: job id} of every job to wait for.

    Each submission to run is validated once here, before any job: an invalid one costs no
    cluster time, and the jobs skip validation (`run_grid(validated=True)`).
    """
    _require_slurm()
    state = _StateFile(config.folder)
    to_submit, waiting = _units_to_submit(units, state, report, context, validation)
    by_backbone: dict[str, list[Unit]] = {}
    for unit in to_submit:
        by_backbone.setdefault(unit.backbone, []).append(unit)
    for backbone, group in by_backbone.items():
        dependency = _submit_encode_job(backbone, group, config, state, report)
        by_protocol: dict[str, list[Unit]] = {}
        for unit in group:
            by_protocol.setdefault(unit.protocol, []).append(unit)
        for protocol, members in by_protocol.items():
            waiting.update(_submit_unit_jobs(backbone, protocol, members, dependency, config, state, report))
    state.save()
    report.job_ids.update(waiting)
    return waiting


def _units_to_submit(
    units: Sequence[Unit], state: _StateFile, report: RunReport, context: _Context, validation: str
) -> tuple[list[Unit], dict[str, str]]:
    """(the units to submit now, {unit key: job id} of earlier jobs still running); the others
    are reported as already complete or refused by validation."""
    to_submit: list[Unit] = []
    waiting: dict[str, str] = {}
    previous_ids = {key: entry["job_id"] for key, entry in state.data["units"].items() if entry.get("job_id")}
    live = scheduler_states(previous_ids.values())
    for unit in units:
        entry = state.data["units"].get(unit.key, {})
        previous_failed = entry.get("outcome") == "failed"
        job_id = entry.get("job_id")
        # Submitted by an earlier call that did not collect it (--no-wait, or interrupted) and
        # still queued or running: wait for that job rather than running the unit twice.
        uncollected = entry.get("outcome") == "submitted"
        if uncollected and job_id and live.get(job_id) and live[job_id] not in TERMINAL_STATES:
            report.attached.append(unit.key)
            waiting[unit.key] = job_id
            continue
        if context.settled(unit, validation, report, context.state(unit).needs_work or previous_failed):
            continue
        to_submit.append(unit)
    return to_submit, waiting


def _submit_encode_job(
    backbone: str, group: list[Unit], config: SlurmConfig, state: _StateFile, report: RunReport
) -> str | None:
    """The backbone's encode job over the task and the submissions whose protocol reads features;
    returns the dependency its grid jobs wait on (None when no protocol reads features)."""
    feature_units = [u for u in group if reads_feature_cache(u.protocol)]
    if not feature_units:
        return None
    first = feature_units[0]
    submissions = sorted({u.submission for u in feature_units})
    executor = _make_executor(config, "encode", f"synthbench-encode-{backbone}", None)
    job = executor.submit(EncodeJob(), first.task, submissions, backbone, first.options)
    report.job_ids[f"encode:{backbone}"] = job.job_id
    state.data["encode"][backbone] = {"job_id": job.job_id, "submitted": _now(), "submissions": submissions}
    log.info("encode job %s: %s over the task and %d submission(s)", job.job_id, backbone, len(submissions))
    return f"afterok:{job.job_id}"


def _submit_unit_jobs(
    backbone: str, protocol: str, members: list[Unit], dependency: str | None, config: SlurmConfig,
    state: _StateFile, report: RunReport,
) -> dict[str, str]:
    """One job array for the (backbone, protocol) units; returns {unit key: job id}."""
    executor = _make_executor(
        config, protocol, f"synthbench-{backbone}-{protocol}", dependency if reads_feature_cache(protocol) else None,
    )
    with executor.batch():  # one job array per (backbone, protocol)
        jobs = [executor.submit(UnitJob(), unit) for unit in members]
    waiting = {}
    for unit, job in zip(members, jobs):
        report.submitted.append(unit.key)
        waiting[unit.key] = job.job_id
        state.data["units"][unit.key] = {
            "job_id": job.job_id,
            "label": unit.label,
            "submitted": _now(),
            "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr),
            "outcome": "submitted",
        }
    log.info("submitted %d %s job(s) for %s (array %s)", len(jobs), protocol, backbone,
             jobs[0].job_id.split("_")[0] if jobs else "-")
    return waiting


def wait_slurm(
    units: Sequence[Unit],
    waiting: dict[str, str],
    config: SlurmConfig,
    report: RunReport,
    context: _Context,
    *,
    progress: bool = True,
) -> None:
    """Wait for the jobs in `waiting` ({unit key: job id}), then record each one's outcome."""
    by_key = {unit.key: unit for unit in units}
    encode_ids = {key: job_id for key, job_id in report.job_ids.items() if key.startswith("encode:")}
    finished_state = _poll_until_finished(waiting, encode_ids, config, progress=progress)
    state = _StateFile(config.folder)
    final_encode_states = scheduler_states(encode_ids.values())
    for key, job_id in waiting.items():
        unit = by_key[key]
        job = _job(config, job_id)
        scheduler_state = finished_state.get(key)
        if scheduler_state == "COMPLETED" and not job.paths.result_pickle.exists():
            time.sleep(min(config.poll_seconds, 5))  # a shared filesystem may show the file late
        entry = state.data["units"].setdefault(key, {"job_id": job_id, "label": unit.label})
        entry.update({"finished": _now(), "state": scheduler_state})
        encode = encode_ids.get(f"encode:{unit.backbone}")
        failure = _unit_failure(unit, _read_outcome(job), context.state(unit), scheduler_state,
                                encode, final_encode_states.get(encode) if encode else None)
        if failure:
            entry["outcome"] = "failed"
            report.failures.append(
                Failure(unit.label, failure, job_id, scheduler_state, str(job.paths.stdout), str(job.paths.stderr))
            )
        else:
            entry["outcome"] = "succeeded"
            report.succeeded.append(key)
    report.failures += _encode_failures(encode_ids, final_encode_states, config)
    state.save()


def _poll_until_finished(
    waiting: dict[str, str], encode_ids: dict[str, str], config: SlurmConfig, *, progress: bool
) -> dict[str, str]:
    """Poll the scheduler (with a progress bar over finished jobs) until every job in `waiting`
    has ended; returns {unit key: the job's last scheduler state}."""
    from tqdm.auto import tqdm

    pending = dict(waiting)
    unknown_polls: dict[str, int] = {}
    finished_state: dict[str, str] = {}
    bar = tqdm(total=len(waiting), desc="slurm jobs", unit="job", disable=not progress)
    try:
        while pending:
            states = scheduler_states(list(pending.values()) + list(encode_ids.values()))
            for key, job_id in list(pending.items()):
                job = _job(config, job_id)
                scheduler_state = states.get(job_id)
                done = job.paths.result_pickle.exists() or scheduler_state in TERMINAL_STATES
                if scheduler_state in (None, "PREEMPTED") and not done:
                    unknown_polls[job_id] = unknown_polls.get(job_id, 0) + 1
                    done = unknown_polls[job_id] >= UNSEEN_POLLS
                else:
                    unknown_polls.pop(job_id, None)
                if done:
                    finished_state[key] = scheduler_state or "UNKNOWN"
                    del pending[key]
                    bar.update(1)
            counts: dict[str, int] = {}
            for job_id in pending.values():
                s = states.get(job_id, "UNKNOWN")
                counts[s] = counts.get(s, 0) + 1
            bar.set_postfix({s.lower(): n for s, n in sorted(counts.items())}, refresh=True)
            if pending:
                time.sleep(config.poll_seconds)
    finally:
        bar.close()
    return finished_state


def _unit_failure(
    unit: Unit, outcome: tuple[str, Any] | None, after: UnitState, scheduler_state: str | None,
    encode_job: str | None, encode_state: str | None,
) -> str | None:
    """Why a finished unit job failed (None when it succeeded and its record is complete)."""
    if outcome is not None and outcome[0] == "error":
        last_line = str(outcome[1]).strip().splitlines()[-1] if str(outcome[1]).strip() else "error"
        return f"raised {last_line}"
    if outcome is None:
        failure = f"ended without a result ({scheduler_state or 'unknown state'})"
        if encode_job and encode_state not in (None, "COMPLETED") and reads_feature_cache(unit.protocol):
            failure += f"; its encode job {encode_job} ended {encode_state}"
        return failure
    if after.needs_work:
        return f"finished, but its record is still {after.status}: {after.detail}"
    return None


def _encode_failures(encode_ids: dict[str, str], final_states: dict[str, str], config: SlurmConfig) -> list[Failure]:
    """The encode jobs that raised or ended without a result."""
    failures = []
    for encode_key, job_id in encode_ids.items():
        job = _job(config, job_id)
        outcome = _read_outcome(job)
        message = None
        if outcome is not None and outcome[0] == "error":
            message = "raised " + (str(outcome[1]).strip().splitlines() or ["an error"])[-1]
        elif outcome is None:
            message = f"ended without a result ({final_states.get(job_id) or 'unknown state'})"
        if message:
            failures.append(Failure(encode_key.replace(":", " "), message, job_id, final_states.get(job_id),
                                    str(job.paths.stdout), str(job.paths.stderr)))
    return failures


def run_slurm(
    units: Sequence[Unit], config: SlurmConfig, *, validation: str = "full", wait: bool = True, progress: bool = True
) -> RunReport:
    """Submit the units that need work as Slurm jobs and (unless `wait` is false) collect them."""
    report = RunReport("slurm", planned=len(units), waited=wait)
    context = _Context(units)
    waiting = submit_slurm(units, config, report, context, validation=validation)
    if wait and waiting:
        wait_slurm(units, waiting, config, report, context, progress=progress)
    return report
