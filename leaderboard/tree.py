"""Read, validate and verify the results tree (`submissions/<id>/submission.yaml` + `results/*.json`).

This is the check a maintainer's CI runs on every pull request, in the spirit of the MTEB results
repository's tests, and it trusts nothing a record says that it can check itself:

- structure: folder names, a readable (bounded) submission.yaml, record file names, the record
  schema (benchmark.results), no duplicate runs, a real run for every paired seed;
- ground truth: every record is matched by its test-manifest hash to a task the leaderboard has
  (`--task`), and its classes and test labels must be that task's; the boards then recompute
  every metric from the stored predictions against the task's own labels;
- content: where a submission's files are in the tree, its content hash is recomputed from them
  and must be the records'; one image set entered under two ids is ranked once;
- official: a record is official only when its Ed25519 signature verifies against the
  maintainers' public keys (benchmark.signing); otherwise it is self-reported;
- leakage: a record scored without the leakage gate is "unchecked" and never ranked on a board
  of a real (non-demo) task.

Each problem is a `Problem` naming its file, why, and what the board does with it: leaves the
record (or the whole submission) off ("not shown"), shows it as self-reported, or shows it
unranked as unchecked. One bad entry never stops the board: `build` lists the problems on the
page, and only `--strict` (`leaderboard validate`, the pull-request workflow) makes them fatal.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import yaml

from benchmark.errors import ResultsError, SynthbenchError
from benchmark.protocol import SETTINGS
from benchmark.results import leakage_checked, load_result
from benchmark.submissions.format import (
    MAX_METADATA_BYTES,
    MAX_YAML_BYTES,
    folder_id_problem,
    load_yaml,
    parse_json_line,
)

try:  # a bounded repr (benchmark.io); without it, such values show as their type only
    from benchmark.io import shorten as _shorten
except ImportError:  # pragma: no cover - older harness
    _shorten = None

log = logging.getLogger(__name__)

#: A submission folder name: it becomes a URL path segment and a file name on the site.
SUBMISSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: results/<backbone>__<protocol>.json
RESULT_NAME_SEPARATOR = "__"
SUBMISSION_FILE = "submission.yaml"
RESULTS_DIR = "results"
METADATA_FILE = "metadata.jsonl"
REAL = "real"
#: Bounds on what the tree reader reads (checked with stat before a byte is read): the
#: submissions stage's own limits, read through its bounded readers.
MAX_SUBMISSION_YAML_BYTES = MAX_YAML_BYTES
#: What the board does with an entry that has a problem.
NOT_SHOWN, SELF_REPORTED, UNCHECKED = "not shown", "self-reported", "unchecked"
#: The keys folder of the maintainers' public keys (PEM, *.pub).
DEFAULT_KEYS_DIR = Path(__file__).resolve().parent / "keys"


class LeaderboardError(ResultsError):
    """The results tree cannot be published: it lists every problem found, one per line."""


@dataclass(frozen=True)
class Problem:
    """One problem of the tree: the file, why, and what the board does with it (`shown_as`)."""

    path: str
    reason: str
    shown_as: str = NOT_SHOWN

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class TaskTruth:
    """What the leaderboard checks records against: a task's classes and test labels, by test split."""

    name: str
    revision: str
    test_manifest_hash: str
    classes: tuple[str, ...]
    labels: tuple[int, ...]
    source: str
    #: False for a Hub repo id given without @revision: records may name any revision of it, as
    #: long as their test split (test_manifest_hash), classes and labels are this one's.
    revision_pinned: bool = True

    @classmethod
    def from_task(cls, task: Any, source: str, revision_pinned: bool = True) -> "TaskTruth":
        return cls(
            name=task.name,
            revision=str(task.revision),
            test_manifest_hash=task.test_manifest_hash,
            classes=tuple(task.classes),
            labels=tuple(int(v) for v in task.labels("test")),
            source=source,
            revision_pinned=revision_pinned,
        )


def load_task_truths(sources: Sequence[str | os.PathLike]) -> list[TaskTruth]:
    """Load each task (a folder, `owner/name` or `owner/name@revision`, verified against its manifest)."""
    from benchmark.tasks.record import load_task  # the record reader only, not the task builders

    truths = []
    for source in sources:
        text = str(source)
        local = Path(text).expanduser().exists()
        name, _, revision = (text, "", "") if local else text.partition("@")
        try:
            task = load_task(name, revision=revision or None)
        except SynthbenchError as exc:
            raise LeaderboardError(f"--task {text}: {exc}") from None
        truths.append(TaskTruth.from_task(task, text, revision_pinned=local or bool(revision)))
    return truths


