"""Where the grid runs: in this process (`local`) or as Slurm jobs through submitit (`slurm`).

A *unit* of work is (task, submission folder, backbone, protocol): `benchmark.grid.run_grid` turns
it into one result record, written atomically and resumable (only the missing (setting, seed) runs
are computed). The records on disk are the results; this module only decides which units still
need work, runs them, and reports what failed.

    units = plan_units(task_dir, [sub_a, sub_b], backbones=["efficientnet-lite0"],
                       protocols=["linear-probe"], options=GridOptions(cache_dir="cache"))
    report = run_units(units, executor="slurm", slurm_config="configs/slurm.yaml")
    report.raise_if_failed()

Each submission to run is validated once, before any compute (`validation`: with or without the
leakage gate, or not at all when the caller just did); the jobs then skip validation. On Slurm
(configs/slurm.yaml holds the requests):

1. every unit whose record is complete is skipped, and one whose previous job is still queued or
   running is waited for rather than submitted twice (`<folder>/units.json` remembers the jobs);
2. one *encode* job per backbone fills the shared feature cache with every image of the task and
   of the submissions to run, so the grid jobs hit a warm cache instead of encoding the same
   images concurrently;
3. the units go in one job array per (backbone, protocol), each job depending on the encode job
   (`afterok`, and cancelled if it fails);
4. the submitting process waits with a progress bar over finished jobs, then checks each job's
   outcome (submitit's result file, or the scheduler's state for a job that died without one) and
   that its record is now complete, and reports every failure with its log files.

A rerun therefore submits only what is missing, incomplete or failed. A job killed half-way leaves
at most the runs `run_grid` had finished (never a partial file: records are written atomically);
a job that reaches its time limit is requeued by submitit and resumes.

Jobs run the same Python as the submitting process (`sys.executable`) and import this installed
package; submitit pickles only `UnitJob` and `Unit` (paths, names and numbers), never participant
data.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import getpass
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from .errors import HarnessError, ResultsError, SynthbenchError
from .io import atomic_write_json
from .protocol import DEFAULT_PROTOCOL, DEFAULT_SEEDS, PROTOCOLS, SETTINGS, lookup, parse_settings

log = logging.getLogger(__name__)

#: The values `--executor` accepts.
EXECUTORS = ("local", "slurm")
#: The Slurm requests shipped with the project (copy it and pass --slurm-config to change them).
DEFAULT_SLURM_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "slurm.yaml"
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
#: How submissions are validated before their units run (see run_units).
VALIDATION_MODES = ("full", "no-leakage", "none")
#: The name of the file (inside the Slurm folder) that remembers which job ran which unit.
STATE_FILE = "units.json"


# ----------------------------------------------------------------------------------------------
# Units of work
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridOptions:
    """Everything `run_grid` needs besides the unit itself; the same for every unit of one call."""

    seeds: tuple[int, ...] = DEFAULT_SEEDS
    settings: tuple[str, ...] | None = None  # None: every setting
    cache_dir: str | None = None  # the shared feature cache (None: run_grid's default)
    device: str = "auto"
    image_size: int | None = None
    weights: str | None = None  # a local weights file/folder for the backbone (offline runs)
    random_init_config: dict | None = None  # a tiny randomly initialised backbone (tests)
    #: {protocol: {recipe key: value}} (tests, ablations; recorded in the record's params).
    protocol_overrides: dict[str, dict[str, Any]] | None = None
    task_revision: str | None = None
    official: bool = False
    #: Encoding batch size (None: the device's default, 64 on the CPU and 256 on CUDA).
    batch_size: int | None = None
    #: Data-loading workers (None: inside a Slurm job, its CPUs minus one; locally, the device's
    #: default: none on the CPU, up to 8 on CUDA).
    num_workers: int | None = None
    #: False when the submissions are scored without the leakage gate (records say so).
    leakage_checked: bool = True
    #: Official runs: path of the Ed25519 private key (None: $SYNTHBENCH_SIGNING_KEY in the job).
    signing_key: str | None = None

    def setting_names(self, protocol: str | None = None) -> list[str]:
        return [s.name for s in parse_settings(self.settings, protocol)]

    def overrides_for(self, protocol: str) -> dict[str, Any] | None:
        return (self.protocol_overrides or {}).get(protocol)

    def workers(self) -> int:
        return self.encoding()[1]

    def encoding(self) -> tuple[int, int]:
        """(batch size, data-loading workers) in this process, for `device` as it resolves here."""
        from .device import encoding_defaults

        workers = self.num_workers
        cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
        if workers is None and cpus.isdigit():  # a Slurm job: every allocated CPU but this one decodes
            workers = max(0, int(cpus) - 1)
        return encoding_defaults(self.device, self.batch_size, workers)


@dataclass(frozen=True)
class Unit:
    """One (task, submission, backbone, protocol): one result record."""

    task: str  # a local task folder or a Hub repo id
    submission: str  # the submission folder (absolute)
    backbone: str
    protocol: str
    options: GridOptions = field(default_factory=GridOptions)

    @property
    def record_path(self) -> Path:
        from .results import result_path

        return Path(result_path(Path(self.submission), self.backbone, self.protocol))

    @property
    def key(self) -> str:
        """Identity of the unit across reruns: its record's path."""
        return str(self.record_path.resolve())

    @property
    def label(self) -> str:
        return f"{Path(self.submission).name} / {self.backbone} / {self.protocol}"


