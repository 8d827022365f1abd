"""Build a task from a folder of class sub-folders (`<root>/<class>/<image>`), e.g. AID scenes.

- train_real: `train_per_class` images per class, chosen by a seeded shuffle of each class's
  files (sorted first, so the choice does not depend on the file system's order).
- test: the next `test_per_class` images of the same shuffle (disjoint from train_real). By
  default, as many as every class can give, so the test split is balanced.
- generation_inputs: there are no pre-disaster twins in a plain image folder, so the inputs are
  the train_real images themselves, each with its class prompt (an image-to-image generator then
  makes variations of the real training images). Same bytes, ids suffixed `_input`, `pair_id`
  linking each to its train_real row.
- deduplication (`benchmark.tasks.dedup`): a training image that is a near-copy of a test image
  is removed and replaced by the next image of its class's shuffle not used by either split.
- train_real_extra (`benchmark.tasks.extra`): up to `extra_per_class` of the images still left in
  each class's shuffle after that (deduplicated the same way), for the grid's `more-real@k`.

Every image is decoded (refusing anything that does not decode) and re-encoded as an RGB PNG,
optionally resized to `resize` x `resize`.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image
from tqdm import tqdm

from ..errors import TaskError
from ..images import ImageDecodeError, encode_png, open_rgb
from .dedup import TrainingUnit, deduplicate, resolve_embedder
from .extra import availability_notes, default_extra_per_class, draw_extra, merge_into
from .record import EXTRA_SPLIT, TaskImage, save_task

#: 2: the training side is deduplicated against the test split. 3: train_real_extra.
IMAGEFOLDER_BUILDER_VERSION = 3
#: Image files considered inside class folders (others are ignored).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
#: Default prompt of an image-folder task's generation inputs; `{name}` is the class folder name.
#: (The disaster prompts of benchmark.protocol do not fit arbitrary classes.)
DEFAULT_PROMPT_TEMPLATE = "a satellite image of {name}"
DEFAULT_LICENCE = "other"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_id(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-") or "x"


def _load_png(path: Path, resize: int | None) -> bytes:
    try:
        image = open_rgb(path)
    except ImageDecodeError as exc:
        raise TaskError(str(exc)) from None
    if resize:
        image = image.resize((resize, resize), Image.Resampling.LANCZOS)
    return encode_png(image)


def _row(root: Path, class_name: str, path: Path, resize: int | None) -> TaskImage:
    image_id = f"{_safe_id(class_name)}__{_safe_id(path.stem)}"
    return TaskImage(_load_png(path, resize), class_name, image_id, class_name, path.relative_to(root).as_posix(), "", image_id)


def _units(
    root: Path, class_name: str, paths: list[Path], resize: int | None, prompt_template: str, bar
) -> Iterator[TrainingUnit]:
    """A class's training draws, decoded only when drawn: the image and its generation input."""
    prompt = prompt_template.format(name=class_name)
    for path in paths:
        row = _row(root, class_name, path, resize)
        generation_input = TaskImage(row.png, class_name, f"{row.image_id}_input", class_name, row.source_file, prompt, row.image_id)
        bar.update()
        yield TrainingUnit(class_name, (("train_real", row), ("generation_inputs", generation_input)))


