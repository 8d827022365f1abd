"""`synthbench validate`: is a submission fit to be scored? Every problem, reported at once.

Checks, in order (docs/SUBMITTING.md lists them for participants):

1. submission.yaml: schema (required keys, types, allowed values), task name and revision;
2. metadata.jsonl: rows well-formed, file names safe and present, labels well-formed, classes
   known to the task, every `source_id` a generation_inputs image (or, in the open track, a
   train_real image) and never a test image;
3. counts per class and the ratios they support: ratio 1:k needs k times the task's train_real
   count of every class, as the grid draws it (fewer than 4x is a warning: not rankable; fewer
   than 1x, or none, an error);
4. every image decodes (PNG/JPEG/WebP, pixel and byte limits: no decompression bombs);
5. no two listed files are byte-identical (except in the duplicate baseline);
6. the leakage gate (benchmark.submissions.leakage): no near-copy of a test image, and in the
   generated track no near-copy of a real train image;
7. checkpoints: `checkpoints.check_checkpoint`, the check `synthbench run` makes before it
   loads a checkpoint (files, model.yaml, backbone_config, tensor names/shapes/dtypes, finite
   values; never unpickled), so validate accepts exactly what run accepts.

Every input is bounded before it is read (format.py's limits, docs/SUBMITTING.md); problems of one
kind on many rows or files are summarised. Validation only reads the submission; it writes nothing
into it (the feature cache and the leakage index live in the cache directory).
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SubmissionError
from ..images import ImageDecodeError, ImageRef, open_rgb, read_image_bytes
from ..io import sha256_bytes, shorten
from ..protocol import RATIOS
from .format import (
    IMAGE_EXTENSIONS,
    MAX_LISTED,
    METADATA_FILE,
    SUBMISSION_FILE,
    Submission,
    _kind_of,
    listing,
    parse_submission,
)

log = logging.getLogger(__name__)

#: How many offending rows one message lists before "and N more".
_MAX_LISTED = MAX_LISTED


@dataclass
class ValidationReport:
    """The outcome of `validate_submission`: `ok` only when there is no problem."""

    path: str
    submission_id: str | None = None
    kind: str | None = None
    track: str | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    supported_ratios: list[int] = field(default_factory=list)
    n_images: int = 0
    content_hash: str | None = None
    leakage: list[dict[str, Any]] = field(default_factory=list)
    leakage_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def rankable(self) -> bool:
        """Fit for every ratio up to 1:4 (what the leaderboard ranks)."""
        return self.ok and (self.kind in ("checkpoint", "recipe") or max(RATIOS) in self.supported_ratios)

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise SubmissionError(
                f"{self.path}: submission failed validation ({len(self.problems)} problem(s)):\n  "
                + "\n  ".join(self.problems)
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "ok": self.ok, "rankable": self.rankable, "submission_id": self.submission_id,
            "kind": self.kind, "track": self.track, "n_images": self.n_images, "counts": self.counts,
            "supported_ratios": self.supported_ratios, "content_hash": self.content_hash,
            "leakage_checked": self.leakage_checked, "leakage": self.leakage,
            "problems": self.problems, "warnings": self.warnings,
        }

    def format(self) -> str:
        """Human-readable report (what `synthbench validate` prints)."""
        lines = [f"submission {self.submission_id or '?'} ({self.path})"]
        if self.kind:
            lines.append(f"  kind {self.kind}, track {self.track}, {self.n_images} image rows")
        if self.counts:
            lines.append("  images per class: " + ", ".join(f"{c} {n}" for c, n in self.counts.items()))
            ratios = ", ".join(f"1:{k}" for k in self.supported_ratios) or "none"
            lines.append(f"  supported ratios: {ratios}")
        if self.kind == "recipe":
            lines.append("  images: none in the folder; the harness regenerates them from the task's train_real split "
                         "(benchmark.generators.recipe) for the official run")
        elif self.kind != "checkpoint" and self.kind is not None:
            lines.append("  leakage gate: " + ("checked" if self.leakage_checked else "NOT checked"))
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        for problem in self.problems:
            lines.append(f"  problem: {problem}")
        verdict = "OK" if self.ok else f"FAILED ({len(self.problems)} problem(s))"
        if self.ok and not self.rankable:
            verdict += " (not rankable: fewer than 1:4 images per class)"
        lines.append(f"  => {verdict}")
        return "\n".join(lines)


_listing = listing


def _check_task_fields(sub: Submission, task, report: ValidationReport) -> None:
    declared = sub.meta.get("task")
    if not isinstance(declared, dict):
        return  # already reported by the schema check
    if declared.get("name") != task.name:
        report.problems.append(
            f"{SUBMISSION_FILE}: task.name is {shorten(declared.get('name'))} but it is validated against task {task.name!r}"
        )
    elif declared.get("revision") != str(task.revision):
        report.warnings.append(
            f"{SUBMISSION_FILE}: made for task revision {shorten(declared.get('revision'))}, validated against {task.revision!r}"
        )


def _check_rows(sub: Submission, task, report: ValidationReport, metadata_label: str) -> list[int]:
    """Classes and source ids per row; returns the indices of rows whose classes are all known."""
    classes = set(task.classes)
    generation_ids = set(task.image_ids("generation_inputs"))
    train_ids = set(task.image_ids("train_real"))
    test_ids = set(task.image_ids("test"))
    unknown: dict[str, list[int]] = defaultdict(list)
    source_problems: dict[str, list[int]] = defaultdict(list)
    good = []
    for row, entry in enumerate(sub.entries):
        bad = [name for name in entry.label if name not in classes]
        for name in bad:
            unknown[name].append(entry.line)
        if not bad:
            good.append(row)
        source = entry.source_id
        if source is None or source in generation_ids:
            continue
        if source in test_ids:
            source_problems[f"source_id {shorten(source)} is a test image: test images must never be used for generation"].append(entry.line)
        elif source in train_ids:
            if sub.track != "open":
                source_problems[
                    f"source_id {shorten(source)} is a train_real image; the generated track starts from generation_inputs "
                    "(augmentations of real images belong to the open track)"
                ].append(entry.line)
        else:
            source_problems[f"source_id {shorten(source)} is not a generation_inputs image_id of task {task.name}"].append(entry.line)
    names = list(unknown)
    for name in names[:_MAX_LISTED]:
        report.problems.append(
            f"{metadata_label}: unknown class {shorten(name)} on line(s) {_listing(unknown[name])} (task classes: {', '.join(task.classes)})"
        )
    if len(names) > _MAX_LISTED:
        more = sum(len(unknown[name]) for name in names[_MAX_LISTED:])
        report.problems.append(f"{metadata_label}: and {len(names) - _MAX_LISTED} more unknown class(es) on {more} line(s)")
    messages = list(source_problems)
    for message in messages[:_MAX_LISTED]:
        report.problems.append(f"{metadata_label} line(s) {_listing(source_problems[message])}: {message}")
    if len(messages) > _MAX_LISTED:
        more = sum(len(source_problems[m]) for m in messages[_MAX_LISTED:])
        report.problems.append(f"{metadata_label}: and {more} more line(s) with a source_id problem")
    return good


def _check_counts(sub: Submission, task, good_rows: list[int], report: ValidationReport) -> None:
    """Images per class and the ratios they support, on the grid's rule: ratio 1:k draws k times
    the task's own train_real count of each class (`task.class_counts("train_real")`)."""
    counts = dict.fromkeys(task.classes, 0)
    for row in good_rows:
        counts[sub.entries[row].hard_label] += 1
    real = task.class_counts("train_real")
    report.counts = counts
    report.supported_ratios = [k for k in RATIOS if all(n >= k * real[c] for c, n in counts.items())]
    for name, n in counts.items():
        if n == 0:
            report.problems.append(f"class {name!r} has no images")
        elif n < real[name]:
            report.problems.append(
                f"class {name!r} has {n} images; at least {real[name]} are needed "
                f"(ratio 1:1: as many as the task's train_real images of the class)"
            )
    top = max(RATIOS)
    short = {name: n for name, n in counts.items() if real[name] <= n < top * real[name]}
    if short and report.supported_ratios:
        needed = {top * real[name] for name in counts}
        head = (
            f"{needed.pop()} images per class are needed to be ranked" if len(needed) == 1
            else "to be ranked, each class needs " + ", ".join(f"{name} {top * real[name]}" for name in counts)
        )
        report.warnings.append(
            f"{head} (ratio 1:{top}: {top} x the task's train_real images of the class); "
            + ", ".join(f"{c} has {n}" for c, n in short.items())
            + f"; supported ratios: {', '.join(f'1:{k}' for k in report.supported_ratios)}"
        )


