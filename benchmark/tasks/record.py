"""The task folder record (docs/RECORDS.md, section 1): writing, loading and verifying it.

A task is a `datasets.DatasetDict` with the splits `train_real`, `test` and `generation_inputs`,
stored as one parquet file per split in a folder that is also a Hugging Face dataset repo:

    <task>/README.md                 dataset card (YAML front matter + prose)
    <task>/task.json                 task info
    <task>/manifest.json             SHA-256 of every data file and of every image
    <task>/data/<split>.parquet

Builders (xbd, imagefolder, demo) produce lists of `TaskImage` rows and call `save_task`, which
writes everything into a temporary folder and moves it into place only once complete. Writing is
deterministic: the same rows give byte-identical files (rows are sorted, nothing carries a
timestamp). `load_task` reads a local folder or a Hub repo id and, unless told otherwise, checks
every file and every image against the manifest, naming exactly what is missing or altered.

task.json and manifest.json are pydantic models (`TaskInfo`, `TaskManifest`; benchmark.records):
the writer validates them before writing, the reader before using them. The card is a
huggingface_hub `DatasetCard` whose metadata is a `DatasetCardData`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping, Sequence

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from .. import __version__
from ..errors import TaskError
from ..images import ImageRef
from ..io import atomic_directory, atomic_write_json, atomic_write_text, sha256_bytes, sha256_file
from ..records import OpenRecord, describe, error_field, first_error, problem

#: 2: manifest.json gained `near_duplicates` (the build-time deduplication record).
TASK_SCHEMA_VERSION = 2
#: Versions this harness reads (a version-1 task simply has no deduplication record).
READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)
#: The splits of every task, in this order.
SPLITS: tuple[str, ...] = ("train_real", "test", "generation_inputs")
#: More real training images (disjoint from every other split) for the grid's `more-real@k`
#: control (benchmark.more_real); a builder adds it where its source has images left over.
EXTRA_SPLIT = "train_real_extra"
#: Splits a task may have besides SPLITS (written after them, only when non-empty).
OPTIONAL_SPLITS: tuple[str, ...] = (EXTRA_SPLIT,)
#: The file that marks a manifest-only release (benchmark.tasks.release): no images, rebuilt from
#: the user's own copy of the source data before it can be loaded.
MANIFEST_ONLY_FILE = "release.json"
#: The columns of every split, in this order.
COLUMNS: tuple[str, ...] = ("image", "label", "image_id", "sha256", "event", "source_file", "prompt", "pair_id")
TASK_INFO_FILE = "task.json"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "README.md"
DATA_DIR = "data"
#: image ids end up in file names downstream (submissions' source_id, generators' outputs).
_IMAGE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Rows per parquet row group (the value `datasets` uses for image data).
PARQUET_ROW_GROUP_SIZE = 100
#: How many ids an error message lists before saying "and N more".
_MAX_LISTED = 10


def split_path(split: str) -> str:
    """Relative path of a split's parquet file inside the task folder."""
    return f"{DATA_DIR}/{split}.parquet"


def compute_test_manifest_hash(test_images: Mapping[str, str]) -> str:
    """Identity of a test set: SHA-256 of its sorted `image_id:sha256` lines, each ending in a newline."""
    lines = "".join(f"{image_id}:{test_images[image_id]}\n" for image_id in sorted(test_images))
    return sha256_bytes(lines.encode("utf-8"))


@dataclass(frozen=True)
class TaskImage:
    """One row of a task split, before it is written: encoded PNG bytes plus its provenance."""

    png: bytes
    label: str
    image_id: str
    event: str
    source_file: str = ""
    prompt: str = ""
    pair_id: str = ""

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.png)


def task_features(classes: Sequence[str]) -> datasets.Features:
    """The `datasets` schema of every split of a task with these classes."""
    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(classes)),
            "image_id": datasets.Value("string"),
            "sha256": datasets.Value("string"),
            "event": datasets.Value("string"),
            "source_file": datasets.Value("string"),
            "prompt": datasets.Value("string"),
            "pair_id": datasets.Value("string"),
        }
    )


