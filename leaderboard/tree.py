"""Read and validate the results tree (`submissions/<id>/submission.yaml` + `results/*.json`).

This is the check a maintainer's CI runs on every pull request, in the spirit of the MTEB results
repository's tests: the folder structure, the record schema, no duplicate runs, one task for the
whole board, ids that match their folders, metrics that match their own predictions. Every problem
is collected (not just the first), each naming its file, and `Tree.raise_if_problems()` refuses to
go on with an inconsistent board.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from benchmark.errors import ResultsError, SynthbenchError
from benchmark.protocol import SETTINGS
from benchmark.results import load_result

log = logging.getLogger(__name__)

#: A submission folder name: it becomes a URL path segment and a file name on the site.
SUBMISSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: results/<backbone>__<protocol>.json
RESULT_NAME_SEPARATOR = "__"
SUBMISSION_FILE = "submission.yaml"
RESULTS_DIR = "results"
METADATA_FILE = "metadata.jsonl"
REAL = "real"


class LeaderboardError(ResultsError):
    """The results tree cannot be published: it lists every problem found, one per line."""


@dataclass
class Record:
    """One validated result record: `submissions/<id>/results/<backbone>__<protocol>.json`."""

    path: Path
    data: dict[str, Any]

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
        return bool(self.data.get("official", False))

    @property
    def harness_version(self) -> str:
        return str(self.data.get("harness_version", "?"))

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


@dataclass
class Submission:
    """A submission folder as the leaderboard sees it: its metadata and its valid records."""

    id: str
    path: Path
    meta: dict[str, Any]
    records: dict[tuple[str, str], Record] = field(default_factory=dict)  # (backbone, protocol)

    @property
    def team(self) -> str:
        return str(self.meta.get("team") or "")

    @property
    def method(self) -> str:
        return str(self.meta.get("method") or "")

    @property
    def track(self) -> str:
        return str(self.meta.get("track") or "")

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind") or "images")

    @property
    def baseline(self) -> str | None:
        """The shipped baseline's name (classic, mixup, cutmix, duplicate) or None."""
        value = self.meta.get("baseline")
        return str(value) if value else None

    @property
    def generator(self) -> dict[str, str]:
        generator = self.meta.get("generator") or {}
        if not isinstance(generator, dict):
            return {"name": str(generator), "version": "", "link": ""}
        return {key: str(generator.get(key) or "") for key in ("name", "version", "link")}

    def protocols(self) -> set[str]:
        return {protocol for _, protocol in self.records}

    def backbones(self, protocol: str) -> set[str]:
        return {backbone for backbone, p in self.records if p == protocol}

    def metadata_rows(self) -> list[dict[str, Any]]:
        """The rows of metadata.jsonl ([] when absent or unreadable: the submissions stage validates it)."""
        path = self.path / METADATA_FILE
        if not path.is_file():
            return []
        rows = []
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if isinstance(row, dict):
                        rows.append(row)
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s); no thumbnails or image counts", path, exc)
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


def hard_label(label: Any) -> str | None:
    """A metadata label (class name or {class: weight}) as one class name (argmax; ties: first)."""
    if isinstance(label, str):
        return label
    if isinstance(label, dict) and label:
        return max(label.items(), key=lambda item: float(item[1]))[0]
    return None


@dataclass
class Tree:
    """The validated results tree: submissions (sorted by id), their records, and every problem."""

    root: Path
    submissions: list[Submission]
    problems: list[str]
    task: dict[str, str] | None = None  # name, revision, test_manifest_hash of the board
    classes: list[str] = field(default_factory=list)
    test_labels: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_problems(self) -> None:
        if self.problems:
            raise LeaderboardError(
                f"{self.root}: {len(self.problems)} problem(s); the leaderboard is not published:\n  "
                + "\n  ".join(self.problems)
            )

    def records(self) -> Iterator[Record]:
        for submission in self.submissions:
            yield from submission.records.values()

    def submission(self, submission_id: str) -> Submission:
        for submission in self.submissions:
            if submission.id == submission_id:
                return submission
        raise KeyError(submission_id)

    @property
    def is_demo(self) -> bool:
        """The procedural demo task: a pipeline demo, not a scientific result."""
        return bool(self.task and self.task["name"].startswith("demo"))