def discover_task_sources(root: str | os.PathLike) -> list[Path]:
    """The task folder beside a submissions folder (`runs/demo/task` for `runs/demo/submissions`)."""
    candidate = Path(root).resolve().parent / "task"
    return [candidate] if (candidate / "manifest.json").is_file() else []


def default_public_keys() -> dict[str, Any]:
    """The maintainers' public keys: $SYNTHBENCH_PUBLIC_KEYS (paths, os.pathsep-separated) or leaderboard/keys/."""
    from benchmark.signing import PUBLIC_KEYS_ENV, load_public_keys

    value = os.environ.get(PUBLIC_KEYS_ENV)
    if not value and not DEFAULT_KEYS_DIR.is_dir():
        return {}  # no keys: nothing is official
    sources = [p for p in value.split(os.pathsep) if p] if value else [DEFAULT_KEYS_DIR]
    try:
        return load_public_keys(sources)
    except SynthbenchError as exc:
        raise LeaderboardError(f"maintainers' public keys: {exc}") from None


@dataclass
class Record:
    """One validated result record: `submissions/<id>/results/<backbone>__<protocol>.json`.

    `signed`: its signature verifies against the maintainers' keys and it says `official: true`
    (set by the tree's checks; a record's own `official` flag is never trusted alone).
    """

    path: Path
    data: dict[str, Any]
    signed: bool = False

    def __post_init__(self) -> None:
        self.runs: dict[tuple[str, int], dict[str, Any]] = {
            (run["setting"], int(run["seed"])): run for run in self.data["runs"]
        }
        self._predictions: dict[tuple[str, int], np.ndarray] = {}

    @property
    def backbone(self) -> str:
        return self.data["backbone"]["name"]

    @property
    def protocol(self) -> str:
        return self.data["protocol"]["name"]

    @property
    def submission_id(self) -> str:
        return self.data["submission"]["id"]

    @property
    def official(self) -> bool:
        """Official = signed by the maintainers (verified), never the record's own flag."""
        return self.signed

    @property
    def claims_official(self) -> bool:
        return self.data.get("official") is True

    @property
    def leakage_checked(self) -> bool:
        return leakage_checked(self.data)

    @property
    def input_size(self) -> int | None:
        return self.data["backbone"].get("input_size")

    @property
    def harness_version(self) -> str:
        return str(self.data.get("harness_version", "?"))

    @property
    def content_hash(self) -> str:
        return self.data["submission"]["content_hash"]

    @property
    def task_identity(self) -> tuple[str, str, str]:
        task = self.data["task"]
        return (task["name"], str(task["revision"]), task["test_manifest_hash"])

    @property
    def settings(self) -> list[str]:
        """Settings with at least one run, in the order of the protocol registry (unknown ones last)."""
        present = {setting for setting, _ in self.runs}
        order = {name: i for i, name in enumerate(SETTINGS)}
        return sorted(present, key=lambda name: (order.get(name, len(order)), name))

    def seeds(self, setting: str) -> list[int]:
        return sorted(seed for name, seed in self.runs if name == setting)

    def predictions(self, setting: str, seed: int) -> np.ndarray:
        key = (setting, seed)
        if key not in self._predictions:
            self._predictions[key] = np.asarray(self.runs[key]["predictions"], dtype=np.int64)
        return self._predictions[key]

    @property
    def finished(self) -> str | None:
        return (self.data.get("provenance") or {}).get("finished")

    @property
    def started(self) -> str:
        return str((self.data.get("provenance") or {}).get("started") or "")