def _listing(items: Sequence[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


# ----------------------------------------------------------------------------------------------
# The records: task.json and manifest.json, as models (benchmark.records)
# ----------------------------------------------------------------------------------------------


class TaskInfo(OpenRecord):
    """task.json: what the task is and how it was built (docs/RECORDS.md section 1)."""

    schema_version: int = Field(description=f"{TASK_SCHEMA_VERSION}; versions "
                                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))} are read")
    name: str = Field(description="the task's name, e.g. `xbd-disaster6`")
    builder: str = Field(description="`xbd`, `imagefolder` or `demo`")
    builder_version: int | None = Field(None, description="the builder's own version")
    harness_version: str | None = Field(None, description="synthbench version that built the task")
    seed: int | None = Field(None, description="the builder's seed")
    classes: list[str] = Field(description="the classes, in label order")
    prompt_templates: list[str] = Field([], description="the generation prompts' templates")
    split_sizes: dict[str, dict[str, int]] = Field(description="{split: {class: images}}")
    label_source: str | None = Field(None, description="`table` or `metadata` (xbd), `folder`, `procedural`")
    resize: int | None = Field(None, description="pixels, or null (original size)")
    licence: str | None = Field(None, description="a Hub licence id (also the card's `license`)")
    is_demo: bool = Field(description="true for the procedural demo task")
    notes: list[str] = Field([], description="e.g. label disagreements and short classes")


def _removed_list(record: Any) -> Any:
    if record is not None and not (isinstance(record, dict) and isinstance(record.get("removed"), list)):
        raise problem("near_duplicates must be null or an object with a 'removed' list")
    return record


class NearDuplicates(OpenRecord):
    """The build-time deduplication (benchmark.tasks.dedup; docs/TASKS.md)."""

    detector: Any = Field(None, description="`benchmark.nearcopy.find_near_duplicate_pairs`")
    detector_version: Any = Field(None, description="its GATE_VERSION")
    embedder: Any = Field(None, description="backbone id of the embeddings (`name/weights/preprocessing`)")
    image_size: Any = Field(None, description="input size of the embeddings")
    queries: Any = Field(None, description="the training splits compared with `references`")
    references: Any = Field(None, description='`["test"]`')
    removed: list[dict[str, Any]] = Field(description="one object per removed training image and its test twin")
    same_location: Any = Field(None, description="xBD: training tiles left out for showing a test tile's location")


