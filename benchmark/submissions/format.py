"""The submission format (docs/RECORDS.md section 2, docs/SUBMITTING.md): reading it safely.

A submission is a folder with `submission.yaml` and one of three payloads:

* `kind: images`: synthetic images in the Hugging Face imagefolder convention, `images/...` plus
  `metadata.jsonl` rows `{file_name, label, source_id, prompt}`;
* `kind: hub`: `hub: {repo_id, revision}` naming a Hub dataset repo (or a local directory) laid
  out the same way, fetched with `huggingface_hub.snapshot_download` at the pinned revision;
* `kind: checkpoint`: `model.safetensors` + `model.yaml`, scored directly by the harness.

Everything here is written against untrusted input: YAML through `yaml.safe_load`, no pickle,
every `file_name` checked to stay inside its folder (no `..`, absolute paths, backslashes, NUL,
or symlinks resolving outside), images decoded only through `benchmark.images.open_rgb`.

`parse_submission` collects *every* structural problem (validation reports them all at once);
`load_submission` raises one `SubmissionError` listing them, or returns a `Submission`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml

from ..errors import SubmissionError
from ..images import ImageRef
from ..io import sha256_file, sha256_json

SUBMISSION_SCHEMA_VERSION = 1

SUBMISSION_FILE = "submission.yaml"
METADATA_FILE = "metadata.jsonl"
CHECKPOINT_FILE = "model.safetensors"
CHECKPOINT_CONFIG_FILE = "model.yaml"

#: Tracks: what a submission's images may be.
TRACKS: dict[str, str] = {
    "generated": "images made by a generative model from the task's generation inputs or from text; "
    "copies of real train or test images are rejected",
    "open": "anything but the test images: augmentations of the real train images, mixes, copies (the baselines' track)",
}

#: Payload kinds.
KINDS: dict[str, str] = {
    "images": "synthetic images in the folder (imagefolder convention: images/ + metadata.jsonl)",
    "hub": "a Hugging Face dataset repo (or local directory) in the same layout, pinned by revision",
    "checkpoint": "a model checkpoint (model.safetensors + model.yaml) scored directly on the test split",
}

#: File extensions a submitted image may have (the decoder checks the actual format too).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")

#: Tolerance on the sum of a soft label's weights.
SOFT_LABEL_TOLERANCE = 1e-6

#: A pinned Hub revision is a full commit SHA (a branch or tag can move under the leaderboard).
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*__[A-Za-z0-9][A-Za-z0-9._-]*$")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def _baseline_names() -> tuple[str, ...]:
    # The registry lives with the generators; imported lazily to keep this module light.
    from ..generators.baselines import BASELINES

    return tuple(BASELINES)


# ----------------------------------------------------------------------------------------------
# submission.yaml schema
# ----------------------------------------------------------------------------------------------

#: Top-level keys: name -> (required, what it is). Read by the validator and by docs/SUBMITTING.md.
SUBMISSION_FIELDS: dict[str, tuple[bool, str]] = {
    "schema_version": (False, f"format version, {SUBMISSION_SCHEMA_VERSION} (default)"),
    "id": (True, "`<team>__<method>` (letters, digits, ., _ or -), the folder's name"),
    "team": (True, "team name"),
    "method": (True, "method name"),
    "contact": (True, "e-mail address or URL of the maintainer of this entry"),
    "licence": (True, "licence of the submitted images or checkpoint (e.g. CC-BY-4.0)"),
    "track": (True, "one of: " + ", ".join(TRACKS)),
    "kind": (True, "one of: " + ", ".join(KINDS)),
    "generator": (True, "{name, version, link}: the generative model (or baseline) used"),
    "fine_tuned": (True, "{used: yes or no, data: on what data (required when used)}"),
    "task": (True, "{name, revision}: the task the images were made for"),
    "baseline": (False, "baselines only: the baseline generator's name"),
    "hub": (False, "kind hub only: {repo_id, revision}"),
    "notes": (False, "free text"),
}


@dataclass
class Problems:
    """Collects every problem (errors) and warning, each one line naming the file and the field."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def _check_str(meta: dict, key: str, where: str, problems: Problems, *, required: bool = True) -> str | None:
    value = meta.get(key)
    if value is None:
        if required:
            problems.error(f"{where}: missing required field '{key}'")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.error(f"{where}: field '{key}' must be a non-empty string (got {value!r})")
        return None
    return value