@dataclass
class Submission:
    """A submission folder as the leaderboard sees it: its metadata and its verified records."""

    id: str
    path: Path
    meta: dict[str, Any]
    records: dict[tuple[str, str], Record] = field(default_factory=dict)  # (backbone, protocol)
    #: Recomputed from the files when they are in the tree (None: not present or not readable).
    files_content_hash: str | None = None
    image_set_digest: str | None = None

    @property
    def team(self) -> str:
        return _text(self.meta.get("team"))

    @property
    def method(self) -> str:
        return _text(self.meta.get("method"))

    @property
    def track(self) -> str:
        return _text(self.meta.get("track"))

    @property
    def kind(self) -> str:
        return _text(self.meta.get("kind")) or "images"

    @property
    def baseline(self) -> str | None:
        """The shipped baseline's name (classic, mixup, cutmix, duplicate) or None."""
        value = self.meta.get("baseline")
        return _text(value) if value else None

    @property
    def generator(self) -> dict[str, str]:
        generator = self.meta.get("generator") or {}
        if not isinstance(generator, dict):
            return {"name": _text(generator), "version": "", "link": "", "model_snapshot": ""}
        return {key: _text(generator.get(key)) for key in ("name", "version", "link", "model_snapshot")}

    @property
    def leakage_checked(self) -> bool:
        return all(r.leakage_checked for r in self.records.values())

    def protocols(self) -> set[str]:
        return {protocol for _, protocol in self.records}

    def backbones(self, protocol: str) -> set[str]:
        return {backbone for backbone, p in self.records if p == protocol}

    def metadata_rows(self) -> list[dict[str, Any]]:
        """The rows of metadata.jsonl ([] when absent, too large or unreadable: the submissions stage validates it)."""
        path = self.path / METADATA_FILE
        if not path.is_file() or path.stat().st_size > MAX_METADATA_BYTES:
            return []
        rows = []
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = parse_json_line(line)  # bounded: length, nesting, numbers
                    if isinstance(row, dict):
                        rows.append(row)
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("%s: unreadable (%s); no thumbnails or image counts", path, type(exc).__name__)
            return []
        return rows

    def images_per_class(self, classes: list[str]) -> dict[str, int] | None:
        """Synthetic images per class from metadata.jsonl (hard label = the largest soft weight)."""
        rows = self.metadata_rows()
        if not rows:
            return None
        counts = Counter(hard_label(row.get("label")) for row in rows)
        return {name: counts.get(name, 0) for name in classes}

    def image_path(self, file_name: str) -> Path | None:
        """The file a metadata row names, only if it lies inside this submission folder."""
        root = self.path.resolve()
        for candidate in (self.path / file_name, self.path / "images" / file_name):
            resolved = candidate.resolve()
            # Never trust a path written by a participant: it must stay inside the folder.
            if resolved.is_relative_to(root) and resolved.is_file():
                return resolved
        return None


def _text(value: Any, limit: int = 200) -> str:
    """A metadata value as display text, bounded (participants' YAML may hold anything)."""
    if value is None:
        return ""
    if isinstance(value, (str, bool, float)) or (isinstance(value, int) and value.bit_length() < 64):
        text = str(value)
    else:  # a list, mapping, date or huge integer: a bounded repr, never the whole value
        text = _shorten(value, limit) if _shorten is not None else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def hard_label(label: Any) -> str | None:
    """A metadata label (class name or {class: weight}) as one class name (argmax; ties: first)."""
    if isinstance(label, str):
        return label
    if isinstance(label, dict) and label:
        try:
            return max(label.items(), key=lambda item: float(item[1]))[0]
        except (TypeError, ValueError, OverflowError):
            return None
    return None


@dataclass
class Tree:
    """The verified results tree: submissions (sorted by id), their records, and every problem."""

    root: Path
    submissions: list[Submission]
    problems: list[Problem]
    task: dict[str, str] | None = None  # name, revision, test_manifest_hash of the board
    classes: list[str] = field(default_factory=list)
    test_labels: np.ndarray | None = None
    #: The tasks the records were checked against (name@revision: source).
    tasks: list[TaskTruth] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_problems(self) -> None:
        if self.problems:
            raise LeaderboardError(
                f"{self.root}: {len(self.problems)} problem(s):\n  " + "\n  ".join(map(str, self.problems))
            )

    def records(self) -> Iterator[Record]:
        for submission in self.submissions:
            yield from submission.records.values()

    def submission(self, submission_id: str) -> Submission:
        for submission in self.submissions:
            if submission.id == submission_id:
                return submission
        raise KeyError(submission_id)

    def problems_of(self, submission: Submission) -> list[Problem]:
        return [p for p in self.problems if Path(p.path) == submission.path or Path(p.path).is_relative_to(submission.path)]

    @property
    def is_demo(self) -> bool:
        """The procedural demo task: a pipeline demo, not a scientific result."""
        return bool(self.task and self.task["name"].startswith("demo"))


