"""The shared plan of both executors: units of work, how far each unit's record is, what one
unit (or the encode step) does in a process, the tasks and submissions loaded once, and the
report of a call. benchmark.executors.local and .slurm run the same units over this plan."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import HarnessError, ResultsError, SynthbenchError
from ..protocol import DEFAULT_PROTOCOL, DEFAULT_SEEDS, PROTOCOLS, lookup, parse_settings

log = logging.getLogger(__name__)

#: The values `--executor` accepts.
EXECUTORS = ("local", "slurm")
#: How submissions are validated before their units run (see run_units).
VALIDATION_MODES = ("full", "no-leakage", "none")


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
        from ..device import encoding_defaults

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
        from ..results import result_path

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
    from ..submissions import load_submission

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


def expected_runs(unit: Unit, task: Any = None) -> list[tuple[str, int]]:
    """The (setting, seed) runs a complete record of `unit` holds (or lists as skipped).

    Protocols that do not train are scored once, as their own setting with seed 0 (as run_grid).
    With the default settings, a `task` that has train_real_extra adds the more-real@k control as
    run_grid does (without the task, a record missing only those runs would pass for complete).
    """
    from .. import more_real
    from ..results import NO_TRAINING_SETTINGS

    if unit.protocol in NO_TRAINING_SETTINGS:
        return [(NO_TRAINING_SETTINGS[unit.protocol], 0)]
    names = unit.options.setting_names(unit.protocol)
    if unit.options.settings is None and task is not None:
        names += [s.name for s in more_real.settings_for(task, unit.protocol)]
    return [(setting, seed) for setting in names for seed in unit.options.seeds]


def expected_identity(unit: Unit, task: Any, submission: Any = None) -> dict[str, Any]:
    """The parts of a record's identity that can be known without loading the backbone.

    `run_grid` reuses a record's runs only when its whole identity matches (including backbone
    weights and preprocessing); the planner checks these cheaper parts, so that a record made for
    another test set, another version of the submission, another protocol recipe or the other
    side of the official flag is not taken as complete.
    """
    from ..protocols import get_runner
    from ..submissions import load_submission

    submission = submission or load_submission(unit.submission)
    return {
        "test_manifest_hash": task.test_manifest_hash,
        "content_hash": submission.content_hash,
        "protocol_params": get_runner(unit.protocol, unit.options.overrides_for(unit.protocol)).params(),
        "official": bool(unit.options.official),
    }


def unit_state(unit: Unit, identity: dict[str, Any] | None = None, task: Any = None) -> UnitState:
    """Read `unit`'s record and say what is left to compute.

    With `identity` (from `expected_identity`), a record that differs in any of it counts as
    missing (run_grid will recompute it); a record that does not validate counts as incomplete.
    """
    from ..results import load_result

    path = unit.record_path
    expected = expected_runs(unit, task)
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
# What one unit (or the encode step) does in a process
# ----------------------------------------------------------------------------------------------


def _signing_key(options: GridOptions):
    """The private key official records are signed with (benchmark.signing); None for other runs."""
    if not options.official:
        return None
    from ..signing import load_private_key

    return load_private_key(options.signing_key)


def run_unit(unit: Unit, task: Any = None, *, validated: bool = False, progress: bool = False) -> dict[str, Any]:
    """Run `unit` in this process: `run_grid` computes the missing runs and writes the record.

    `task` may be a loaded `Task` (to share it between units); `validated=True` when the caller
    has just validated the submission. Returns a short summary.
    """
    from ..grid import run_grid

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
    from ..backbones import load_backbone
    from ..features import FeatureCache
    from ..paths import default_cache_dir
    from ..submissions import load_submission
    from ..tasks import load_task

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
# The tasks and submissions of a call, loaded once
# ----------------------------------------------------------------------------------------------


class _Context:
    """The tasks and submissions the units refer to, each loaded once, and the units' identities."""

    def __init__(self, units: Sequence[Unit]):
        from ..submissions import load_submission
        from ..tasks import load_task

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
        task = self.task(unit)
        return unit_state(unit, expected_identity(unit, task, self.submissions[unit.submission]), task)

    def validation_problem(self, unit: Unit, validation: str) -> str | None:
        """Validate `unit`'s submission against its task once (whatever the backbone and protocol).

        validation: "full" (with the leakage gate), "no-leakage", or "none" (the caller just did).
        Returns the problems as one message, or None when the submission is valid.
        """
        from ..device import resolve_device
        from ..submissions import validate_submission

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

    def settled(self, unit: Unit, validation: str, report: "RunReport", needs_work: bool) -> bool:
        """True when `unit` needs no job: its record is complete, or its submission failed validation
        (each counted in `report`, a refusal with its failure); False when it must be run."""
        if not needs_work:
            report.already_complete.append(unit.key)
            return True
        problem = self.validation_problem(unit, validation)
        if problem:
            report.refused.append(unit.key)
            report.failures.append(Failure(unit.label, f"submission failed validation: {problem}"))
            return True
        return False