@dataclass
class UnitState:
    """How far a unit's record is: `missing`, `incomplete` (with the runs still to do) or `complete`."""

    status: str
    pending: list[tuple[str, int]] = field(default_factory=list)
    detail: str = ""

    @property
    def needs_work(self) -> bool:
        return self.status != "complete"


def find_submissions(folder: str | os.PathLike) -> list[Path]:
    """The submission folders (those with a submission.yaml) directly inside `folder`, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SynthbenchError(f"{folder}: not a folder of submissions")
    found = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "submission.yaml").is_file())
    if not found:
        raise SynthbenchError(f"{folder}: no submission folders (subfolders with a submission.yaml)")
    return found


def plan_units(
    task: str | os.PathLike,
    submissions: Iterable[str | os.PathLike],
    *,
    backbones: Sequence[str],
    protocols: Sequence[str] = (DEFAULT_PROTOCOL,),
    options: GridOptions = GridOptions(),
    unloadable: list[tuple[str, str]] | None = None,
) -> list[Unit]:
    """Every unit of `submissions x backbones x protocols` that applies.

    A submission of images gets every requested protocol but `checkpoint`, once per backbone; a
    checkpoint submission gets one `checkpoint` unit on the backbone its model.yaml names (the
    grid scores it whatever protocol was asked). Unknown protocol names raise with the valid ones.
    A submission that cannot be read raises, or, with `unloadable` (a list), is appended to it as
    (folder, problem) and planned no unit: one broken folder does not stop a campaign.
    """
    from .submissions import load_submission

    for name in protocols:
        lookup(PROTOCOLS, name, "protocol")
    task_source = str(Path(task).resolve()) if Path(task).exists() else str(task)
    units = []
    for folder in submissions:
        folder = Path(folder).resolve()
        try:
            submission = load_submission(folder)
        except SynthbenchError as exc:
            if unloadable is None:
                raise
            unloadable.append((str(folder), str(exc)))
            continue
        if submission.kind == "checkpoint":
            backbone = (submission.checkpoint_config or {}).get("backbone")
            if not backbone:
                raise SynthbenchError(f"{folder}: model.yaml names no backbone")
            units.append(Unit(task_source, str(folder), backbone, "checkpoint", options))
            continue
        for backbone in backbones:
            for protocol in protocols:
                if protocol != "checkpoint":
                    units.append(Unit(task_source, str(folder), backbone, protocol, options))
    return units


def expected_runs(unit: Unit) -> list[tuple[str, int]]:
    """The (setting, seed) runs a complete record of `unit` holds (or lists as skipped).

    Protocols that do not train are scored once, as their own setting with seed 0 (as run_grid).
    """
    from .results import NO_TRAINING_SETTINGS

    if unit.protocol in NO_TRAINING_SETTINGS:
        return [(NO_TRAINING_SETTINGS[unit.protocol], 0)]
    return [(setting, seed) for setting in unit.options.setting_names(unit.protocol) for seed in unit.options.seeds]


def expected_identity(unit: Unit, task: Any, submission: Any = None) -> dict[str, Any]:
    """The parts of a record's identity that can be known without loading the backbone.

    `run_grid` reuses a record's runs only when its whole identity matches (including backbone
    weights and preprocessing); the planner checks these cheaper parts, so that a record made for
    another test set, another version of the submission, another protocol recipe or the other
    side of the official flag is not taken as complete.
    """
    from .protocols import get_runner
    from .submissions import load_submission

    submission = submission or load_submission(unit.submission)
    return {
        "test_manifest_hash": task.test_manifest_hash,
        "content_hash": submission.content_hash,
        "protocol_params": get_runner(unit.protocol, unit.options.overrides_for(unit.protocol)).params(),
        "official": bool(unit.options.official),
    }


def unit_state(unit: Unit, identity: dict[str, Any] | None = None) -> UnitState:
    """Read `unit`'s record and say what is left to compute.

    With `identity` (from `expected_identity`), a record that differs in any of it counts as
    missing (run_grid will recompute it); a record that does not validate counts as incomplete.
    """
    from .results import load_result

    path = unit.record_path
    expected = expected_runs(unit)
    if not path.is_file():
        return UnitState("missing", expected)
    try:
        record = load_result(path)
    except (ResultsError, ValueError) as exc:
        return UnitState("incomplete", expected, f"unreadable record: {exc}")
    if identity is not None:
        found = {
            "test_manifest_hash": record["task"]["test_manifest_hash"],
            "content_hash": record["submission"]["content_hash"],
            "protocol_params": record["protocol"]["params"],
            "official": bool(record["official"]),
        }
        # JSON round-trips tuples as lists: compare in JSON form.
        differs = [k for k in identity if json.dumps(found[k], sort_keys=True) != json.dumps(identity[k], sort_keys=True)]
        if differs:
            return UnitState("missing", expected, f"{path}: record made with another {', '.join(differs)}")
    done = {(run["setting"], int(run["seed"])) for run in record["runs"]}
    skipped = {entry["setting"] for entry in record["skipped"]}
    pending = [(s, seed) for s, seed in expected if (s, seed) not in done and s not in skipped]
    if pending:
        return UnitState("incomplete", pending, f"{len(pending)} of {len(expected)} runs missing")
    if unit.options.leakage_checked and record.get("leakage_checked") is not True:
        # run_grid reuses every run and rewrites the record as checked, once the gate has passed
        return UnitState("incomplete", [], "record scored without the leakage gate: rewritten once the gate passes")
    return UnitState("complete")


# ----------------------------------------------------------------------------------------------
# What one job (or one local step) does
# ----------------------------------------------------------------------------------------------


def _limit_threads_to_allocation() -> None:
    """Inside a Slurm job, use the CPUs Slurm gave us (torch would otherwise take every core)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if cpus.isdigit():
        import torch

        torch.set_num_threads(int(cpus))