def validate_tree(root: str | Path) -> Tree:
    """Read every submission folder under `root` and validate it; problems are collected, not raised.

    Only a missing or unreadable `root` raises (LeaderboardError) at once. Records with a problem
    are left out of the returned tree's submissions, so `validate` can report everything while
    `build` refuses (Tree.raise_if_problems) before aggregating anything.
    """
    root = Path(root)
    if not root.is_dir():
        raise LeaderboardError(f"{root}: submissions folder not found")
    problems: list[str] = []
    submissions: list[Submission] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        submission = _read_submission(folder, problems)
        if submission is not None:
            submissions.append(submission)
    tree = Tree(root=root, submissions=submissions, problems=problems)
    _check_across_records(tree)
    return tree


def _read_submission(folder: Path, problems: list[str]) -> Submission | None:
    if not SUBMISSION_ID_PATTERN.match(folder.name):
        problems.append(
            f"{folder}: folder name is not a valid submission id (letters, digits, '.', '_', '-'; "
            "starting with a letter or digit)"
        )
        return None
    meta = _read_submission_yaml(folder, problems)
    submission = Submission(id=folder.name, path=folder, meta=meta or {})
    results = folder / RESULTS_DIR
    if results.exists() and not results.is_dir():
        problems.append(f"{results}: must be a folder of <backbone>{RESULT_NAME_SEPARATOR}<protocol>.json records")
        return submission
    if not results.is_dir():
        return submission  # not evaluated yet: listed as pending on the site
    for path in sorted(results.iterdir()):
        if path.name.startswith("."):
            continue  # .gitkeep and editors' files
        record = _read_record(path, submission, problems)
        if record is not None:
            submission.records[(record.backbone, record.protocol)] = record
    return submission


def _read_submission_yaml(folder: Path, problems: list[str]) -> dict[str, Any] | None:
    path = folder / SUBMISSION_FILE
    if not path.is_file():
        problems.append(f"{path}: missing (every submission folder needs its {SUBMISSION_FILE})")
        return None
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(f"{path}: not readable YAML ({exc})")
        return None
    if not isinstance(meta, dict):
        problems.append(f"{path}: must be a YAML mapping (id, team, method, track, ...), got {type(meta).__name__}")
        return None
    if meta.get("id") != folder.name:
        problems.append(f"{path}: id {meta.get('id')!r} does not match its folder name {folder.name!r}")
    return meta


def _read_record(path: Path, submission: Submission, problems: list[str]) -> Record | None:
    """Load and check one record file; append its problems and return it only when it is usable."""
    before = len(problems)
    if path.is_dir():
        problems.append(f"{path}: unexpected folder inside {RESULTS_DIR}/ (only result records belong there)")
        return None
    if path.suffix != ".json":
        problems.append(
            f"{path}: unexpected file inside {RESULTS_DIR}/ "
            f"(only <backbone>{RESULT_NAME_SEPARATOR}<protocol>.json records belong there)"
        )
        return None
    parts = path.stem.split(RESULT_NAME_SEPARATOR)
    if len(parts) != 2 or not all(parts):
        problems.append(f"{path}: file name must be <backbone>{RESULT_NAME_SEPARATOR}<protocol>.json")
        return None
    file_backbone, file_protocol = parts
    try:
        data = load_result(path)  # validates the record (benchmark.results.validate_result_record)
    except SynthbenchError as exc:
        problems.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
        return None
    except (OSError, ValueError) as exc:  # a reader that let a raw JSON/IO error through
        problems.append(f"{path}: not a readable result record ({exc})")
        return None

    backbone, protocol = data["backbone"]["name"], data["protocol"]["name"]
    if backbone != file_backbone:
        problems.append(f"{path}: backbone.name {backbone!r} does not match the file name's {file_backbone!r}")
    if protocol != file_protocol:
        problems.append(f"{path}: protocol.name {protocol!r} does not match the file name's {file_protocol!r}")
    record_id = data["submission"]["id"]
    if record_id != submission.id:
        problems.append(f"{path}: submission.id {record_id!r} does not match its folder {submission.id!r}")
    meta_track = submission.meta.get("track")
    if meta_track and data["submission"].get("track") not in (None, meta_track):
        problems.append(
            f"{path}: submission.track {data['submission']['track']!r} differs from "
            f"{SUBMISSION_FILE}'s {meta_track!r}"
        )
    meta_task = submission.meta.get("task")
    if isinstance(meta_task, dict) and meta_task.get("name") and meta_task["name"] != data["task"]["name"]:
        problems.append(
            f"{path}: task.name {data['task']['name']!r} differs from {SUBMISSION_FILE}'s {meta_task['name']!r}"
        )
    _check_runs(path, data, problems)
    return Record(path=path, data=data) if len(problems) == before else None