def check_submission_yaml(meta: Any, where: str, problems: Problems) -> dict:
    """Check the schema of a parsed submission.yaml; return it (a dict) even when it has problems."""
    if not isinstance(meta, dict):
        problems.error(f"{where}: must be a YAML mapping of fields (got {type(meta).__name__})")
        return {}
    unknown = sorted(str(k) for k in meta if k not in SUBMISSION_FIELDS)
    if unknown:
        problems.error(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(SUBMISSION_FIELDS)}")

    version = meta.get("schema_version", SUBMISSION_SCHEMA_VERSION)
    if version != SUBMISSION_SCHEMA_VERSION:
        problems.error(
            f"{where}: schema_version {version!r} is not supported (this harness reads version {SUBMISSION_SCHEMA_VERSION})"
        )

    sub_id = _check_str(meta, "id", where, problems)
    team = _check_str(meta, "team", where, problems)
    method = _check_str(meta, "method", where, problems)
    if sub_id is not None and not _ID_PATTERN.match(sub_id):
        problems.error(
            f"{where}: field 'id' must read <team>__<method> using letters, digits, '.', '_' or '-' (got {sub_id!r})"
        )
    for key, value in (("team", team), ("method", method)):
        if value is not None and not _NAME_PATTERN.match(value.replace(" ", "-")):
            problems.error(f"{where}: field '{key}' may use letters, digits, spaces, '.', '_' or '-' (got {value!r})")
    _check_str(meta, "contact", where, problems)
    _check_str(meta, "licence", where, problems)

    for key, allowed in (("track", TRACKS), ("kind", KINDS)):
        value = meta.get(key)
        if value is None:
            problems.error(f"{where}: missing required field '{key}'")
        elif value not in allowed:
            problems.error(f"{where}: field '{key}' must be one of {', '.join(allowed)} (got {value!r})")

    generator = meta.get("generator")
    if generator is None:
        problems.error(f"{where}: missing required field 'generator'")
    elif not isinstance(generator, dict):
        problems.error(f"{where}: field 'generator' must be a mapping {{name, version, link}} (got {generator!r})")
    else:
        for key in ("name", "version", "link"):
            value = generator.get(key)
            if value is None:
                problems.error(f"{where}: missing required field 'generator.{key}'")
            elif not isinstance(value, (str, int, float)) or isinstance(value, bool) or not str(value).strip():
                problems.error(f"{where}: field 'generator.{key}' must be a non-empty string (got {value!r})")

    fine_tuned = meta.get("fine_tuned")
    if fine_tuned is None:
        problems.error(f"{where}: missing required field 'fine_tuned'")
    elif not isinstance(fine_tuned, dict) or "used" not in fine_tuned:
        problems.error(f"{where}: field 'fine_tuned' must be a mapping {{used: yes|no, data: ...}} (got {fine_tuned!r})")
    elif not isinstance(fine_tuned["used"], bool):
        problems.error(f"{where}: field 'fine_tuned.used' must be yes or no (got {fine_tuned['used']!r})")
    elif fine_tuned["used"] and not (isinstance(fine_tuned.get("data"), str) and fine_tuned["data"].strip()):
        problems.error(f"{where}: field 'fine_tuned.data' must say on what data the generator was fine-tuned")

    task = meta.get("task")
    if task is None:
        problems.error(f"{where}: missing required field 'task'")
    elif not isinstance(task, dict):
        problems.error(f"{where}: field 'task' must be a mapping {{name, revision}} (got {task!r})")
    else:
        for key in ("name", "revision"):
            if not isinstance(task.get(key), str) or not task[key].strip():
                problems.error(f"{where}: field 'task.{key}' must be a non-empty string (got {task.get(key)!r})")

    baseline = meta.get("baseline")
    if baseline is not None:
        names = _baseline_names()
        if baseline not in names:
            problems.error(f"{where}: field 'baseline' must be one of {', '.join(names)} (got {baseline!r})")
        elif meta.get("track") != "open":
            problems.error(f"{where}: baselines belong to the 'open' track (baseline {baseline!r} has track {meta.get('track')!r})")

    hub = meta.get("hub")
    if meta.get("kind") == "hub":
        if not isinstance(hub, dict):
            problems.error(f"{where}: kind hub needs a field 'hub' mapping {{repo_id, revision}} (got {hub!r})")
        elif not isinstance(hub.get("repo_id"), str) or not hub["repo_id"].strip():
            problems.error(f"{where}: field 'hub.repo_id' must be a Hub dataset id or a local directory")
    elif hub is not None:
        problems.error(f"{where}: field 'hub' is only allowed with kind hub (kind is {meta.get('kind')!r})")
    if "notes" in meta and meta["notes"] is not None and not isinstance(meta["notes"], str):
        problems.error(f"{where}: field 'notes' must be a string")
    return meta


