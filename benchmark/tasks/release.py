"""Manifest-only task releases: publish a task without its images, rebuild it from the user's own copy.

xBD's images are the authors' to distribute (CC BY-NC-SA 4.0, download after registration), so
the official task is published as what identifies it, not as the images themselves:

    <release>/README.md        dataset card: what this is, the source's citation and terms, how to rebuild
    <release>/release.json     every split's rows (image id, source file, SHA-256, label, event, prompt,
                               pair id) and the builder's parameters
    <release>/task/            the built task's task.json, manifest.json and README.md, byte for byte

`write_release` makes one from a built task folder; `rebuild_from_release` reads every listed file
from the user's download, refuses (naming each one) any file that is missing or whose image
differs from the recorded SHA-256, and writes the task folder again: the parquet files are
re-encoded from the same rows, so the rebuilt folder is checked against the release's own
`manifest.json`, file by file (bit for bit).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import yaml

from ..errors import TaskError
from ..io import atomic_directory, atomic_write_json, atomic_write_text, sha256_bytes
from .record import (
    CARD_FILE,
    MANIFEST_FILE,
    MANIFEST_ONLY_FILE,
    TASK_INFO_FILE,
    Task,
    TaskImage,
    _REPO_ID,
    _write_split,
    download_task,
    load_local_task,
    present_splits,
    split_path,
)

#: release.json's own version.
RELEASE_SCHEMA_VERSION = 1
RELEASE_KIND = "synthbench manifest-only task"
#: The built task's metadata files, kept byte for byte in the release.
TASK_FOLDER = "task"
#: The columns each row of release.json keeps (everything but the image bytes).
ROW_FIELDS: tuple[str, ...] = ("image_id", "sha256", "label", "event", "source_file", "prompt", "pair_id")
#: task.json fields that describe how the builder chose the rows.
BUILDER_FIELDS: tuple[str, ...] = (
    "builder", "builder_version", "harness_version", "seed", "label_source", "resize", "classes",
    "prompt_templates", "split_sizes", "licence", "notes",
)

XBD_CITATION = """@misc{gupta2019xbd,
  title         = {xBD: A Dataset for Assessing Building Damage from Satellite Imagery},
  author        = {Ritwik Gupta and Richard Hosfelt and Sandra Sajeev and Nirav Patel and Bryce Goodman
                   and Jigar Doshi and Eric Heim and Howie Choset and Matthew Gaston},
  year          = {2019},
  eprint        = {1911.09296},
  archivePrefix = {arXiv}
}"""
XBD_TERMS = (
    "The images belong to the xBD dataset (xView2 challenge, <https://xview2.org/dataset>), distributed "
    "by its authors under CC BY-NC-SA 4.0 after registration. This repository does not re-host them: "
    "it lists the file names, SHA-256 hashes, labels, events and prompts that define the task. "
    "Download xBD yourself under its terms, then rebuild the task from your copy."
)


def _source_reader(builder: str) -> Callable[[Path, int | None], bytes]:
    """How the builder turned a source file into the PNG bytes of a row."""
    if builder == "xbd":
        from .xbd import _tile_png

        return _tile_png
    if builder == "imagefolder":
        from .imagefolder import _load_png

        return _load_png
    raise TaskError(f"a task built by {builder!r} cannot be rebuilt from a manifest (only xbd and imagefolder tasks)")


# ----------------------------------------------------------------------------------------------
# Writing a release
# ----------------------------------------------------------------------------------------------


def _rows(task: Task, split: str) -> list[dict[str, Any]]:
    columns = {name: task.column(split, name) for name in ROW_FIELDS if name not in ("sha256", "label")}
    labels = [task.classes[i] for i in task.labels(split)]
    hashes = [ref.sha256 for ref in task.image_refs(split)]
    return [
        {"image_id": columns["image_id"][i], "sha256": hashes[i], "label": labels[i], "event": columns["event"][i],
         "source_file": columns["source_file"][i], "prompt": columns["prompt"][i], "pair_id": columns["pair_id"][i]}
        for i in range(len(labels))
    ]


def _rebuild_command(task: Task, repo_id: str | None) -> str:
    source = repo_id or "RELEASE_FOLDER"
    if task.info["builder"] == "xbd":
        return f"synthbench task build xbd --from-manifest {source} --xbd-root /data/xbd --out tasks/{task.name}"
    return f"benchmark.tasks.release.rebuild_from_release('{source}', SOURCE_ROOT, 'tasks/{task.name}')"


def release_card(task: Task, repo_id: str | None) -> str:
    """The manifest-only release's dataset card."""
    info = task.info
    front = {"license": info["licence"], "pretty_name": f"{info['name']} (manifest only)",
             "task_categories": ["image-classification"], "tags": ["synthbench", "manifest-only"], "viewer": False}
    is_xbd = info["builder"] == "xbd"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", f"# {info['name']} (manifest only)", ""]
    lines += [
        "A [synthbench](https://github.com/) task released **without its images**: `release.json` lists, for",
        f"every split ({', '.join(f'`{s}`' for s in task.splits)}), each image's source file, SHA-256,",
        "label, event and prompt, with the builder's parameters; `task/` holds the built task's own",
        "`task.json`, `manifest.json` and card. Rebuild the task, bit for bit, from your own copy of the source:",
        "",
        "```bash",
        _rebuild_command(task, repo_id),
        "```",
        "",
        "Every listed file is read from your copy and checked against its SHA-256; a missing or different",
        "file is named and nothing is written. The rebuilt folder's files match `task/manifest.json`.",
        "",
        "## Source and terms",
        "",
        XBD_TERMS if is_xbd else (f"The images come from the source folder the task was built from (licence "
                                  f"`{info['licence']}`); they are not included here."),
    ]
    if is_xbd:
        lines += ["", "Cite xBD when you use this task:", "", "```bibtex", XBD_CITATION, "```"]
    lines += ["", "## Identity", "", f"- test_manifest_hash: `{task.test_manifest_hash}`",
              f"- builder: `{info['builder']}` version {info.get('builder_version')}, seed {info.get('seed')}"]
    return "\n".join(lines) + "\n"