def _check_runs(path: Path, data: dict[str, Any], problems: list[str]) -> None:
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
        problems.append(
            f"{path}: no real run with seed {seed} to pair the difference of {', '.join(settings)} (seed {seed}) with"
        )


def _check_across_records(tree: Tree) -> None:
    """One task, one class list, one test split for the whole board; one image set per submission."""
    records = list(tree.records())
    if not records:
        return
    # The board's task is the one most records agree on (ties: the one the shipped baselines use,
    # which the maintainers run); every other record is named.
    identities = Counter(record.task_identity for record in records)
    baseline_identities = Counter(
        record.task_identity for s in tree.submissions if s.baseline for record in s.records.values()
    )
    name, revision, test_hash = max(identities, key=lambda i: (identities[i], baseline_identities[i], i))
    tree.task = {"name": name, "revision": revision, "test_manifest_hash": test_hash}
    on_task = [r for r in records if r.task_identity == (name, revision, test_hash)]
    classes = Counter(tuple(r.data["classes"]) for r in on_task).most_common(1)[0][0]
    labels = Counter(tuple(r.data["test"]["labels"]) for r in on_task).most_common(1)[0][0]
    tree.classes = list(classes)
    tree.test_labels = np.asarray(labels, dtype=np.int64)
    bad: set[Path] = set()
    for record in records:
        if record.task_identity != (name, revision, test_hash):
            other = record.task_identity
            tree.problems.append(
                f"{record.path}: task {other[0]}@{other[1]} (test_manifest_hash {other[2][:12]}) differs from "
                f"the board's {name}@{revision} (test_manifest_hash {test_hash[:12]}); "
                "all results of one board must be on the same task revision and test split"
            )
            bad.add(record.path)
        elif tuple(record.data["classes"]) != classes:
            tree.problems.append(f"{record.path}: classes {record.data['classes']} differ from the board's {list(classes)}")
            bad.add(record.path)
        elif tuple(record.data["test"]["labels"]) != labels:
            tree.problems.append(f"{record.path}: test.labels differ from the other records' (another test split order?)")
            bad.add(record.path)

    # The same images under two ids would be counted twice; one id with two image sets mixes versions.
    owners: dict[str, str] = {}
    for submission in tree.submissions:
        hashes = {r.data["submission"]["content_hash"] for r in submission.records.values()}
        if len(hashes) > 1:
            files = ", ".join(sorted(r.path.name for r in submission.records.values()))
            tree.problems.append(
                f"{submission.path}: its records were computed on different versions of the submission "
                f"(content_hash differs between {files}); re-run the stale ones"
            )
        for content_hash in sorted(hashes):
            if content_hash in owners and owners[content_hash] != submission.id:
                tree.problems.append(
                    f"{submission.path}: the same image set (content_hash {content_hash[:12]}) is already "
                    f"submitted as {owners[content_hash]!r}; duplicate submissions are not allowed"
                )
            owners.setdefault(content_hash, submission.id)
    for submission in tree.submissions:
        submission.records = {key: r for key, r in submission.records.items() if r.path not in bad}