# ----------------------------------------------------------------------------------------------
# file names and paths
# ----------------------------------------------------------------------------------------------


def file_name_problem(name: Any) -> str | None:
    """Why `name` is not an acceptable relative file name, or None. Pure string checks."""
    if not isinstance(name, str) or not name:
        return f"file_name must be a non-empty string (got {name!r})"
    if "\x00" in name:
        return f"file_name {name!r} contains a NUL character"
    if "\\" in name:
        return f"file_name {name!r} contains a backslash (use '/' separators)"
    if name.startswith("/") or _WINDOWS_DRIVE.match(name):
        return f"file_name {name!r} is an absolute path (must be relative to the submission folder)"
    parts = name.split("/")
    if ".." in parts:
        return f"file_name {name!r} contains '..' (must stay inside the submission folder)"
    if any(part in ("", ".") for part in parts):
        return f"file_name {name!r} has an empty or '.' path component"
    if name in (SUBMISSION_FILE, METADATA_FILE):
        return f"file_name {name!r} names a metadata file, not an image"
    if not name.lower().endswith(IMAGE_EXTENSIONS):
        return f"file_name {name!r}: extension not allowed (use one of {', '.join(IMAGE_EXTENSIONS)})"
    return None


def resolve_inside(root: Path, name: str) -> tuple[Path | None, str | None]:
    """(path, None) when `root/name` is a regular file whose real path stays inside `root`.

    Symlinks are followed only to check where they lead: one resolving outside `root` is refused
    (it could make the harness read any file on the machine).
    """
    candidate = root / name
    real_root = os.path.realpath(root)
    real = os.path.realpath(candidate)
    if os.path.commonpath([real_root, real]) != real_root:
        return None, f"{name}: symlink resolves outside the submission folder (to {real})"
    if not os.path.lexists(candidate):
        return None, f"{name}: file not found"
    if not os.path.isfile(real):
        return None, f"{name}: not a regular file"
    return candidate, None


# ----------------------------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------------------------