def write_release(task: Task, out_dir: str | Path, *, repo_id: str | None = None, overwrite: bool = False) -> Path:
    """Write the manifest-only release of a loaded (verified) task into `out_dir` (atomically)."""
    release = {
        "schema_version": RELEASE_SCHEMA_VERSION,
        "kind": RELEASE_KIND,
        "name": task.name,
        "test_manifest_hash": task.test_manifest_hash,
        "builder_params": {key: task.info.get(key) for key in BUILDER_FIELDS},
        "splits": {split: _rows(task, split) for split in task.splits},
    }
    with atomic_directory(out_dir, overwrite=overwrite, replaces=(MANIFEST_ONLY_FILE, "a manifest-only release")) as tmp:
        atomic_write_json(tmp / MANIFEST_ONLY_FILE, release)
        atomic_write_text(tmp / CARD_FILE, release_card(task, repo_id))
        (tmp / TASK_FOLDER).mkdir()
        for name in (TASK_INFO_FILE, MANIFEST_FILE, CARD_FILE):
            shutil.copyfile(task.path / name, tmp / TASK_FOLDER / name)
    return Path(out_dir)


# ----------------------------------------------------------------------------------------------
# Rebuilding a task from a release
# ----------------------------------------------------------------------------------------------


def resolve_release(source: str | Path, revision: str | None = None) -> Path:
    """A release folder: a local path, or a Hub dataset repo id fetched with snapshot_download."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if not _REPO_ID.match(str(source)):
        raise TaskError(f"{source}: no such release folder (and not a Hub repo id of the form owner/name)")
    return download_task(str(source), revision)


def read_release(folder: Path) -> dict:
    """release.json, checked enough to rebuild from it (a clear error naming the file otherwise)."""
    file = folder / MANIFEST_ONLY_FILE
    if not file.is_file():
        hint = " (it is a task folder with images: use it as it is)" if (folder / TASK_INFO_FILE).is_file() else ""
        raise TaskError(f"{folder}: not a manifest-only task release, no {MANIFEST_ONLY_FILE}{hint}")
    try:
        release = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaskError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(release, dict) or release.get("schema_version") != RELEASE_SCHEMA_VERSION:
        raise TaskError(f"{file}: not a release of schema_version {RELEASE_SCHEMA_VERSION}")
    splits = release.get("splits")
    if not isinstance(splits, dict) or not isinstance(release.get("builder_params"), dict):
        raise TaskError(f"{file}: needs the objects 'splits' and 'builder_params'")
    for split, rows in splits.items():
        if split not in present_splits(splits) or not isinstance(rows, list):
            raise TaskError(f"{file}: unknown split {split!r} or its rows are not a list")
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or any(not isinstance(row.get(k), str) for k in ROW_FIELDS):
                raise TaskError(f"{file}: splits.{split}[{i}] needs the string fields {', '.join(ROW_FIELDS)}")
    for name in (TASK_INFO_FILE, MANIFEST_FILE, CARD_FILE):
        if not (folder / TASK_FOLDER / name).is_file():
            raise TaskError(f"{folder}: missing {TASK_FOLDER}/{name}")
    return release


def _source_path(root: Path, relative: str) -> Path | None:
    """root/relative when `relative` is a plain relative path inside root; None otherwise (a
    release is data from elsewhere: its paths are never trusted)."""
    parts = PurePosixPath(relative).parts
    if not relative or relative.startswith("/") or "\\" in relative or any(p in ("..", "") for p in parts):
        return None
    return root.joinpath(*parts)


def _read_rows(release: dict, root: Path) -> tuple[dict[str, list[TaskImage]], list[str]]:
    """Every split's rows read from `root`, and one problem line per missing or differing file."""
    params = release["builder_params"]
    read_png = _source_reader(str(params.get("builder")))
    resize = params.get("resize")
    rows: dict[str, list[TaskImage]] = {}
    problems: list[str] = []
    for split, entries in release["splits"].items():
        rows[split] = []
        for entry in entries:
            where = f"{entry['source_file']} (split {split}, image {entry['image_id']})"
            path = _source_path(root, entry["source_file"])
            if path is None:
                problems.append(f"{where}: not a relative path inside the source folder")
                continue
            if not path.is_file():
                problems.append(f"missing: {where}")
                continue
            try:
                png = read_png(path, resize)
            except TaskError as exc:
                problems.append(f"unreadable: {where}: {exc}")
                continue
            if sha256_bytes(png) != entry["sha256"]:
                problems.append(f"differs: {where}: its image's SHA-256 is not the release's {entry['sha256'][:12]}...")
                continue
            fields = {k: entry[k] for k in ("image_id", "label", "event", "source_file", "prompt", "pair_id")}
            rows[split].append(TaskImage(png=png, **fields))
    return rows, problems


