"""Build the flagship task `xbd-disaster6` from the official xBD download.

The official layout (Gupta et al. 2019; CC BY-NC-SA 4.0) has four split folders, each with
`images/` and `labels/` (some releases also `targets/`, unused here):

    <xbd-root>/{train,tier3,test,hold}/images/<event>_<id>_{pre,post}_disaster.png
    <xbd-root>/{train,tier3,test,hold}/labels/<event>_<id>_{pre,post}_disaster.json

A label JSON holds `metadata` (`disaster`, `disaster_type`, `img_name`, ...) and `features`
(`xy` and `lng_lat` lists of building polygons as WKT).

- train_real: `train_per_class` post-disaster tiles per class from train/ + tier3/, balanced over
  each class's events (round robin over events, each event's tiles shuffled by the seed).
- test: a balanced, disjoint set from test/ + hold/ chosen the same way (fewer only when xBD has
  fewer; reported in task.json notes).
- generation_inputs: the pre-disaster twins of the train_real tiles, with class prompts.

Classes come from `benchmark.protocol.XBD_EVENT_TO_CLASS` (`--label-source table`, the default)
or from each label JSON's own `disaster_type` through `XBD_METADATA_TYPE_TO_CLASS`
(`--label-source metadata`); every event where the two disagree is reported either way.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ..errors import TaskError
from ..images import ImageDecodeError, encode_png, open_rgb, read_image_bytes
from ..protocol import PROMPT_TEMPLATES, XBD_CLASSES, XBD_EVENT_TO_CLASS, XBD_METADATA_TYPE_TO_CLASS, prompt_for
from .record import TaskImage, save_task

log = logging.getLogger(__name__)

XBD_TASK_NAME = "xbd-disaster6"
XBD_BUILDER_VERSION = 1
XBD_LICENCE = "cc-by-nc-sa-4.0"
#: The official split folders: the first two feed train_real, the last two the test split.
TRAIN_FOLDERS: tuple[str, ...] = ("train", "tier3")
TEST_FOLDERS: tuple[str, ...] = ("test", "hold")
LABEL_SOURCES: tuple[str, ...] = ("table", "metadata")
_TILE_NAME = re.compile(r"^(?P<event>[a-z0-9-]+)_(?P<number>\d+)_(?P<phase>pre|post)_disaster\.png$")


@dataclass(frozen=True)
class XbdTile:
    """One post-disaster tile found in the raw download, with its label metadata."""

    folder: str  # train | tier3 | test | hold
    event: str
    number: str
    post_image: Path
    pre_image: Path
    label_file: Path
    disaster_type: str

    @property
    def stem(self) -> str:
        return f"{self.event}_{self.number}"


def _read_label(path: Path, image_name: str, event: str) -> str:
    """The `disaster_type` of a post-disaster label JSON, after checking it is a real xBD label."""
    if not path.is_file():
        raise TaskError(f"{path}: missing label JSON for image {image_name}")
    try:
        label = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: malformed label JSON ({exc})") from None
    metadata = label.get("metadata") if isinstance(label, dict) else None
    features = label.get("features") if isinstance(label, dict) else None
    if not isinstance(metadata, dict) or not isinstance(features, dict):
        raise TaskError(f"{path}: malformed label JSON (expected objects 'metadata' and 'features')")
    for key in ("disaster", "disaster_type", "img_name"):
        if not isinstance(metadata.get(key), str):
            raise TaskError(f"{path}: malformed label JSON (metadata.{key} missing or not a string)")
    if not isinstance(features.get("xy"), list):
        raise TaskError(f"{path}: malformed label JSON (features.xy missing or not a list)")
    if metadata["img_name"] != image_name:
        raise TaskError(f"{path}: metadata.img_name is {metadata['img_name']!r}, expected {image_name!r}")
    if metadata["disaster"] != event:
        raise TaskError(f"{path}: metadata.disaster is {metadata['disaster']!r} but the file name says {event!r}")
    return metadata["disaster_type"]


def scan_folder(root: Path, folder: str, *, need_pre: bool, progress: bool = True) -> list[XbdTile]:
    """Every post-disaster tile of one official split folder, with its label read and checked."""
    base = root / folder
    images, labels = base / "images", base / "labels"
    for sub in (images, labels):
        if not sub.is_dir():
            raise TaskError(f"{sub}: missing folder (the official xBD layout has {folder}/images and {folder}/labels)")
    posts = sorted(p for p in images.iterdir() if p.name.endswith("_post_disaster.png"))
    tiles = []
    for post in tqdm(posts, desc=f"xbd {folder} labels", unit="tile", disable=not progress):
        match = _TILE_NAME.match(post.name)
        if not match:
            raise TaskError(f"{post}: file name is not <event>_<id>_post_disaster.png")
        event, number = match["event"], match["number"]
        pre = images / f"{event}_{number}_pre_disaster.png"
        if need_pre and not pre.is_file():
            raise TaskError(f"{pre}: missing pre-disaster twin of {post.name}")
        label_file = labels / f"{event}_{number}_post_disaster.json"
        disaster_type = _read_label(label_file, post.name, event)
        tiles.append(XbdTile(folder, event, number, post, pre, label_file, disaster_type))
    return tiles


def _class_of(tile: XbdTile, label_source: str) -> str:
    if label_source == "table":
        if tile.event not in XBD_EVENT_TO_CLASS:
            raise TaskError(
                f"{tile.post_image}: event {tile.event!r} is not in the xBD event table "
                f"(benchmark.protocol.XBD_EVENT_TO_CLASS)"
            )
        return XBD_EVENT_TO_CLASS[tile.event]
    if tile.disaster_type not in XBD_METADATA_TYPE_TO_CLASS:
        raise TaskError(
            f"{tile.label_file}: disaster_type {tile.disaster_type!r} has no class "
            f"(known: {', '.join(XBD_METADATA_TYPE_TO_CLASS)})"
        )
    return XBD_METADATA_TYPE_TO_CLASS[tile.disaster_type]


def label_disagreements(tiles: list[XbdTile]) -> list[str]:
    """One line per event whose label JSONs' disaster_type maps to another class than the table's."""
    types: dict[str, set[str]] = defaultdict(set)
    for tile in tiles:
        types[tile.event].add(tile.disaster_type)
    lines = []
    for event in sorted(types):
        table_class = XBD_EVENT_TO_CLASS.get(event)
        for disaster_type in sorted(types[event]):
            metadata_class = XBD_METADATA_TYPE_TO_CLASS.get(disaster_type)
            if metadata_class != table_class:
                lines.append(
                    f"label disagreement: event {event}: table class {table_class!r}, label JSON "
                    f"disaster_type {disaster_type!r} -> {metadata_class!r}"
                )
    return lines


def balanced_pick(
    tiles_by_event: dict[str, list[XbdTile]], count: int, seed: int, salt: str
) -> list[XbdTile]:
    """Up to `count` tiles, round robin over events (sorted), each event's tiles shuffled by the seed."""
    queues = []
    for event in sorted(tiles_by_event):
        tiles = sorted(tiles_by_event[event], key=lambda t: (t.folder, t.number))
        random.Random(f"{seed}:{salt}:{event}").shuffle(tiles)  # str seeds are stable across runs
        queues.append(tiles)
    picked: list[XbdTile] = []
    position = 0
    while len(picked) < count and any(position < len(q) for q in queues):
        for queue in queues:
            if position < len(queue) and len(picked) < count:
                picked.append(queue[position])
        position += 1
    return picked