def parse_label(label: Any) -> tuple[dict[str, float] | None, str | None]:
    """A metadata `label` (class name or {class: weight}) as a soft label, or (None, problem).

    Class names are checked against a task later (`unknown_classes`); here only the shape and the
    numbers: finite, non-negative, summing to 1 within SOFT_LABEL_TOLERANCE.
    """
    if isinstance(label, str):
        if not label.strip():
            return None, "label is an empty string"
        return {label: 1.0}, None
    if isinstance(label, dict):
        if not label:
            return None, "soft label is empty"
        weights: dict[str, float] = {}
        for name, weight in label.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                return None, f"soft label weight for {name!r} must be a number (got {weight!r})"
            weight = float(weight)
            if not math.isfinite(weight):
                return None, f"soft label weight for {name!r} is not finite ({weight})"
            if weight < 0:
                return None, f"soft label weight for {name!r} is negative ({weight})"
            weights[str(name)] = weight
        total = math.fsum(weights.values())
        if abs(total - 1.0) > SOFT_LABEL_TOLERANCE:
            return None, f"soft label weights sum to {total!r}, not 1 (tolerance {SOFT_LABEL_TOLERANCE})"
        return weights, None
    return None, f"label must be a class name or a {{class: weight}} mapping (got {label!r})"


# ----------------------------------------------------------------------------------------------
# the loaded objects
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmissionImage:
    """One metadata row: an image file with its (soft) label and provenance."""

    file_name: str  # relative to the image root (the submission folder or the hub snapshot)
    path: Path
    label: dict[str, float]  # soft label, weights summing to 1
    source_id: str | None
    prompt: str
    sha256: str
    line: int  # line number in metadata.jsonl (for messages)

    @property
    def hard_label(self) -> str:
        """The class with the largest weight (ties: the first listed)."""
        return max(self.label.items(), key=lambda kv: kv[1])[0]


@dataclass
class Submission:
    """A loaded submission folder (see the module docstring and docs/RECORDS.md section 2)."""

    path: Path
    meta: dict
    kind: str  # images | hub | checkpoint (guessed from the files when submission.yaml is unusable)
    entries: list[SubmissionImage]
    image_root: Path  # the folder file_names are relative to
    content_hash: str
    yaml_sha256: str
    checkpoint: Path | None = None
    checkpoint_config: dict | None = None

    @property
    def id(self) -> str:
        value = self.meta.get("id")
        return value if isinstance(value, str) and value else self.path.name

    @property
    def track(self) -> str | None:
        """The declared track (None or an invalid value only in a submission with problems)."""
        return self.meta.get("track")

    @property
    def baseline(self) -> str | None:
        return self.meta.get("baseline")

    @property
    def task_name(self) -> str | None:
        task = self.meta.get("task")
        return task.get("name") if isinstance(task, dict) else None

    def image_refs(self) -> list[ImageRef]:
        """One ImageRef per metadata row (rows repeating a file share its SHA-256)."""
        return [ImageRef(e.sha256, e.path, name=f"{self.id}/{e.file_name}") for e in self.entries]

    def targets(self, classes: list[str]) -> np.ndarray:
        """(N, C) float32 soft-label targets in `classes` order."""
        index = {name: i for i, name in enumerate(classes)}
        out = np.zeros((len(self.entries), len(classes)), dtype=np.float32)
        for row, entry in enumerate(self.entries):
            for name, weight in entry.label.items():
                if name not in index:
                    raise SubmissionError(
                        f"{self.path / METADATA_FILE} line {entry.line}: unknown class {name!r} "
                        f"(task classes: {', '.join(classes)})"
                    )
                out[row, index[name]] = weight
        return out

    def hard_labels(self, classes: list[str]) -> np.ndarray:
        """(N,) int64: the class index of each row's largest weight (first in `classes` on ties)."""
        return self.targets(classes).argmax(axis=1).astype(np.int64)

    def counts(self, classes: list[str]) -> dict[str, int]:
        """Rows per class by hard label, every class of `classes` present."""
        labels = self.hard_labels(classes) if self.entries else np.zeros(0, dtype=np.int64)
        return {name: int((labels == i).sum()) for i, name in enumerate(classes)}

    def __repr__(self) -> str:
        return f"Submission({self.id!r}, kind={self.kind}, track={self.track}, n={len(self.entries)})"


# ----------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------


