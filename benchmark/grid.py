"""The grid runner: every setting x ratio x seed of one submission, for one backbone and protocol.

`run_grid(task, submission, ...)` trains and scores a classifier for each (setting, seed):

* `real`: the task's train_real images (100 per class);
* `real@n` (the learning curve, n = 10, 25, 50; linear probe by default): n of each class's
  train_real images, the first n of a per-seed permutation drawn from its own random stream
  (`real_draw`), so the subsets are nested over n and no other setting's draw changes;
* `synthetic@k`: k x n_real(c) of the submission's images per class c (by hard label), no real;
* `mixed@k`: the real images plus the same synthetic subset as `synthetic@k`.

The synthetic subset of seed s: the submission's images of each class, sorted by file name, are
permuted by numpy's `default_rng(s)` (classes in task order) and the first k x n_real(c) are used;
so the subsets are nested over k and shared by `synthetic@k` and `mixed@k`, and the comparison with
`real` is paired by seed. A setting the pool cannot fill is skipped and reported with the counts.

Protocols that do not train (zero-shot; checkpoint submissions, always scored by the checkpoint
protocol) are scored once, as their own setting.

Every image a run needs is encoded once, up front, through the feature cache (test, train_real and
the drawn synthetic images); runs then read features from memory. The record (docs/RECORDS.md,
section 4) is written atomically to `submissions/<id>/results/<backbone>__<protocol>.json` while
the grid progresses and at the end. It is resumable: when a valid record with the same identity
(task test-manifest hash, submission content hash, backbone weights and preprocessing, protocol
parameters, classes and test labels) exists, only the missing (setting, seed) runs are computed.
A submission is validated before any compute.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import __version__
from .errors import HarnessError, ResultsError
from .io import sha256_json
from . import more_real
from .metrics import CI_METHOD, SCORING_VERSION, bootstrap_cis, classification_metrics, effective_real_images
from .paths import CACHE_ENV, default_cache_dir  # CACHE_ENV re-exported: where the features go
from .protocol import (
    DEFAULT_PROTOCOL,
    DEFAULT_SEEDS,
    EFFECTIVE_REAL,
    LEARNING_CURVE,
    PROTOCOLS,
    SETTINGS,
    Setting,
    default_settings,
    lookup,
)
from .registry import BACKBONES, DEFAULT_BACKBONE
from .results import NO_TRAINING_SETTINGS, RESULT_SCHEMA_VERSION, load_result, result_path, write_result

log = logging.getLogger(__name__)

#: While the grid runs, the record is rewritten at most this often (and always at the end), so an
#: interrupted grid resumes from its last write without rewriting the record after every fast run.
CHECKPOINT_EVERY_S = 30.0
#: At most this many runs are fitted at once on the CPU (`fit_workers`).
MAX_FIT_WORKERS = 8


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------
# Training sets: the real split, the synthetic pool and the per-seed draws
# ----------------------------------------------------------------------------------------------


@dataclass
class _Pool:
    """The submission's images in draw order (sorted by file name), with soft targets."""

    refs: list
    targets: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) hard labels
    by_class: list[np.ndarray]  # pool indices of each class, in draw order
    scenes: np.ndarray  # (N,) str: the scene each image was made from (see `scene_of`)

    @classmethod
    def from_submission(cls, submission, classes: list[str], scenes_by_id: dict[str, str] | None = None) -> "_Pool":
        refs = submission.image_refs()
        targets = submission.targets(classes)
        names = [entry.file_name for entry in submission.entries]
        order = sorted(range(len(refs)), key=lambda i: names[i])
        refs = [refs[i] for i in order]
        targets = targets[order] if len(order) else np.zeros((0, len(classes)), dtype=np.float32)
        labels = targets.argmax(axis=1) if len(order) else np.zeros(0, dtype=np.int64)
        by_class = [np.flatnonzero(labels == c) for c in range(len(classes))]
        scenes_by_id = scenes_by_id or {}
        scenes = []
        for i in order:
            source = submission.entries[i].source_id
            # an unknown source still groups the images made from it; no source: the image alone
            scenes.append(scenes_by_id.get(source, f"source:{source}") if source else f"image:{names[i]}")
        return cls(refs=refs, targets=targets, labels=labels, by_class=by_class, scenes=np.asarray(scenes, dtype=str))

    def counts(self) -> np.ndarray:
        return np.array([idx.size for idx in self.by_class], dtype=np.int64)


def _looks_like_a_record(path: Path) -> bool:
    """A JSON object with a `schema_version` and `runs`: a (maybe invalid) record of ours, which a
    new run may replace; anything else at --out is someone's file and is left alone."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(obj, dict) and "schema_version" in obj and "runs" in obj


def scene_of(task) -> dict[str, str]:
    """image_id -> its scene, for train_real and generation_inputs: the `pair_id` a train_real image
    shares with its pre-disaster twin (the image_id itself where a row has none). A real image and
    the synthetic images made from it or from its twin share a scene, so the linear probe's
    cross-validation keeps them in one fold (`TrainData.groups`)."""
    scenes: dict[str, str] = {}
    for split in ("train_real", "generation_inputs"):
        if split in task.splits:
            pairs = zip(task.image_ids(split), task.column(split, "pair_id"))
            scenes.update({image_id: f"scene:{pair or image_id}" for image_id, pair in pairs})
    return scenes


def synthetic_draw(pool_by_class: Sequence[np.ndarray], seed: int, per_class: Sequence[int]) -> np.ndarray:
    """Pool indices of seed `seed`'s synthetic subset: the first per_class[c] of each class's permutation."""
    rng = np.random.default_rng(seed)
    permutations = [rng.permutation(indices) for indices in pool_by_class]
    return np.concatenate(
        [perm[: int(n)] for perm, n in zip(permutations, per_class)] + [np.zeros(0, dtype=np.int64)]
    ).astype(np.int64)


def real_draw(real_by_class: Sequence[np.ndarray], seed: int, per_class: int) -> np.ndarray:
    """train_real indices of seed `seed`'s real@n subset: the first n of each class's permutation.

    The permutations come from their own stream (LEARNING_CURVE["draw_stream"]), never from the
    synthetic draws' `default_rng(seed)`: adding the curve leaves every other setting's draw alone.
    """
    rng = np.random.default_rng([int(seed), LEARNING_CURVE["draw_stream"]])
    permutations = [rng.permutation(indices) for indices in real_by_class]
    return np.sort(np.concatenate([perm[:per_class] for perm in permutations] + [np.zeros(0, dtype=np.int64)]))


def needed_per_class(setting: Setting, real_counts: np.ndarray) -> np.ndarray:
    """Synthetic images per class a setting needs: ratio k times the task's real images of the class."""
    return setting.ratio * real_counts if setting.kind in ("synthetic", "mixed") else np.zeros_like(real_counts)


