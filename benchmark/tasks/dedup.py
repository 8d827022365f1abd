"""Build-time deduplication: no image a participant or the harness may train on is a near-copy of a
test image.

Real remote-sensing collections hold the same site twice (an airport imaged in two captures, xBD
tiles of one event that overlap). A training image that is a near-copy of a test image inflates
scores, and every baseline made from it (duplicates, Mixup/CutMix blends) is then refused by the
submissions' leakage gate. So every builder draws its training side through `deduplicate`:

1. the test split is fixed first;
2. each class's training *units* (a `train_real` row and the `generation_inputs` rows made from it:
   they stand or fall together) are drawn in the builder's order, `per_class` of them;
3. `benchmark.nearcopy.find_near_duplicate_pairs` (the leakage gate's own detector) compares every
   drawn image with every test image, both ways (the detector finds a query inside a reference,
   so a training image that contains a test image as a crop is found by querying with the test
   images), and partial overlaps too: a training image that shares a large region with a test
   image (two captures of one site, shifted) is found through its corner windows (70 % of the
   side), since a crop of it (the classic baseline's, a participant's) could be a near-copy of
   the test image;
4. a unit with a match is removed, the pair recorded with its evidence, and the class's next unit
   drawn in its place; 3-4 repeat for the replacements until none matches or the class's pool is
   spent (the class is then left short, and the task's notes say so).

The result is written into the manifest (`near_duplicates`, docs/RECORDS.md section 1) and the
dataset card; `check_near_duplicates` re-runs the detector on a built task (`synthbench task
verify`). Deterministic: the same units in the same order and the same detector give the same
choice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from ..errors import TaskError
from ..images import ImageRef
from ..paths import default_cache_dir
from .record import TaskImage

log = logging.getLogger(__name__)

#: The split every other split is deduplicated against.
TEST_SPLIT = "test"
#: Decimal places the scores are stored with (the record must not depend on float noise).
_SCORE_DECIMALS = 4


@dataclass(frozen=True)
class TrainingUnit:
    """One training draw: its rows (split, TaskImage), kept or removed together."""

    label: str
    rows: tuple[tuple[str, TaskImage], ...]


@dataclass(frozen=True)
class RemovedPair:
    """A training image removed because it is a near-copy of a test image, with the evidence."""

    split: str
    image_id: str
    source_file: str
    test_image_id: str
    test_source_file: str
    phash_distance: int
    match_score: float
    cosine: float

    def describe(self) -> str:
        return (
            f"{self.split} {self.image_id} ({self.source_file}) ~ test {self.test_image_id} "
            f"({self.test_source_file}): pHash distance {self.phash_distance}/64, match score "
            f"{self.match_score:.3f}, cosine {self.cosine:.3f}"
        )


@dataclass
class Deduplicated:
    """What `deduplicate` kept, what it removed and why."""

    chosen: dict[str, list[TrainingUnit]]
    removed: list[RemovedPair] = field(default_factory=list)
    #: training draws removed (a draw goes when any of its images matches)
    removed_units: int = 0
    #: classes whose pool ran out: class -> units kept (< per_class)
    short: dict[str, int] = field(default_factory=dict)
    embedder_id: str = ""
    image_size: int | None = None

    def rows(self, split: str) -> list[TaskImage]:
        return [row for units in self.chosen.values() for unit in units for s, row in unit.rows if s == split]

    def notes(self, per_class: int) -> list[str]:
        lines = []
        if self.removed_units:
            lines.append(
                f"deduplicated against the test split: {self.removed_units} training draw(s) removed because an "
                f"image of theirs is a near-copy of a test image (pairs listed in manifest.json near_duplicates and "
                f"in the card's Deduplication section), each replaced by the next draw of its class"
            )
        for class_name, kept in sorted(self.short.items()):
            lines.append(
                f"short training class after deduplication: {class_name} has {kept} of {per_class} training images "
                f"(its pool holds no more images that are not near-copies of test images)"
            )
        return lines

    def record(self, queried_splits: Sequence[str], same_location: Sequence[Mapping] = ()) -> dict:
        """The manifest's `near_duplicates` field (docs/RECORDS.md, section 1)."""
        from ..nearcopy import GATE_VERSION

        return {
            "detector": "benchmark.nearcopy.find_near_duplicate_pairs",
            "detector_version": GATE_VERSION,
            "embedder": self.embedder_id,
            "image_size": self.image_size,
            "queries": sorted(queried_splits),
            "references": [TEST_SPLIT],
            "removed": [asdict(pair) for pair in sorted(self.removed, key=lambda p: (p.split, p.image_id))],
            "same_location": [dict(item) for item in same_location],
        }


def embedder_identity(embedder) -> tuple[str, int | None]:
    """(id, input size) of an embedder, as the record stores them."""
    backbone = getattr(embedder, "backbone", None)
    return str(getattr(embedder, "id", type(embedder).__name__)), getattr(backbone, "image_size", None)


def resolve_embedder(embedder=None, *, cache_dir=None, device: str = "cpu", image_size: int | None = None):
    """`embedder` if given, else the default backbone (at `image_size`, default its native size)
    over `cache_dir` (default: the grid's cache), loaded only when first used."""
    if embedder is not None:
        return embedder
    return DeferredEmbedder(Path(cache_dir) if cache_dir is not None else default_cache_dir(), device, image_size)


