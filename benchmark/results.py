"""The result record: one JSON per (submission, backbone, protocol), docs/RECORDS.md section 4.

`ResultRecord` is the contract's executable form (a pydantic model, benchmark.records), and
`validate_result_record` reports its first problem: schema version (older readable versions are
brought to the current shape in one place, `migrate_result`), every required field and its type, setting names from `benchmark.protocol.SETTINGS` (plus the single settings of the
protocols that do not train: "zero-shot", "checkpoint"), predictions of the test split's length
and in its class range, metrics that agree with the predictions, CIs ordered lo <= point <= hi,
summaries that agree with their runs, and no duplicate (setting, seed) run. Each failure is a
ResultsError naming the file and the field. `write_result` validates before it writes (atomically),
so a good record is never replaced by an invalid one; `load_result` validates what it reads.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, Field, ValidationError, create_model, field_validator, model_validator

from .errors import ResultsError
from .io import atomic_write_json, shorten
from .metrics import CI_METHOD
from .protocol import PROTOCOLS, SETTINGS
from .records import OpenRecord, describe, error_field, first_error, problem

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


# ----------------------------------------------------------------------------------------------
# the model (benchmark.records): types per field, then the checks that span fields
# ----------------------------------------------------------------------------------------------

Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(allow_inf_nan=False, ge=0)]
Count = Annotated[int, Field(ge=0)]


def _ci_shape(value: Any) -> Any:
    if not (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise problem(f"expected [lo, hi], got {shorten(value)}")
    return value


#: A 95% interval [lo, hi]; the model holding it checks lo <= point <= hi (`_check_ci`).
CI = Annotated[list[Finite], Field(min_length=2, max_length=2), BeforeValidator(_ci_shape)]


def _check_ci(ci: list[float] | None, point: float | None, *at: str | int) -> None:
    """lo <= point <= hi (and lo <= hi), or a problem at the CI's field `at`."""
    if ci is None:
        return
    lo, hi = ci
    if point is not None and not (lo <= point <= hi):
        raise problem(f"CI [{lo}, {hi}] does not satisfy lo <= {point} <= hi", *at)
    if lo > hi:
        raise problem(f"CI [{lo}, {hi}] has lo > hi", *at)


class Signature(OpenRecord):
    algorithm: str = Field(description="`ed25519`")
    key_id: str = Field(description="first 16 hex digits of the SHA-256 of the raw public key")
    value: str = Field(description="base64 signature over the canonical record without `signature`")


class SubmissionRef(OpenRecord):
    id: str = Field(description="the submission's id (its folder's name)")
    content_hash: str = Field(description="`Submission.content_hash` of what was scored")
    track: str = Field(description="`generated` or `open`")
    kind: str = Field(description="one of " + ", ".join(SUBMISSION_KINDS))

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in SUBMISSION_KINDS:
            raise problem(f"{kind!r} is not one of {', '.join(SUBMISSION_KINDS)}")
        return kind


class TaskRef(OpenRecord):
    name: str = Field(description="task name")
    revision: str = Field(description="`local` or the Hub commit the task was loaded at")
    test_manifest_hash: str = Field(description="identity of the test split (manifest.json)")


class BackboneRef(OpenRecord):
    name: str = Field(description="a name of benchmark.backbones.BACKBONES")
    weights: str | None = Field(description="pretrained weights id")
    revision: str | None = Field(description="weights revision (a checkpoint's SHA-256 for checkpoints)")
    preprocessing: str | None = Field(description="hash of the preprocessing recipe")
    precision: str = Field(None, description="`fp32` (CPU) or `bf16-autocast` (CUDA); absent in older records")
    input_size: int | None = Field(description="input resolution in pixels (version 3; null when unknown)")

    @field_validator("input_size")
    @classmethod
    def _positive(cls, size: int | None) -> int | None:
        if size is not None and size <= 0:
            raise problem(f"must be a positive number of pixels, got {size}")
        return size


