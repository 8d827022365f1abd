"""Build the flagship task `xbd-disaster6` from the official xBD download.

The official layout (Gupta et al. 2019; CC BY-NC-SA 4.0) has four split folders, each with
`images/` and `labels/` (some releases also `targets/`, unused here):

    <xbd-root>/{train,tier3,test,hold}/images/<event>_<id>_{pre,post}_disaster.png
    <xbd-root>/{train,tier3,test,hold}/labels/<event>_<id>_{pre,post}_disaster.json

A label JSON holds `metadata` (`disaster`, `disaster_type`, `img_name`, ...) and `features`
(`xy` and `lng_lat` lists of building polygons as WKT).

- test: `test_per_class` post-disaster tiles per class from test/ + hold/, balanced over each
  class's events (round robin over events, each event's tiles shuffled by the seed); fewer only
  when xBD has fewer (reported in task.json notes).
- train_real: `train_per_class` tiles per class from train/ + tier3/ (tier3/ may be absent: the
  notes say so), chosen the same way, among the tiles that do not show the location of a test
  tile (the same `<event>_<id>`, or building footprints in `lng_lat` that overlap), and
  deduplicated against the test split (`benchmark.tasks.dedup`: a near-copy of a test image is
  replaced by the class's next tile).
- generation_inputs: the pre-disaster twins of the train_real tiles, with class prompts.
- train_real_extra (`benchmark.tasks.extra`): up to `extra_per_class` more post-disaster tiles per
  class, the next ones of the same order (same rules, deduplicated the same way), for the grid's
  `more-real@k` control; their pre-disaster twins are not part of the task.

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
from typing import Callable, Iterator

from PIL import Image
from tqdm import tqdm

from ..errors import TaskError
from ..images import ImageDecodeError, encode_png, open_rgb, read_image_bytes
from ..protocol import PROMPT_TEMPLATES, XBD_CLASSES, XBD_EVENT_TO_CLASS, XBD_METADATA_TYPE_TO_CLASS, prompt_for
from .dedup import TrainingUnit, deduplicate, resolve_embedder
from .extra import availability_notes, default_extra_per_class, draw_extra, merge_into
from .record import EXTRA_SPLIT, TaskImage, save_task

log = logging.getLogger(__name__)

XBD_TASK_NAME = "xbd-disaster6"
#: 2: test chosen first; same-location tiles and near-duplicates of test tiles kept out of training.
#: 3: train_real_extra.
XBD_BUILDER_VERSION = 3
XBD_LICENCE = "cc-by-nc-sa-4.0"
#: The official split folders: the first two feed train_real, the last two the test split.
TRAIN_FOLDERS: tuple[str, ...] = ("train", "tier3")
#: Split folders a download may lack (some releases ship without tier3/): the build says so.
OPTIONAL_FOLDERS: tuple[str, ...] = ("tier3",)
#: Two tiles' building footprints overlap when they share this fraction of the smaller one's area:
#: less is the strip where a building cut by the tile edge shows in both neighbours.
OVERLAP_MIN_FRACTION = 0.1
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
    #: (min lng, min lat, max lng, max lat) of the tile's building polygons; None without any
    footprint: tuple[float, float, float, float] | None = None

    @property
    def stem(self) -> str:
        return f"{self.event}_{self.number}"


def _read_label(path: Path, image_name: str, event: str) -> tuple[str, tuple[float, float, float, float] | None]:
    """The `disaster_type` and building footprint of a post-disaster label JSON, after checking it
    is a real xBD label."""
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
    return metadata["disaster_type"], _footprint(features.get("lng_lat"))


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _footprint(polygons) -> tuple[float, float, float, float] | None:
    """Bounding box (lng/lat) of a label's building polygons (WKT), or None when it has none.

    The tile covers at least this box, so two tiles whose boxes overlap show the same ground.
    """
    lngs: list[float] = []
    lats: list[float] = []
    for polygon in polygons if isinstance(polygons, list) else []:
        wkt = polygon.get("wkt") if isinstance(polygon, dict) else None
        numbers = [float(n) for n in _NUMBER.findall(wkt)] if isinstance(wkt, str) else []
        lngs += numbers[0::2]
        lats += numbers[1::2][: len(numbers[0::2])]
    if not lngs or not lats:
        return None
    return (min(lngs), min(lats), max(lngs), max(lats))


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
        disaster_type, footprint = _read_label(label_file, post.name, event)
        tiles.append(XbdTile(folder, event, number, post, pre, label_file, disaster_type, footprint))
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


def _check_arguments(label_source: str, train_per_class: int, test_per_class: int, resize: int | None) -> None:
    if label_source not in LABEL_SOURCES:
        raise TaskError(f"unknown label source {label_source!r}; use one of: {', '.join(LABEL_SOURCES)}")
    if train_per_class < 1 or test_per_class < 1:
        raise TaskError("train_per_class and test_per_class must be at least 1")
    if resize is not None and not 16 <= resize <= 4096:
        raise TaskError(f"resize {resize} is outside 16..4096")


def _choose_test(groups: dict[str, dict[str, list[XbdTile]]], per_class: int, seed: int, notes: list[str]) -> dict[str, list[XbdTile]]:
    """The test tiles of every class (balanced over events); a short class is noted."""
    chosen = {c: balanced_pick(groups[c], per_class, seed, "test") for c in XBD_CLASSES}
    for class_name, tiles in chosen.items():
        if not tiles:
            raise TaskError(f"class {class_name}: no test tiles in {'/'.join(TEST_FOLDERS)}")
        if len(tiles) < per_class:
            notes.append(f"short test class: {class_name} has {len(tiles)} test tiles in {'/'.join(TEST_FOLDERS)} (asked {per_class})")
    return chosen


def _check_root(root: Path) -> list[str]:
    """The training folders present (tier3/ may be absent: some downloads lack it)."""
    if not root.is_dir():
        raise TaskError(f"{root}: xBD root folder not found")
    required = [folder for folder in TRAIN_FOLDERS + TEST_FOLDERS if folder not in OPTIONAL_FOLDERS]
    missing = [folder for folder in required if not (root / folder).is_dir()]
    if missing:
        raise TaskError(
            f"{root}: missing xBD split folder(s) {', '.join(missing)} "
            f"(the official layout has {', '.join(TRAIN_FOLDERS + TEST_FOLDERS)}; {', '.join(OPTIONAL_FOLDERS)} may be absent)"
        )
    return [folder for folder in TRAIN_FOLDERS if (root / folder).is_dir()]


def _by_class(pool: list[XbdTile], label_source: str) -> dict[str, dict[str, list[XbdTile]]]:
    grouped: dict[str, dict[str, list[XbdTile]]] = {c: defaultdict(list) for c in XBD_CLASSES}
    for tile in pool:
        grouped[_class_of(tile, label_source)][tile.event].append(tile)
    return grouped


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two footprints share at least OVERLAP_MIN_FRACTION of the smaller one's area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return False
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return smaller <= 0 or width * height >= OVERLAP_MIN_FRACTION * smaller


def same_location(train_pool: list[XbdTile], test_tiles: list[XbdTile]) -> dict[XbdTile, tuple[XbdTile, str]]:
    """Training tiles that show the ground of a chosen test tile: the same tile id (`<event>_<id>`)
    in another split folder, or a building footprint overlapping the test tile's (same event)."""
    by_stem = {tile.stem: tile for tile in test_tiles}
    by_event: dict[str, list[XbdTile]] = defaultdict(list)
    for tile in test_tiles:
        if tile.footprint is not None:
            by_event[tile.event].append(tile)
    excluded: dict[XbdTile, tuple[XbdTile, str]] = {}
    for tile in train_pool:
        if tile.stem in by_stem:
            excluded[tile] = (by_stem[tile.stem], "same tile id")
            continue
        if tile.footprint is None:
            continue
        for test in by_event.get(tile.event, ()):
            if _overlap(tile.footprint, test.footprint):
                excluded[tile] = (test, "overlapping building footprints")
                break
    return excluded