def validate_tree(
    root: str | Path,
    *,
    tasks: Sequence[TaskTruth] | None = None,
    public_keys: Mapping[str, Any] | None = None,
) -> Tree:
    """Read, validate and verify every submission folder under `root`; problems are collected, not raised.

    `tasks`: the tasks records are checked against (default: the `task/` folder beside `root`, if
    any); a record of another task is unverified and not shown. `public_keys`: {key id: Ed25519
    public key} (default: $SYNTHBENCH_PUBLIC_KEYS or leaderboard/keys/). Only a missing `root` or
    an unusable task/key raises (LeaderboardError). Records with a problem are left out of the
    tree's submissions unless the problem only changes how they are shown (self-reported, unchecked).
    """
    root = Path(root)
    if not root.is_dir():
        raise LeaderboardError(f"{root}: submissions folder not found")
    if tasks is None:
        tasks = load_task_truths(discover_task_sources(root))
    keys = default_public_keys() if public_keys is None else dict(public_keys)
    problems: list[Problem] = []
    submissions: list[Submission] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        submission = _read_submission(folder, problems)
        if submission is not None:
            submissions.append(submission)
    tree = Tree(root=root, submissions=submissions, problems=problems, tasks=list(tasks))
    _verify(tree, {truth.test_manifest_hash: truth for truth in tasks}, keys)
    return tree


# ------------------------------------------------------------------------------------------------
# Reading (bounded)
# ------------------------------------------------------------------------------------------------


def read_bounded_yaml(path: Path, max_bytes: int = MAX_SUBMISSION_YAML_BYTES) -> Any:
    """YAML from a regular file of at most `max_bytes`, parsed by the submissions stage's bounded
    loader (no aliases, bounded nesting and numbers); ValueError says why not."""
    info = path.lstat()
    if not path.is_file() or path.is_symlink():
        raise ValueError("not a regular file")
    if info.st_size > max_bytes:
        raise ValueError(f"{info.st_size} bytes, above the limit of {max_bytes}; not read")
    try:
        text = path.read_bytes()[: max_bytes + 1].decode("utf-8")
        return load_yaml(text)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # load_yaml's own refusals, an impossible date
        raise ValueError(str(exc)[:200]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"not readable YAML{where}: {getattr(exc, 'problem', None) or type(exc).__name__}") from None


def _read_submission(folder: Path, problems: list[Problem]) -> Submission | None:
    """A submission folder, or None (with its problem) when none of it can be shown."""
    if folder.is_symlink():  # never follow a participant's link out of the tree
        problems.append(Problem(str(folder), "is a symbolic link; a submission must be a folder inside the tree"))
        return None
    if not SUBMISSION_ID_PATTERN.match(folder.name):
        problems.append(Problem(str(folder), "folder name is not a valid submission id (letters, digits, '.', "
                                "'_', '-'; starting with a letter or digit)"))
        return None
    meta = _read_submission_yaml(folder, problems)
    # Without a usable submission.yaml nothing of the folder is shown, but its records are still
    # read so that one run reports every problem.
    submission = Submission(id=folder.name, path=folder, meta=meta or {})
    results = folder / RESULTS_DIR
    if results.is_symlink() or (results.exists() and not results.is_dir()):
        problems.append(Problem(str(results), f"must be a folder of <backbone>{RESULT_NAME_SEPARATOR}<protocol>.json records"))
        return None
    if results.is_dir():
        for path in sorted(results.iterdir()):
            if path.name.startswith("."):
                continue  # .gitkeep, editors' files, a killed writer's temporary file
            record = _read_record(path, submission, problems)
            if record is not None:
                submission.records[(record.backbone, record.protocol)] = record
    return submission if meta is not None else None  # no results/: pending on the site


