"""The optional `train_real_extra` split: real images left over after a builder drew train_real.

The grid's `more-real@k` control (benchmark.more_real) adds k x n of these per class to train_real,
to say what k x n more *real* images would gain beside what the same number of synthetic images
gains. A builder draws them from the same per-class order it drew train_real from, after it
(so train_real, test and the generation inputs do not change and stay disjoint from them), through
the same build-time deduplication against the test split (`benchmark.tasks.dedup.deduplicate`).
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

from ..protocol import RATIOS
from .dedup import Deduplicated, TrainingUnit, deduplicate
from .record import EXTRA_SPLIT, TaskImage


def default_extra_per_class(train_per_class: int) -> int:
    """Enough for the largest ratio's more-real@k: max(RATIOS) x train_per_class."""
    return max(RATIOS) * train_per_class


def as_extra(units: Iterator[TrainingUnit], split: str = "train_real") -> Iterator[TrainingUnit]:
    """A class's remaining training draws as extra draws: only the real image, in `train_real_extra`
    (the generation inputs made from it are not part of the task); rows already there pass."""
    for unit in units:
        rows = tuple((EXTRA_SPLIT, row) for s, row in unit.rows if s in (split, EXTRA_SPLIT))
        if rows:
            yield TrainingUnit(unit.label, rows)


def draw_extra(
    test_rows: Sequence[TaskImage],
    remaining: Mapping[str, Iterator[TrainingUnit]],
    per_class: int,
    *,
    embedder: Callable,
    progress: bool = False,
) -> Deduplicated | None:
    """Up to `per_class` extra images per class from each class's remaining draws, none a near-copy
    of a test image; None when none are asked for."""
    if per_class <= 0:
        return None
    pools = {label: as_extra(units) for label, units in remaining.items()}
    return deduplicate(test_rows, pools, per_class, embedder=embedder, progress=progress)


def merge_into(kept: Deduplicated, extra: Deduplicated | None) -> list[str]:
    """Add the extra draw's removed pairs to the training draw's record; the splits queried."""
    queried = ["train_real", "generation_inputs"]
    if extra is None or not extra.rows(EXTRA_SPLIT):
        return queried
    kept.removed += extra.removed
    kept.removed_units += extra.removed_units
    return queried + [EXTRA_SPLIT]


def availability_notes(extra: Deduplicated | None, per_class: int, train_per_class: int) -> list[str]:
    """One note with each class's extra images and the largest more-real@k every class can fill."""
    if extra is None:
        return []
    counts = {label: len(units) for label, units in extra.chosen.items()}
    fill = min(counts.values(), default=0) // max(1, train_per_class)
    ratios = [k for k in RATIOS if k <= fill]
    reach = (f"more-real@{ratios[0]}..{ratios[-1]}" if len(ratios) > 1 else f"more-real@{ratios[0]}") if ratios else "no more-real@k"
    return [
        f"{EXTRA_SPLIT}: {sum(counts.values())} extra real images (asked {per_class} per class): "
        + ", ".join(f"{label} {n}" for label, n in counts.items())
        + f"; every class can fill {reach} (k x {train_per_class} per class)"
    ]