class DeferredEmbedder:
    """`benchmark.nearcopy.default_embedder(...)`, loaded on first use (a build that fails its
    argument checks never loads a backbone)."""

    def __init__(self, cache_dir: Path, device: str, image_size: int | None):
        self.cache_dir, self.device, self.image_size = cache_dir, device, image_size
        self._loaded = None

    def _embedder(self):
        if self._loaded is None:
            from ..nearcopy import default_embedder

            self._loaded = default_embedder(self.cache_dir, device=self.device, image_size=self.image_size)
        return self._loaded

    @property
    def id(self) -> str:
        return self._embedder().id

    @property
    def backbone(self):
        return self._embedder().backbone

    def __call__(self, refs, progress: bool = False):
        return self._embedder()(refs, progress)


def _refs(rows: Sequence[TaskImage]) -> list[ImageRef]:
    return [ImageRef(row.sha256, row.png, name=row.image_id) for row in rows]


def find_pairs(
    queries: Sequence[tuple[str, TaskImage]],
    test_rows: Sequence[TaskImage],
    embedder: Callable,
    *,
    progress: bool = False,
) -> list[RemovedPair]:
    """Every query row that is a near-copy of a test row, or of which a test row is a near-copy
    (byte-identical images are compared once)."""
    unique: dict[str, list[tuple[str, TaskImage]]] = {}
    for split, row in queries:
        unique.setdefault(row.sha256, []).append((split, row))
    images = [rows[0][1] for rows in unique.values()]
    matches = _symmetric_matches(images, test_rows, embedder, progress)
    pairs = []
    for image_index, (test_index, pair) in sorted(matches.items()):
        test = test_rows[test_index]
        for split, row in unique[images[image_index].sha256]:
            pairs.append(
                RemovedPair(
                    split, row.image_id, row.source_file, test.image_id, test.source_file, int(pair.phash_distance),
                    round(float(pair.match_score), _SCORE_DECIMALS), round(float(pair.cosine), _SCORE_DECIMALS),
                )
            )
    return pairs


def _symmetric_matches(images: Sequence[TaskImage], test_rows: Sequence[TaskImage], embedder, progress: bool) -> dict:
    """{training image index: (test index, NearDuplicatePair)} in both directions.

    The detector finds a query inside a reference (a crop, a rescaled or turned copy), not a
    reference inside a query: a training image of which a test image is a crop is found by
    querying with the test images. That direction reports one training image per test image, so
    it repeats on the training images left until it finds nothing new. The training images are
    also queried by their corner windows (partial overlaps: a shift is symmetric, so one
    direction covers it).
    """
    from ..nearcopy import find_near_duplicate_pairs

    found = {
        pair.query: (pair.reference, pair)
        for pair in find_near_duplicate_pairs(
            _refs(images), _refs(test_rows), embedder=embedder, progress=progress, partial=True
        )
    }
    remaining = [i for i in range(len(images)) if i not in found]
    while remaining:
        backward = find_near_duplicate_pairs(
            _refs(test_rows), _refs([images[i] for i in remaining]), embedder=embedder, progress=progress
        )
        for pair in backward:
            found[remaining[pair.reference]] = (pair.query, pair)
        if not backward:
            break
        remaining = [i for i in remaining if i not in found]
    return found


def deduplicate(
    test_rows: Sequence[TaskImage],
    candidates: Mapping[str, Iterator[TrainingUnit]],
    per_class: int,
    *,
    embedder: Callable,
    progress: bool = False,
) -> Deduplicated:
    """Draw `per_class` units per class from `candidates` (in their order) whose images are not
    near-copies of any test row (see the module docstring)."""
    embedder_id, image_size = embedder_identity(embedder)
    result = Deduplicated(chosen={c: [] for c in candidates}, embedder_id=embedder_id, image_size=image_size)
    pending = [unit for c, pool in candidates.items() for unit in _draw(pool, per_class)]
    round_number = 0
    while pending:
        round_number += 1
        queries = [(split, row) for unit in pending for split, row in unit.rows]
        log.info("deduplication round %d: %d training rows against %d test images", round_number, len(queries), len(test_rows))
        pairs = find_pairs(queries, test_rows, embedder, progress=progress)
        flagged = {pair.image_id for pair in pairs}
        result.removed += pairs
        replacements = []
        for unit in pending:
            if any(row.image_id in flagged for _, row in unit.rows):
                result.removed_units += 1
                replacements += _draw(candidates[unit.label], 1)
            else:
                result.chosen[unit.label].append(unit)
        pending = replacements
    for class_name, units in result.chosen.items():
        if len(units) < per_class:
            result.short[class_name] = len(units)
    for pair in result.removed:
        log.warning("near-duplicate removed: %s", pair.describe())
    return result


def _draw(pool: Iterator[TrainingUnit], count: int) -> list[TrainingUnit]:
    drawn = []
    for unit in pool:
        drawn.append(unit)
        if len(drawn) == count:
            break
    return drawn


def check_near_duplicates(task, embedder: Callable, *, progress: bool = False) -> list[RemovedPair]:
    """Re-run the detector on a built task: every non-test image against every test image."""
    if TEST_SPLIT not in task.splits:
        raise TaskError(f"task {task.name}: no {TEST_SPLIT} split")
    test_rows = _task_rows(task, TEST_SPLIT)
    queries = [(split, row) for split in task.splits if split != TEST_SPLIT for row in _task_rows(task, split)]
    return find_pairs(queries, test_rows, embedder, progress=progress)


def _task_rows(task, split: str) -> list[TaskImage]:
    labels = [task.classes[i] for i in task.labels(split)]
    sources = task.column(split, "source_file")
    return [
        TaskImage(png=ref.source, label=label, image_id=ref.name, event="", source_file=source)
        for ref, label, source in zip(task.image_refs(split), labels, sources)
    ]