def skip_reason(setting: Setting, real_counts: np.ndarray, pool_counts: np.ndarray, classes: list[str]) -> str | None:
    """Why the pool (or train_real, for a learning-curve point) cannot fill `setting` (None when it can)."""
    if setting.is_curve_point:
        n = setting.real_per_class
        short = [f"{int(real_counts[c])} for {classes[c]!r}" for c in range(len(classes)) if real_counts[c] <= n]
        if short:
            return f"needs more than {n} train_real images per class (with {n} or fewer it is `real`), has " + ", ".join(short)
        return None
    need = needed_per_class(setting, real_counts)
    short = [(classes[c], int(pool_counts[c]), int(need[c])) for c in range(len(classes)) if pool_counts[c] < need[c]]
    if not short:
        return None
    if len(set(need.tolist())) == 1:
        head = f"needs {int(need[0])} synthetic images per class, has "
        return head + ", ".join(f"{have} for {name!r}" for name, have, _ in short)
    return "needs " + ", ".join(f"{n} synthetic images for {name!r} (has {have})" for name, have, n in short)


# ----------------------------------------------------------------------------------------------
# Record assembly
# ----------------------------------------------------------------------------------------------


def _ci(triple: tuple[float, float, float]) -> list[float]:
    return [triple[1], triple[2]]