def _read_submission_yaml(folder: Path, problems: list[Problem]) -> dict[str, Any] | None:
    path = folder / SUBMISSION_FILE
    if not path.exists() and not path.is_symlink():
        problems.append(Problem(str(path), f"missing (every submission folder needs its {SUBMISSION_FILE})"))
        return None
    try:
        meta = read_bounded_yaml(path)
    except (OSError, ValueError) as exc:
        problems.append(Problem(str(path), f"cannot be read: {exc}"))
        return None
    if not isinstance(meta, dict):
        problems.append(Problem(str(path), f"must be a YAML mapping (id, team, method, track, ...), got {type(meta).__name__}"))
        return None
    id_problem = folder_id_problem(meta.get("id"), folder.name)
    if id_problem:
        problems.append(Problem(str(path), id_problem))
        return None
    return meta


def _read_record(path: Path, submission: Submission, problems: list[Problem]) -> Record | None:
    """Load and check one record file; append its problems and return it only when it is usable."""
    def fail(reason: str) -> None:
        problems.append(Problem(str(path), reason))

    if path.is_dir() or path.suffix != ".json":
        fail(f"unexpected {'folder' if path.is_dir() else 'file'} inside {RESULTS_DIR}/ "
             f"(only <backbone>{RESULT_NAME_SEPARATOR}<protocol>.json records belong there)")
        return None
    parts = path.stem.split(RESULT_NAME_SEPARATOR)
    if len(parts) != 2 or not all(parts):
        fail(f"file name must be <backbone>{RESULT_NAME_SEPARATOR}<protocol>.json")
        return None
    file_backbone, file_protocol = parts
    try:
        data = load_result(path)  # bounded and validated (benchmark.results.validate_result_record)
    except SynthbenchError as exc:
        message = str(exc)
        fail(message[len(str(path)) + 2:] if message.startswith(f"{path}: ") else message)
        return None

    before = len(problems)
    backbone, protocol = data["backbone"]["name"], data["protocol"]["name"]
    if backbone != file_backbone:
        fail(f"backbone.name {backbone!r} does not match the file name's {file_backbone!r}")
    if protocol != file_protocol:
        fail(f"protocol.name {protocol!r} does not match the file name's {file_protocol!r}")
    if data["submission"]["id"] != submission.id:
        fail(f"submission.id {data['submission']['id']!r} does not match its folder {submission.id!r}")
    meta_track = submission.meta.get("track")
    if meta_track and data["submission"]["track"] != meta_track:
        fail(f"submission.track {data['submission']['track']!r} differs from {SUBMISSION_FILE}'s {_text(meta_track, 60)!r}")
    meta_task = submission.meta.get("task")
    if isinstance(meta_task, dict) and meta_task.get("name") and meta_task["name"] != data["task"]["name"]:
        fail(f"task.name {data['task']['name']!r} differs from {SUBMISSION_FILE}'s {_text(meta_task['name'], 60)!r}")
    _check_runs(data, fail)
    return Record(path=path, data=data) if len(problems) == before else None


def _check_runs(data: dict[str, Any], fail) -> None:
    """Every non-real grid run needs the real run of its seed: deltas are paired by backbone and seed.

    (Duplicate runs, prediction lengths and ranges, and metrics that disagree with the stored
    predictions are already refused by benchmark.results.validate_result_record.)
    """
    real_seeds = {int(run["seed"]) for run in data["runs"] if run["setting"] == REAL}
    unpaired: dict[int, list[str]] = {}
    for run in data["runs"]:
        setting = SETTINGS.get(run["setting"])
        if setting is not None and setting.kind != REAL and int(run["seed"]) not in real_seeds:
            unpaired.setdefault(int(run["seed"]), []).append(run["setting"])
    for seed, settings in sorted(unpaired.items()):
        fail(f"no real run with seed {seed} to pair the difference of {', '.join(settings)} (seed {seed}) with")


# ------------------------------------------------------------------------------------------------
# Verifying: ground truth, content, duplicates, signatures, leakage
# ------------------------------------------------------------------------------------------------


def _verify(tree: Tree, truths: Mapping[str, TaskTruth], keys: Mapping[str, Any]) -> None:
    dropped: set[Path] = set()
    _check_ground_truth(tree, truths, dropped)
    _check_content(tree, dropped)
    _check_recipe_pins(tree, dropped)
    _check_duplicates(tree, keys, dropped)
    _drop(tree, dropped)
    _check_signatures(tree, keys)
    if not tree.is_demo:
        for record in tree.records():
            if not record.leakage_checked:
                tree.problems.append(Problem(
                    str(record.path),
                    "scored without the leakage gate (leakage_checked is false, or the record predates schema 3): "
                    "shown as unchecked, not ranked; re-run without --no-leakage",
                    UNCHECKED,
                ))