def rebuild_from_release(
    source: str | Path,
    source_root: str | Path,
    out_dir: str | Path,
    *,
    revision: str | None = None,
    builder: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Rebuild the task of a manifest-only release (folder or Hub repo id) from `source_root`.

    `builder`: refuse a release made by another builder (the CLI's `task build xbd` passes "xbd").
    Raises TaskError naming every missing, unreadable or differing source file, and writes nothing.
    """
    folder = resolve_release(source, revision)
    release = read_release(folder)
    made_by = release["builder_params"].get("builder")
    if builder is not None and made_by != builder:
        raise TaskError(f"{folder}: is a release of a {made_by!r} task, not of a {builder!r} task")
    root = Path(source_root)
    if not root.is_dir():
        raise TaskError(f"{root}: source folder not found")
    rows, problems = _read_rows(release, root)
    if problems:
        raise TaskError(
            f"{root}: cannot rebuild {release.get('name')} from {folder}: {len(problems)} source file(s) missing or "
            f"different from the release:\n  - " + "\n  - ".join(problems)
        )
    classes = list(release["builder_params"]["classes"])
    with atomic_directory(out_dir, overwrite=overwrite, replaces=(TASK_INFO_FILE, "a task folder")) as tmp:
        for split, split_rows in rows.items():
            _write_split(tmp / split_path(split), split_rows, classes)
        for name in (TASK_INFO_FILE, MANIFEST_FILE, CARD_FILE):
            shutil.copyfile(folder / TASK_FOLDER / name, tmp / name)
        try:  # every file against the release's manifest: the rebuilt task is the published one
            load_local_task(tmp, verify=True)
        except TaskError as exc:
            raise TaskError(f"rebuilt task differs from the release {folder}: {exc}") from None
    return Path(out_dir)