def _signing_key(options: GridOptions):
    """The private key official records are signed with (benchmark.signing); None for other runs."""
    if not options.official:
        return None
    from .signing import load_private_key

    return load_private_key(options.signing_key)


def run_unit(unit: Unit, task: Any = None, *, validated: bool = False, progress: bool = False) -> dict[str, Any]:
    """Run `unit` in this process: `run_grid` computes the missing runs and writes the record.

    `task` may be a loaded `Task` (to share it between units); `validated=True` when the caller
    has just validated the submission. Returns a short summary.
    """
    from .grid import run_grid

    started = time.perf_counter()
    options = unit.options
    batch_size, workers = options.encoding()
    record = run_grid(
        task if task is not None else unit.task,
        unit.submission,
        backbone=unit.backbone,
        protocol=unit.protocol,
        seeds=options.seeds,
        settings=options.settings,
        cache_dir=options.cache_dir,
        device=options.device,
        weights=options.weights,
        image_size=options.image_size,
        random_init_config=options.random_init_config,
        progress=progress,
        official=options.official,
        validated=validated,
        revision=options.task_revision,
        protocol_overrides=options.overrides_for(unit.protocol),
        batch_size=batch_size,
        num_workers=workers,
        leakage_checked=options.leakage_checked,
        signing_key=_signing_key(options),
    )
    provenance = record.get("provenance", {})
    return {
        "record": str(unit.record_path),
        "runs_computed": provenance.get("runs_computed"),
        "runs_reused": provenance.get("runs_reused"),
        "images_encoded": provenance.get("images_encoded"),
        "seconds": round(time.perf_counter() - started, 3),
    }