def _drop(tree: Tree, dropped: set[Path]) -> None:
    """Take the dropped records off; a submission left with none of its records is not shown at all."""
    kept = []
    for submission in tree.submissions:
        had = bool(submission.records)
        submission.records = {key: r for key, r in submission.records.items() if r.path not in dropped}
        if not had or submission.records:
            kept.append(submission)
    tree.submissions = kept


def _check_ground_truth(tree: Tree, truths: Mapping[str, TaskTruth], dropped: set[Path]) -> None:
    """Every record against the task of its test split; the board is the task most records are on."""
    verified: list[tuple[Record, TaskTruth]] = []
    for record in tree.records():
        name, revision, test_hash = record.task_identity
        truth = truths.get(test_hash)
        reason = None
        if truth is None:
            known = ", ".join(f"{t.name} ({t.test_manifest_hash[:12]})" for t in truths.values()) or "none"
            reason = (f"unverified: its task {name}@{revision} (test_manifest_hash {test_hash[:12]}) is not available "
                      f"to the leaderboard (tasks given: {known}); pass it with --task")
        elif name != truth.name:
            reason = f"unverified: task.name {name!r} is not the name of the task with that test split ({truth.name!r})"
        elif truth.revision_pinned and revision != truth.revision:
            reason = (f"task revision {revision!r} is not the revision {truth.revision!r} of the task the board is checked "
                      "against; all results of one board must be on the same task revision")
        elif tuple(record.data["classes"]) != truth.classes:
            reason = f"unverified: classes {record.data['classes']} are not the task's {list(truth.classes)}"
        elif tuple(record.data["test"]["labels"]) != truth.labels:
            wrong = sum(a != b for a, b in zip(record.data["test"]["labels"], truth.labels))
            reason = (f"unverified: test.labels differ from the task's own test labels ({wrong} of {len(truth.labels)} "
                      "differ, or another length): the record's ground truth is not the task's")
        if reason:
            tree.problems.append(Problem(str(record.path), reason))
            dropped.add(record.path)
        else:
            verified.append((record, truth))
    if not verified:
        return
    baselines = {r.path for s in tree.submissions if s.baseline for r in s.records.values()}
    counts = Counter(truth.test_manifest_hash for _, truth in verified)
    in_baselines = Counter(truth.test_manifest_hash for record, truth in verified if record.path in baselines)
    board = max(counts, key=lambda h: (counts[h], in_baselines[h], h))
    truth = truths[board]
    tree.task = {"name": truth.name, "revision": truth.revision, "test_manifest_hash": truth.test_manifest_hash}
    tree.classes = list(truth.classes)
    tree.test_labels = np.asarray(truth.labels, dtype=np.int64)
    for record, other in verified:
        if other.test_manifest_hash != board:
            tree.problems.append(Problem(
                str(record.path),
                f"task {other.name} (test_manifest_hash {other.test_manifest_hash[:12]}) differs from the board's "
                f"{truth.name} (test_manifest_hash {board[:12]}); all results of one board must be on the same test split",
            ))
            dropped.add(record.path)


def _check_content(tree: Tree, dropped: set[Path]) -> None:
    """Recompute each submission's content hash from its files where they are in the tree."""
    for submission in tree.submissions:
        if not submission.records:
            continue
        _hash_files(submission)
        records = [r for r in submission.records.values() if r.path not in dropped]
        if submission.files_content_hash is not None:
            for record in records:
                if record.content_hash != submission.files_content_hash:
                    tree.problems.append(Problem(
                        str(record.path),
                        f"submission.content_hash {record.content_hash[:12]} does not match the submission's files "
                        f"({submission.files_content_hash[:12]}): computed on other images or edited; re-run it",
                    ))
                    dropped.add(record.path)
        elif len({r.content_hash for r in records}) > 1:
            files = ", ".join(sorted(r.path.name for r in records))
            tree.problems.append(Problem(
                str(submission.path),
                f"its records were computed on different versions of the submission (content_hash differs "
                f"between {files}) and its files are not here to tell which is current; re-run the stale ones",
            ))
            dropped.update(r.path for r in records)