def _shuffled_files(root: Path, classes: list[str], seed: int) -> dict[str, list[Path]]:
    """Each class's image files, sorted (independent of the file system's order), then shuffled."""
    files: dict[str, list[Path]] = {}
    for class_name in classes:
        found = sorted(
            p for p in (root / class_name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        random.Random(f"{seed}:{class_name}").shuffle(found)  # str seeds are stable across runs
        files[class_name] = found
    return files


def _check_counts(root: Path, files: dict[str, list[Path]], train_per_class: int, test_per_class: int | None) -> int:
    """The test size (default: what every class can give); an error naming every class too small."""
    short = {c: len(f) for c, f in files.items() if len(f) < train_per_class + 1}
    if short:
        raise TaskError(
            f"{root}: class(es) with too few images for {train_per_class} train + at least 1 test: "
            + ", ".join(f"{c} has {n}" for c, n in short.items())
        )
    if test_per_class is None:
        test_per_class = min(len(f) for f in files.values()) - train_per_class
    short = {c: len(f) for c, f in files.items() if len(f) < train_per_class + test_per_class}
    if short:
        raise TaskError(
            f"{root}: class(es) with too few images for {train_per_class} train + {test_per_class} test: "
            + ", ".join(f"{c} has {n}" for c, n in short.items())
        )
    return test_per_class


def build_imagefolder_task(
    root: str | Path,
    out_dir: str | Path,
    *,
    train_per_class: int = 100,
    test_per_class: int | None = None,
    seed: int = 0,
    resize: int | None = None,
    name: str | None = None,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    licence: str = DEFAULT_LICENCE,
    extra_per_class: int | None = None,
    embedder: Callable | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build a task from `root/<class>/<images>` into `out_dir` (see the module docstring).

    `extra_per_class`: train_real_extra images per class at most (default: enough for every
    more-real@k, `default_extra_per_class`; 0: no such split). `embedder` embeds images for the
    deduplication (default: the default backbone at its native size over the grid's feature cache).
    """
    root = Path(root)
    if not root.is_dir():
        raise TaskError(f"{root}: image folder not found")
    if train_per_class < 1 or (test_per_class is not None and test_per_class < 1):
        raise TaskError("train_per_class and test_per_class must be at least 1")
    extra_per_class = default_extra_per_class(train_per_class) if extra_per_class is None else extra_per_class
    if extra_per_class < 0:
        raise TaskError("extra_per_class must be at least 0")
    if resize is not None and not 16 <= resize <= 4096:
        raise TaskError(f"resize {resize} is outside 16..4096")
    if "{name}" not in prompt_template:
        raise TaskError(f"prompt template {prompt_template!r} must contain {{name}}")
    if Path(out_dir).exists() and not overwrite:
        raise TaskError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise TaskError(f"{root}: needs at least 2 class sub-folders, found {len(classes)}")

    files = _shuffled_files(root, classes, seed)
    test_per_class = _check_counts(root, files, train_per_class, test_per_class)

    bar = tqdm(total=len(classes) * (train_per_class + test_per_class), desc="imagefolder images", unit="image", disable=not progress)
    test = []
    for class_name in classes:
        for path in files[class_name][train_per_class : train_per_class + test_per_class]:
            test.append(_row(root, class_name, path, resize))
            bar.update()
    # Training draws in shuffle order: the first train_per_class, then the images left over after
    # the test split (the replacements of removed near-duplicates).
    pools = {
        c: _units(root, c, files[c][:train_per_class] + files[c][train_per_class + test_per_class :], resize, prompt_template, bar)
        for c in classes
    }
    embedder = resolve_embedder(embedder)
    kept = deduplicate(test, pools, train_per_class, embedder=embedder, progress=progress)
    bar.total += sum(max(0, min(extra_per_class, len(files[c]) - train_per_class - test_per_class)) for c in classes)
    extra = draw_extra(test, pools, extra_per_class, embedder=embedder, progress=progress)
    bar.close()
    queried = merge_into(kept, extra)
    splits = {"train_real": kept.rows("train_real"), "test": test, "generation_inputs": kept.rows("generation_inputs")}
    if extra is not None:
        splits[EXTRA_SPLIT] = extra.rows(EXTRA_SPLIT)
    return save_task(
        out_dir,
        splits,
        name=name or _safe_id(root.name),
        builder="imagefolder",
        builder_version=IMAGEFOLDER_BUILDER_VERSION,
        seed=seed,
        classes=classes,
        prompt_templates=[prompt_template],
        licence=licence,
        label_source="folder",
        resize=resize,
        is_demo=False,
        notes=[
            "generation_inputs are the train_real images themselves (an image folder has no "
            "pre-disaster twins): generators make variations of the real training images.",
            *kept.notes(train_per_class),
            *availability_notes(extra, extra_per_class, train_per_class),
        ],
        description=f"An image-folder task built from `{root.name}/` ({len(classes)} class folders).",
        near_duplicates=kept.record(queried),
        overwrite=overwrite,
    )