def _check_training_counts(groups: dict[str, dict[str, list[XbdTile]]], needed: int, folders: list[str], excluded: int) -> None:
    """One error naming every class with its counts when any class has too few training tiles."""
    counts = {c: {e: len(t) for e, t in sorted(groups[c].items()) if t} for c in XBD_CLASSES}
    short = [c for c in XBD_CLASSES if sum(counts[c].values()) < needed]
    if not short:
        return
    lines = [
        f"{c}: {sum(counts[c].values())}{' (too few)' if c in short else ''} "
        f"({', '.join(f'{e}: {n}' for e, n in counts[c].items()) or 'no events'})"
        for c in XBD_CLASSES
    ]
    where = "/".join(folders)
    left_out = f", after leaving out {excluded} tile(s) at the location of a test tile" if excluded else ""
    raise TaskError(
        f"class(es) {', '.join(short)} need {needed} training tiles from {where}; training tiles per class{left_out}:\n  "
        + "\n  ".join(lines)
    )


def _tile_rows(tile: XbdTile, class_name: str, image_id: str, root: Path, resize: int | None, split: str) -> list[tuple[str, TaskImage]]:
    """A tile's post image in `split` and, for a training tile, its pre image as a generation input."""
    rows = [(split, TaskImage(_tile_png(tile.post_image, resize), class_name, f"{image_id}_post", tile.event,
                              tile.post_image.relative_to(root).as_posix(), "", image_id))]
    if split == "train_real":
        rows.append(("generation_inputs", TaskImage(_tile_png(tile.pre_image, resize), class_name, f"{image_id}_pre", tile.event,
                                                    tile.pre_image.relative_to(root).as_posix(), prompt_for(class_name), image_id)))
    return rows