def _check_recipe_pins(tree: Tree, dropped: set[Path]) -> None:
    """A recipe entry (kind recipe) scored on regenerated images must have the content hash it pins
    for the record's task: a regeneration that differs is not the baseline the folder describes."""
    for submission in tree.submissions:
        recipe = submission.meta.get("recipe")
        pins = recipe.get("content_hashes") if submission.kind == "recipe" and isinstance(recipe, dict) else None
        if not isinstance(pins, dict):
            continue
        for record in submission.records.values():
            name, revision, _ = record.task_identity
            pinned = pins.get(f"{name}@{revision}")
            if record.path not in dropped and isinstance(pinned, str) and pinned != record.content_hash:
                tree.problems.append(Problem(
                    str(record.path),
                    f"scored on images whose content hash {record.content_hash[:12]} is not the one its recipe pins for "
                    f"{name}@{revision} ({pinned[:12]}): the regeneration differs from the recipe's; re-run it",
                ))
                dropped.add(record.path)


def _hash_files(submission: Submission) -> None:
    """Set files_content_hash and image_set_digest from the submission's own files (images and
    checkpoint kinds whose files are present; hub references are never fetched here)."""
    from benchmark.submissions.format import parse_submission

    folder = submission.path
    if submission.kind == "hub" or not ((folder / METADATA_FILE).exists() or (folder / "model.safetensors").exists()):
        return
    if (folder / METADATA_FILE).exists() and (
        not (folder / METADATA_FILE).is_file() or (folder / METADATA_FILE).stat().st_size > MAX_METADATA_BYTES
    ):
        return
    try:
        parsed, _ = parse_submission(folder)
    except (SynthbenchError, OSError, ValueError, RecursionError, MemoryError) as exc:
        log.warning("%s: files not readable for the content check (%s)", folder, type(exc).__name__)
        return
    if parsed is None:
        return
    # The hash covers the bytes of submission.yaml and every readable metadata row: files unchanged
    # since the run give the record's hash whatever today's format checks say about them.
    submission.files_content_hash = parsed.content_hash
    if parsed.entries:
        image_hashes = sorted(entry.sha256 for entry in parsed.entries)
        submission.image_set_digest = hashlib.sha256("\n".join(image_hashes).encode()).hexdigest()


def _check_duplicates(tree: Tree, keys: Mapping[str, Any], dropped: set[Path]) -> None:
    """One image set (same image SHA-256 multiset, or same content hash) is shown under one id only."""
    from benchmark.signing import verify_record

    def preference(submission: Submission) -> tuple:
        records = [r for r in submission.records.values() if r.path not in dropped]
        signed = bool(records) and all(r.claims_official and verify_record(r.data, keys) is None for r in records)
        started = min((r.started for r in records), default="")
        return (not signed, submission.baseline is None, started, submission.id)

    groups: dict[str, list[Submission]] = {}
    for submission in tree.submissions:
        live = [r for r in submission.records.values() if r.path not in dropped]
        if not live:
            continue
        identities = {f"images:{submission.image_set_digest}"} if submission.image_set_digest else set()
        identities |= {f"content:{r.content_hash}" for r in live}
        for identity in identities:
            groups.setdefault(identity, []).append(submission)
    reported: set[str] = set()
    for identity, members in sorted(groups.items()):
        if len(members) < 2:
            continue
        keep, *others = sorted(members, key=preference)
        for other in others:
            if other.id in reported:
                continue
            reported.add(other.id)
            what = "image set (the same image files)" if identity.startswith("images:") else "content hash"
            tree.problems.append(Problem(
                str(other.path),
                f"the same {what} is already on the board as {keep.id!r}; one image set is ranked once "
                "(duplicate submissions are not shown)",
            ))
            dropped.update(r.path for r in other.records.values())


def _check_signatures(tree: Tree, keys: Mapping[str, Any]) -> None:
    """official = `official: true` and a signature by one of the maintainers' keys that verifies."""
    from benchmark.signing import verify_record

    for record in tree.records():
        why_not = verify_record(record.data, keys)
        record.signed = record.claims_official and why_not is None
        if record.claims_official and why_not is not None:
            tree.problems.append(Problem(
                str(record.path), f"says official: true but {why_not}: shown as self-reported", SELF_REPORTED
            ))