def run_metrics(labels: np.ndarray, predictions: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The `metrics` block of one run: point metrics, their CIs, per-class scores, confusion."""
    point = classification_metrics(labels, predictions, classes)
    cis = bootstrap_cis(labels, predictions, len(classes))
    return {
        "accuracy": point["accuracy"],
        "macro_f1": point["macro_f1"],
        "accuracy_ci": _ci(cis["accuracy"]),
        "macro_f1_ci": _ci(cis["macro_f1"]),
        "per_class": point["per_class"],
        "confusion_matrix": point["confusion_matrix"],
    }


def _setting_rank(name: str) -> int:
    names = list(SETTINGS) + list(NO_TRAINING_SETTINGS.values())
    return names.index(name) if name in names else len(names)


def finalise(record: dict) -> dict:
    """Fill each run's `delta_vs_real` and the per-setting `summary` from the stored predictions.

    Deltas are paired: the same seed's `real` run, on the same bootstrap resamples of the test
    images. A summary CI is two-level: each draw resamples the seeds and the test images and
    averages over the drawn seeds (a summary delta: the same draws for the setting and `real`).
    """
    labels = np.asarray(record["test"]["labels"], dtype=np.int64)
    n_classes = len(record["classes"])
    record["runs"].sort(key=lambda r: (_setting_rank(r["setting"]), r["seed"]))
    real = {r["seed"]: np.asarray(r["predictions"]) for r in record["runs"] if r["setting"] == "real"}
    by_setting: dict[str, list[dict]] = {}
    for run in record["runs"]:
        by_setting.setdefault(run["setting"], []).append(run)
        paired = run["setting"] in SETTINGS and SETTINGS[run["setting"]].kind != "real" and run["seed"] in real
        if paired:
            cis = bootstrap_cis(labels, np.asarray(run["predictions"]), n_classes, baseline_preds=[real[run["seed"]]])
            run["delta_vs_real"] = {
                "accuracy": cis["accuracy"][0],
                "accuracy_ci": _ci(cis["accuracy"]),
                "macro_f1": cis["macro_f1"][0],
                "macro_f1_ci": _ci(cis["macro_f1"]),
            }
        else:
            run["delta_vs_real"] = None
    summary = {}
    for setting, runs in by_setting.items():
        preds = [np.asarray(r["predictions"]) for r in runs]
        cis = bootstrap_cis(labels, preds, n_classes, seeds=[r["seed"] for r in runs])
        entry: dict[str, Any] = {"n_seeds": len(runs), "seeds": [r["seed"] for r in runs], "ci_method": CI_METHOD}
        for metric in ("accuracy", "macro_f1"):
            values = np.array([r["metrics"][metric] for r in runs])
            entry[f"{metric}_mean"] = cis[metric][0]
            # sample standard deviation over seeds (0 for a single seed)
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            entry[f"{metric}_ci"] = _ci(cis[metric])
        paired_runs = [r for r in runs if r["delta_vs_real"] is not None]
        entry["delta_n_seeds"] = len(paired_runs)
        if paired_runs:
            deltas = bootstrap_cis(
                labels,
                [np.asarray(r["predictions"]) for r in paired_runs],
                n_classes,
                baseline_preds=[real[r["seed"]] for r in paired_runs],
                seeds=[r["seed"] for r in paired_runs],
            )
        for metric in ("macro_f1", "accuracy"):
            entry[f"delta_{metric}_mean"] = deltas[metric][0] if paired_runs else None
            entry[f"delta_{metric}_ci"] = _ci(deltas[metric]) if paired_runs else None
        summary[setting] = entry
    for setting, estimate in _effective_real(labels, n_classes, by_setting).items():
        summary[setting]["effective_real"] = estimate
    for setting, comparison in more_real.summarise(labels, n_classes, by_setting).items():
        summary[setting]["more_real"] = comparison
    record["summary"] = {k: summary[k] for k in sorted(summary, key=_setting_rank)}
    return record


def _effective_real(labels: np.ndarray, n_classes: int, by_setting: dict[str, list[dict]]) -> dict[str, dict]:
    """{synthetic@k: its effective real images per class} read off the record's learning curve
    (benchmark.metrics.effective_real_images); empty without `real` and one real@n point."""
    if "real" not in by_setting:
        return {}
    first = by_setting["real"][0]
    counts = first.get("train_counts") or {}  # absent in some older records: the largest class then
    full_n = float(np.mean([v["real"] for v in counts.values()])) if counts else float(first["n_real_per_class"])
    points = sorted(
        (SETTINGS[name].real_per_class, name) for name in by_setting
        if name in SETTINGS and SETTINGS[name].is_curve_point and SETTINGS[name].real_per_class < full_n
    )
    if not points:
        return {}
    curve_n = [float(n) for n, _ in points] + [full_n]
    curve = [{r["seed"]: np.asarray(r["predictions"]) for r in by_setting[name]} for _, name in points]
    curve.append({r["seed"]: np.asarray(r["predictions"]) for r in by_setting["real"]})
    out = {}
    for setting in EFFECTIVE_REAL["settings"]:
        if setting in by_setting:
            target = {r["seed"]: np.asarray(r["predictions"]) for r in by_setting[setting]}
            estimate = effective_real_images(labels, curve_n, curve, target, n_classes)
            if estimate is not None:
                out[setting] = estimate
    return out


def _identity(record: dict) -> dict:
    """What must match for an existing record's runs to be reused."""
    backbone = dict(record["backbone"])
    keys = ("name",) if record["protocol"]["name"] == "checkpoint" else ("name", "revision", "preprocessing", "precision")
    return {
        "task": record["task"]["test_manifest_hash"],
        "task_name": record["task"]["name"],
        "submission": record["submission"]["content_hash"],
        "backbone": {k: backbone.get(k) for k in keys},
        "protocol": record["protocol"],
        "classes": record["classes"],
        "test": record["test"]["labels"],
        "official": record["official"],
    }


def _describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _provenance(device, started: str) -> dict[str, Any]:
    import sklearn
    import torch

    return {
        "device": _describe_device(device),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "torch_threads": torch.get_num_threads(),
        "started": started,
        "finished": None,
        "seconds_total": 0.0,
        "seconds_encoding": 0.0,
        "seconds_loading": 0.0,
        "images_encoded": 0,
        "runs_computed": 0,
        "runs_reused": 0,
    }


# ----------------------------------------------------------------------------------------------
# The grid, stage by stage: resolve inputs, plan runs, identify the backbone, start (or resume)
# the record, draw and encode, fit and score, write. `run_grid` calls them in this order.
# ----------------------------------------------------------------------------------------------


def _resolve_task(task, revision: str | None):
    if hasattr(task, "test_manifest_hash"):
        return task
    from .tasks import load_task

    return load_task(task, revision=revision)


def _resolve_submission(submission):
    if hasattr(submission, "content_hash"):
        return submission
    from .submissions import load_submission

    return load_submission(submission)


def _protocol_for(submission, protocol: str | None) -> str:
    if submission.kind == "checkpoint":
        if protocol not in (None, "checkpoint"):
            raise HarnessError(
                f"submission {submission.id!r} is a checkpoint: it is scored by the checkpoint protocol, "
                f"not {protocol!r}"
            )
        return "checkpoint"
    if protocol == "checkpoint":
        raise HarnessError(
            f"the checkpoint protocol scores checkpoint submissions; {submission.id!r} is of kind {submission.kind!r}"
        )
    protocol = protocol or DEFAULT_PROTOCOL
    lookup(PROTOCOLS, protocol, "protocol")
    return protocol


def _checkpoint_backbone(submission) -> str:
    config = getattr(submission, "checkpoint_config", None) or {}
    name = config.get("backbone")
    if not isinstance(name, str) or not name:
        raise HarnessError(f"{submission.path}: model.yaml names no backbone")
    return name


def _regenerated_recipe(recipe, task, cache_root: Path):
    """A recipe entry (a shipped baseline: no images in the repository) as the images the harness
    regenerates from the task into `<feature cache>/recipes/<task>@<revision>/`; refused when they
    differ from the content hash its recipe pins for that task (benchmark.generators.recipe)."""
    from .generators.recipe import regenerate, task_key

    return regenerate(recipe.path, task, cache_root / "recipes" / task_key(task), overwrite=True)


@dataclass
class GridInputs:
    """What one grid runs on, resolved and checked before any compute (stage 1)."""

    task: Any
    submission: Any  # a recipe entry is already regenerated into its images here
    record_folder: Path  # where the record goes (a recipe's: beside its submission.yaml)
    cache_root: Path
    protocol: str
    seeds: list[int]
    requested: list[Setting]
    device: Any  # torch.device
    batch_size: int
    num_workers: int
    runner: Any  # a benchmark.protocols runner
    backbone_name: str
    path: Path  # the record's file


def resolve_inputs(
    task, submission, *, backbone: str = DEFAULT_BACKBONE, protocol: str | None = None,
    seeds: Iterable[int] = DEFAULT_SEEDS, settings: Iterable[str] | None = None,
    cache_dir: str | os.PathLike | None = None, device: str = "cpu", revision: str | None = None,
    protocol_overrides: dict[str, Any] | None = None, batch_size: int | None = None,
    num_workers: int | None = None, out_path: str | os.PathLike | None = None,
) -> GridInputs:
    """Stage 1: load the task and submission, pick the protocol, seeds, settings, device and runner,
    and check every name (a HarnessError names the first bad one)."""
    from .device import encoding_defaults, resolve_device
    from .protocols import get_runner

    task = _resolve_task(task, revision)
    submission = _resolve_submission(submission)
    record_folder = Path(submission.path)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if submission.kind == "recipe":
        submission = _regenerated_recipe(submission, task, cache_root)
    protocol = _protocol_for(submission, protocol)
    seeds = sorted({int(s) for s in seeds})
    if not seeds:
        raise HarnessError("no seeds to run")
    requested = [lookup(SETTINGS, name, "setting") for name in settings] if settings else default_settings(protocol)
    if not settings:  # the more-real control joins the defaults on a task that has train_real_extra
        requested += more_real.settings_for(task, protocol)
    torch_device = resolve_device(device)
    batch_size, num_workers = encoding_defaults(torch_device, batch_size, num_workers)
    runner = get_runner(protocol, protocol_overrides, device=torch_device)
    backbone_name = _checkpoint_backbone(submission) if protocol == "checkpoint" else backbone
    if protocol != "checkpoint":
        lookup(BACKBONES, backbone_name, "backbone")
    path = Path(out_path) if out_path is not None else result_path(record_folder, backbone_name, protocol)
    return GridInputs(
        task=task, submission=submission, record_folder=record_folder, cache_root=cache_root, protocol=protocol,
        seeds=seeds, requested=requested, device=torch_device, batch_size=batch_size, num_workers=num_workers,
        runner=runner, backbone_name=backbone_name, path=path,
    )


def validate_inputs(inputs: GridInputs, *, check_leakage: bool, image_size: int | None) -> None:
    """The submission's validation, before any compute (its leakage gate fills the feature cache
    the grid then reuses: the gate's features are the grid's, encoded once at the scored size)."""
    from .submissions import validate_submission

    validate_submission(
        inputs.submission.path, inputs.task, check_leakage=check_leakage, cache=inputs.cache_root,
        device=str(inputs.device), image_size=image_size,
    ).raise_if_failed()


#: One run of the grid: (setting name, its Setting or None for a protocol that does not train, seed).
Run = tuple[str, "Setting | None", int]


@dataclass
class RunPlan:
    """Which runs the grid makes and from what (stage 2)."""

    classes: list[str]
    test: Any  # benchmark.protocols.TestData
    real_labels: np.ndarray
    real_counts: np.ndarray  # train_real images per class
    scenes_by_id: dict[str, str]
    pool: _Pool | None  # the submission's images (None for a checkpoint)
    wanted: list[Run]
    skipped: list[dict[str, str]]  # the settings the pool or train_real cannot fill, with why
    extra: more_real.ExtraSplit | None = None  # the task's train_real_extra (more-real@k)


def plan_runs(inputs: GridInputs) -> RunPlan:
    """Stage 2: every (setting, seed) to run, and the requested settings that cannot be filled."""
    from .protocols import TestData

    task, classes = inputs.task, list(inputs.task.classes)
    real_labels = task.labels("train_real")
    real_counts = np.bincount(real_labels, minlength=len(classes)).astype(np.int64)
    scenes_by_id = scene_of(task)
    pool = _Pool.from_submission(inputs.submission, classes, scenes_by_id) if inputs.protocol != "checkpoint" else None
    skipped: list[dict[str, str]] = []
    wanted: list[Run] = []
    extra = more_real.ExtraSplit.of(task)
    if inputs.runner.fixed_setting is not None:
        wanted = [(inputs.runner.fixed_setting, None, 0)]  # no training: one deterministic run
    else:
        for setting in inputs.requested:
            reason = (more_real.skip_reason(setting, real_counts, extra, classes) if setting.kind == "more-real"
                      else skip_reason(setting, real_counts, pool.counts(), classes))
            if reason is not None:
                skipped.append({"setting": setting.name, "reason": reason})
                continue
            wanted += [(setting.name, setting, seed) for seed in inputs.seeds]
    return RunPlan(
        classes=classes, test=TestData(task.image_refs("test"), task.labels("test")), real_labels=real_labels,
        real_counts=real_counts, scenes_by_id=scenes_by_id, pool=pool, wanted=wanted, skipped=skipped, extra=extra,
    )


def identify_backbone(
    inputs: GridInputs, *, weights=None, image_size: int | None = None, random_init_config: dict | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Stage 3: (the loaded backbone or None, the record's `backbone` block). The backbone's identity
    (weights, preprocessing) is part of the record's, so it is loaded even when every run is done."""
    from .backbones import load_backbone
    from .device import compute_precision

    loaded = None
    if inputs.runner.needs_backbone:
        loaded = load_backbone(
            inputs.backbone_name, weights=weights, device=inputs.device, image_size=image_size,
            random_init_config=random_init_config,
        )
        described = loaded.describe()
    elif inputs.protocol == "checkpoint":
        described = None
        block = {"name": inputs.backbone_name, "weights": "submitted checkpoint", "revision": None,
                 "preprocessing": None, "input_size": None}
    else:  # fine-tune loads its own fresh copy per run; identify it the same way
        described = load_backbone(
            inputs.backbone_name, weights=weights, device="cpu", image_size=image_size,
            random_init_config=random_init_config,
        ).describe()
    if described is not None:
        block = {k: described[k] for k in ("name", "weights", "revision", "preprocessing")}
        block["input_size"] = described["preprocessing_recipe"]["size"]
    # bf16-autocast GPU features and fp32 CPU features differ: runs of the two never mix in a record
    block["precision"] = compute_precision(inputs.device)
    return loaded, block


def new_record(
    inputs: GridInputs, plan: RunPlan, backbone_block: dict, *, official: bool, leakage_checked: bool, started: str,
) -> dict[str, Any]:
    """Stage 4a: the record with no runs yet (docs/RECORDS.md, section 4)."""
    submission, task = inputs.submission, inputs.task
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "harness_version": __version__,
        "scoring_version": SCORING_VERSION,  # boards never mix scoring versions (leaderboard.identity)
        "official": bool(official),
        "leakage_checked": bool(leakage_checked),
        "submission": {
            "id": submission.id,
            "content_hash": submission.content_hash,
            "kind": submission.kind,
            "track": submission.track,
        },
        "task": {"name": task.name, "revision": task.revision, "test_manifest_hash": task.test_manifest_hash},
        "backbone": backbone_block,
        "protocol": {"name": inputs.protocol, "params": inputs.runner.params()},
        "classes": plan.classes,
        "test": {"n": len(plan.test), "labels": [int(v) for v in plan.test.labels]},
        "runs": [],
        "summary": {},
        "skipped": plan.skipped,
        "provenance": _provenance(inputs.device, started),
    }


def _existing_record(path: Path) -> dict | None:
    """The valid record at `path`, None when there is none or it is invalid (recomputed); a file
    that is not a record of ours is refused rather than overwritten."""
    if not path.exists():
        return None
    try:
        return load_result(path)
    except ResultsError as exc:
        if not _looks_like_a_record(path):
            raise HarnessError(
                f"{path}: exists and is not a synthbench result record; refusing to overwrite it "
                f"(remove it, or write the record elsewhere with --out)"
            ) from None
        log.warning("existing record is invalid, recomputing it: %s", exc)
        return None


def resume_record(record: dict, inputs: GridInputs, plan: RunPlan, *, official: bool) -> list[Run]:
    """Stage 4b: reuse the runs of a valid existing record with the same identity; return the runs
    still to compute (in plan order)."""
    existing = _existing_record(inputs.path)
    reused = 0
    if existing is not None and _identity(existing) == _identity(record):
        record["runs"] = existing["runs"]
        if existing.get("diagnostics") is not None:
            record["diagnostics"] = existing["diagnostics"]
        if inputs.protocol == "checkpoint":
            record["backbone"] = existing["backbone"]
        # settings skipped earlier and not asked for now stay reported
        current = {s["setting"] for s in plan.skipped} | {name for name, _, _ in plan.wanted}
        record["skipped"] = plan.skipped + [s for s in existing["skipped"] if s["setting"] not in current]
        reused = len(existing["runs"])
    elif existing is not None:
        if existing["official"] and not official:
            raise HarnessError(
                f"{inputs.path} holds an official record that this run (not official, or configured differently) "
                f"would replace; write elsewhere with --out"
            )
        log.info("%s was computed for another task, submission, backbone or protocol recipe: recomputing", inputs.path)
    done = {(r["setting"], r["seed"]) for r in record["runs"]}
    record["provenance"]["runs_reused"] = reused
    return [run for run in plan.wanted if (run[0], run[2]) not in done]


@dataclass
class Draws:
    """Each seed's drawn training subsets (stage 5a): pool indices per (ratio, seed) and train_real
    indices per (real@n's n, seed)."""

    synthetic: dict[tuple[int, int], np.ndarray]
    real: dict[tuple[int, int], np.ndarray]
    extra: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # more-real@k's extra rows per (k, seed)


def draw_subsets(todo: Sequence[Run], plan: RunPlan) -> Draws:
    """Stage 5a: draw every seed's synthetic subset (and real@n subset) once."""
    draws = Draws(synthetic={}, real={})
    real_by_class = [np.flatnonzero(plan.real_labels == c) for c in range(len(plan.classes))]
    for _, setting, seed in todo:
        if setting is not None and setting.is_curve_point:
            draws.real[(setting.real_per_class, seed)] = real_draw(real_by_class, seed, setting.real_per_class)
        elif setting is not None and setting.kind == "more-real":
            per_class = more_real.needed(setting, plan.real_counts)
            draws.extra[(setting.ratio, seed)] = more_real.extra_draw(plan.extra.by_class, seed, per_class)
        elif setting is not None and setting.kind != "real":
            per_class = needed_per_class(setting, plan.real_counts)
            draws.synthetic[(setting.ratio, seed)] = synthetic_draw(plan.pool.by_class, seed, per_class)
    return draws


@dataclass
class Encoded:
    """The features every run reads (stage 5b); all empty when nothing is encoded up front."""

    matrix: np.ndarray | None = None  # prepared by the runner (its feature transform applied)
    rows: dict[str, int] = field(default_factory=dict)  # image SHA-256 -> row of `matrix`
    cache: Any = None  # the FeatureCache
    seconds: float = 0.0
    n_encoded: int = 0

    def lookup(self, refs) -> np.ndarray:
        try:
            return self.matrix[[self.rows[ref.sha256] for ref in refs]]
        except (KeyError, TypeError):
            raise HarnessError("an image was not encoded up front (grid bug)") from None


def encode_images(
    inputs: GridInputs, plan: RunPlan, draws: Draws, todo: Sequence[Run], record: dict, loaded_backbone,
    *, progress: bool,
) -> Encoded:
    """Stage 5b: encode every image the runs need once, through the feature cache (test, train_real
    and the drawn synthetic images), and the submission's diagnostics with the same features."""
    if not todo or not inputs.runner.needs_features:
        return Encoded()
    from .features import FeatureCache

    cache = FeatureCache(inputs.cache_root)
    real_refs = inputs.task.image_refs("train_real")
    # train_real is always encoded: it is the reference of the runner's feature transform
    needed = list(plan.test.refs) + list(real_refs)
    for indices in draws.synthetic.values():
        needed += [plan.pool.refs[i] for i in indices]
    for rows in draws.extra.values():
        needed += [plan.extra.refs[i] for i in rows]
    unique: dict[str, Any] = {}
    for ref in needed:
        unique.setdefault(ref.sha256, ref)
    start = time.perf_counter()
    matrix = cache.features(
        loaded_backbone, list(unique.values()), batch_size=inputs.batch_size, num_workers=inputs.num_workers,
        progress=progress,
    )
    encoded = Encoded(rows={sha: row for row, sha in enumerate(unique)}, cache=cache,
                      seconds=time.perf_counter() - start, n_encoded=cache.n_encoded)
    if plan.pool is not None and len(plan.pool.refs) and "diagnostics" not in record:
        from .diagnostics import diagnose

        record["diagnostics"] = diagnose(inputs.task, inputs.submission, loaded_backbone, cache, progress=progress,
                                         batch_size=inputs.batch_size, num_workers=inputs.num_workers)
        encoded.n_encoded = cache.n_encoded  # the generation inputs and any undrawn pool images
    encoded.matrix = inputs.runner.prepare_features(matrix, [encoded.rows[ref.sha256] for ref in real_refs])
    return encoded


class TrainingSets:
    """The training set of each (setting, seed) from the plan and its draws, with its per-class counts."""

    def __init__(self, task, plan: RunPlan, draws: Draws):
        from .protocols import TrainData

        self._train_data = TrainData
        self.plan, self.draws = plan, draws
        self.real_refs = task.image_refs("train_real")
        self.real_targets = np.eye(len(plan.classes), dtype=np.float32)[plan.real_labels]
        self.real_scenes = [plan.scenes_by_id[image_id] for image_id in task.image_ids("train_real")]

    def __call__(self, setting: Setting | None, seed: int):
        """(TrainData, {class: {"real": n, "synthetic": n}}) of one run; (None, {}) without training."""
        if setting is None:
            return None, {}
        plan, pool = self.plan, self.plan.pool
        refs, targets, synthetic, scenes = [], [], [], []
        real_rows = self.draws.real[(setting.real_per_class, seed)] if setting.is_curve_point else np.arange(len(self.real_refs))
        if setting.uses_real:
            refs += [self.real_refs[i] for i in real_rows]
            targets.append(self.real_targets[real_rows])
            synthetic.append(np.zeros(real_rows.size, dtype=bool))
            scenes += [self.real_scenes[i] for i in real_rows]
        extra_counts = np.zeros(len(plan.classes), dtype=np.int64)
        if setting.kind == "more-real":  # train_real + extra real images (benchmark.more_real)
            extra_refs, extra_targets, extra_scenes, extra_counts = plan.extra.rows(
                self.draws.extra[(setting.ratio, seed)], len(plan.classes))
            refs += extra_refs
            targets.append(extra_targets)
            synthetic.append(np.zeros(len(extra_refs), dtype=bool))
            scenes += extra_scenes
        if setting.kind in ("synthetic", "mixed"):
            indices = self.draws.synthetic[(setting.ratio, seed)]
            refs += [pool.refs[i] for i in indices]
            targets.append(pool.targets[indices])
            synthetic.append(np.ones(indices.size, dtype=bool))
            scenes += pool.scenes[indices].tolist()
        data = self._train_data(refs, np.concatenate(targets), np.concatenate(synthetic), groups=np.asarray(scenes, dtype=str))
        synthetic_labels = (pool.labels[self.draws.synthetic[(setting.ratio, seed)]] if setting.kind in ("synthetic", "mixed")
                            else np.zeros(0, int))
        drawn_real_counts = np.bincount(plan.real_labels[real_rows], minlength=len(plan.classes))
        counts = {
            name: {
                "real": int(drawn_real_counts[c] + extra_counts[c]) if setting.uses_real else 0,
                "synthetic": int((synthetic_labels == c).sum()),
            }
            for c, name in enumerate(plan.classes)
        }
        return data, counts


def run_context(inputs: GridInputs, loaded_backbone, encoded: Encoded, *, weights, image_size, random_init_config,
                progress: bool):
    """What a runner may use besides its training and test data (benchmark.protocols.RunContext)."""
    from .protocols import RunContext

    return RunContext(
        classes=list(inputs.task.classes),
        device=inputs.device,
        backbone_name=inputs.backbone_name,
        weights=str(weights) if weights is not None else None,
        image_size=image_size,
        random_init_config=random_init_config,
        backbone=loaded_backbone,
        cache=encoded.cache,
        features=encoded.lookup if encoded.matrix is not None else None,
        features_prepared=encoded.matrix is not None,
        submission_path=Path(inputs.submission.path),
        progress=progress,
        num_workers=inputs.num_workers,
    )


@dataclass
class RecordWriter:
    """Stage 7: writes the record atomically (signed when a key is given), with its timings."""

    path: Path
    record: dict
    started_clock: float
    seconds_loading: float = 0.0
    encoded: Encoded = field(default_factory=Encoded)
    signing_key: Any = None

    def save(self, final: bool) -> None:
        provenance = self.record["provenance"]
        provenance["seconds_total"] = round(time.perf_counter() - self.started_clock, 3)
        provenance["seconds_encoding"] = round(self.encoded.seconds, 3)
        provenance["seconds_loading"] = round(self.seconds_loading, 3)
        provenance["images_encoded"] = int(self.encoded.n_encoded)
        provenance["finished"] = _now() if final else None
        finalise(self.record)
        if self.signing_key is not None:
            from .signing import sign_record

            sign_record(self.record, self.signing_key)
        write_result(self.path, self.record)


def run_entry(
    run: Run, train, counts: dict, predictions, params: dict, seconds: float, *, test_labels: np.ndarray,
    classes: list[str], protocol: str,
) -> dict[str, Any]:
    """One run's entry in the record's `runs` (its delta to `real` is filled by `finalise`)."""
    name, setting, seed = run
    predictions = np.asarray(predictions, dtype=np.int64)
    if predictions.shape != (len(test_labels),):
        raise HarnessError(f"protocol {protocol!r} returned {predictions.shape} predictions for {len(test_labels)} test images")
    real_per_class = [v["real"] for v in counts.values()]
    synthetic_per_class = [v["synthetic"] for v in counts.values()]
    return {
        "setting": name,
        "ratio": setting.ratio if setting is not None else 0,
        "seed": seed,
        "n_train": len(train) if train is not None else 0,
        "n_real_per_class": max(real_per_class, default=0),
        "n_synthetic_per_class": max(synthetic_per_class, default=0),
        "train_counts": counts,
        "predictions": predictions.tolist(),
        "metrics": run_metrics(test_labels, predictions, classes),
        "delta_vs_real": None,
        "params": params,
        "seconds": round(seconds, 3),
    }


def _identify_checkpoint(record: dict, params: dict) -> None:
    """The submitted model is the checkpoint protocol's backbone: identify it by its weights."""
    record["backbone"]["revision"] = params.get("checkpoint_sha256")
    recipe = params.get("preprocessing")
    record["backbone"]["preprocessing"] = f"pp-{sha256_json(recipe)[:12]}" if recipe else None
    size = recipe.get("size") if isinstance(recipe, dict) else None
    record["backbone"]["input_size"] = size if isinstance(size, int) and size > 0 else None


def batch_runs(todo: Sequence[Run], together: bool) -> list[list[Run]]:
    """The runs in the groups a runner fits at once: consecutive seeds of one setting when it
    `trains_seeds_together` (the linear probe on a GPU, same results within the solver tolerance),
    else one run per group."""
    groups: list[list[Run]] = []
    for run in todo:
        if together and groups and groups[-1][0][0] == run[0] and run[1] is not None:
            groups[-1].append(run)
        else:
            groups.append([run])
    return groups


def fit_workers(inputs: GridInputs) -> int:
    """How many runs the grid fits at once: for a runner whose CPU fits are single-threaded and
    independent (`fits_in_threads`), as many as torch has intra-op threads (one per core unless
    the caller pinned it: the demo's worker processes run one each), else one (a GPU, a fine-tune)."""
    if not getattr(inputs.runner, "fits_in_threads", False) or getattr(inputs.device, "type", "cpu") != "cpu":
        return 1
    import torch

    return max(1, min(MAX_FIT_WORKERS, torch.get_num_threads()))


def fit_and_score(
    inputs: GridInputs, plan: RunPlan, todo: Sequence[Run], training_sets: TrainingSets, context,
    writer: RecordWriter, *, progress: bool,
) -> None:
    """Stage 6: fit each missing run, score it on the test split, add it to the record (in plan
    order, whatever order parallel fits finish in); checkpoint the record every
    CHECKPOINT_EVERY_S seconds and on Ctrl-C (the next call resumes after it)."""
    record, test = writer.record, plan.test
    bar = None
    if progress and len(todo) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"{inputs.submission.id} {inputs.backbone_name} {inputs.protocol}", unit="run")
    last_save, saved_runs = time.perf_counter(), len(record["runs"])
    groups = batch_runs(todo, bool(getattr(inputs.runner, "trains_seeds_together", False)))
    trains = [[training_sets(setting, seed) for _, setting, seed in group] for group in groups]
    try:
        with _fit_pool(fit_workers(inputs)) as pool:
            fitted = pool.map(lambda args: _fit_group(inputs.runner, *args, test, context), zip(groups, trains))
            for group, group_trains, (outputs, seconds) in zip(groups, trains, fitted):
                for run, (train, counts), (predictions, params) in zip(group, group_trains, outputs):
                    entry = run_entry(run, train, counts, predictions, params, seconds, test_labels=test.labels,
                                      classes=plan.classes, protocol=inputs.protocol)
                    if inputs.protocol == "checkpoint":
                        _identify_checkpoint(record, params)
                    record["runs"].append(entry)
                    record["provenance"]["runs_computed"] += 1
                if bar is not None:
                    bar.update(len(group))
                if time.perf_counter() - last_save >= CHECKPOINT_EVERY_S:
                    writer.save(final=False)
                    last_save, saved_runs = time.perf_counter(), len(record["runs"])
    except KeyboardInterrupt:
        # Ctrl-C: keep the runs finished since the last checkpoint (the next call resumes after them)
        if len(record["runs"]) > saved_runs:
            writer.save(final=False)
            log.warning("interrupted: %s keeps %d finished runs; run again to resume", writer.path, len(record["runs"]))
        raise
    finally:
        if bar is not None:
            bar.close()


def _fit_group(runner, group: list[Run], trains: list, test, context) -> tuple[list, float]:
    """One group's fits (`batch_runs`): their outputs and the seconds per run."""
    start = time.perf_counter()
    if len(group) == 1:
        outputs = [runner.fit_predict(trains[0][0], test, seed=group[0][2], context=context)]
    else:
        outputs = runner.fit_predict_many([t for t, _ in trains], test, seeds=[s for _, _, s in group], context=context)
    return outputs, (time.perf_counter() - start) / len(group)


class _SerialPool:
    """`map` in the calling thread (one fit at a time)."""

    def map(self, function, items):
        return map(function, items)


@contextlib.contextmanager
def _fit_pool(workers: int):
    """A pool of `workers` threads for the fits, torch held to one intra-op thread meanwhile (each
    fit sets that itself; set once here so that no fit restores another's setting). Ctrl-C
    cancels the fits not yet started."""
    if workers <= 1:
        yield _SerialPool()
        return
    from concurrent.futures import ThreadPoolExecutor

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fit")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


def run_grid(
    task,
    submission,
    *,
    backbone: str = DEFAULT_BACKBONE,
    protocol: str | None = None,
    seeds: Iterable[int] = DEFAULT_SEEDS,
    settings: Iterable[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    weights: str | os.PathLike | None = None,
    image_size: int | None = None,
    random_init_config: dict | None = None,
    out_path: str | os.PathLike | None = None,
    progress: bool = True,
    official: bool = False,
    validated: bool = False,
    check_leakage: bool = True,
    revision: str | None = None,
    protocol_overrides: dict[str, Any] | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    leakage_checked: bool | None = None,
    signing_key=None,
) -> dict:
    """Run (or resume) the grid of one submission for one backbone and protocol; return the record.

    `task`: a loaded Task, a task folder or a Hub repo id (with `revision`). `submission`: a
    loaded Submission or its folder. `protocol`: a name from PROTOCOLS (default: linear-probe;
    checkpoint submissions always use "checkpoint"). `settings`: names from SETTINGS (default:
    all). `validated=True` skips `validate_submission` (only when the caller just ran it);
    `check_leakage=False` validates without the leakage gate (tests of the grid itself).
    `protocol_overrides` changes recipe values (tests, ablations; recorded in the params, so such
    a record never resumes into an official one).
    `leakage_checked`: what the record says about the leakage gate (default: `check_leakage`; a
    caller that validated the submission itself passes whether its validation ran the gate).
    `signing_key` (an Ed25519 private key, benchmark.signing): signs every write of the record.
    """
    started_clock, started = time.perf_counter(), _now()
    inputs = resolve_inputs(
        task, submission, backbone=backbone, protocol=protocol, seeds=seeds, settings=settings, cache_dir=cache_dir,
        device=device, revision=revision, protocol_overrides=protocol_overrides, batch_size=batch_size,
        num_workers=num_workers, out_path=out_path,
    )
    if not validated:
        validate_inputs(inputs, check_leakage=check_leakage, image_size=image_size)
    plan = plan_runs(inputs)
    loading_start = time.perf_counter()
    loaded_backbone, backbone_block = identify_backbone(
        inputs, weights=weights, image_size=image_size, random_init_config=random_init_config
    )
    seconds_loading = time.perf_counter() - loading_start
    record = new_record(
        inputs, plan, backbone_block, official=official, started=started,
        leakage_checked=check_leakage if leakage_checked is None else leakage_checked,
    )
    writer = RecordWriter(inputs.path, record, started_clock, seconds_loading, signing_key=signing_key)
    todo = resume_record(record, inputs, plan, official=official)
    draws = draw_subsets(todo, plan)
    writer.encoded = encode_images(inputs, plan, draws, todo, record, loaded_backbone, progress=progress)
    context = run_context(inputs, loaded_backbone, writer.encoded, weights=weights, image_size=image_size,
                          random_init_config=random_init_config, progress=progress)
    fit_and_score(inputs, plan, todo, TrainingSets(inputs.task, plan, draws), context, writer, progress=progress)
    writer.save(final=True)
    log.info("wrote %s (%d runs computed, %d reused)", inputs.path, len(todo), record["provenance"]["runs_reused"])
    return record


# ----------------------------------------------------------------------------------------------
# The record as a table (`synthbench run` prints it)
# ----------------------------------------------------------------------------------------------


def summary_table(record: dict):
    """A pandas DataFrame with one row per setting: mean +- std over seeds and the CIs."""
    import pandas as pd

    def pct(x):
        return f"{100 * x:.1f}"

    rows = []
    for setting, s in record["summary"].items():
        row = {
            "setting": setting,
            "seeds": s["n_seeds"],
            "accuracy": f"{pct(s['accuracy_mean'])} ± {pct(s['accuracy_std'])}",
            "accuracy 95% CI": f"[{pct(s['accuracy_ci'][0])}, {pct(s['accuracy_ci'][1])}]",
            "macro-F1": f"{pct(s['macro_f1_mean'])} ± {pct(s['macro_f1_std'])}",
            "macro-F1 95% CI": f"[{pct(s['macro_f1_ci'][0])}, {pct(s['macro_f1_ci'][1])}]",
        }
        if s.get("delta_macro_f1_mean") is not None:
            lo, hi = s["delta_macro_f1_ci"]
            row["Δ macro-F1 vs real [95% CI]"] = f"{100 * s['delta_macro_f1_mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        else:
            row["Δ macro-F1 vs real [95% CI]"] = "—"
        worth = s.get("effective_real")
        row["worth real/class [95% CI]"] = worth["text"] if worth else "—"
        if any("more_real" in entry for entry in record["summary"].values()):  # a task with train_real_extra
            row["share of more-real gain [95% CI]"] = more_real.share_text(s.get("more_real"))
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = [
    "CACHE_ENV",
    "default_cache_dir",
    "finalise",
    "needed_per_class",
    "run_grid",
    "run_metrics",
    "skip_reason",
    "summary_table",
    "synthetic_draw",
]