class ProtocolRef(OpenRecord):
    name: str = Field(description="a name of benchmark.protocol.PROTOCOLS")
    params: dict[str, Any] = Field(description="the protocol's recipe (and the solver's identity)")

    @field_validator("name")
    @classmethod
    def _known_protocol(cls, name: str) -> str:
        if name not in PROTOCOLS:
            raise problem(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
        return name


class HeldOutLabels(OpenRecord):
    n: int = Field(description="number of test images")
    labels: list[int] = Field(description="class index of each test image, in test-split order")


class ClassMetrics(OpenRecord):
    precision: Finite = Field(description="in [0, 1]")
    recall: Finite = Field(description="in [0, 1]")
    f1: Finite = Field(description="in [0, 1]")
    support: int = Field(description="test images of the class")

    @field_validator("precision", "recall", "f1")
    @classmethod
    def _in_unit_range(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise problem(f"{value} is outside [0, 1]")
        return value


class RunMetrics(OpenRecord):
    accuracy: Finite = Field(description="recomputed from the predictions by the reader")
    accuracy_ci: CI = Field(description="bootstrap over test images")
    macro_f1: Finite = Field(description="recomputed from the predictions by the reader")
    macro_f1_ci: CI = Field(description="bootstrap over test images")
    per_class: dict[str, ClassMetrics] = Field(description="one entry per class, in class order")
    confusion_matrix: list[list[int]] = Field(description="rows true, columns predicted")


class Delta(OpenRecord):
    accuracy: Finite = Field(description="paired difference to the same seed's `real` run")
    accuracy_ci: CI = Field(description="paired bootstrap")
    macro_f1: Finite = Field(description="paired difference to the same seed's `real` run")
    macro_f1_ci: CI = Field(description="paired bootstrap")


class Run(OpenRecord):
    setting: str = Field(description="a setting of benchmark.protocol.SETTINGS (or `zero-shot`, `checkpoint`)")
    ratio: int = Field(description="the setting's ratio (0 for real and no-training settings)")
    seed: int = Field(description="one run per (setting, seed)")
    n_train: Count = Field(description="training images")
    n_real_per_class: Count = Field(description="largest real count of a class")
    n_synthetic_per_class: Count = Field(description="largest synthetic count of a class")
    predictions: list[int] = Field(description="predicted class of each test image, in test order")
    metrics: RunMetrics = Field(description="scores of the predictions")
    delta_vs_real: Delta | None = Field(description="null for real-kind runs and runs without a paired `real`")
    params: dict[str, Any] = Field(description="what the protocol chose (e.g. `C`)")
    seconds: NonNegative = Field(description="wall time of the run")


class EffectiveReal(OpenRecord):
    curve_n: list[Finite] = Field(description="images per class of the learning curve's points, increasing")
    estimate: Finite = Field(description="real images per class giving the same macro-F1")
    ci: CI = Field(description="two-level bootstrap")
    censored: str | None = Field(None, description="null, `below` or `above` (the estimate is a bound)")
    ci_censored: list[str | None] = Field(description="censoring of each CI end")
    text: str = Field(description="display form")
    seeds: list[int] = Field(description="the seeds the curve and the setting share")

    @model_validator(mode="after")
    def _on_the_curve(self) -> EffectiveReal:
        curve = self.curve_n
        if len(curve) < 2 or not all(n > 0 for n in curve):
            raise problem("expected at least two positive numbers of images per class", "curve_n")
        if any(b <= a for a, b in zip(curve, curve[1:])):
            raise problem(f"{curve} is not increasing", "curve_n")
        _check_ci(self.ci, self.estimate, "ci")
        for value, name in ((self.estimate, "estimate"), *zip(self.ci, ("ci[0]", "ci[1]"))):
            if not curve[0] - 1e-9 <= value <= curve[-1] + 1e-9:
                raise problem(f"{value} lies outside the curve [{curve[0]}, {curve[-1]}]", name)
        # A whole CI may lie below (or above) the curve: each end has its own censoring, in order.
        order = {"below": 0, None: 1, "above": 2}
        ends = self.ci_censored
        if self.censored not in order or len(ends) != 2 or any(end not in order for end in ends) \
                or not order[ends[0]] <= order[self.censored] <= order[ends[1]]:
            raise problem("must be null, 'below' or 'above', and the CI's ends censored no further in "
                          "than the estimate (below <= null <= above)", "censored")
        if not self.seeds:
            raise problem("expected a non-empty list of seeds", "seeds")
        return self


class SummaryEntry(OpenRecord):
    ci_method: str = Field(description=f"`{CI_METHOD}` (version 2 on)")
    n_seeds: int = Field(description="runs of the setting")
    accuracy_mean: Finite = Field(description="mean over seeds (checked against the runs)")
    accuracy_std: NonNegative = Field(description="sample standard deviation over seeds")
    accuracy_ci: CI = Field(description="two-level bootstrap (seeds and test images)")
    delta_accuracy_mean: Finite | None = Field(description="mean paired difference to `real` (null without one)")
    delta_accuracy_ci: CI | None = Field(description="paired two-level bootstrap")
    macro_f1_mean: Finite = Field(description="mean over seeds (checked against the runs)")
    macro_f1_std: NonNegative = Field(description="sample standard deviation over seeds")
    macro_f1_ci: CI = Field(description="two-level bootstrap (seeds and test images)")
    delta_macro_f1_mean: Finite | None = Field(description="mean paired difference to `real` (null without one)")
    delta_macro_f1_ci: CI | None = Field(description="paired two-level bootstrap")
    effective_real: EffectiveReal | None = Field(None, description="synthetic@k only: what the setting is worth in real images")

    @field_validator("ci_method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method != CI_METHOD:
            raise problem(f"unknown CI method {method!r} (this harness computes {CI_METHOD!r})")
        return method


#: The diagnostics a record's optional `diagnostics` block holds per group (benchmark.diagnostics).
DIAGNOSTIC_NAMES = ("kid", "fd", "precision", "recall", "density", "coverage", "vendi_ratio",
                    "memorisation_rate", "edit_strength")


class DiagnosticValue(OpenRecord):
    value: Finite = Field(description="the diagnostic")
    ci: CI = Field(description="95% bootstrap")

    @model_validator(mode="after")
    def _ci(self) -> DiagnosticValue:
        _check_ci(self.ci, self.value, "ci")
        return self


_DIAGNOSTIC = Field(description="null (too few images) or {value, ci}")
DiagnosticGroup = create_model(
    "DiagnosticGroup",
    __base__=OpenRecord,
    n_real=(Count, Field(description="train_real images of the group")),
    n_synthetic=(Count, Field(description="submitted images of the group")),
    **{name: (DiagnosticValue | None, _DIAGNOSTIC) for name in DIAGNOSTIC_NAMES},
)


class Diagnostics(OpenRecord):
    params: dict[str, Any] = Field(description="benchmark.diagnostics parameters")
    per_class: dict[str, DiagnosticGroup] = Field(description="one group per class, in class order")
    overall: DiagnosticGroup = Field(description="every image")


class Skipped(OpenRecord):
    setting: str = Field(description="a setting the grid could not run")
    reason: str = Field(description="why")


class Provenance(OpenRecord):
    device: str = Field(description="`cpu`, `cuda:0`, ...")
    torch: str = Field(description="torch version")
    started: str = Field(description="ISO time")
    host: str = Field(description="machine name")
    finished: str | None = Field(description="ISO time; null while the grid runs")
    seconds_total: NonNegative = Field(description="wall time")
    seconds_encoding: NonNegative = Field(description="time spent encoding features")


def migrate_result(record: dict) -> dict:
    """A record of any readable version in the shape of the current one (a shallow copy: the
    caller's record is untouched). Version 1 summaries named no `ci_method` (their CIs were over
    test images only; the leaderboard recomputes every CI); before version 3 `leakage_checked` is
    unknown (False) and `backbone.input_size` unrecorded (null)."""
    version = record["schema_version"]
    migrated = dict(record)
    if version < 2 and isinstance(record.get("summary"), dict):
        migrated["summary"] = {
            setting: dict(entry, ci_method=entry.get("ci_method", CI_METHOD)) if isinstance(entry, dict) else entry
            for setting, entry in record["summary"].items()
        }
    if version < 3:
        migrated.setdefault("leakage_checked", False)
        if isinstance(record.get("backbone"), dict):
            migrated["backbone"] = {"input_size": None, **record["backbone"]}
    return migrated


class ResultRecord(OpenRecord):
    """One JSON per (submission, backbone, protocol): docs/RECORDS.md section 4."""

    schema_version: int = Field(description=f"{RESULT_SCHEMA_VERSION}; versions "
                                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))} are read")
    harness_version: str = Field(description="synthbench version that wrote the record")
    scoring_version: int | None = Field(None, description="benchmark.metrics.SCORING_VERSION (optional)")
    official: bool = Field(description="the maintainers' official run (then signed)")
    leakage_checked: bool = Field(description="the leakage gate ran before scoring (version 3)")
    signature: Signature | None = Field(None, description="Ed25519 signature of official runs (benchmark.signing)")
    submission: SubmissionRef = Field(description="what was scored")
    task: TaskRef = Field(description="the task scored on")
    backbone: BackboneRef = Field(description="the feature extractor")
    protocol: ProtocolRef = Field(description="the training protocol")
    classes: list[str] = Field(description="the task's classes, in order")
    test: HeldOutLabels = Field(description="the test split's labels")
    runs: list[Run] = Field(description="one per (setting, seed)")
    summary: dict[str, SummaryEntry] = Field(description="one entry per setting with runs")
    diagnostics: Diagnostics | None = Field(None, description="the submission's images against train_real (optional)")
    skipped: list[Skipped] = Field(description="settings not run, and why")
    provenance: Provenance = Field(description="where and when the record was made")

    @model_validator(mode="before")
    @classmethod
    def _readable_version(cls, record: Any) -> Any:
        if not isinstance(record, dict):
            raise problem(f"expected a JSON object, got {type(record).__name__}", "<root>")
        if "schema_version" not in record:
            raise problem("missing", "schema_version")
        version = record["schema_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise problem(f"expected an integer, got {shorten(version)}", "schema_version")
        if version not in READABLE_SCHEMA_VERSIONS:
            raise problem(f"unknown version {version} (this harness reads versions "
                          f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))})", "schema_version")
        return migrate_result(record)

    @field_validator("scoring_version")
    @classmethod
    def _positive_scoring_version(cls, version: int | None) -> int | None:
        if version is not None and version < 1:
            raise problem("must be a positive integer (benchmark.metrics.SCORING_VERSION)")
        return version

    @field_validator("classes")
    @classmethod
    def _class_names(cls, classes: list[str]) -> list[str]:
        if len(classes) < 2 or not all(classes):
            raise problem("expected a list of at least two non-empty class names")
        if len(set(classes)) != len(classes):
            raise problem("class names are not unique")
        return classes

    @model_validator(mode="after")
    def _consistent(self) -> ResultRecord:
        _check_test(self)
        runs_by_setting = _check_runs(self)
        _check_summary(self, runs_by_setting)
        if self.diagnostics is not None and list(self.diagnostics.per_class) != self.classes:
            raise problem(f"keys {list(self.diagnostics.per_class)} are not the classes {self.classes}",
                          "diagnostics", "per_class")
        valid = _setting_names(self.protocol.name)
        for i, entry in enumerate(self.skipped):
            if entry.setting not in valid:
                raise problem(f"unknown setting {entry.setting!r}", "skipped", i, "setting")
            if entry.setting in runs_by_setting:
                raise problem(f"setting {entry.setting!r} is both skipped and run", "skipped", i, "setting")
        return self