class TaskManifest(OpenRecord):
    """manifest.json: the SHA-256 of every file and image (docs/RECORDS.md section 1)."""

    schema_version: int = Field(description=f"{TASK_SCHEMA_VERSION}; version 1 has no `near_duplicates`")
    files: dict[str, str] = Field(description="{relative path: sha256} of every file but the manifest")
    images: dict[str, dict[str, str]] = Field(description="{split: {image_id: sha256}}")
    test_manifest_hash: str = Field(description="SHA-256 of the sorted `image_id:sha256` lines of the test split")
    near_duplicates: Annotated[NearDuplicates | None, BeforeValidator(_removed_list)] = Field(
        description="the build-time deduplication, or null for a task saved without it (version 2)")

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, manifest: Any) -> Any:
        """Version 1 (before deduplication) reads as `near_duplicates: null`."""
        if isinstance(manifest, dict) and manifest.get("schema_version") == 1 and "near_duplicates" not in manifest:
            return {**manifest, "near_duplicates": None}
        return manifest

    @field_validator("images")
    @classmethod
    def _known_splits(cls, images: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for split in SPLITS:
            if split not in images:
                raise problem(f"no image list for split {split!r}")
        unknown = sorted(set(images) - set(SPLITS + OPTIONAL_SPLITS))
        if unknown:
            raise problem(f"unknown split(s) {', '.join(unknown)}")
        return images


def check_record(model: type[OpenRecord], record: Any, path: Path | str) -> None:
    """Raise TaskError naming `path` and the field unless `record` is a valid `model`."""
    try:
        model.model_validate(record)
    except ValidationError as exc:
        error = first_error(exc)
        if error["type"] == "missing":
            raise TaskError(f"{path}: missing field {error['loc'][-1]!r}") from None
        if error["type"] == "synthbench":
            raise TaskError(f"{path}: {describe(error)}") from None
        raise TaskError(f"{path}: field {error_field(error)}: {describe(error)}") from None


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def present_splits(names: Iterable[str]) -> tuple[str, ...]:
    """SPLITS, then the optional splits among `names`, in the record's order."""
    names = set(names)
    return SPLITS + tuple(split for split in OPTIONAL_SPLITS if split in names)


def _check_rows(splits: Mapping[str, Sequence[TaskImage]], classes: Sequence[str]) -> None:
    if len(set(classes)) != len(classes) or not classes:
        raise TaskError(f"task classes must be a non-empty list of distinct names, got {list(classes)}")
    if not set(SPLITS) <= set(splits) <= set(SPLITS + OPTIONAL_SPLITS):
        raise TaskError(
            f"a task needs exactly the splits {', '.join(SPLITS)} (optionally {', '.join(OPTIONAL_SPLITS)}); "
            f"got {', '.join(sorted(splits))}"
        )
    seen_ids: dict[str, str] = {}
    for split in present_splits(splits):
        rows = splits[split]
        if not rows:
            raise TaskError(f"split {split} is empty")
        for row in rows:
            if row.label not in classes:
                raise TaskError(f"split {split}, image {row.image_id}: label {row.label!r} is not one of {list(classes)}")
            if not _IMAGE_ID_PATTERN.match(row.image_id):
                raise TaskError(
                    f"split {split}: image id {row.image_id!r} must use only letters, digits, '.', '_' and '-'"
                )
            if row.image_id in seen_ids:
                raise TaskError(f"image id {row.image_id} appears in split {seen_ids[row.image_id]} and in {split}")
            seen_ids[row.image_id] = split
    # The held-out test set must not contain a training image (byte for byte).
    training = [split for split in present_splits(splits) if split not in ("test", "generation_inputs")]
    train_hashes = {row.sha256: row.image_id for split in training for row in splits[split]}
    leaked = [f"{row.image_id} (= {train_hashes[row.sha256]})" for row in splits["test"] if row.sha256 in train_hashes]
    if leaked:
        raise TaskError(f"test images identical to {' or '.join(training)} images: {_listing(leaked)}")


def _write_split(path: Path, rows: Sequence[TaskImage], classes: Sequence[str]) -> None:
    class_index = {name: i for i, name in enumerate(classes)}
    # Sorted by class then image id: the file does not depend on the order a builder found things.
    rows = sorted(rows, key=lambda row: (class_index[row.label], row.image_id))
    columns = {
        "image": [{"bytes": row.png, "path": None} for row in rows],
        "label": [class_index[row.label] for row in rows],
        "image_id": [row.image_id for row in rows],
        "sha256": [row.sha256 for row in rows],
        "event": [row.event for row in rows],
        "source_file": [row.source_file for row in rows],
        "prompt": [row.prompt for row in rows],
        "pair_id": [row.pair_id for row in rows],
    }
    # The Arrow table carries the `datasets` features (ClassLabel names) in its schema metadata.
    table = datasets.Dataset.from_dict(columns, features=task_features(classes)).data.table
    path.parent.mkdir(parents=True, exist_ok=True)
    # Small row groups, as `datasets` writes image data, so the Hub viewer can stream them.
    pq.write_table(table, path, row_group_size=PARQUET_ROW_GROUP_SIZE)


def render_card(info: Mapping[str, Any], description: str, near_duplicates: Mapping[str, Any] | None = None) -> str:
    """The dataset card (README.md), a huggingface_hub DatasetCard: its Hub metadata (a
    DatasetCardData) as YAML front matter, then prose generated from `info` (and the deduplication
    record, when the builder made one)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    metadata = DatasetCardData(
        license=info["licence"],
        pretty_name=info["name"],
        task_categories=["image-classification"],
        tags=["synthbench", "synthetic-data", "remote-sensing"] + (["pipeline-demo"] if info["is_demo"] else []),
        configs=[
            {
                "config_name": "default",
                # every split the task has (train_real_extra too), so the Hub's viewer lists them all
                "data_files": [{"split": split, "path": split_path(split)} for split in present_splits(info["split_sizes"])],
            }
        ],
    )
    # The front matter keeps the key order tasks have always been written with (DatasetCardData's
    # own order differs), so a rebuilt task's card, and with it manifest.json, stay byte-identical.
    fields = metadata.to_dict()
    front = yaml.safe_dump({key: fields[key] for key in _CARD_KEYS}, sort_keys=False, allow_unicode=True)
    return str(DatasetCard(f"---\n{front}---\n\n{_card_text(info, description, near_duplicates)}"))


#: The card's front matter, in the order it is written.
_CARD_KEYS = ("license", "pretty_name", "task_categories", "tags", "configs")


def _card_text(info: Mapping[str, Any], description: str, near_duplicates: Mapping[str, Any] | None) -> str:
    """The card's prose: what the task is, its classes, splits, prompts and provenance."""
    lines = [f"# {info['name']}"]
    lines.append("")
    if info["is_demo"]:
        lines += [
            "> **PIPELINE DEMO, NOT A SCIENTIFIC RESULT.** Every image in this task is procedurally",
            "> rendered by `benchmark.tasks.demo`; it exists to exercise the synthbench pipeline end to",
            "> end without any download. Numbers measured on it say nothing about real imagery.",
            "",
        ]
    if description:
        lines += [description.strip(), ""]
    lines += [
        "A [synthbench](https://github.com/) task: does adding AI-generated images to a small real",
        "training set help a classifier recognise real images? Train on `train_real` (and/or synthetic",
        "images generated from `generation_inputs`), evaluate on the held-out real `test` split.",
        "",
        "## Classes",
        "",
    ]
    lines += [f"{i}. `{name}`" for i, name in enumerate(info["classes"])]
    lines += ["", "## Splits", "", "| split | " + " | ".join(info["classes"]) + " | total |"]
    lines.append("|---" * (len(info["classes"]) + 2) + "|")
    for split in present_splits(info["split_sizes"]):
        counts = info["split_sizes"][split]
        row = [str(counts.get(name, 0)) for name in info["classes"]]
        lines.append(f"| `{split}` | " + " | ".join(row) + f" | {sum(counts.values())} |")
    lines += [
        "",
        "- `train_real`: the real training images (post-disaster where the task has pairs).",
        "- `test`: the held-out real test split; never used for training or generation.",
        "- `generation_inputs`: what participants give their generators: an input image and a",
        "  class prompt per row (`pair_id` links an input to its `train_real` twin).",
    ]
    if EXTRA_SPLIT in info["split_sizes"]:
        lines += [
            f"- `{EXTRA_SPLIT}`: more real training images, disjoint from the other splits: the grid's",
            "  `more-real@k` control (what k x n more *real* images per class would gain).",
        ]
    lines += [
        "",
        "Columns: `image` (PNG), `label` (class index), `image_id`, `sha256` (of the PNG bytes),",
        "`event`, `source_file`, `prompt`, `pair_id`. `manifest.json` lists the SHA-256 of every",
        "file and every image; `synthbench task verify` checks them.",
        "",
        "## Prompt templates",
        "",
    ]
    lines += [f"- `{template}`" for template in info["prompt_templates"]]
    lines += [
        "",
        "## Provenance",
        "",
        f"- builder: `{info['builder']}` version {info['builder_version']} (synthbench {info['harness_version']})",
        f"- seed: {info['seed']}",
        f"- label source: {info['label_source']}",
        f"- resize: {info['resize'] if info['resize'] else 'none (original size)'}",
        f"- licence: `{info['licence']}`",
    ]
    if near_duplicates is not None:
        lines += _card_deduplication(near_duplicates)
    if info["notes"]:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in info["notes"]]
    return "\n".join(lines) + "\n"