def encode_features(
    task_source: str,
    submissions: Sequence[str],
    backbone: str,
    options: GridOptions,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Encode every image of the task (train_real, test, generation_inputs) and of `submissions`
    into the feature cache.

    Uses the same backbone identity (weights, image size) and cache folder as `run_grid`, so the
    grid jobs find every image cached (the diagnostics read the generation inputs, the twins each
    edit is measured against). Images already cached are not encoded again.
    """
    from .backbones import load_backbone
    from .features import FeatureCache
    from .paths import default_cache_dir
    from .submissions import load_submission
    from .tasks import load_task

    started = time.perf_counter()
    task = load_task(task_source, revision=options.task_revision)
    refs = [ref for split in ("train_real", "test", "generation_inputs") if split in task.splits
            for ref in task.image_refs(split)]
    for folder in submissions:
        submission = load_submission(folder)
        if submission.kind != "checkpoint":
            refs += submission.image_refs()
    unique = list({ref.sha256: ref for ref in refs}.values())
    model = load_backbone(
        backbone, weights=options.weights, device=options.device, image_size=options.image_size,
        random_init_config=options.random_init_config,
    )
    cache = FeatureCache(options.cache_dir if options.cache_dir else default_cache_dir())
    batch_size, workers = options.encoding()
    cache.features(model, unique, batch_size=batch_size, num_workers=workers, progress=progress)
    return {
        "backbone": backbone,
        "images": len(unique),
        "encoded": cache.n_encoded,
        "seconds": round(time.perf_counter() - started, 3),
    }


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
# Reports
# ----------------------------------------------------------------------------------------------


@dataclass
class Failure:
    """A unit (or an encode job) that did not end with a complete record."""

    what: str  # unit label, or "encode <backbone>"
    message: str
    job_id: str | None = None
    state: str | None = None
    stdout: str | None = None
    stderr: str | None = None

    def describe(self) -> str:
        lines = [f"{self.what}: {self.message}"]
        if self.job_id:
            lines[0] += f" (job {self.job_id}, {self.state or 'state unknown'})"
        for name, path in (("stdout", self.stdout), ("stderr", self.stderr)):
            if path:
                lines.append(f"    {name}: {path}")
        return "\n".join(lines)


@dataclass
class RunReport:
    """What one `run_units` call did."""

    executor: str
    planned: int = 0
    already_complete: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)  # unit keys given to a new job (or run locally)
    attached: list[str] = field(default_factory=list)  # unit keys whose earlier job was still queued/running
    refused: list[str] = field(default_factory=list)  # unit keys not run: their submission failed validation
    unreadable: int = 0  # submission folders that could not be read at all (no unit planned for them)
    succeeded: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    job_ids: dict[str, str] = field(default_factory=dict)  # unit key (or "encode:<backbone>") -> job id
    waited: bool = True

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """Counts that add up: planned = already complete + run + still running + refused, and
        (once waited for) run + still running = succeeded + failed."""
        started = len(self.submitted) + len(self.attached)
        lines = [
            f"{self.planned} unit(s): {len(self.already_complete)} already complete, "
            f"{len(self.submitted)} {'submitted' if self.executor == 'slurm' else 'run'}, "
            f"{len(self.attached)} still running from an earlier call, {len(self.refused)} refused by validation; "
            f"of the {started} started: {len(self.succeeded)} succeeded, "
            f"{started - len(self.succeeded) if self.waited else 0} failed"
        ]
        if self.unreadable:
            lines[0] += f"; {self.unreadable} submission folder(s) could not be read (no unit planned)"
        if not self.waited:
            lines.append("not waiting: rerun the same command to collect the results and resubmit failures")
        lines += [failure.describe() for failure in self.failures]
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if self.failures:
            raise HarnessError(f"{len(self.failures)} unit(s) failed:\n" + "\n".join(f.describe() for f in self.failures))


# ----------------------------------------------------------------------------------------------
# Local executor
# ----------------------------------------------------------------------------------------------


class _Context:
    """The tasks and submissions the units refer to, each loaded once, and the units' identities."""

    def __init__(self, units: Sequence[Unit]):
        from .submissions import load_submission
        from .tasks import load_task

        self.tasks: dict[tuple[str, str | None], Any] = {}
        self.submissions: dict[str, Any] = {}
        self._validated: dict[tuple, str | None] = {}
        for unit in units:
            key = (unit.task, unit.options.task_revision)
            if key not in self.tasks:
                self.tasks[key] = load_task(unit.task, revision=unit.options.task_revision)
            if unit.submission not in self.submissions:
                self.submissions[unit.submission] = load_submission(unit.submission)

    def task(self, unit: Unit) -> Any:
        return self.tasks[(unit.task, unit.options.task_revision)]

    def state(self, unit: Unit) -> UnitState:
        return unit_state(unit, expected_identity(unit, self.task(unit), self.submissions[unit.submission]))

    def validation_problem(self, unit: Unit, validation: str) -> str | None:
        """Validate `unit`'s submission against its task once (whatever the backbone and protocol).

        validation: "full" (with the leakage gate), "no-leakage", or "none" (the caller just did).
        Returns the problems as one message, or None when the submission is valid.
        """
        from .device import resolve_device
        from .submissions import validate_submission

        if validation == "none":
            return None
        key = (unit.task, unit.options.task_revision, unit.submission)
        if key not in self._validated:
            options = unit.options  # the gate encodes at the grid's size, into its cache: features shared
            report = validate_submission(
                unit.submission, self.task(unit), check_leakage=validation == "full", cache=options.cache_dir,
                device=str(resolve_device(options.device)), image_size=options.image_size,
            )
            self._validated[key] = None if report.ok else "; ".join(report.problems)
        return self._validated[key]


def run_local(units: Sequence[Unit], *, validation: str = "full", progress: bool = True) -> RunReport:
    """Run the units that need work one after the other in this process.

    Each submission to run is validated once first (see `_Context.validation_problem`). A unit
    that raises is reported (with its traceback in the log) and the others still run.
    """
    report = RunReport("local", planned=len(units))
    context = _Context(units)
    for unit in units:
        state = context.state(unit)
        if not state.needs_work:
            report.already_complete.append(unit.key)
            continue
        problem = context.validation_problem(unit, validation)
        if problem:
            report.refused.append(unit.key)
            report.failures.append(Failure(unit.label, f"submission failed validation: {problem}"))
            continue
        report.submitted.append(unit.key)
        log.info("running %s (%s)", unit.label, state.detail or state.status)
        try:
            run_unit(unit, context.task(unit), validated=True, progress=progress)
        except Exception as exc:  # noqa: BLE001 - one broken unit must not stop the others
            log.error("%s failed:\n%s", unit.label, traceback.format_exc())
            report.failures.append(Failure(unit.label, f"{type(exc).__name__}: {exc}"))
            continue
        after = context.state(unit)
        if after.needs_work:
            report.failures.append(Failure(unit.label, f"ran, but its record is still {after.status}: {after.detail}"))
        else:
            report.succeeded.append(unit.key)
    return report


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
# Slurm executor
# ----------------------------------------------------------------------------------------------


def reads_feature_cache(protocol: str) -> bool:
    """Whether `protocol` reads frozen features from the cache (then its jobs wait for an encode job)."""
    from .protocols import RUNNERS

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
        status = context.state(unit)
        if not status.needs_work and not previous_failed:
            report.already_complete.append(unit.key)
            continue
        problem = context.validation_problem(unit, validation)
        if problem:
            report.refused.append(unit.key)
            report.failures.append(Failure(unit.label, f"submission failed validation: {problem}"))
            continue
        to_submit.append(unit)

    by_backbone: dict[str, list[Unit]] = {}
    for unit in to_submit:
        by_backbone.setdefault(unit.backbone, []).append(unit)
    for backbone, group in by_backbone.items():
        dependency = None
        feature_units = [u for u in group if reads_feature_cache(u.protocol)]
        if feature_units:
            first = feature_units[0]
            submissions = sorted({u.submission for u in feature_units})
            executor = _make_executor(config, "encode", f"synthbench-encode-{backbone}", None)
            job = executor.submit(EncodeJob(), first.task, submissions, backbone, first.options)
            report.job_ids[f"encode:{backbone}"] = job.job_id
            state.data["encode"][backbone] = {"job_id": job.job_id, "submitted": _now(), "submissions": submissions}
            dependency = f"afterok:{job.job_id}"
            log.info("encode job %s: %s over the task and %d submission(s)", job.job_id, backbone, len(submissions))
        by_protocol: dict[str, list[Unit]] = {}
        for unit in group:
            by_protocol.setdefault(unit.protocol, []).append(unit)
        for protocol, members in by_protocol.items():
            executor = _make_executor(
                config, protocol, f"synthbench-{backbone}-{protocol}",
                dependency if reads_feature_cache(protocol) else None,
            )
            with executor.batch():  # one job array per (backbone, protocol)
                jobs = [executor.submit(UnitJob(), unit) for unit in members]
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
    state.save()
    report.job_ids.update(waiting)
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
    from tqdm.auto import tqdm

    by_key = {unit.key: unit for unit in units}
    state = _StateFile(config.folder)
    encode_ids = {key: job_id for key, job_id in report.job_ids.items() if key.startswith("encode:")}
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

    final_encode_states = scheduler_states(encode_ids.values())
    for key, job_id in waiting.items():
        unit = by_key[key]
        job = _job(config, job_id)
        scheduler_state = finished_state.get(key)
        if scheduler_state == "COMPLETED" and not job.paths.result_pickle.exists():
            time.sleep(min(config.poll_seconds, 5))  # a shared filesystem may show the file late
        outcome = _read_outcome(job)
        after = context.state(unit)
        entry = state.data["units"].setdefault(key, {"job_id": job_id, "label": unit.label})
        entry.update({"finished": _now(), "state": scheduler_state})
        failure = None
        if outcome is not None and outcome[0] == "error":
            last_line = str(outcome[1]).strip().splitlines()[-1] if str(outcome[1]).strip() else "error"
            failure = f"raised {last_line}"
        elif outcome is None:
            failure = f"ended without a result ({scheduler_state or 'unknown state'})"
            encode = encode_ids.get(f"encode:{unit.backbone}")
            if encode and final_encode_states.get(encode) not in (None, "COMPLETED") and reads_feature_cache(unit.protocol):
                failure += f"; its encode job {encode} ended {final_encode_states.get(encode)}"
        elif after.needs_work:
            failure = f"finished, but its record is still {after.status}: {after.detail}"
        if failure:
            entry["outcome"] = "failed"
            report.failures.append(
                Failure(unit.label, failure, job_id, scheduler_state, str(job.paths.stdout), str(job.paths.stderr))
            )
        else:
            entry["outcome"] = "succeeded"
            report.succeeded.append(key)
    for encode_key, job_id in encode_ids.items():
        job = _job(config, job_id)
        outcome = _read_outcome(job)
        message = None
        if outcome is not None and outcome[0] == "error":
            message = "raised " + (str(outcome[1]).strip().splitlines() or ["an error"])[-1]
        elif outcome is None:
            message = f"ended without a result ({final_encode_states.get(job_id) or 'unknown state'})"
        if message:
            report.failures.append(Failure(encode_key.replace(":", " "), message, job_id, final_encode_states.get(job_id),
                                           str(job.paths.stdout), str(job.paths.stderr)))
    state.save()


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


def run_units(
    units: Sequence[Unit],
    *,
    executor: str = "local",
    slurm_config: str | os.PathLike | SlurmConfig | None = None,
    validation: str = "full",
    wait: bool = True,
    progress: bool = True,
) -> RunReport:
    """Run `units` with the `local` or `slurm` executor; see the module docstring.

    validation: "full" validates each submission to run once, leakage gate included, before any
    compute; "no-leakage" skips the gate (never for official records); "none" when the caller has
    just validated them. `wait` (slurm): collect the jobs before returning.
    """
    lookup({name: name for name in EXECUTORS}, executor, "executor")
    lookup({name: name for name in VALIDATION_MODES}, validation, "validation mode")
    if validation == "no-leakage" and any(unit.options.official for unit in units):
        raise SynthbenchError("official records need the leakage gate: drop --no-leakage or --official")
    if validation == "no-leakage":  # the records must say the gate did not run
        units = [replace(u, options=replace(u.options, leakage_checked=False)) for u in units]
    if executor == "local":
        return run_local(units, validation=validation, progress=progress)
    config = slurm_config if isinstance(slurm_config, SlurmConfig) else load_slurm_config(slurm_config)
    return run_slurm(units, config, validation=validation, wait=wait, progress=progress)


# ----------------------------------------------------------------------------------------------
# CLI: `synthbench run-all`, and the executor flags for `synthbench run`
# ----------------------------------------------------------------------------------------------


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--executor, --slurm-config and --no-wait (shared by `synthbench run` and `run-all`)."""
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: in this process; slurm: one job per unit through submitit (default: local)")
    parser.add_argument("--slurm-config", metavar="PATH",
                        help=f"Slurm requests and job folder (default: {DEFAULT_SLURM_CONFIG.relative_to(DEFAULT_SLURM_CONFIG.parents[1])})")
    parser.add_argument("--no-wait", action="store_true",
                        help="slurm: submit and return; rerunning the command later collects and resubmits")


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _handle_run_all(args: argparse.Namespace) -> int:
    from .backbones import BACKBONES, DEFAULT_BACKBONE

    started = time.perf_counter()

    settings = _split(args.settings)
    for name in settings:
        lookup(SETTINGS, name, "setting")
    backbones = _split(args.backbones) or [DEFAULT_BACKBONE]
    for name in backbones:
        lookup(BACKBONES, name, "backbone")
    if args.seed_list:
        try:
            seeds = tuple(int(s) for s in _split(args.seed_list))
        except ValueError:
            raise SynthbenchError(f"--seed-list {args.seed_list!r}: comma-separated integers, e.g. 0,1") from None
    else:
        seeds = tuple(range(args.seeds)) if args.seeds else DEFAULT_SEEDS
    if not seeds or min(seeds) < 0:
        raise SynthbenchError("give at least one non-negative seed")
    options = GridOptions(
        seeds=seeds,
        settings=tuple(settings) or None,
        cache_dir=str(Path(args.cache_dir).resolve()) if args.cache_dir else None,
        device=args.device,
        image_size=args.image_size,
        weights=str(Path(args.weights).resolve()) if args.weights else None,
        task_revision=args.revision,
        official=args.official,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        leakage_checked=not args.no_leakage,
        signing_key=str(Path(args.signing_key).resolve()) if args.signing_key else None,
    )
    if args.signing_key and not args.official:
        raise SynthbenchError("--signing-key is for --official runs")
    _signing_key(options)  # an official run without a usable key stops here, before any compute
    unloadable: list[tuple[str, str]] = []
    units = plan_units(
        args.task,
        find_submissions(args.submissions),
        backbones=backbones,
        protocols=_split(args.protocols) or [DEFAULT_PROTOCOL],
        options=options,
        unloadable=unloadable,
    )
    report = run_units(
        units, executor=args.executor, slurm_config=args.slurm_config, wait=not args.no_wait,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        validation="no-leakage" if args.no_leakage else "full",
    )
    for folder, problem in unloadable:  # reported like a unit that failed validation
        report.failures.append(Failure(f"{Path(folder).name} (every unit)", f"submission cannot be read: {problem}"))
    report.unreadable = len(unloadable)
    print(report.summary())
    print(f"run-all: wall time {time.perf_counter() - started:.0f} s")
    return 0 if report.ok else 1


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run-all",
        help="run the grid for every submission in a folder (locally or on Slurm), resuming",
        description="Run backbones x protocols for every submission folder in --submissions. Units whose "
        "record is complete are skipped; on Slurm, one encode job per backbone fills the shared feature "
        "cache and one job per unit runs the grid (see docs/SCALE.md).",
    )
    parser.add_argument("--task", required=True, help="task folder or Hub dataset repo id")
    parser.add_argument("--revision", help="Hub revision of the task (repo ids only)")
    parser.add_argument("--submissions", required=True, help="folder holding one folder per submission")
    parser.add_argument("--backbones", help="comma-separated backbone names (default: the offline default)")
    parser.add_argument("--protocols", help=f"comma-separated protocols (default: {DEFAULT_PROTOCOL}; "
                        "checkpoint submissions get the checkpoint protocol)")
    parser.add_argument("--settings", help="comma-separated settings (default: all)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, help=f"run seeds 0..N-1 (default {len(DEFAULT_SEEDS)})")
    seeds.add_argument("--seed-list", help="explicit seeds, e.g. 0,1")
    parser.add_argument("--cache-dir", help="shared feature cache folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (in each job)")
    parser.add_argument("--image-size", type=int, help="backbone input resolution (default: the backbone's)")
    parser.add_argument("--weights", help="local weights folder or cache for the backbone (offline runs)")
    parser.add_argument("--official", action="store_true",
                        help="the maintainers' official run: sign the records (needs --signing-key or $SYNTHBENCH_SIGNING_KEY)")
    parser.add_argument("--signing-key", metavar="PATH",
                        help="the maintainers' Ed25519 private key (PEM) for --official (default: $SYNTHBENCH_SIGNING_KEY)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="encoding batch size (default: 64 on CPU, 256 on CUDA)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="data-loader workers (default: the job's CPUs minus one on Slurm; locally "
                        "none on CPU, CPUs minus one up to 8 on CUDA)")
    parser.add_argument("--no-leakage", action="store_true",
                        help="score without the leakage gate, for local exploration: records say leakage_checked: false "
                        "and the leaderboard never ranks them (refused with --official)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: only when stderr is a terminal)")
    add_executor_arguments(parser)
    parser.set_defaults(func=_handle_run_all)


__all__ = [
    "DEFAULT_SLURM_CONFIG", "EXECUTORS", "VALIDATION_MODES", "EncodeJob", "Failure", "GridOptions", "JobRequest", "RunReport",
    "SlurmConfig", "Unit", "UnitJob", "UnitState", "add_executor_arguments", "encode_features",
    "expected_identity", "expected_runs", "find_submissions", "load_slurm_config", "plan_units",
    "reads_feature_cache", "register",
    "run_local", "run_slurm", "run_unit", "run_units", "scheduler_states", "unit_state",
]
