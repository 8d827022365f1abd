"""The result record: one JSON per (submission, backbone, protocol), docs/RECORDS.md section 4.

`validate_result_record` is the contract's executable form: schema version, every required field
and its type, setting names from `benchmark.protocol.SETTINGS` (plus the single settings of the
protocols that do not train: "zero-shot", "checkpoint"), predictions of the test split's length
and in its class range, metrics that agree with the predictions, CIs ordered lo <= point <= hi,
summaries that agree with their runs, and no duplicate (setting, seed) run. Each failure is a
ResultsError naming the file and the field. `write_result` validates before it writes (atomically),
so a good record is never replaced by an invalid one; `load_result` validates what it reads.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path

import numpy as np

from .errors import ResultsError
from .io import atomic_write_json
from .metrics import CI_METHOD
from .protocol import PROTOCOLS, SETTINGS

#: 3: `leakage_checked` (was the leakage gate run before scoring?) and `backbone.input_size` (the
#: input resolution in pixels, beside the preprocessing id); an optional Ed25519 `signature`
#: (benchmark.signing). 2: summary CIs are two-level (seeds and test images) and each summary entry
#: names its `ci_method`. Versions 1 and 2 still load: their runs are unchanged, a rerun rewrites
#: them as version 3, `leakage_checked` reads as unknown (False), and the leaderboard recomputes
#: every CI anyway.
RESULT_SCHEMA_VERSION = 3
#: Every version this harness reads.
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
#: A record file larger than this is refused before it is read (a 5-backbone x 45-run record on a
#: 3 000-image test split is a few MB).
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: The one setting of each protocol that does not train on the submission's settings.
NO_TRAINING_SETTINGS: dict[str, str] = {"zero-shot": "zero-shot", "checkpoint": "checkpoint"}
SUBMISSION_KINDS = ("images", "hub", "checkpoint")
#: Results directory inside a submission folder, and the file name pattern of a record.
RESULTS_DIR = "results"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Tolerance when checking stored metrics against the predictions (JSON round-trips floats exactly;
#: this only absorbs summation-order differences).
_METRIC_TOL = 1e-9


def result_path(submission_dir: str | os.PathLike, backbone: str, protocol: str) -> Path:
    """submissions/<id>/results/<backbone>__<protocol>.json"""
    for what, name in (("backbone", backbone), ("protocol", protocol)):
        if not _NAME.match(name or "") or "__" in name:
            raise ResultsError(f"{what} name {name!r} cannot be part of a result file name")
    return Path(submission_dir) / RESULTS_DIR / f"{backbone}__{protocol}.json"


class _Checker:
    """Collects the path so every error names the file and the field."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = str(path) if path is not None else "<result record>"

    def fail(self, field: str, problem: str) -> None:
        raise ResultsError(f"{self.path}: field {field}: {problem}")

    def get(self, obj: dict, key: str, kind, field: str, *, nullable: bool = False):
        if not isinstance(obj, dict):
            self.fail(field.rsplit(".", 1)[0] or field, f"expected an object, got {type(obj).__name__}")
        if key not in obj:
            self.fail(field, "missing")
        value = obj[key]
        if value is None and nullable:
            return None
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                self.fail(field, f"expected a finite number, got {value!r}")
            return float(value)
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(field, f"expected an integer, got {value!r}")
            return value
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(field, f"expected {names}, got {type(value).__name__}")
        return value

    def ci(self, obj: dict, key: str, point: float | None, field: str, *, nullable: bool = False) -> None:
        value = self.get(obj, key, list, field, nullable=nullable)
        if value is None:
            return
        if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            self.fail(field, f"expected [lo, hi], got {value!r}")
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi)):
            self.fail(field, f"CI bounds must be finite, got {value!r}")
        if point is not None and not (lo <= point <= hi):
            self.fail(field, f"CI [{lo}, {hi}] does not satisfy lo <= {point} <= hi")
        if lo > hi:
            self.fail(field, f"CI [{lo}, {hi}] has lo > hi")


