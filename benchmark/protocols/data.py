"""What every protocol receives: one run's training set and the test split, as checked records;
and `DecodedImages`, the in-memory cache of decoded images (training sets and the test split) that
the runs of a grid share."""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import HarnessError
from ..images import ImageRef


@dataclass
class TrainData:
    """One run's training set (a setting, ratio and seed already applied).

    targets are soft labels: (N, C) float32 rows summing to 1 (one-hot for hard labels; Mixup-style
    submissions may spread a row over classes). is_synthetic marks the submission's images.
    groups (optional, one name per row) names the scene each image was made from: a real image
    and the synthetic images derived from it share one, so that a protocol's cross-validation keeps
    them in one fold (None: every image is its own scene).
    """

    refs: list[ImageRef]
    targets: np.ndarray
    is_synthetic: np.ndarray
    groups: np.ndarray | None = None

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
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=str)
            if self.groups.shape != (n,):
                raise HarnessError(f"groups has shape {self.groups.shape}, expected ({n},)")
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


#: Default memory budget of the shared decoded-image cache; SYNTHBENCH_DECODED_CACHE_MB overrides it
#: (0 turns it off). 4 GiB holds ~28 000 images at 224 px (150 KB each) or ~9 700 at 384 px: a whole
#: official grid's images (600 real + the submission's draws + the 600 test images).
DEFAULT_DECODED_CACHE_MB = 4096


class DecodedImages:
    """uint8 images decoded at one preprocessing's input size, kept in memory by SHA-256.

    Keys are (preprocessing id, image SHA-256): the same bytes resized for another backbone or
    resolution are another entry. Bounded by `max_bytes`, least recently used first out; an image
    bigger than the whole budget is not kept. `hits` and `misses` count lookups (tests, logs).
    Tensors handed out are shared: callers must not modify them in place.
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._images: collections.OrderedDict[tuple[str, str], torch.Tensor] = collections.OrderedDict()

    @classmethod
    def from_env(cls) -> "DecodedImages":
        raw = os.environ.get("SYNTHBENCH_DECODED_CACHE_MB", str(DEFAULT_DECODED_CACHE_MB))
        try:
            megabytes = float(raw)
        except ValueError:
            raise HarnessError(f"SYNTHBENCH_DECODED_CACHE_MB={raw!r} is not a number of megabytes") from None
        if megabytes < 0:
            raise HarnessError(f"SYNTHBENCH_DECODED_CACHE_MB={raw!r} must be >= 0")
        return cls(int(megabytes * 2**20))

    def __len__(self) -> int:
        return len(self._images)

    def __contains__(self, key: tuple[str, str]) -> bool:
        """(preprocessing id, SHA-256) is held; counts nothing and leaves the LRU order alone."""
        return key in self._images

    def get(self, preprocessing_id: str, sha256: str) -> torch.Tensor | None:
        image = self._images.get((preprocessing_id, sha256))
        if image is None:
            self.misses += 1
            return None
        self.hits += 1
        self._images.move_to_end((preprocessing_id, sha256))
        return image

    def put(self, preprocessing_id: str, sha256: str, image: torch.Tensor) -> None:
        size = image.numel() * image.element_size()
        key = (preprocessing_id, sha256)
        if size > self.max_bytes or key in self._images:
            return
        # A copy of its own: a row of a decoded batch would keep the whole batch's storage alive.
        self._images[key] = image.clone()
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, dropped = self._images.popitem(last=False)
            self.nbytes -= dropped.numel() * dropped.element_size()

    def clear(self) -> None:
        self._images.clear()
        self.nbytes = 0

    def batches(
        self,
        refs: Sequence[ImageRef],
        transform,
        *,
        batch_size: int,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> Iterator[torch.Tensor]:
        """(B, 3, S, S) uint8 batches of `refs` in order, at `transform`'s size (an ImageTransform).

        Images held here come from memory; the others are decoded (SHA-256 checked) in DataLoader
        workers and offered to the cache. Only one batch is assembled at a time, so a split larger
        than the budget costs no more memory than the budget plus the loader's batches in flight.
        `pin_memory`: batches in page-locked memory, for non-blocking copies to a GPU.
        """
        from ..features import ImageDataset, image_loader

        key = transform.id
        refs = list(refs)
        missing = [(key, ref.sha256) not in self for ref in refs]
        to_decode = [ref for ref, absent in zip(refs, missing) if absent]
        self.misses += len(to_decode)
        decoded: Iterator[torch.Tensor] = iter(())
        if to_decode:
            loader = image_loader(to_decode, transform, batch_size=batch_size, num_workers=num_workers)
            decoded = (image for batch in loader for image in batch)
        for start in range(0, len(refs), batch_size):
            images = []
            for ref, absent in zip(refs[start : start + batch_size], missing[start : start + batch_size]):
                image = None if absent else self.get(key, ref.sha256)
                if image is None:
                    # absent: the next decoded image is this one (same order); otherwise it was held
                    # when planned and has since been pushed out by this pass's own images
                    image = next(decoded) if absent else ImageDataset([ref], transform)[0]
                    self.put(key, ref.sha256, image)
                images.append(image)
            out = torch.empty((len(images), *images[0].shape), dtype=torch.uint8, pin_memory=pin_memory)
            yield torch.stack(images, out=out)


_shared_images: DecodedImages | None = None


def shared_decoded_images() -> DecodedImages:
    """The process-wide decoded-image cache (budget: SYNTHBENCH_DECODED_CACHE_MB, default 4096)."""
    global _shared_images
    if _shared_images is None:
        _shared_images = DecodedImages.from_env()
    return _shared_images