def _check_test(record: ResultRecord) -> None:
    n_test, labels, n_classes = record.test.n, record.test.labels, len(record.classes)
    if n_test <= 0 or len(labels) != n_test:
        raise problem(f"has {len(labels)} labels for test.n = {n_test}", "test", "labels")
    if not all(0 <= v < n_classes for v in labels):
        raise problem(f"every label must be an integer in 0..{n_classes - 1}", "test", "labels")


def _check_runs(record: ResultRecord) -> dict[str, list[Run]]:
    """Settings, ratios, unique (setting, seed), predictions and the metrics they give."""
    valid = _setting_names(record.protocol.name)
    labels = np.asarray(record.test.labels, dtype=np.int64)
    n_classes = len(record.classes)
    runs_by_setting: dict[str, list[Run]] = {}
    for i, run in enumerate(record.runs):
        if run.setting not in valid:
            raise problem(f"unknown setting {run.setting!r} for protocol {record.protocol.name!r}; "
                          f"use one of: {', '.join(sorted(valid))}", "runs", i, "setting")
        expected_ratio = SETTINGS[run.setting].ratio if run.setting in SETTINGS else 0
        if run.ratio != expected_ratio:
            raise problem(f"is {run.ratio} but setting {run.setting!r} has ratio {expected_ratio}", "runs", i, "ratio")
        if any(other.seed == run.seed for other in runs_by_setting.get(run.setting, ())):
            raise problem(f"duplicate run (setting {run.setting!r}, seed {run.seed})", "runs", i)
        runs_by_setting.setdefault(run.setting, []).append(run)
        if len(run.predictions) != labels.size:
            raise problem(f"has {len(run.predictions)} predictions for test.n = {labels.size}", "runs", i, "predictions")
        if not all(0 <= v < n_classes for v in run.predictions):
            raise problem(f"every prediction must be an integer in 0..{n_classes - 1}", "runs", i, "predictions")
        _check_run_metrics(run, i, labels, record.classes)
    return runs_by_setting