def _tile_png(path: Path, resize: int | None) -> bytes:
    """PNG bytes of a tile: the original file when it is already an RGB PNG and no resize is asked."""
    try:
        raw = read_image_bytes(path)
        image = open_rgb(raw, name=str(path))
    except ImageDecodeError as exc:
        raise TaskError(str(exc)) from None
    if resize:
        return encode_png(image.resize((resize, resize), Image.Resampling.LANCZOS))
    with Image.open(io.BytesIO(raw)) as probe:
        keep = probe.format == "PNG" and probe.mode == "RGB"
    return raw if keep else encode_png(image)


def _image_ids(tiles: list[XbdTile]) -> dict[XbdTile, str]:
    """`<event>_<id>` per tile, prefixed by the split folder only where two folders share a name."""
    counts: dict[str, int] = defaultdict(int)
    for tile in tiles:
        counts[tile.stem] += 1
    return {tile: (tile.stem if counts[tile.stem] == 1 else f"{tile.folder}-{tile.stem}") for tile in tiles}


def build_xbd_task(
    xbd_root: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    train_per_class: int = 100,
    test_per_class: int = 100,
    label_source: str = "table",
    resize: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build `xbd-disaster6` from the official xBD layout at `xbd_root` into `out_dir`.

    Raises TaskError (and writes nothing) for a missing root or split folder, a missing or
    malformed label JSON, an image that does not decode, or a class with too few training tiles.
    """
    root = Path(xbd_root)
    if label_source not in LABEL_SOURCES:
        raise TaskError(f"unknown label source {label_source!r}; use one of: {', '.join(LABEL_SOURCES)}")
    if train_per_class < 1 or test_per_class < 1:
        raise TaskError("train_per_class and test_per_class must be at least 1")
    if resize is not None and not 16 <= resize <= 4096:
        raise TaskError(f"resize {resize} is outside 16..4096")
    if not root.is_dir():
        raise TaskError(f"{root}: xBD root folder not found")
    missing = [folder for folder in TRAIN_FOLDERS + TEST_FOLDERS if not (root / folder).is_dir()]
    if missing:
        raise TaskError(
            f"{root}: missing xBD split folder(s) {', '.join(missing)} "
            f"(the official layout has {', '.join(TRAIN_FOLDERS + TEST_FOLDERS)})"
        )
    if Path(out_dir).exists() and not overwrite:
        raise TaskError(f"{out_dir}: already exists (pass --overwrite to replace it)")

    train_pool = [t for f in TRAIN_FOLDERS for t in scan_folder(root, f, need_pre=True, progress=progress)]
    test_pool = [t for f in TEST_FOLDERS for t in scan_folder(root, f, need_pre=False, progress=progress)]
    notes = label_disagreements(train_pool + test_pool)
    for note in notes:
        log.warning(note)

    def by_class(pool: list[XbdTile]) -> dict[str, dict[str, list[XbdTile]]]:
        grouped: dict[str, dict[str, list[XbdTile]]] = {c: defaultdict(list) for c in XBD_CLASSES}
        for tile in pool:
            grouped[_class_of(tile, label_source)][tile.event].append(tile)
        return grouped

    train_groups, test_groups = by_class(train_pool), by_class(test_pool)
    chosen_train: dict[str, list[XbdTile]] = {}
    chosen_test: dict[str, list[XbdTile]] = {}
    for class_name in XBD_CLASSES:
        available = {event: len(tiles) for event, tiles in sorted(train_groups[class_name].items())}
        chosen_train[class_name] = balanced_pick(train_groups[class_name], train_per_class, seed, "train")
        if len(chosen_train[class_name]) < train_per_class:
            raise TaskError(
                f"class {class_name}: needs {train_per_class} training tiles from {'/'.join(TRAIN_FOLDERS)}, "
                f"found {sum(available.values())} ({', '.join(f'{e}: {n}' for e, n in available.items()) or 'no events'})"
            )
        chosen_test[class_name] = balanced_pick(test_groups[class_name], test_per_class, seed, "test")
        found = len(chosen_test[class_name])
        if found == 0:
            raise TaskError(f"class {class_name}: no test tiles in {'/'.join(TEST_FOLDERS)}")
        if found < test_per_class:
            note = f"short test class: {class_name} has {found} test tiles in {'/'.join(TEST_FOLDERS)} (asked {test_per_class})"
            notes.append(note)
            log.warning(note)
            print(f"warning: {note}")

    all_chosen = [t for c in XBD_CLASSES for t in chosen_train[c] + chosen_test[c]]
    ids = _image_ids(all_chosen)
    splits: dict[str, list[TaskImage]] = {"train_real": [], "test": [], "generation_inputs": []}
    jobs = [("train_real", c, t) for c in XBD_CLASSES for t in chosen_train[c]]
    jobs += [("test", c, t) for c in XBD_CLASSES for t in chosen_test[c]]
    for split, class_name, tile in tqdm(jobs, desc="xbd images", unit="tile", disable=not progress):
        image_id = ids[tile]
        splits[split].append(
            TaskImage(
                _tile_png(tile.post_image, resize),
                class_name,
                f"{image_id}_post",
                tile.event,
                tile.post_image.relative_to(root).as_posix(),
                "",
                image_id,
            )
        )
        if split == "train_real":
            splits["generation_inputs"].append(
                TaskImage(
                    _tile_png(tile.pre_image, resize),
                    class_name,
                    f"{image_id}_pre",
                    tile.event,
                    tile.pre_image.relative_to(root).as_posix(),
                    prompt_for(class_name),
                    image_id,
                )
            )
    sizes = {split: len(rows) for split, rows in splits.items()}
    log.info("xbd task: %s", sizes)
    return save_task(
        out_dir,
        splits,
        name=XBD_TASK_NAME,
        builder="xbd",
        builder_version=XBD_BUILDER_VERSION,
        seed=seed,
        classes=XBD_CLASSES,
        prompt_templates=PROMPT_TEMPLATES,
        licence=XBD_LICENCE,
        label_source=label_source,
        resize=resize,
        is_demo=False,
        notes=notes,
        description=(
            "Disaster-type recognition on xBD satellite imagery (Gupta et al., \"xBD: A Dataset for "
            "Assessing Building Damage from Satellite Imagery\", 2019; CC BY-NC-SA 4.0): post-disaster "
            "tiles of the 19 xBD events grouped into six disaster types. `train_real` comes from xBD "
            "train/tier3, `test` from xBD test/hold, `generation_inputs` are the pre-disaster twins of the "
            "`train_real` tiles."
        ),
        overwrite=overwrite,
    )