def _card_deduplication(record: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "## Deduplication",
        "",
        f"Every image of {', '.join(f'`{s}`' for s in record['queries'])} was compared with every `test` image by",
        f"the leakage gate's near-duplicate detector (`{record['detector']}`, version {record['detector_version']},",
        f"embeddings `{record['embedder']}`, both ways: a crop of the other counts); training images that are",
        "near-copies of a test image were removed and replaced by the next draw of their class, where it had one",
        "left. `synthbench task verify` re-checks it.",
        "",
    ]
    removed = record["removed"]
    if not removed:
        lines.append("No training image was a near-copy of a test image.")
    else:
        lines += [
            "| split | removed image | source | test image | test source | pHash distance | match score | cosine |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| `{p['split']}` | `{p['image_id']}` | `{p['source_file']}` | `{p['test_image_id']}` | "
            f"`{p['test_source_file']}` | {p['phash_distance']} | {p['match_score']:.4f} | {p['cosine']:.4f} |"
            for p in removed
        ]
    if record.get("same_location"):
        lines += ["", f"{len(record['same_location'])} training tile(s) were left out because they show the location "
                  "of a test tile (listed in `manifest.json`, `near_duplicates.same_location`)."]
    return lines


def _make_readable(root: Path) -> None:
    """Temporary files are created owner-only; a published task is meant to be read by everyone."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def save_task(
    out_dir: str | Path,
    splits: Mapping[str, Sequence[TaskImage]],
    *,
    name: str,
    builder: str,
    builder_version: int,
    seed: int,
    classes: Sequence[str],
    prompt_templates: Sequence[str],
    licence: str,
    label_source: str | None = None,
    resize: int | None = None,
    is_demo: bool = False,
    notes: Iterable[str] = (),
    description: str = "",
    near_duplicates: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a complete task folder at `out_dir` (atomically) and return its path.

    `near_duplicates` is the builder's deduplication record (`benchmark.tasks.dedup`), stored in
    the manifest and shown in the card; None records a task that was not deduplicated.

    `licence` is a Hub licence identifier (e.g. `cc-by-nc-sa-4.0`). Raises TaskError for rows that
    break the record (unknown label, duplicate or unsafe image id, empty split, a test image
    identical to a training image) before anything is written.
    """
    classes = list(classes)
    splits = {split: rows for split, rows in splits.items() if split in SPLITS or rows}  # an empty extra: none
    _check_rows(splits, classes)
    written = present_splits(splits)
    split_sizes = {
        split: {name_: sum(1 for row in splits[split] if row.label == name_) for name_ in classes} for split in written
    }
    info = {
        "schema_version": TASK_SCHEMA_VERSION,
        "name": name,
        "builder": builder,
        "builder_version": builder_version,
        "harness_version": __version__,
        "seed": seed,
        "classes": classes,
        "prompt_templates": list(prompt_templates),
        "split_sizes": split_sizes,
        "label_source": label_source,
        "resize": resize,
        "licence": licence,
        "is_demo": bool(is_demo),
        "notes": list(notes),
    }
    check_record(TaskInfo, info, TASK_INFO_FILE)
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise TaskError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    with atomic_directory(out_dir, overwrite=overwrite, replaces=(TASK_INFO_FILE, "a task folder")) as tmp:
        for split in written:
            _write_split(tmp / split_path(split), splits[split], classes)
        atomic_write_json(tmp / TASK_INFO_FILE, info)
        atomic_write_text(tmp / CARD_FILE, render_card(info, description, near_duplicates))
        images = {
            split: {row.image_id: row.sha256 for row in sorted(splits[split], key=lambda r: r.image_id)}
            for split in written
        }
        manifest = {
            "schema_version": TASK_SCHEMA_VERSION,
            "files": {
                rel: sha256_file(tmp / rel)
                for rel in sorted([CARD_FILE, TASK_INFO_FILE] + [split_path(split) for split in written])
            },
            "images": images,
            "test_manifest_hash": compute_test_manifest_hash(images["test"]),
            "near_duplicates": dict(near_duplicates) if near_duplicates is not None else None,
        }
        check_record(TaskManifest, manifest, MANIFEST_FILE)
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
        _make_readable(tmp)
    return out_dir


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