def _check_run_metrics(run: Run, i: int, labels: np.ndarray, classes: list[str]) -> None:
    metrics = run.metrics
    predictions = np.asarray(run.predictions, dtype=np.int64)
    accuracy, macro_f1, confusion = _macro_f1_and_accuracy(labels, predictions, len(classes))
    for metric, expected in (("accuracy", accuracy), ("macro_f1", macro_f1)):
        value = getattr(metrics, metric)
        if abs(value - expected) > _METRIC_TOL:
            raise problem(f"is {value} but the predictions give {expected}", "runs", i, "metrics", metric)
        _check_ci(getattr(metrics, f"{metric}_ci"), value, "runs", i, "metrics", f"{metric}_ci")
    if list(metrics.per_class) != list(classes):
        raise problem(f"keys {list(metrics.per_class)} are not the classes {classes}", "runs", i, "metrics", "per_class")
    if metrics.confusion_matrix != confusion.tolist():
        raise problem("does not match the predictions (rows true, columns predicted)",
                      "runs", i, "metrics", "confusion_matrix")
    if run.delta_vs_real is not None:
        for metric in ("accuracy", "macro_f1"):
            point = getattr(run.delta_vs_real, metric)
            if not -1.0 <= point <= 1.0:
                raise problem(f"{point} is not a difference of two scores in [0, 1]", "runs", i, "delta_vs_real", metric)
            _check_ci(getattr(run.delta_vs_real, f"{metric}_ci"), point, "runs", i, "delta_vs_real", f"{metric}_ci")


