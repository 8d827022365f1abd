"""Constructed results trees for the leaderboard's tests, browser tests and speed benchmarks (test code, not part of the product).

NOT results: the predictions are drawn to hit planned accuracies, so that ranking, ties, verdicts
and the pages can be checked against known answers. Every record is complete and follows
docs/RECORDS.md section 4 (metrics from benchmark.metrics, written by benchmark.results), so the
leaderboard reads it exactly as it reads the harness's records, and passes its checks: the tree
comes with its own tiny task folder (`task/` beside the submissions folder, where the leaderboard
looks by default) whose test labels are the records', each submission's content hash is computed
from its own (distinct) sample images, and planned official records are signed when a signing
key is given.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw

from benchmark import __version__
from benchmark.images import encode_png
from benchmark.io import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_json
from benchmark.metrics import CI_METHOD, bootstrap_cis, classification_metrics
from benchmark.protocol import RATIOS, SETTINGS, TRAIN_PER_CLASS, XBD_CLASSES
from benchmark.results import RESULT_SCHEMA_VERSION, result_path, write_result

CLASSES = list(XBD_CLASSES)
#: The constructed board's task name: it starts with "demo", so the site labels it a pipeline demo.
#: Its test_manifest_hash is that of the task folder `make_example_tree` writes beside the tree.
EXAMPLE_TASK = {"name": "demo-constructed", "revision": "local", "test_manifest_hash": "0" * 64}


def _constructed_splits(per_class: int, classes: tuple[str, ...]) -> dict[str, list]:
    from benchmark.tasks.record import TaskImage

    def image(kind: int, index: int) -> bytes:  # distinct 8x8 pictures, one per row
        pixels = np.full((8, 8, 3), (kind * 80, index % 256, index // 256), dtype=np.uint8)
        return encode_png(Image.fromarray(pixels))

    return {
        "test": [TaskImage(image(0, i * per_class + j), label, f"test-{i}-{j:05d}", "constructed")
                 for i, label in enumerate(classes) for j in range(per_class)],
        "train_real": [TaskImage(image(1, i), label, f"train-{i}", "constructed") for i, label in enumerate(classes)],
        "generation_inputs": [TaskImage(image(2, i), label, f"input-{i}", "constructed", pair_id=f"train-{i}")
                              for i, label in enumerate(classes)],
    }


@functools.lru_cache(maxsize=None)
def constructed_task_identity(per_class: int, name: str = EXAMPLE_TASK["name"],
                              classes: tuple[str, ...] = tuple(CLASSES)) -> dict[str, str]:
    """{name, revision, test_manifest_hash} of the constructed task with `per_class` test images per
    class (what `write_constructed_task` writes), without writing it."""
    from benchmark.tasks import compute_test_manifest_hash

    test = {row.image_id: row.sha256 for row in _constructed_splits(per_class, classes)["test"]}
    return {"name": name, "revision": "local", "test_manifest_hash": compute_test_manifest_hash(test)}


def write_constructed_task(out_dir: str | Path, per_class: int, *, name: str = EXAMPLE_TASK["name"],
                           classes: list[str] = CLASSES) -> dict[str, str]:
    """A tiny task folder whose test labels are `balanced_labels(per_class)` in split order; returns
    its {name, revision, test_manifest_hash} for the records. Reused when it is already there."""
    from benchmark.tasks import load_task, save_task

    out_dir = Path(out_dir)
    if not (out_dir / "manifest.json").is_file():
        splits = _constructed_splits(per_class, tuple(classes))
        save_task(out_dir, splits, name=name, builder="constructed", builder_version=1, seed=0, classes=classes,
                  prompt_templates=["{label}"], licence="cc0-1.0", is_demo=name.startswith("demo"),
                  description="Constructed for the leaderboard's tests; not a benchmark task.")
    task = load_task(out_dir)
    if len(task.labels("test")) != per_class * len(classes):
        raise ValueError(f"{out_dir}: holds a constructed task of another size; use another folder")
    return {"name": task.name, "revision": task.revision, "test_manifest_hash": task.test_manifest_hash}


def copy_tree(source: str | Path, target: str | Path) -> Path:
    """Copy a constructed submissions folder and the task beside it (`target/../task`); return `target`."""
    import shutil

    source, target = Path(source), Path(target)
    shutil.copytree(source, target)
    if (source.parent / "task").is_dir() and not (target.parent / "task").exists():
        shutil.copytree(source.parent / "task", target.parent / "task")
    return target


def balanced_labels(per_class: int, n_classes: int = len(CLASSES)) -> np.ndarray:
    """A balanced test split's labels in a fixed order (class-major)."""
    return np.repeat(np.arange(n_classes), per_class)