def _training_units(
    order: Iterator[XbdTile], class_name: str, ids, root: Path, resize: int | None, bar, split: str = "train_real"
) -> Iterator[TrainingUnit]:
    """Training draws (post tile + pre twin); for `train_real_extra`, the post tile alone. `order` is
    an iterator shared by both, so the extra draws continue where train_real's stopped."""
    for tile in order:
        bar.update()
        yield TrainingUnit(class_name, tuple(_tile_rows(tile, class_name, ids[tile], root, resize, split)))


def build_xbd_task(
    xbd_root: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    train_per_class: int = 100,
    test_per_class: int = 100,
    label_source: str = "table",
    resize: int | None = None,
    extra_per_class: int | None = None,
    embedder: Callable | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build `xbd-disaster6` from the official xBD layout at `xbd_root` into `out_dir`.

    Raises TaskError (and writes nothing) for a missing root or split folder, a missing or
    malformed label JSON, an image that does not decode, or a class with too few training tiles.
    `extra_per_class`: train_real_extra tiles per class at most (default: enough for every
    more-real@k, `default_extra_per_class`; 0: no such split). `embedder` embeds images for the
    deduplication (default: the default backbone at its native size over the grid's feature cache).
    """
    root = Path(xbd_root)
    _check_arguments(label_source, train_per_class, test_per_class, resize)
    extra_per_class = default_extra_per_class(train_per_class) if extra_per_class is None else extra_per_class
    if extra_per_class < 0:
        raise TaskError("extra_per_class must be at least 0")
    train_folders = _check_root(root)
    if Path(out_dir).exists() and not overwrite:
        raise TaskError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    notes = []
    for folder in sorted(set(TRAIN_FOLDERS) - set(train_folders)):
        notes.append(f"no {folder}/ folder in the download: train_real is drawn from {'/'.join(train_folders)} only")

    train_pool = [t for f in train_folders for t in scan_folder(root, f, need_pre=True, progress=progress)]
    test_pool = [t for f in TEST_FOLDERS for t in scan_folder(root, f, need_pre=False, progress=progress)]
    notes += label_disagreements(train_pool + test_pool)

    # The test split first; then every training tile showing the ground of a chosen test tile is
    # left out of the training pool, so one location stays on one side of the split.
    chosen_test = _choose_test(_by_class(test_pool, label_source), test_per_class, seed, notes)
    excluded = same_location(train_pool, [t for c in XBD_CLASSES for t in chosen_test[c]])
    if excluded:
        notes.append(f"{len(excluded)} training tile(s) left out: they show the location of a test tile (same tile id or overlapping building footprints)")
    train_groups = _by_class([t for t in train_pool if t not in excluded], label_source)
    _check_training_counts(train_groups, train_per_class, train_folders, len(excluded))
    for note in notes:
        log.warning(note)
        if not note.startswith("label disagreement"):
            print(f"warning: {note}")

    ids = _image_ids(train_pool + test_pool)
    test_jobs = [(c, t) for c in XBD_CLASSES for t in chosen_test[c]]
    bar = tqdm(total=len(test_jobs) + train_per_class * len(XBD_CLASSES), desc="xbd images", unit="tile", disable=not progress)
    test = []
    for class_name, tile in test_jobs:
        test += [row for _, row in _tile_rows(tile, class_name, ids[tile], root, resize, "test")]
        bar.update()
    orders = {c: iter(balanced_pick(train_groups[c], len(train_pool), seed, "train")) for c in XBD_CLASSES}
    pools = {c: _training_units(orders[c], c, ids, root, resize, bar) for c in XBD_CLASSES}
    embedder = resolve_embedder(embedder)
    kept = deduplicate(test, pools, train_per_class, embedder=embedder, progress=progress)
    bar.total += extra_per_class * len(XBD_CLASSES)
    extra_pools = {c: _training_units(orders[c], c, ids, root, resize, bar, EXTRA_SPLIT) for c in XBD_CLASSES}
    extra = draw_extra(test, extra_pools, extra_per_class, embedder=embedder, progress=progress)
    bar.close()
    queried = merge_into(kept, extra)
    notes += kept.notes(train_per_class) + availability_notes(extra, extra_per_class, train_per_class)
    splits = {"train_real": kept.rows("train_real"), "test": test, "generation_inputs": kept.rows("generation_inputs")}
    if extra is not None:
        splits[EXTRA_SPLIT] = extra.rows(EXTRA_SPLIT)
    log.info("xbd task: %s", {split: len(rows) for split, rows in splits.items()})
    locations = [
        {"tile": ids[tile], "source_file": tile.post_image.relative_to(root).as_posix(), "test_tile": ids[test_tile], "reason": reason}
        for tile, (test_tile, reason) in sorted(excluded.items(), key=lambda item: ids[item[0]])
    ]
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
        near_duplicates=kept.record(queried, locations),
        overwrite=overwrite,
    )