class Task:
    """A loaded (and normally verified) task folder.

    `splits` is the `datasets.DatasetDict`; `image_refs`, `labels` and `image_ids` read columns
    straight from Arrow (no PIL decoding), in split order.
    """

    def __init__(self, path: Path, info: dict, manifest: dict, splits: datasets.DatasetDict, revision: str):
        self.path = path
        self.info = info
        self.manifest = manifest
        self.splits = splits
        self.revision = revision
        self._refs: dict[str, list[ImageRef]] = {}

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def is_demo(self) -> bool:
        return bool(self.info.get("is_demo", False))

    @property
    def test_manifest_hash(self) -> str:
        return self.manifest["test_manifest_hash"]

    @property
    def near_duplicates(self) -> dict | None:
        """The build-time deduplication record (None: built without it, e.g. schema_version 1)."""
        return self.manifest.get("near_duplicates")

    def _table(self, split: str) -> pa.Table:
        if split not in self.splits:
            raise TaskError(f"task {self.name}: unknown split {split!r}; use one of: {', '.join(self.splits)}")
        return self.splits[split].data.table

    def image_refs(self, split: str) -> list[ImageRef]:
        """One ImageRef(sha256, png bytes, name=image_id) per row, in split order (cached)."""
        if split not in self._refs:
            table = self._table(split)
            png = table.column("image").combine_chunks().field("bytes").to_pylist()
            hashes = table.column("sha256").to_pylist()
            ids = table.column("image_id").to_pylist()
            self._refs[split] = [ImageRef(h, b, name=i) for h, b, i in zip(hashes, png, ids)]
        return self._refs[split]

    def labels(self, split: str) -> np.ndarray:
        """Class indices (into `classes`) of a split, int64, in split order."""
        return np.asarray(self._table(split).column("label").to_numpy(), dtype=np.int64)

    def image_ids(self, split: str) -> list[str]:
        return self._table(split).column("image_id").to_pylist()

    def column(self, split: str, name: str) -> list:
        """Any non-image column of a split as a list (e.g. `prompt`, `pair_id`, `event`)."""
        if name not in COLUMNS or name == "image":
            raise TaskError(f"unknown column {name!r}; use one of: {', '.join(c for c in COLUMNS if c != 'image')}")
        return self._table(split).column(name).to_pylist()

    def class_counts(self, split: str) -> dict[str, int]:
        counts = np.bincount(self.labels(split), minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={self.splits[split].num_rows}" for split in self.splits)
        return f"Task({self.name!r}, revision={self.revision!r}, {sizes})"


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise TaskError(f"{path}: missing {what} (is this a synthbench task folder?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TaskError(f"{path}: expected a JSON object")
    version = data.get("schema_version")
    if type(version) is not int or version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise TaskError(f"{path}: schema_version {version!r} is not supported (this harness reads {readable})")
    return data


def _check_info(path: Path, info: dict, manifest: dict) -> None:
    """task.json and manifest.json against their models (TaskInfo, TaskManifest)."""
    check_record(TaskInfo, info, path / TASK_INFO_FILE)
    check_record(TaskManifest, manifest, path / MANIFEST_FILE)


def _verify_files(path: Path, manifest: dict) -> list[str]:
    problems = []
    for rel, expected in sorted(manifest["files"].items()):
        file = path / rel
        if not file.is_file():
            problems.append(f"missing file {rel} (listed in {MANIFEST_FILE})")
        elif sha256_file(file) != expected:
            problems.append(f"{rel}: SHA-256 differs from {MANIFEST_FILE} (the file was altered)")
    data_dir = path / DATA_DIR
    if data_dir.is_dir():
        for file in sorted(data_dir.rglob("*")):
            rel = file.relative_to(path).as_posix()
            if file.is_file() and rel not in manifest["files"]:
                problems.append(f"{rel}: file not listed in {MANIFEST_FILE}")
    return problems


def _verify_split(split: str, table: pa.Table, expected: Mapping[str, str]) -> list[str]:
    """Every row's bytes against its sha256 column, and the split's ids and hashes against the manifest."""
    problems = []
    png = table.column("image").combine_chunks().field("bytes").to_pylist()
    ids = table.column("image_id").to_pylist()
    hashes = table.column("sha256").to_pylist()
    bad_bytes = [i for i, b, h in zip(ids, png, hashes) if b is None or sha256_bytes(b) != h]
    if bad_bytes:
        problems.append(f"split {split}: image bytes do not match their sha256 column for {_listing(bad_bytes)}")
    found = dict(zip(ids, hashes))
    if len(found) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        problems.append(f"split {split}: duplicate image ids {_listing(duplicates)}")
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        problems.append(
            f"split {split}: {len(missing)} image(s) listed in {MANIFEST_FILE} are missing from "
            f"{split_path(split)}: {_listing(missing)}"
        )
    if extra:
        problems.append(f"split {split}: {len(extra)} image(s) not listed in {MANIFEST_FILE}: {_listing(extra)}")
    if missing or extra:
        problems.append(f"split {split}: {MANIFEST_FILE} lists {len(expected)} images, {split_path(split)} has {len(ids)}")
    altered = sorted(i for i in set(found) & set(expected) if found[i] != expected[i])
    if altered:
        problems.append(f"split {split}: image(s) whose SHA-256 differs from {MANIFEST_FILE}: {_listing(altered)}")
    return problems


def _read_split(path: Path, split: str) -> pa.Table:
    file = path / split_path(split)
    if not file.is_file():
        raise TaskError(f"{path}: missing file {split_path(split)}")
    try:
        # In memory and without the `datasets` cache: a task is at most a few GB of PNG bytes.
        return pq.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise TaskError(f"{file}: not a readable parquet file ({exc})") from None


def load_local_task(path: str | Path, *, revision: str = "local", verify: bool = True) -> Task:
    """Load a task folder; with `verify`, check every file and image against the manifest."""
    path = Path(path)
    if not path.is_dir():
        raise TaskError(f"{path}: no such task folder")
    if (path / MANIFEST_ONLY_FILE).is_file():
        raise TaskError(
            f"{path}: is a manifest-only task release (no images): rebuild it from your own copy of the "
            f"source data first, e.g. `synthbench task build xbd --from-manifest {path} --xbd-root DIR --out TASK`, "
            f"then pass TASK"
        )
    info = _read_json(path / TASK_INFO_FILE, TASK_INFO_FILE)
    manifest = _read_json(path / MANIFEST_FILE, MANIFEST_FILE)
    _check_info(path, info, manifest)
    problems = _verify_files(path, manifest) if verify else []
    tables: dict[str, pa.Table] = {}
    task_splits = present_splits(manifest["images"])
    for split in task_splits:
        try:
            tables[split] = _read_split(path, split)
        except TaskError as exc:
            if not verify:
                raise
            if not any(split_path(split) in problem for problem in problems):
                problems.append(str(exc))
            continue
        missing_columns = [c for c in COLUMNS if c not in tables[split].column_names]
        if missing_columns:
            problems.append(f"{split_path(split)}: missing column(s) {', '.join(missing_columns)}")
            del tables[split]
            continue
        if verify:
            problems += _verify_split(split, tables[split], manifest["images"][split])
    if verify:
        recomputed = compute_test_manifest_hash(manifest["images"]["test"])
        if recomputed != manifest["test_manifest_hash"]:
            problems.append(f"{MANIFEST_FILE}: test_manifest_hash does not match its own test image list")
    if problems:
        raise TaskError(f"{path}: task failed verification:\n  - " + "\n  - ".join(problems))

    splits = {}
    for split in task_splits:
        features = datasets.Features.from_arrow_schema(tables[split].schema)
        label_names = getattr(features.get("label"), "names", None)
        if label_names != list(info["classes"]):
            raise TaskError(
                f"{path / split_path(split)}: label classes {label_names} differ from {TASK_INFO_FILE} classes {info['classes']}"
            )
        splits[split] = datasets.Dataset(
            datasets.table.InMemoryTable(tables[split]),
            info=datasets.DatasetInfo(features=features),
            split=datasets.NamedSplit(split),
        )
    return Task(path, info, manifest, datasets.DatasetDict(splits), revision)


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def download_task(
    repo_id: str, revision: str | None = None, *, cache_dir: str | Path | None = None, local_files_only: bool = False
) -> Path:
    """snapshot_download of a task dataset repo (or its copy in the local Hub cache)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                repo_type="dataset",
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
            )
        )
    except Exception as exc:  # network, auth, missing repo/revision, offline cache miss: all one user error
        raise TaskError(
            f"could not get the task dataset {repo_id!r} (revision {revision or 'main'}) from the Hugging Face Hub "
            f"or the local Hub cache, and no local folder has that name: {type(exc).__name__}: {exc}. "
            f"Offline, pass a local task folder instead "
            f"(build one with `synthbench task build ...`)."
        ) from None


def load_task(
    source: str | Path,
    revision: str | None = None,
    verify: bool = True,
    *,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> Task:
    """Load a task from a local folder or a Hub dataset repo id (pinned by `revision`).

    A local folder's revision is `local`. A repo id is fetched with `snapshot_download` (which also
    serves a copy already in the Hub cache) and loaded the same way; its revision is the commit
    the snapshot resolved to.
    """
    path = Path(source).expanduser()
    if path.exists():
        if revision is not None:
            raise TaskError(f"{path}: a revision applies only to a Hub repo id, not to a local folder")
        return load_local_task(path, revision="local", verify=verify)
    source = str(source)
    if not _REPO_ID.match(source):
        raise TaskError(f"{source}: no such task folder (and not a Hub repo id of the form owner/name)")
    local = download_task(source, revision, cache_dir=cache_dir, local_files_only=local_files_only)
    # snapshot folders are named by the commit hash they hold: the exact revision to record.
    return load_local_task(local, revision=local.name, verify=verify)