def shift_accuracy(reference: np.ndarray, labels: np.ndarray, change: float, rng: np.random.Generator) -> np.ndarray:
    """`reference` predictions with round(|change| * n) test images fixed (change > 0) or broken (< 0).

    Paired with `reference`, the accuracy difference is exactly the rounded change, with a narrow
    paired CI: the rest of the predictions are identical.
    """
    n_classes = int(labels.max()) + 1
    predictions = reference.copy()
    count = int(round(abs(change) * labels.size))
    pool = np.flatnonzero(predictions != labels) if change > 0 else np.flatnonzero(predictions == labels)
    chosen = rng.choice(pool, size=min(count, pool.size), replace=False)
    if change > 0:
        predictions[chosen] = labels[chosen]
    else:
        predictions[chosen] = (labels[chosen] + rng.integers(1, n_classes, size=chosen.size)) % n_classes
    return predictions


def predictions_with_accuracy(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """Predictions right on round(accuracy * n) images chosen at random, wrong (uniformly) elsewhere."""
    n_classes = int(labels.max()) + 1
    predictions = labels.copy()
    wrong = rng.choice(labels.size, size=int(round((1 - accuracy) * labels.size)), replace=False)
    predictions[wrong] = (labels[wrong] + rng.integers(1, n_classes, size=wrong.size)) % n_classes
    return predictions


def make_record(
    *,
    submission_id: str,
    labels: np.ndarray,
    runs: dict[tuple[str, int], np.ndarray],
    classes: list[str] = CLASSES,
    backbone: str = "efficientnet-lite0",
    protocol: str = "linear-probe",
    task: dict[str, str] | None = None,
    official: bool = False,
    track: str = "generated",
    kind: str = "images",
    content_hash: str | None = None,
    harness_version: str = __version__,
    leakage_checked: bool = True,
    diagnostics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete result record (RECORDS.md section 4) for the given {(setting, seed): predictions}.

    `task` None: the constructed task of `labels.size / len(classes)` test images per class (which
    `write_submission` puts beside the tree)."""
    n_classes = len(classes)
    if task is None:
        task = constructed_task_identity(int(labels.size) // n_classes, EXAMPLE_TASK["name"], tuple(classes))
    run_list = []
    real = {seed: preds for (setting, seed), preds in runs.items() if setting == "real"}
    for (setting, seed), predictions in runs.items():
        spec = SETTINGS.get(setting)
        metrics = classification_metrics(labels, predictions, classes)
        for metric, (_, lo, hi) in bootstrap_cis(labels, [predictions], n_classes).items():
            metrics[f"{metric}_ci"] = [lo, hi]
        delta = None
        if spec is not None and spec.kind != "real" and seed in real:
            delta = {}
            for metric, (point, lo, hi) in bootstrap_cis(labels, [predictions], n_classes, baseline_preds=[real[seed]]).items():
                delta[metric], delta[f"{metric}_ci"] = point, [lo, hi]
        synthetic = spec.synthetic_per_class if spec else 0
        run_list.append(
            {
                "setting": setting,
                "ratio": spec.ratio if spec else 0,
                "seed": seed,
                "n_train": n_classes * ((TRAIN_PER_CLASS if spec is None or spec.uses_real else 0) + synthetic),
                "n_real_per_class": ((spec.real_per_class if spec else None) or TRAIN_PER_CLASS)
                if spec is None or spec.uses_real else 0,
                "n_synthetic_per_class": synthetic,
                "predictions": [int(p) for p in predictions],
                "metrics": metrics,
                "delta_vs_real": delta,
                "params": {"C": 1.0},
                "seconds": 0.1,
            }
        )
    record = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "harness_version": harness_version,
        "official": official,
        "leakage_checked": leakage_checked,
        "submission": {
            "id": submission_id,
            "content_hash": content_hash or sha256_json(["constructed", submission_id]),
            "kind": kind,
            "track": track,
        },
        "task": dict(task),
        "backbone": {"name": backbone, "weights": "constructed", "revision": "none", "preprocessing": "none",
                     "input_size": 224},
        "protocol": {"name": protocol, "params": {}},
        "classes": list(classes),
        "test": {"n": int(labels.size), "labels": [int(y) for y in labels]},
        "runs": run_list,
        "summary": _summary(labels, run_list, n_classes),
        "skipped": [],
        "provenance": {
            "device": "cpu",
            "torch": "constructed",
            "started": "2025-07-01T00:00:00+00:00",
            "finished": "2025-07-01T00:00:01+00:00",
            "seconds_total": 1.0,
            "seconds_encoding": 0.0,
            "host": "constructed",
        },
    }
    if diagnostics is not None:
        record["diagnostics"] = diagnostics
    return record


def constructed_diagnostics(overall: dict[str, float], classes: list[str] = CLASSES, n: tuple[int, int] = (4, 4)) -> dict:
    """A valid `diagnostics` block (docs/RECORDS.md) with the given overall values (per class the same,
    CIs +-0.05); diagnostics not named are null ("not computed")."""
    from benchmark.protocol import DIAGNOSTICS

    def group() -> dict[str, Any]:
        values = {name: ({"value": overall[name], "ci": [overall[name] - 0.05, overall[name] + 0.05]}
                         if name in overall else None) for name in DIAGNOSTICS["descriptions"]}
        return {"n_real": n[0], "n_synthetic": n[1], **values}

    return {"params": dict(DIAGNOSTICS["params"]), "overall": group(), "per_class": {name: group() for name in classes}}


def _summary(labels: np.ndarray, run_list: list[dict[str, Any]], n_classes: int) -> dict[str, Any]:
    """Per-setting mean/std (ddof 1) over seeds and the two-level (and paired delta) CIs, as grid.finalise."""
    summary: dict[str, Any] = {}
    by_key = {(run["setting"], run["seed"]): run for run in run_list}
    for setting in dict.fromkeys(run["setting"] for run in run_list):
        seeds = sorted(seed for s, seed in by_key if s == setting)
        preds = [np.asarray(by_key[(setting, seed)]["predictions"]) for seed in seeds]
        entry: dict[str, Any] = {"n_seeds": len(seeds), "ci_method": CI_METHOD}
        cis = bootstrap_cis(labels, preds, n_classes, seeds=seeds)
        spec = SETTINGS.get(setting)
        paired = spec is not None and spec.kind != "real" and all(("real", seed) in by_key for seed in seeds)
        deltas = (
            bootstrap_cis(labels, preds, n_classes, seeds=seeds,
                          baseline_preds=[np.asarray(by_key[("real", s)]["predictions"]) for s in seeds])
            if paired
            else {}
        )
        for metric in ("accuracy", "macro_f1"):
            per_seed = [by_key[(setting, seed)]["metrics"][metric] for seed in seeds]
            entry[f"{metric}_mean"] = float(np.mean(per_seed))
            entry[f"{metric}_std"] = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
            entry[f"{metric}_ci"] = list(cis[metric][1:])
            point, lo, hi = deltas[metric] if paired else (None, None, None)
            entry[f"delta_{metric}_mean"] = point
            entry[f"delta_{metric}_ci"] = [lo, hi] if paired else None
        summary[setting] = entry
    return summary


@dataclass
class Plan:
    """A constructed submission: accuracy changes over real for mixed@k, accuracies for synthetic@k."""

    submission_id: str
    team: str
    mixed_change: float | dict[int, float]  # per ratio, or one value for every ratio
    synthetic_accuracy: float | dict[int, float]
    baseline: str | None = None
    track: str = "generated"
    generator: dict[str, str] = field(default_factory=lambda: {"name": "constructed", "version": "0", "link": ""})
    ratios: tuple[int, ...] = RATIOS
    official: bool = False
    images_per_class: int = 4  # sample images written into images/ (for thumbnails)
    leakage_checked: bool = True
    #: Overall values of the record's stored diagnostics (constructed_diagnostics); None: not computed.
    diagnostics: dict[str, float] | None = None

    def change(self, ratio: int) -> float:
        return self.mixed_change[ratio] if isinstance(self.mixed_change, dict) else self.mixed_change

    def synthetic(self, ratio: int) -> float:
        return self.synthetic_accuracy[ratio] if isinstance(self.synthetic_accuracy, dict) else self.synthetic_accuracy


#: A small board with a known answer: one generator that helps, one that hurts, two baselines.
EXAMPLE_PLANS = (
    Plan("team-a__editor", "Team A", mixed_change=0.15, synthetic_accuracy=0.55,
         generator={"name": "InstructPix2Pix", "version": "1.0", "link": "https://example.org/ip2p"}),
    Plan("team-b__noisy", "Team B", mixed_change=-0.15, synthetic_accuracy=0.30, track="open",
         generator={"name": "NoisyGen", "version": "0.1", "link": ""}),
    Plan("baseline__classic", "synthbench", mixed_change=0.0, synthetic_accuracy=0.45, baseline="classic",
         generator={"name": "classic augmentation", "version": "", "link": ""}),
    Plan("baseline__duplicate", "synthbench", mixed_change=0.01, synthetic_accuracy=0.60, baseline="duplicate",
         generator={"name": "duplicate", "version": "", "link": ""}),
)


def write_submission(root: Path, plan: Plan, records: list[dict[str, Any]], classes: list[str] = CLASSES,
                     signing_key=None) -> Path:
    """submission.yaml, a few procedural sample images + metadata.jsonl, and the records (with the
    files' content hash; signed with `signing_key` when the record says official)."""
    folder = Path(root) / plan.submission_id
    for record in records:  # the constructed task the records name, beside the tree (once)
        per_class, name = record["test"]["n"] // len(classes), record["task"]["name"]
        if record["task"] == constructed_task_identity(per_class, name, tuple(classes)):
            write_constructed_task(Path(root).parent / "task", per_class, name=name, classes=classes)
    meta = {
        "id": plan.submission_id,
        "team": plan.team,
        "method": plan.submission_id.split("__")[-1],
        "contact": "someone@example.org",
        "licence": "CC-BY-4.0",
        "track": plan.track,
        "generator": {**plan.generator, "link": plan.generator.get("link") or "none"},  # the format needs one
        "fine_tuned": {"used": False, "data": ""},
        "task": {"name": records[0]["task"]["name"] if records else EXAMPLE_TASK["name"], "revision": "local"},
        "kind": "images",
    }
    if plan.baseline:
        meta["baseline"] = plan.baseline
    atomic_write_text(folder / "submission.yaml", yaml.safe_dump(meta, sort_keys=False))
    rows = []
    for index, name in enumerate(classes):
        for j in range(plan.images_per_class):
            file_name = f"images/{name}/{j:04d}.png"
            atomic_write_bytes(folder / file_name, encode_png(_sample_image(index, j, plan.submission_id)))
            rows.append({"file_name": file_name, "label": name, "source_id": None, "prompt": f"constructed {name}"})
    atomic_write_text(folder / "metadata.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    content_hash = files_content_hash(folder)
    for record in records:
        record["submission"]["content_hash"] = content_hash
        if signing_key is not None and record["official"]:
            from benchmark.signing import sign_record

            sign_record(record, signing_key)
        write_result(result_path(folder, record["backbone"]["name"], record["protocol"]["name"]), record)
    return folder


def files_content_hash(folder: str | Path) -> str:
    """The content hash the harness computes from a submission folder's files."""
    from benchmark.submissions.format import parse_submission

    parsed, problems = parse_submission(folder)
    if parsed is None or len(parsed.entries) == 0:
        raise ValueError(f"{folder}: constructed submission has no readable images: {problems.errors[:3]}")
    return parsed.content_hash


def _sample_image(class_index: int, variant: int, submission_id: str = "", size: int = 64) -> Image.Image:
    """A distinct procedural picture per class (hue), variant (shape position) and submission (a
    small mark of its own: two submissions never hold the same image files)."""
    hue = Image.new("HSV", (size, size), (int(255 * class_index / 6), 160, 200)).convert("RGB")
    draw = ImageDraw.Draw(hue)
    offset = 8 + 10 * variant
    draw.ellipse((offset, offset, offset + 24, offset + 24), fill=(250, 250, 250))
    mark = int(sha256_bytes(submission_id.encode())[:6], 16)
    draw.rectangle((0, 0, 3, 3), fill=(mark >> 16, (mark >> 8) & 255, mark & 255))
    return hue


def make_example_tree(
    root: str | Path,
    plans: tuple[Plan, ...] = EXAMPLE_PLANS,
    *,
    backbones: tuple[str, ...] = ("efficientnet-lite0",),
    protocol: str = "linear-probe",
    seeds: tuple[int, ...] = (0, 1),
    per_class: int = 30,
    real_accuracy: float = 0.6,
    task: dict[str, str] | None = None,
    seed: int = 0,
    signing_key=None,
    task_name: str = EXAMPLE_TASK["name"],
    curve: dict[int, float] | None = None,
    more_real: dict[int, float] | None = None,
) -> Path:
    """Write a constructed results tree under `root` (one folder per plan) and return `root`.

    Every submission shares the same real runs per (backbone, seed), as a deterministic harness
    would produce; mixed@k is the real predictions shifted by the plan's change; synthetic@k is
    drawn at the plan's accuracy. `task`: None writes (or reuses) the constructed task in
    `root/../task` and uses it; a dict is used as given (records of a task the board lacks).
    `signing_key`: signs the records of plans with `official=True`. `task_name`: of the constructed
    task (a name starting with "demo" makes a pipeline-demo board). `curve`: {n: accuracy} of the
    real@n learning-curve runs, `more_real`: {k: accuracy change over real} of more-real@k runs; both
    shared by every submission per (backbone, seed), as a deterministic harness makes them.
    """
    root = Path(root)
    if task is None:
        task = write_constructed_task(root.parent / "task", per_class, name=task_name)
    rng = np.random.default_rng(seed)
    labels = balanced_labels(per_class)
    real = {(b, s): predictions_with_accuracy(labels, real_accuracy, rng) for b in backbones for s in seeds}
    shared = {(f"real@{n}", b, s): predictions_with_accuracy(labels, accuracy, rng)
              for n, accuracy in (curve or {}).items() for b in backbones for s in seeds}
    shared.update({(f"more-real@{k}", b, s): shift_accuracy(real[(b, s)], labels, change, rng)
                   for k, change in (more_real or {}).items() for b in backbones for s in seeds})
    for plan in plans:
        records = []
        for backbone in backbones:
            runs: dict[tuple[str, int], np.ndarray] = {}
            for s in seeds:
                runs[("real", s)] = real[(backbone, s)]
            runs.update({(setting, s): predictions for (setting, b, s), predictions in shared.items() if b == backbone})
            for k in plan.ratios:
                for s in seeds:
                    runs[(f"synthetic@{k}", s)] = predictions_with_accuracy(labels, plan.synthetic(k), rng)
            for k in plan.ratios:
                for s in seeds:
                    runs[(f"mixed@{k}", s)] = shift_accuracy(real[(backbone, s)], labels, plan.change(k), rng)
            records.append(
                make_record(
                    submission_id=plan.submission_id,
                    labels=labels,
                    runs=runs,
                    backbone=backbone,
                    protocol=protocol,
                    task=task,
                    official=plan.official,
                    track=plan.track,
                    leakage_checked=plan.leakage_checked,
                    diagnostics=constructed_diagnostics(plan.diagnostics) if plan.diagnostics else None,
                )
            )
        write_submission(root, plan, records, signing_key=signing_key)
    return root