def _macro_f1_and_accuracy(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> tuple[float, float, np.ndarray]:
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    tp = np.diag(confusion).astype(float)
    denominator = confusion.sum(axis=1) + confusion.sum(axis=0)
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(tp.sum() / labels.size), float(f1.mean()), confusion


def _setting_names(protocol: str) -> set[str]:
    if protocol in NO_TRAINING_SETTINGS:
        return {NO_TRAINING_SETTINGS[protocol]}
    return set(SETTINGS)


def validate_result_record(record: dict, path: str | os.PathLike | None = None) -> None:
    """Raise ResultsError (naming `path` and the field) unless `record` follows RECORDS.md section 4."""
    c = _Checker(path)
    if not isinstance(record, dict):
        c.fail("<root>", f"expected a JSON object, got {type(record).__name__}")
    version = c.get(record, "schema_version", int, "schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        c.fail("schema_version", f"unknown version {version} (this harness reads versions "
               f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))})")
    c.get(record, "harness_version", str, "harness_version")
    if record.get("scoring_version") is not None and c.get(record, "scoring_version", int, "scoring_version") < 1:
        c.fail("scoring_version", "must be a positive integer (benchmark.metrics.SCORING_VERSION)")
    c.get(record, "official", bool, "official")
    if version >= 3:
        c.get(record, "leakage_checked", bool, "leakage_checked")
    if record.get("signature") is not None:
        signature = c.get(record, "signature", dict, "signature")
        for key in ("algorithm", "key_id", "value"):
            c.get(signature, key, str, f"signature.{key}")

    submission = c.get(record, "submission", dict, "submission")
    for key in ("id", "content_hash", "track"):
        c.get(submission, key, str, f"submission.{key}")
    kind = c.get(submission, "kind", str, "submission.kind")
    if kind not in SUBMISSION_KINDS:
        c.fail("submission.kind", f"{kind!r} is not one of {', '.join(SUBMISSION_KINDS)}")

    task = c.get(record, "task", dict, "task")
    for key in ("name", "revision", "test_manifest_hash"):
        c.get(task, key, str, f"task.{key}")

    backbone = c.get(record, "backbone", dict, "backbone")
    c.get(backbone, "name", str, "backbone.name")
    for key in ("weights", "revision", "preprocessing"):
        c.get(backbone, key, str, f"backbone.{key}", nullable=True)
    if "precision" in backbone:  # "fp32" (CPU) or "bf16-autocast" (CUDA); absent in older records
        c.get(backbone, "precision", str, "backbone.precision")
    if version >= 3:
        input_size = c.get(backbone, "input_size", int, "backbone.input_size", nullable=True)
        if input_size is not None and input_size <= 0:
            c.fail("backbone.input_size", f"must be a positive number of pixels, got {input_size}")

    protocol = c.get(record, "protocol", dict, "protocol")
    protocol_name = c.get(protocol, "name", str, "protocol.name")
    if protocol_name not in PROTOCOLS:
        c.fail("protocol.name", f"unknown protocol {protocol_name!r}; known: {', '.join(PROTOCOLS)}")
    c.get(protocol, "params", dict, "protocol.params")

    classes = c.get(record, "classes", list, "classes")
    if len(classes) < 2 or not all(isinstance(x, str) and x for x in classes):
        c.fail("classes", "expected a list of at least two non-empty class names")
    if len(set(classes)) != len(classes):
        c.fail("classes", "class names are not unique")
    n_classes = len(classes)

    test = c.get(record, "test", dict, "test")
    n_test = c.get(test, "n", int, "test.n")
    labels = c.get(test, "labels", list, "test.labels")
    if n_test <= 0 or len(labels) != n_test:
        c.fail("test.labels", f"has {len(labels)} labels for test.n = {n_test}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_classes for v in labels):
        c.fail("test.labels", f"every label must be an integer in 0..{n_classes - 1}")
    labels_array = np.asarray(labels, dtype=np.int64)

    valid_settings = _setting_names(protocol_name)
    runs = c.get(record, "runs", list, "runs")
    seen: set[tuple[str, int]] = set()
    runs_by_setting: dict[str, list[dict]] = {}
    for i, run in enumerate(runs):
        where = f"runs[{i}]"
        if not isinstance(run, dict):
            c.fail(where, "expected an object")
        setting = c.get(run, "setting", str, f"{where}.setting")
        if setting not in valid_settings:
            c.fail(f"{where}.setting", f"unknown setting {setting!r} for protocol {protocol_name!r}; "
                   f"use one of: {', '.join(sorted(valid_settings))}")
        ratio = c.get(run, "ratio", int, f"{where}.ratio")
        expected_ratio = SETTINGS[setting].ratio if setting in SETTINGS else 0
        if ratio != expected_ratio:
            c.fail(f"{where}.ratio", f"is {ratio} but setting {setting!r} has ratio {expected_ratio}")
        seed = c.get(run, "seed", int, f"{where}.seed")
        if (setting, seed) in seen:
            c.fail(where, f"duplicate run (setting {setting!r}, seed {seed})")
        seen.add((setting, seed))
        runs_by_setting.setdefault(setting, []).append(run)
        for key in ("n_train", "n_real_per_class", "n_synthetic_per_class"):
            if c.get(run, key, int, f"{where}.{key}") < 0:
                c.fail(f"{where}.{key}", "must be >= 0")
        predictions = c.get(run, "predictions", list, f"{where}.predictions")
        if len(predictions) != n_test:
            c.fail(f"{where}.predictions", f"has {len(predictions)} predictions for test.n = {n_test}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_classes for v in predictions):
            c.fail(f"{where}.predictions", f"every prediction must be an integer in 0..{n_classes - 1}")
        _check_run_metrics(c, run, where, labels_array, np.asarray(predictions, dtype=np.int64), classes)
        delta = c.get(run, "delta_vs_real", dict, f"{where}.delta_vs_real", nullable=True)
        if delta is not None:
            for metric in ("accuracy", "macro_f1"):
                point = c.get(delta, metric, float, f"{where}.delta_vs_real.{metric}")
                if not -1.0 <= point <= 1.0:
                    c.fail(f"{where}.delta_vs_real.{metric}", f"{point} is not a difference of two scores in [0, 1]")
                c.ci(delta, f"{metric}_ci", point, f"{where}.delta_vs_real.{metric}_ci")
        c.get(run, "params", dict, f"{where}.params")
        if c.get(run, "seconds", float, f"{where}.seconds") < 0:
            c.fail(f"{where}.seconds", "must be >= 0")

    summary = c.get(record, "summary", dict, "summary")
    for setting, entry in summary.items():
        where = f"summary[{setting!r}]"
        if setting not in runs_by_setting:
            c.fail(where, f"summarises setting {setting!r}, which has no runs")
        if not isinstance(entry, dict):
            c.fail(where, "expected an object")
        if version >= 2:
            method = c.get(entry, "ci_method", str, f"{where}.ci_method")
            if method != CI_METHOD:
                c.fail(f"{where}.ci_method", f"unknown CI method {method!r} (this harness computes {CI_METHOD!r})")
        n_seeds = c.get(entry, "n_seeds", int, f"{where}.n_seeds")
        if n_seeds != len(runs_by_setting[setting]):
            c.fail(f"{where}.n_seeds", f"is {n_seeds} but the setting has {len(runs_by_setting[setting])} run(s)")
        for metric in ("accuracy", "macro_f1"):
            mean = c.get(entry, f"{metric}_mean", float, f"{where}.{metric}_mean")
            expected = float(np.mean([r["metrics"][metric] for r in runs_by_setting[setting]]))
            if abs(mean - expected) > _METRIC_TOL:
                c.fail(f"{where}.{metric}_mean", f"is {mean} but the runs' mean is {expected}")
            if c.get(entry, f"{metric}_std", float, f"{where}.{metric}_std") < 0:
                c.fail(f"{where}.{metric}_std", "must be >= 0")
            c.ci(entry, f"{metric}_ci", mean, f"{where}.{metric}_ci")
            delta = c.get(entry, f"delta_{metric}_mean", float, f"{where}.delta_{metric}_mean", nullable=True)
            c.ci(entry, f"delta_{metric}_ci", delta, f"{where}.delta_{metric}_ci", nullable=True)
        if entry.get("effective_real") is not None:
            _check_effective_real(c, entry["effective_real"], f"{where}.effective_real")
    missing = set(runs_by_setting) - set(summary)
    if missing:
        c.fail("summary", f"has no entry for setting(s) {', '.join(sorted(missing))}")

    if record.get("diagnostics") is not None:
        _check_diagnostics(c, record["diagnostics"], classes)

    skipped = c.get(record, "skipped", list, "skipped")
    for i, entry in enumerate(skipped):
        setting = c.get(entry, "setting", str, f"skipped[{i}].setting")
        if setting not in valid_settings:
            c.fail(f"skipped[{i}].setting", f"unknown setting {setting!r}")
        if setting in runs_by_setting:
            c.fail(f"skipped[{i}].setting", f"setting {setting!r} is both skipped and run")
        c.get(entry, "reason", str, f"skipped[{i}].reason")

    provenance = c.get(record, "provenance", dict, "provenance")
    for key in ("device", "torch", "started", "host"):
        c.get(provenance, key, str, f"provenance.{key}")
    c.get(provenance, "finished", str, "provenance.finished", nullable=True)
    for key in ("seconds_total", "seconds_encoding"):
        if c.get(provenance, key, float, f"provenance.{key}") < 0:
            c.fail(f"provenance.{key}", "must be >= 0")


#: The diagnostics a record's optional `diagnostics` block holds per group (benchmark.diagnostics).
DIAGNOSTIC_NAMES = ("kid", "fd", "precision", "recall", "density", "coverage", "vendi_ratio",
                    "memorisation_rate", "edit_strength")


def _check_diagnostics(c: _Checker, block: dict, classes: list[str]) -> None:
    """The optional `diagnostics`: every group has each diagnostic as null or {value, ci}."""
    c.get(block, "params", dict, "diagnostics.params")
    per_class = c.get(block, "per_class", dict, "diagnostics.per_class")
    if list(per_class) != list(classes):
        c.fail("diagnostics.per_class", f"keys {list(per_class)} are not the classes {classes}")
    groups = [("overall", c.get(block, "overall", dict, "diagnostics.overall"))]
    groups += [(f"per_class.{name}", entry) for name, entry in per_class.items()]
    for where, group in groups:
        for key in ("n_real", "n_synthetic"):
            if c.get(group, key, int, f"diagnostics.{where}.{key}") < 0:
                c.fail(f"diagnostics.{where}.{key}", "must be >= 0")
        for name in DIAGNOSTIC_NAMES:
            entry = c.get(group, name, dict, f"diagnostics.{where}.{name}", nullable=True)
            if entry is not None:
                value = c.get(entry, "value", float, f"diagnostics.{where}.{name}.value")
                c.ci(entry, "ci", value, f"diagnostics.{where}.{name}.ci")


_CENSORED = (None, "below", "above")


def _check_effective_real(c: _Checker, block: dict, where: str) -> None:
    """A summary's optional `effective_real` (benchmark.metrics.effective_real_images)."""
    curve_n = c.get(block, "curve_n", list, f"{where}.curve_n")
    if len(curve_n) < 2 or not all(isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0 for n in curve_n):
        c.fail(f"{where}.curve_n", "expected at least two positive numbers of images per class")
    if any(b <= a for a, b in zip(curve_n, curve_n[1:])):
        c.fail(f"{where}.curve_n", f"{curve_n} is not increasing")
    estimate = c.get(block, "estimate", float, f"{where}.estimate")
    c.ci(block, "ci", estimate, f"{where}.ci")
    for value, field in ((estimate, "estimate"), *zip(block["ci"], ("ci[0]", "ci[1]"))):
        if not curve_n[0] - 1e-9 <= value <= curve_n[-1] + 1e-9:
            c.fail(f"{where}.{field}", f"{value} lies outside the curve [{curve_n[0]}, {curve_n[-1]}]")
    censored = block.get("censored")
    ci_censored = c.get(block, "ci_censored", list, f"{where}.ci_censored")
    # A whole CI may lie below (or above) the curve: each end has its own censoring, in order.
    order = {"below": 0, None: 1, "above": 2}
    if censored not in _CENSORED or len(ci_censored) != 2 or any(end not in _CENSORED for end in ci_censored) \
            or not order[ci_censored[0]] <= order[censored] <= order[ci_censored[1]]:
        c.fail(f"{where}.censored", "must be null, 'below' or 'above', and the CI's ends censored no further in "
               "than the estimate (below <= null <= above)")
    c.get(block, "text", str, f"{where}.text")
    seeds = c.get(block, "seeds", list, f"{where}.seeds")
    if not seeds or not all(isinstance(v, int) and not isinstance(v, bool) for v in seeds):
        c.fail(f"{where}.seeds", "expected a non-empty list of seeds")


def _check_run_metrics(c: _Checker, run: dict, where: str, labels: np.ndarray, predictions: np.ndarray,
                       classes: list[str]) -> None:
    metrics = c.get(run, "metrics", dict, f"{where}.metrics")
    accuracy, macro_f1, confusion = _macro_f1_and_accuracy(labels, predictions, len(classes))
    for metric, expected in (("accuracy", accuracy), ("macro_f1", macro_f1)):
        value = c.get(metrics, metric, float, f"{where}.metrics.{metric}")
        if abs(value - expected) > _METRIC_TOL:
            c.fail(f"{where}.metrics.{metric}", f"is {value} but the predictions give {expected}")
        c.ci(metrics, f"{metric}_ci", value, f"{where}.metrics.{metric}_ci")
    per_class = c.get(metrics, "per_class", dict, f"{where}.metrics.per_class")
    if list(per_class) != list(classes):
        c.fail(f"{where}.metrics.per_class", f"keys {list(per_class)} are not the classes {classes}")
    for name, entry in per_class.items():
        for key in ("precision", "recall", "f1"):
            value = c.get(entry, key, float, f"{where}.metrics.per_class.{name}.{key}")
            if not 0.0 <= value <= 1.0:
                c.fail(f"{where}.metrics.per_class.{name}.{key}", f"{value} is outside [0, 1]")
        c.get(entry, "support", int, f"{where}.metrics.per_class.{name}.support")
    matrix = c.get(metrics, "confusion_matrix", list, f"{where}.metrics.confusion_matrix")
    if matrix != confusion.tolist():
        c.fail(f"{where}.metrics.confusion_matrix", "does not match the predictions (rows true, columns predicted)")


def leakage_checked(record: dict) -> bool:
    """Was the leakage gate run before this record was scored? (Records before version 3: unknown, False.)"""
    return record.get("leakage_checked") is True


def scoring_version(record: dict) -> int:
    """The scoring version a record was scored with (optional `scoring_version`, benchmark.metrics.
    SCORING_VERSION); a record without it: 2 from schema version 2 on (two-level CIs), else 1."""
    version = record.get("scoring_version")
    if isinstance(version, int) and not isinstance(version, bool):
        return version
    return 2 if record.get("schema_version", 1) >= 2 else 1


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a result record may hold")


def parse_record_text(text: str | bytes, path: str | os.PathLike) -> dict:
    """JSON text -> a validated record; every failure (deep nesting, NaN, huge integers, wrong
    types anywhere) is a ResultsError naming `path`, never another exception."""
    try:
        record = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ResultsError(f"{path}: not a result record (JSON nested too deeply)") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, UnicodeDecodeError) as exc:  # NaN/Infinity, integers beyond Python's digit limit
        raise ResultsError(f"{path}: not a valid result record ({str(exc)[:200]})") from None
    try:
        validate_result_record(record, path)
    except ResultsError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
        # A shape the field-by-field checks did not foresee: still one clean message.
        raise ResultsError(f"{path}: malformed result record ({type(exc).__name__}: {str(exc)[:200]})") from None
    return record


def load_result(path: str | os.PathLike) -> dict:
    """Read and validate a result record; ResultsError names the file and the problem.

    The file is checked (a regular file, at most MAX_RECORD_BYTES) before a byte is read.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ResultsError(f"{path}: result file not found") from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read the result file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ResultsError(f"{path}: not a regular file (a result record is a JSON file)")
    if info.st_size > MAX_RECORD_BYTES:
        raise ResultsError(
            f"{path}: {info.st_size} bytes, larger than a result record may be ({MAX_RECORD_BYTES} bytes); not read"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read the result file ({exc})") from None
    return parse_record_text(text, path)


def write_result(path: str | os.PathLike, record: dict) -> Path:
    """Validate `record` and write it atomically to `path` (an invalid record never reaches disk)."""
    path = Path(path)
    validate_result_record(record, path)
    try:
        atomic_write_json(path, record)
    except ValueError as exc:  # e.g. NaN, which JSON (allow_nan=False) refuses
        raise ResultsError(f"{path}: record cannot be written as JSON ({exc})") from None
    return path


__all__ = [
    "MAX_RECORD_BYTES",
    "NO_TRAINING_SETTINGS",
    "READABLE_SCHEMA_VERSIONS",
    "RESULT_SCHEMA_VERSION",
    "RESULTS_DIR",
    "leakage_checked",
    "load_result",
    "parse_record_text",
    "result_path",
    "validate_result_record",
    "write_result",
]