def _unlisted_files(sub: Submission) -> list[str]:
    listed = {e.file_name for e in sub.entries}
    root = sub.image_root
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel.lower().endswith(IMAGE_EXTENSIONS) and rel not in listed:
                found.append(rel)
    return sorted(found)


#: Images decoded (and signed for the leakage gate) at once: decoding and the signatures' resizes
#: and DCTs release the GIL, so threads use the cores; each thread holds one decoded image.
DECODE_WORKERS = 4


@dataclass
class _Decoded:
    """One listed file after decoding: its digest and gate signature, or why it cannot be read."""

    entry: Any
    digest: str | None = None
    signature: Any = None
    signature_seconds: float = 0.0
    error: ImageDecodeError | None = None


def _decode_one(entry, want_signature: bool) -> _Decoded:
    from .leakage import query_signature

    try:
        data = read_image_bytes(entry.path, name=entry.file_name)
        image = open_rgb(data, name=entry.file_name)
    except ImageDecodeError as exc:
        return _Decoded(entry, error=exc)
    decoded = _Decoded(entry, digest=sha256_bytes(data))
    if want_signature and decoded.digest == entry.sha256:
        start = time.perf_counter()
        decoded.signature = query_signature(image)
        decoded.signature_seconds = time.perf_counter() - start
    return decoded


