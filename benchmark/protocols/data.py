"""What every protocol receives: one run's training set and the test split, as checked records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import HarnessError
from ..images import ImageRef


@dataclass
class TrainData:
    """One run's training set (a setting, ratio and seed already applied).

    targets are soft labels: (N, C) float32 rows summing to 1 (one-hot for hard labels; Mixup-style
    submissions may spread a row over classes). is_synthetic marks the submission's images.
    """

    refs: list[ImageRef]
    targets: np.ndarray
    is_synthetic: np.ndarray

    def __post_init__(self) -> None:
        self.refs = list(self.refs)
        self.targets = np.asarray(self.targets, dtype=np.float32)
        self.is_synthetic = np.asarray(self.is_synthetic, dtype=bool)
        n = len(self.refs)
        if n == 0:
            raise HarnessError("training set is empty")
        if self.targets.ndim != 2 or self.targets.shape[0] != n:
            raise HarnessError(f"training targets have shape {self.targets.shape}, expected ({n}, n_classes)")
        if self.is_synthetic.shape != (n,):
            raise HarnessError(f"is_synthetic has shape {self.is_synthetic.shape}, expected ({n},)")
        if not np.isfinite(self.targets).all() or (self.targets < 0).any():
            raise HarnessError("training targets must be finite and non-negative")
        sums = self.targets.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-4):
            worst = int(np.argmax(np.abs(sums - 1.0)))
            raise HarnessError(f"training target of {self.refs[worst].name} sums to {sums[worst]:.6f}, not 1")

    @property
    def n_classes(self) -> int:
        return int(self.targets.shape[1])

    @property
    def hard_labels(self) -> np.ndarray:
        """The arg-max class of each soft label (ties go to the lowest class index)."""
        return self.targets.argmax(axis=1).astype(np.int64)

    def __len__(self) -> int:
        return len(self.refs)

    @classmethod
    def from_labels(cls, refs: list[ImageRef], labels, n_classes: int, is_synthetic=None) -> "TrainData":
        """Hard integer labels -> one-hot targets."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise HarnessError(f"labels must lie in 0..{n_classes - 1}")
        targets = np.eye(n_classes, dtype=np.float32)[labels]
        flags = np.zeros(len(refs), dtype=bool) if is_synthetic is None else is_synthetic
        return cls(refs=list(refs), targets=targets, is_synthetic=flags)


@dataclass
class TestData:
    """The held-out real test split: images and their integer labels, in test-split order."""

    __test__ = False  # not a pytest test class, despite the name

    refs: list[ImageRef]
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.refs = list(self.refs)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (len(self.refs),):
            raise HarnessError(f"test labels have shape {self.labels.shape}, expected ({len(self.refs)},)")
        if len(self.refs) == 0:
            raise HarnessError("test split is empty")
        if self.labels.min() < 0:
            raise HarnessError("test labels must be non-negative class indices")

    def __len__(self) -> int:
        return len(self.refs)
