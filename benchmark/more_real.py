"""The more-real control of the grid (protocol.MORE_REAL): `more-real@k` on a task with a
`train_real_extra` split.

`more-real@k` trains on train_real plus k x n(c) real images of class c from train_real_extra
(n(c): the class's train_real images), so that each `mixed@k` (k x n(c) synthetic images added)
can be set beside the gain of as many more *real* images. The extra images of seed s are the first
k x n(c) of a per-class permutation drawn from their own random stream, so the subsets are nested
over k, paired by seed with every other setting, and no other setting's draw changes. The grid
adds these settings by itself when the task has the split (and the protocol runs them by default);
a task without it is untouched: its grids plan, draw and record exactly what they did before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .metrics import more_real_comparison
from .protocol import MORE_REAL, SETTINGS, Setting

EXTRA_SPLIT = MORE_REAL["split"]
PREFIX = "more-real@"


@dataclass
class ExtraSplit:
    """A task's train_real_extra images in split order, with their labels and scenes."""

    refs: list
    labels: np.ndarray
    scenes: list[str]
    by_class: list[np.ndarray]  # row indices of each class

    @classmethod
    def of(cls, task) -> "ExtraSplit | None":
        """The task's extra split, or None when it has none."""
        if EXTRA_SPLIT not in task.splits:
            return None
        labels = task.labels(EXTRA_SPLIT)
        pairs = zip(task.image_ids(EXTRA_SPLIT), task.column(EXTRA_SPLIT, "pair_id"))
        return cls(
            refs=list(task.image_refs(EXTRA_SPLIT)),
            labels=labels,
            scenes=[f"scene:{pair or image_id}" for image_id, pair in pairs],
            by_class=[np.flatnonzero(labels == c) for c in range(len(task.classes))],
        )

    def counts(self) -> np.ndarray:
        return np.array([rows.size for rows in self.by_class], dtype=np.int64)

    def rows(self, indices: np.ndarray, n_classes: int) -> tuple[list, np.ndarray, list[str], np.ndarray]:
        """(refs, one-hot targets, scenes, per-class counts) of the drawn extra rows."""
        labels = self.labels[indices]
        targets = np.eye(n_classes, dtype=np.float32)[labels]
        return ([self.refs[i] for i in indices], targets, [self.scenes[i] for i in indices],
                np.bincount(labels, minlength=n_classes).astype(np.int64))


def settings_for(task, protocol: str) -> list[Setting]:
    """The more-real@k settings a grid adds on its own: every k, on a task with the extra split and
    for a protocol that runs them by default; none otherwise."""
    if EXTRA_SPLIT not in task.splits or protocol not in MORE_REAL["default_protocols"]:
        return []
    return [SETTINGS[f"{PREFIX}{k}"] for k in MORE_REAL["ratios"]]


def needed(setting: Setting, real_counts: np.ndarray) -> np.ndarray:
    """Extra images per class more-real@k draws: k x the class's train_real images."""
    return setting.ratio * real_counts


def skip_reason(setting: Setting, real_counts: np.ndarray, extra: ExtraSplit | None, classes: Sequence[str]) -> str | None:
    """Why more-real@k cannot run on this task (None when every class can be filled)."""
    if extra is None:
        return f"the task has no {EXTRA_SPLIT} split (more real images to compare with)"
    need, have = needed(setting, real_counts), extra.counts()
    short = [f"{int(have[c])} for {classes[c]!r}" for c in range(len(classes)) if have[c] < need[c]]
    if not short:
        return None
    if len(set(need.tolist())) == 1:
        return f"needs {int(need[0])} {EXTRA_SPLIT} images per class, has " + ", ".join(short)
    return "needs " + ", ".join(f"{int(need[c])} {EXTRA_SPLIT} images for {classes[c]!r} (has {int(have[c])})"
                                for c in range(len(classes)) if have[c] < need[c])


def extra_draw(by_class: Sequence[np.ndarray], seed: int, per_class: Sequence[int]) -> np.ndarray:
    """Extra-split rows of seed `seed`'s more-real@k: the first per_class[c] of each class's
    permutation, from the control's own stream (nested over k)."""
    rng = np.random.default_rng([int(seed), MORE_REAL["draw_stream"]])
    permutations = [rng.permutation(rows) for rows in by_class]
    return np.sort(np.concatenate([perm[: int(n)] for perm, n in zip(permutations, per_class)]
                                  + [np.zeros(0, dtype=np.int64)])).astype(np.int64)


def summarise(labels: np.ndarray, n_classes: int, by_setting: dict[str, list[dict]]) -> dict[str, dict]:
    """{mixed@k: its Δ beside more-real@k's and the share} for each k the record has both (and real)."""
    if "real" not in by_setting:
        return {}
    def preds(name: str) -> dict:
        return {r["seed"]: np.asarray(r["predictions"]) for r in by_setting[name]}

    out = {}
    for k in MORE_REAL["ratios"]:
        entry, control = f"mixed@{k}", f"{PREFIX}{k}"
        if entry in by_setting and control in by_setting:
            comparison = more_real_comparison(labels, preds("real"), preds(entry), preds(control), n_classes,
                                              metric=MORE_REAL["metric"])
            if comparison is not None:
                out[entry] = {"setting": control, **comparison}
    return out


def share_text(block: dict | None) -> str:
    """A summary's `more_real` share for tables: "0.42 [0.20, 0.70]", "n/a" without a clear real gain."""
    if not block:
        return "—"
    if block["share"] is None:
        return "n/a (no clear gain from more real images)"
    lo, hi = block["share_ci"]
    ends = [f"{v:.2f}" if v is not None else ("-inf" if i == 0 else "+inf") for i, v in enumerate((lo, hi))]
    return f"{block['share']:.2f} [{ends[0]}, {ends[1]}]"