def _decode_all(sub: Submission, report: ValidationReport, want_signatures: bool, seconds: dict[str, float]):
    """Decode each listed file once (DECODE_WORKERS at a time, reported in listing order); problems
    for undecodable ones. Returns {file_name: signature} (the leakage gate's, made while the image
    is decoded anyway; their time goes to `seconds`)."""
    from concurrent.futures import ThreadPoolExecutor

    signatures: dict[str, Any] = {}
    seen: dict[str, str] = {}  # sha256 -> first file name
    duplicates: list[str] = []
    failures: dict[str, list[str]] = defaultdict(list)  # kind of problem -> messages
    entries, listed = [], set()
    for entry in sub.entries:  # a file listed twice is decoded once
        if entry.file_name not in listed:
            listed.add(entry.file_name)
            entries.append(entry)
    workers = max(1, min(DECODE_WORKERS, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        for decoded in pool.map(lambda entry: _decode_one(entry, want_signatures), entries):
            entry = decoded.entry
            if decoded.error is not None:
                failures[_kind_of(str(decoded.error))].append(str(decoded.error))
                continue
            if decoded.digest != entry.sha256:
                report.problems.append(f"{entry.file_name}: changed while it was being validated")
                continue
            if decoded.digest in seen and sub.baseline != "duplicate":
                duplicates.append(f"{entry.file_name} = {seen[decoded.digest]}")
            seen.setdefault(decoded.digest, entry.file_name)
            if decoded.signature is not None:
                signatures[entry.file_name] = decoded.signature
                seconds["signatures"] += decoded.signature_seconds
    for kind, messages in failures.items():  # the first few of each kind, then a count
        report.problems.extend(messages[:_MAX_LISTED])
        if len(messages) > _MAX_LISTED:
            report.problems.append(f"and {len(messages) - _MAX_LISTED} more image(s) with the same kind of problem ({kind})")
    if duplicates:
        report.problems.append(
            f"{len(duplicates)} image(s) are byte-identical copies of another listed image "
            f"({'; '.join(duplicates[:_MAX_LISTED])}{' ...' if len(duplicates) > _MAX_LISTED else ''}); "
            "every synthetic image must be distinct"
        )
    return signatures


def _row_hash_problems(sub: Submission, report: ValidationReport) -> None:
    # Generators written by this package record each file's sha256 in its row: a mismatch means
    # the file was replaced after generation.
    changed = [e for e in sub.entries if e.recorded_sha256 is not None and e.recorded_sha256 != e.sha256]
    for entry in changed[:_MAX_LISTED]:
        report.problems.append(
            f"{METADATA_FILE} line {entry.line}: {entry.file_name} does not match the sha256 recorded in its row "
            "(the file was changed after it was generated)"
        )
    if len(changed) > _MAX_LISTED:
        report.problems.append(
            f"{METADATA_FILE}: and {len(changed) - _MAX_LISTED} more line(s) whose file does not match its recorded sha256"
        )


def _run_leakage_gate(
    sub: Submission, task, signatures: dict, report: ValidationReport, seconds: dict[str, float], *, cache, progress, device, image_size
) -> None:
    from .leakage import find_near_copies, reference_groups, reference_index, same_pair_ids

    groups = reference_groups(task, sub.track)

    embedder = _embedder(cache, device, image_size)
    start = time.perf_counter()
    index = reference_index(groups, embedder, embedder_id=embedder.id, cache_dir=Path(embedder.cache.root), progress=progress)
    seconds["reference index"] = time.perf_counter() - start
    rows = [e for e in sub.entries if e.file_name in signatures]
    unique: dict[str, Any] = {}
    for entry in rows:
        unique.setdefault(entry.file_name, entry)
    entries = list(unique.values())
    start = time.perf_counter()
    embeddings = embedder([ImageRef(e.sha256, e.path, name=e.file_name) for e in entries], progress)
    seconds["embeddings"] = time.perf_counter() - start
    # An image made from a generation input may match that input's own train tile only by an exact copy.
    same_pair = same_pair_ids(task, [e.source_id for e in entries])
    start = time.perf_counter()
    result = find_near_copies(
        index, [signatures[e.file_name] for e in entries], embeddings, same_pair=same_pair, progress=progress
    )
    seconds["matching"] = time.perf_counter() - start
    report.leakage_checked = True
    for match in result.matches:
        entry = entries[match.query]
        report.leakage.append({
            "file_name": entry.file_name, "reference_id": match.reference_id, "split": match.split,
            "reason": match.reason, "phash_distance": match.phash_distance,
            "cosine": round(match.cosine, 4), "ncc": None if np.isnan(match.ncc) else round(match.ncc, 4),
        })
        why = "" if match.split.startswith("test") else "; real images may not be submitted as generated"
        report.problems.append(f"leakage gate: {entry.file_name}: {match.describe()}{why}")
    # The reference index and the embeddings include any encoding the feature cache had to do
    # (work the grid reuses); signatures and matching are the gate's own.
    log.info(
        "leakage gate: %d of %d images are near-copies in %.1f s (%s; cascade: %s)",
        len(result.matches), result.n_checked, sum(seconds.values()),
        ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items()),
        ", ".join(f"{stage} {n}" for stage, n in result.stages.items()),
    )


def _embedder(cache, device, image_size):
    from ..features import FeatureCache
    from .leakage import BackboneEmbedder, default_embedder

    if isinstance(cache, BackboneEmbedder):
        return cache
    if isinstance(cache, FeatureCache):
        from ..backbones import DEFAULT_BACKBONE, load_backbone

        return BackboneEmbedder(cache, load_backbone(DEFAULT_BACKBONE, device=device, image_size=image_size))
    if cache is None:
        from ..paths import default_cache_dir

        cache = default_cache_dir()
    return default_embedder(cache, device=device, image_size=image_size)


def _check_checkpoint(sub: Submission, task, report: ValidationReport) -> None:
    """The checkpoint protocol's own check (run calls it before loading): one code path for both."""
    from ..errors import SynthbenchError
    from .checkpoints import check_checkpoint

    try:
        check_checkpoint(sub.path, task.classes)
    except SynthbenchError as exc:
        report.problems.append(str(exc).replace(str(sub.path) + os.sep, ""))


def validate_submission(
    path: str | os.PathLike,
    task,
    *,
    check_leakage: bool = True,
    cache=None,
    device: str = "cpu",
    image_size: int | None = None,
    progress: bool = False,
) -> ValidationReport:
    """Validate the submission at `path` against a loaded `task`; never raises for bad input.

    `cache` is where the leakage gate's embeddings go: a `FeatureCache`, a cache directory, a
    `leakage.BackboneEmbedder`, or None for the default cache ($SYNTHBENCH_CACHE or
    ~/.cache/synthbench/features). `image_size` is the gate backbone's input size (default: its
    native 224); pass the grid's size to share the submission's features with the run that follows.
    """
    report = ValidationReport(path=str(path))
    sub, parsed = parse_submission(path)
    report.problems.extend(parsed.errors)
    report.warnings.extend(parsed.warnings)
    if sub is None:
        return report
    report.submission_id, report.kind, report.track = sub.id, sub.kind, sub.track
    report.content_hash = sub.content_hash
    _check_task_fields(sub, task, report)
    if sub.kind == "checkpoint":
        if sub.checkpoint is not None:
            _check_checkpoint(sub, task, report)
        return report
    if sub.kind == "recipe":  # the harness makes these images from train_real itself (benchmark.generators.recipe)
        return report

    metadata_label = METADATA_FILE if sub.image_root == sub.path else f"hub:{sub.meta['hub']['repo_id']}/{METADATA_FILE}"
    report.n_images = len(sub.entries)
    good_rows = _check_rows(sub, task, report, metadata_label)
    _check_counts(sub, task, good_rows, report)
    _row_hash_problems(sub, report)
    unlisted = _unlisted_files(sub)
    if unlisted:
        report.warnings.append(
            f"{len(unlisted)} image file(s) are not listed in {METADATA_FILE} and will be ignored "
            f"({', '.join(unlisted[:_MAX_LISTED])}{' ...' if len(unlisted) > _MAX_LISTED else ''})"
        )
    seconds = {"signatures": 0.0}
    signatures = _decode_all(sub, report, want_signatures=check_leakage, seconds=seconds)
    if check_leakage and signatures:
        _run_leakage_gate(
            sub, task, signatures, report, seconds, cache=cache, progress=progress, device=device, image_size=image_size
        )
    elif not check_leakage:
        report.warnings.append("leakage gate skipped (--no-leakage): this submission cannot be accepted as it is")
    return report