def read_yaml(path: Path, problems: Problems) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.error(f"{path.name}: file not found")
        return None
    except UnicodeDecodeError as exc:
        problems.error(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problems.error(f"{path.name}: invalid YAML{where} ({getattr(exc, 'problem', None) or exc})")
        return None


def read_metadata_rows(path: Path, problems: Problems) -> list[tuple[int, dict]]:
    """(line number, row) for every well-formed JSON object line; problems for the rest."""
    label = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.error(f"{label}: file not found (a kind images submission lists its images there)")
        return []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.error(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return []
    rows = []
    n_errors = len(problems.errors)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.error(f"{label} line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            problems.error(f"{label} line {number}: must be a JSON object (got {type(row).__name__})")
            continue
        rows.append((number, row))
    if not rows and len(problems.errors) == n_errors:
        problems.error(f"{label}: no images listed")
    return rows


def parse_rows(
    rows: list[tuple[int, dict]],
    image_root: Path,
    metadata_label: str,
    problems: Problems,
    *,
    allow_repeated_files: bool,
) -> list[SubmissionImage]:
    """Turn metadata rows into SubmissionImages, recording every problem; bad rows are dropped."""
    entries: list[SubmissionImage] = []
    seen_names: dict[str, int] = {}
    seen_folded: dict[str, str] = {}
    file_sha: dict[str, str] = {}
    for number, row in rows:
        where = f"{metadata_label} line {number}"
        missing = [key for key in ("file_name", "label") if key not in row]
        if missing:
            problems.error(f"{where}: missing required field(s) {', '.join(missing)}")
            continue
        name = row["file_name"]
        problem = file_name_problem(name)
        if problem:
            problems.error(f"{where}: {problem}")
            continue
        if name in seen_names and not allow_repeated_files:
            problems.error(
                f"{where}: duplicate file_name {name!r} (also on line {seen_names[name]}); "
                "only the 'duplicate' baseline may list a file more than once"
            )
            continue
        folded = name.casefold()
        if folded in seen_folded and seen_folded[folded] != name:
            problems.error(
                f"{where}: file_name {name!r} differs from {seen_folded[folded]!r} only by letter case "
                "(they collide on case-insensitive file systems)"
            )
            continue
        seen_names.setdefault(name, number)
        seen_folded.setdefault(folded, name)

        soft, label_problem = parse_label(row["label"])
        if label_problem:
            problems.error(f"{where}: {label_problem}")
            continue
        source_id = row.get("source_id")
        if source_id is not None and (not isinstance(source_id, str) or not source_id):
            problems.error(f"{where}: source_id must be a generation-input image_id or null (got {source_id!r})")
            continue
        prompt = row.get("prompt") or ""
        if not isinstance(prompt, str):
            problems.error(f"{where}: prompt must be a string (got {prompt!r})")
            continue

        path, path_problem = resolve_inside(image_root, name)
        if path_problem:
            problems.error(f"{where}: {path_problem}")
            continue
        if name not in file_sha:
            file_sha[name] = sha256_file(path)
        entries.append(
            SubmissionImage(
                file_name=name, path=path, label=soft, source_id=source_id, prompt=prompt,
                sha256=file_sha[name], line=number,
            )
        )
    return entries


def compute_content_hash(yaml_sha256: str, entries: Iterable[SubmissionImage], extra: dict | None = None) -> str:
    """SHA-256 over submission.yaml and the sorted (file_name, sha256, label, source_id) rows."""
    rows = sorted(
        [e.file_name, e.sha256, json.dumps(e.label, sort_keys=True), e.source_id or ""] for e in entries
    )
    return sha256_json({"submission_yaml": yaml_sha256, "rows": rows, **(extra or {})})


def resolve_hub_root(meta: dict, folder: Path, problems: Problems) -> Path | None:
    """The directory holding a kind hub submission's metadata.jsonl and images.

    `hub.repo_id` is either a local directory (absolute, or relative to the submission folder) or a
    Hub dataset id fetched with `snapshot_download` at `hub.revision`, which must then be a full
    commit SHA (a branch can move after validation). HF_HUB_OFFLINE / a local cache work as usual.
    """
    hub = meta.get("hub") or {}
    repo_id, revision = hub.get("repo_id"), hub.get("revision")
    local = Path(repo_id).expanduser()
    if not local.is_absolute():
        local = folder / local
    if local.is_dir():
        problems.warn(
            f"{SUBMISSION_FILE}: hub.repo_id {repo_id!r} is a local directory; the official run needs a Hub "
            "dataset repo pinned by commit"
        )
        return local
    if not isinstance(revision, str) or not _COMMIT_SHA.match(revision):
        problems.error(f"{SUBMISSION_FILE}: field 'hub.revision' must be a full 40-character commit SHA (got {revision!r})")
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision))
    except Exception as exc:  # network, auth, unknown repo/revision: all reported, not raised
        problems.error(f"{SUBMISSION_FILE}: could not fetch Hub dataset {repo_id}@{revision} ({type(exc).__name__}: {exc})")
        return None


def parse_submission(path: str | os.PathLike) -> tuple[Submission | None, Problems]:
    """Read a submission folder, collecting every structural problem (no task needed).

    Returns the Submission (bad rows dropped) and the problems. Parsing goes on past a broken
    submission.yaml (the payload's kind is then guessed from the files) so that one run reports
    every problem; a Submission returned with problems must not be scored (`load_submission`
    refuses it). None only when there is no folder.
    """
    folder = Path(path)
    problems = Problems()
    if not folder.is_dir():
        problems.error(f"{folder}: not a directory")
        return None, problems
    yaml_path = folder / SUBMISSION_FILE
    raw_meta = None
    if yaml_path.is_symlink():
        problems.error(f"{SUBMISSION_FILE}: must be a regular file, not a symlink")
    else:
        n_before = len(problems.errors)
        raw_meta = read_yaml(yaml_path, problems)
        if raw_meta is None and len(problems.errors) == n_before:
            problems.error(f"{SUBMISSION_FILE}: file is empty")
    meta = check_submission_yaml(raw_meta, SUBMISSION_FILE, problems) if raw_meta is not None else {}
    yaml_sha = sha256_file(yaml_path) if yaml_path.is_file() and not yaml_path.is_symlink() else ""
    if isinstance(meta.get("id"), str) and meta["id"] != folder.name:
        problems.warn(f"{SUBMISSION_FILE}: id {meta['id']!r} differs from the folder name {folder.name!r}")

    kind = meta.get("kind")
    if kind not in KINDS:  # unusable yaml: check what the files say the payload is
        kind = "checkpoint" if (folder / CHECKPOINT_FILE).exists() and not (folder / METADATA_FILE).exists() else "images"
    if kind == "checkpoint":
        checkpoint, config = _parse_checkpoint(folder, problems)
        extra = {}
        if checkpoint is not None:
            extra["model_safetensors"] = sha256_file(checkpoint)
            extra["model_yaml"] = sha256_file(folder / CHECKPOINT_CONFIG_FILE)
        submission = Submission(
            path=folder, meta=meta, kind=kind, entries=[], image_root=folder,
            content_hash=compute_content_hash(yaml_sha, [], extra), yaml_sha256=yaml_sha,
            checkpoint=checkpoint, checkpoint_config=config,
        )
        return submission, problems

    if kind == "hub":
        image_root = resolve_hub_root(meta, folder, problems) if isinstance(meta.get("hub"), dict) else None
        metadata_label = f"hub:{meta.get('hub', {}).get('repo_id')}/{METADATA_FILE}" if image_root else METADATA_FILE
    else:
        image_root = folder
        metadata_label = METADATA_FILE
    entries: list[SubmissionImage] = []
    if image_root is not None:
        metadata_path = image_root / METADATA_FILE
        if metadata_path.is_symlink():
            problems.error(f"{metadata_label}: must be a regular file, not a symlink")
        else:
            rows = read_metadata_rows(metadata_path, problems)
            entries = parse_rows(
                rows, image_root, metadata_label, problems,
                allow_repeated_files=meta.get("baseline") == "duplicate",
            )
    extra = {"hub": meta.get("hub")} if kind == "hub" else None
    submission = Submission(
        path=folder, meta=meta, kind=kind, entries=entries, image_root=image_root or folder,
        content_hash=compute_content_hash(yaml_sha, entries, extra), yaml_sha256=yaml_sha,
    )
    return submission, problems


_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container (a zip holding a pickle)


def _parse_checkpoint(folder: Path, problems: Problems) -> tuple[Path | None, dict | None]:
    """Check model.safetensors (header only, through safetensors, never unpickled) and model.yaml."""
    weights_path = folder / CHECKPOINT_FILE
    config_path = folder / CHECKPOINT_CONFIG_FILE
    weights_ok = True
    config: dict | None = None
    for candidate in (weights_path, config_path):
        if candidate.is_symlink():
            problems.error(f"{candidate.name}: must be a regular file, not a symlink")
            weights_ok = False
    if not weights_ok:
        return None, None
    if not weights_path.is_file():
        others = sorted(p.name for p in folder.glob("*") if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl"))
        hint = f" (found {', '.join(others)}: pickled checkpoints are not accepted, convert to safetensors)" if others else ""
        problems.error(f"{CHECKPOINT_FILE}: file not found{hint}")
        weights_ok = False
    else:
        head = weights_path.read_bytes()[:8] if weights_path.stat().st_size else b""
        if not head:
            problems.error(f"{CHECKPOINT_FILE}: empty file (0 bytes)")
            weights_ok = False
        elif head.startswith(_PICKLE_MAGIC) or head.startswith(_ZIP_MAGIC):
            problems.error(
                f"{CHECKPOINT_FILE}: this is a pickle/torch.save file, not safetensors "
                "(pickles can run code and are never loaded; save with safetensors.torch.save_file)"
            )
            weights_ok = False
        else:
            try:
                from safetensors import safe_open

                with safe_open(str(weights_path), framework="numpy") as handle:
                    if not list(handle.keys()):
                        problems.error(f"{CHECKPOINT_FILE}: holds no tensors")
                        weights_ok = False
            except Exception as exc:  # safetensors raises its own error types for bad headers
                problems.error(f"{CHECKPOINT_FILE}: not a valid safetensors file ({type(exc).__name__}: {exc})")
                weights_ok = False
    if not config_path.is_file():
        problems.error(f"{CHECKPOINT_CONFIG_FILE}: file not found (it describes the architecture and class order)")
    else:
        parsed = read_yaml(config_path, problems)
        if parsed is not None and not isinstance(parsed, dict):
            problems.error(f"{CHECKPOINT_CONFIG_FILE}: must be a YAML mapping (got {type(parsed).__name__})")
        elif isinstance(parsed, dict):
            config = parsed
            classes = parsed.get("classes")
            if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
                problems.error(f"{CHECKPOINT_CONFIG_FILE}: field 'classes' must be a list of class names")
    return (weights_path if weights_ok else None), config


def load_submission(path: str | os.PathLike) -> Submission:
    """Load a submission folder, or raise SubmissionError listing every structural problem.

    Task-dependent checks (class names, counts, source ids, decoding, leakage) are
    `validate_submission`'s job.
    """
    submission, problems = parse_submission(path)
    if problems.errors or submission is None:
        details = "\n  ".join(problems.errors) or "unusable submission.yaml"
        raise SubmissionError(f"{path}: invalid submission ({len(problems.errors)} problem(s)):\n  {details}")
    return submission


def describe_fields() -> str:
    """Markdown table of submission.yaml fields (for the guide and `--help`)."""
    lines = ["| field | required | what |", "|---|---|---|"]
    for name, (required, what) in SUBMISSION_FIELDS.items():
        lines.append(f"| `{name}` | {'yes' if required else 'no'} | {what} |")
    return "\n".join(lines)