def _check_summary(record: ResultRecord, runs_by_setting: dict[str, list[Run]]) -> None:
    """Each summary entry agrees with its runs, and every setting with runs has one."""
    for setting, entry in record.summary.items():
        if setting not in runs_by_setting:
            raise problem(f"summarises setting {setting!r}, which has no runs", "summary", setting)
        runs = runs_by_setting[setting]
        if entry.n_seeds != len(runs):
            raise problem(f"is {entry.n_seeds} but the setting has {len(runs)} run(s)", "summary", setting, "n_seeds")
        for metric in ("accuracy", "macro_f1"):
            mean = getattr(entry, f"{metric}_mean")
            expected = float(np.mean([getattr(r.metrics, metric) for r in runs]))
            if abs(mean - expected) > _METRIC_TOL:
                raise problem(f"is {mean} but the runs' mean is {expected}", "summary", setting, f"{metric}_mean")
            _check_ci(getattr(entry, f"{metric}_ci"), mean, "summary", setting, f"{metric}_ci")
            delta = getattr(entry, f"delta_{metric}_mean")
            _check_ci(getattr(entry, f"delta_{metric}_ci"), delta, "summary", setting, f"delta_{metric}_ci")
    missing = set(runs_by_setting) - set(record.summary)
    if missing:
        raise problem(f"has no entry for setting(s) {', '.join(sorted(missing))}", "summary")


def validate_result_record(record: dict, path: str | os.PathLike | None = None) -> None:
    """Raise ResultsError (naming `path` and the field) unless `record` follows RECORDS.md section 4
    (the `ResultRecord` model; the first problem in field order is reported)."""
    where = str(path) if path is not None else "<result record>"
    try:
        ResultRecord.model_validate(record)
    except ValidationError as exc:
        error = first_error(exc)
        raise ResultsError(f"{where}: field {error_field(error, quoted=('summary',))}: {describe(error)}") from None


class _Checker:
    """The file a block check names (the former field-by-field checker's handle, kept for
    `_check_effective_real`'s callers)."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = str(path) if path is not None else "<result record>"


def _check_effective_real(checker: _Checker, block: dict, where: str) -> None:
    """One summary's `effective_real` block alone, against `EffectiveReal`; ResultsError naming
    the file and `where`."""
    try:
        EffectiveReal.model_validate(block)
    except ValidationError as exc:
        error = first_error(exc)
        raise ResultsError(f"{checker.path}: field {where}.{error_field(error)}: {describe(error)}") from None


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
    "ResultRecord",
    "migrate_result",
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
