"""The feature cache: each image is encoded once per (backbone, weights, preprocessing, precision).

Layout (docs/RECORDS.md, section 3):

    <root>/<backbone>/<weights_id>/<preprocessing_id>/<precision>/
        index.json                  the shards that are complete, with their SHA-256 and keys
        shard-<uuid>.safetensors    "features" (n, D) float16 and "keys" (n, 32) uint8 image SHA-256s
        .lock                       serialises index updates between processes

Features are keyed by the SHA-256 of the image bytes (`ImageRef.sha256`), so the same image is
encoded once whichever task, submission, setting, ratio or seed asks for it. A shard is written
atomically (temporary file + rename) and listed in the index only afterwards, under a file lock:
an interrupted run leaves at worst an unlisted shard file, never a listed partial one. A listed
shard that is unreadable (truncated, corrupt), has the wrong shape, or whose bytes no longer match
the SHA-256 in the index is logged by name, dropped from the index and its images encoded again.
The temporary files of a writer that was killed (`.shard-*.tmp`, named after their host and pid)
are removed the first time a cache object uses the folder (`io.remove_stale_temp_files`).

Features are stored as float16 (half the disk) and always returned as the float16 values widened to
float32, whether just computed or read back: a cold and a warm run give bit-identical features.

`precision` is how the forward pass ran (`benchmark.device.compute_precision`): `fp32` on the CPU,
`bf16-autocast` on CUDA. The two differ by more than the float16 storage rounding, so a GPU run
never reads CPU features or the reverse.

On CUDA the encode loop never waits for a batch's features before queueing the next batch: each
batch's float16 features are copied into pinned host memory asynchronously and collected one batch
later, so the GPU keeps computing while the host checks and stores the previous batch (and the
data-loader workers decode the following ones). On the CPU the loop calls `Backbone.encode`.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .backbones import Backbone, ImageTransform
from .device import compute_precision, encoding_defaults, is_cuda
from .errors import HarnessError
from .images import ImageRef, open_rgb
from .io import atomic_write_bytes, atomic_write_json, remove_stale_temp_files, sha256_bytes, sha256_file

log = logging.getLogger(__name__)

#: 2: the compute precision became part of the layout (a folder level) and of the index.
CACHE_SCHEMA_VERSION = 2
#: Images per shard file (the unit that becomes visible to other runs at once).
DEFAULT_SHARD_SIZE = 2048
_STORE_DTYPE = torch.float16
_SAFE_COMPONENT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class ImageDataset(Dataset):
    """ImageRefs -> (3, S, S) uint8 tensors, decoded safely and checked against their SHA-256.

    Runs inside DataLoader workers when num_workers > 0 (only the picklable transform travels).
    The hash check guarantees that the features cached under a SHA-256 are those of these bytes.
    """

    def __init__(self, refs: Sequence[ImageRef], transform: ImageTransform, *, verify_sha256: bool = True):
        self.refs = list(refs)
        self.transform = transform
        self.verify_sha256 = verify_sha256

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> torch.Tensor:
        ref = self.refs[index]
        data = ref.read_bytes()
        if self.verify_sha256:
            actual = sha256_bytes(data)
            if actual != ref.sha256:
                raise HarnessError(
                    f"{ref.name}: SHA-256 of the image bytes is {actual}, but it is listed as {ref.sha256} "
                    f"(the file changed after its manifest was written)"
                )
        return self.transform.to_uint8(open_rgb(data, name=ref.name))


def image_loader(
    refs: Sequence[ImageRef],
    transform: ImageTransform,
    *,
    batch_size: int,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
) -> DataLoader:
    """A DataLoader of uint8 image batches in the order of `refs` (decode overlapped in workers)."""
    return DataLoader(
        ImageDataset(refs, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=is_cuda(device),
        # Several batches in flight per worker keep the model busy while images decode.
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=False,
        # Its own generator: iterating must not consume (and so shift) the global torch RNG.
        generator=torch.Generator().manual_seed(0),
    )


def _safe_component(value: str, what: str) -> str:
    if not value or value in (".", "..") or not set(value) <= _SAFE_COMPONENT:
        raise HarnessError(f"feature cache: {what} {value!r} cannot be used as a folder name")
    return value


class _Shard:
    """One loaded, verified shard: keys in row order and the float16 features."""

    __slots__ = ("keys", "features")

    def __init__(self, keys: list[str], features: np.ndarray):
        self.keys = keys
        self.features = features


class _HostCopies:
    """Feature batches brought to the host in order, `lag` batches after they were queued.

    On CUDA each batch is copied into pinned host memory without waiting (non_blocking) and an
    event marks the copy's end; a batch is handed back only once `lag` newer batches are queued
    behind it, so waiting for it never leaves the GPU idle. On the CPU (lag 0) batches come back
    at once. `put` and `drain` return [(float16 array, tag)] in the order the batches were put.
    """

    def __init__(self, device: torch.device | str, lag: int | None = None):
        self.cuda = is_cuda(device)
        self.lag = (1 if self.cuda else 0) if lag is None else int(lag)
        self._queue: collections.deque = collections.deque()

    def put(self, features: torch.Tensor, tag: Any) -> list[tuple[np.ndarray, Any]]:
        if self.cuda:
            host = torch.empty(features.shape, dtype=features.dtype, pin_memory=True)
            host.copy_(features, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
        else:
            host, copied = features, None
        self._queue.append((host, copied, tag))
        ready = []
        while len(self._queue) > self.lag:
            ready.append(self._pop())
        return ready

    def drain(self) -> list[tuple[np.ndarray, Any]]:
        return [self._pop() for _ in range(len(self._queue))]

    def _pop(self) -> tuple[np.ndarray, Any]:
        host, copied, tag = self._queue.popleft()
        if copied is not None:
            copied.synchronize()  # this batch's copy only; the batches behind it keep running
        return host.numpy(), tag


class FeatureCache:
    """Encode images once per (backbone, weights, preprocessing); reuse them ever after.

    `features(backbone, refs)` returns an (N, D) float32 array in the order of `refs`, encoding only
    the images the cache does not hold yet. `n_encoded` counts the images this object actually
    ran through a model (tests and logs use it to show what was reused).
    """

    def __init__(self, root: str | os.PathLike, *, shard_size: int = DEFAULT_SHARD_SIZE):
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.root = Path(root)
        self.shard_size = int(shard_size)
        self.n_encoded = 0
        # directory -> {shard file name -> verified shard}; each shard is read and hashed once.
        self._loaded: dict[Path, dict[str, _Shard]] = {}
        self._swept: set[Path] = set()  # folders whose killed writers' temporary files are gone

    # -- layout --------------------------------------------------------------------------------

    def directory(self, backbone: Backbone) -> Path:
        return (
            self.root
            / _safe_component(backbone.name, "backbone name")
            / _safe_component(backbone.weights_id, "weights id")
            / _safe_component(backbone.preprocessing_id, "preprocessing id")
            / _safe_component(compute_precision(backbone.device), "precision")
        )

    @contextlib.contextmanager
    def _locked(self, directory: Path) -> Iterator[None]:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _sweep(self, directory: Path) -> None:
        """Remove the temporary files that killed writers left in `directory` (once per object)."""
        if directory in self._swept:
            return
        self._swept.add(directory)
        removed = remove_stale_temp_files(directory)
        if removed:
            log.info("feature cache %s: removed %d temporary file(s) of killed runs", directory, len(removed))

    def _read_index(self, directory: Path, backbone: Backbone) -> dict:
        path = directory / "index.json"
        empty = {
            "schema_version": CACHE_SCHEMA_VERSION,
            "backbone": backbone.name,
            "weights_id": backbone.weights_id,
            "preprocessing_id": backbone.preprocessing_id,
            "preprocessing": backbone.transform.recipe,
            "precision": compute_precision(backbone.device),
            "feature_dim": backbone.feature_dim,
            "dtype": "float16",
            "shards": [],
        }
        if not path.is_file():
            return empty
        try:
            index = json.loads(path.read_text())
            version = index.get("schema_version")
            if version != CACHE_SCHEMA_VERSION:
                raise ValueError(f"schema_version {version!r}, this harness reads {CACHE_SCHEMA_VERSION}")
            if index.get("feature_dim") != backbone.feature_dim:
                raise ValueError(f"feature_dim {index.get('feature_dim')} != model's {backbone.feature_dim}")
            if index.get("precision") != empty["precision"]:
                raise ValueError(f"precision {index.get('precision')!r}, this run computes {empty['precision']!r}")
            if not isinstance(index.get("shards"), list):
                raise ValueError("no shard list")
        except (ValueError, AttributeError) as exc:
            log.warning("feature cache %s: unusable index (%s); starting a new one", path, exc)
            return empty
        return index

    # -- shards --------------------------------------------------------------------------------

    def _load_shard(self, directory: Path, entry: dict, feature_dim: int) -> _Shard:
        """Read and verify one listed shard; raise ValueError saying what is wrong."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = directory / entry["file"]
        if not path.is_file():
            raise ValueError("file is missing")
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise ValueError(f"SHA-256 {actual[:16]}... does not match the index ({str(entry.get('sha256'))[:16]}...)")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"unreadable ({exc})") from None
        features, keys = tensors.get("features"), tensors.get("keys")
        n = len(entry.get("images", []))
        if features is None or keys is None:
            raise ValueError("missing 'features' or 'keys' tensor")
        if features.shape != (n, feature_dim) or features.dtype != np.float16:
            raise ValueError(f"features have shape {features.shape} {features.dtype}, expected ({n}, {feature_dim}) float16")
        key_hex = [bytes(row).hex() for row in keys]
        if key_hex != entry["images"]:
            raise ValueError("image keys differ from the index")
        if not np.isfinite(features).all():
            raise ValueError("non-finite features")
        return _Shard(key_hex, features)

    def _drop_shards(self, directory: Path, backbone: Backbone, bad: set[str]) -> None:
        with self._locked(directory):
            index = self._read_index(directory, backbone)
            index["shards"] = [s for s in index["shards"] if s.get("file") not in bad]
            atomic_write_json(directory / "index.json", index)
            for name in bad:
                with contextlib.suppress(OSError):
                    (directory / name).unlink()

    def _write_shard(self, directory: Path, backbone: Backbone, keys: list[str], features: np.ndarray) -> None:
        """Write one shard atomically, then list it in the index (under the lock)."""
        from safetensors.numpy import save

        name = f"shard-{uuid.uuid4().hex}.safetensors"
        key_bytes = np.frombuffer(b"".join(bytes.fromhex(k) for k in keys), dtype=np.uint8).reshape(len(keys), 32)
        data = save(
            {"features": np.ascontiguousarray(features, dtype=np.float16), "keys": key_bytes},
            metadata={
                "schema_version": str(CACHE_SCHEMA_VERSION),
                "backbone": backbone.name,
                "weights_id": backbone.weights_id,
                "preprocessing_id": backbone.preprocessing_id,
                "precision": compute_precision(backbone.device),
            },
        )
        atomic_write_bytes(directory / name, data)  # complete on disk before the index names it
        entry = {"file": name, "sha256": sha256_bytes(data), "n": len(keys), "images": list(keys)}
        with self._locked(directory):
            index = self._read_index(directory, backbone)
            index["shards"].append(entry)
            atomic_write_json(directory / "index.json", index)
        self._loaded.setdefault(directory, {})[name] = _Shard(list(keys), features)

    def _lookup(self, directory: Path, backbone: Backbone, wanted: set[str]) -> dict[str, np.ndarray]:
        """Cached float16 feature rows for the wanted keys (verifying shards on first use)."""
        found: dict[str, np.ndarray] = {}
        if not wanted:
            return found
        loaded = self._loaded.setdefault(directory, {})
        bad: set[str] = set()
        for entry in self._read_index(directory, backbone)["shards"]:
            name = entry.get("file", "")
            if not isinstance(entry.get("images"), list) or not wanted.intersection(entry["images"]):
                continue
            shard = loaded.get(name)
            if shard is None:
                try:
                    shard = self._load_shard(directory, entry, backbone.feature_dim)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("feature cache: corrupt shard %s (%s); its images will be encoded again", directory / name, exc)
                    bad.add(name)
                    continue
                loaded[name] = shard
            for row, key in enumerate(shard.keys):
                if key in wanted:
                    found[key] = shard.features[row]
        if bad:
            self._drop_shards(directory, backbone, bad)
        return found

    # -- the API -------------------------------------------------------------------------------

    def features(
        self,
        backbone: Backbone,
        refs: Sequence[ImageRef],
        *,
        batch_size: int | None = None,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """(len(refs), D) float32 features in the order of `refs`, encoding only uncached images.

        `batch_size` / `num_workers` None: the defaults for the backbone's device
        (`benchmark.device.encoding_defaults`: 64 and 0 on the CPU, 256 and up to 8 on CUDA).
        """
        batch_size, num_workers = encoding_defaults(backbone.device, batch_size, num_workers)
        directory = self.directory(backbone)
        self._sweep(directory)
        order = [ref.sha256 for ref in refs]
        wanted = set(order)
        found = self._lookup(directory, backbone, wanted)
        first_ref: dict[str, ImageRef] = {}
        for ref in refs:
            if ref.sha256 not in found:
                first_ref.setdefault(ref.sha256, ref)  # duplicates are encoded once
        missing = list(first_ref.values())
        if missing:
            log.info(
                "feature cache %s: %d of %d images to encode (%d cached)",
                directory, len(missing), len(wanted), len(wanted) - len(missing),
            )
            found.update(self._encode(directory, backbone, missing, batch_size, num_workers, progress))
        out = np.empty((len(order), backbone.feature_dim), dtype=np.float32)
        for row, key in enumerate(order):
            out[row] = found[key]
        return out

    def _encode(
        self,
        directory: Path,
        backbone: Backbone,
        refs: list[ImageRef],
        batch_size: int,
        num_workers: int,
        progress: bool,
    ) -> dict[str, np.ndarray]:
        loader = image_loader(
            refs, backbone.transform, batch_size=batch_size, num_workers=num_workers, device=backbone.device
        )
        cuda = is_cuda(backbone.device)
        copies = _HostCopies(backbone.device)
        found: dict[str, np.ndarray] = {}
        pending_keys: list[str] = []
        pending: list[np.ndarray] = []
        start = 0
        with tqdm(total=len(refs), desc=f"encoding {backbone.name}", unit="img", disable=not progress) as bar:

            def collect(ready: list[tuple[np.ndarray, int]]) -> None:
                nonlocal pending_keys, pending
                for features, first in ready:
                    batch_refs = refs[first : first + len(features)]
                    if not np.isfinite(features).all():
                        raise HarnessError(
                            f"backbone {backbone.name!r}: non-finite features (or beyond float16 range) for "
                            f"{', '.join(r.name for r in batch_refs[:3])}..."
                        )
                    keys = [r.sha256 for r in batch_refs]
                    self.n_encoded += len(keys)
                    pending_keys.extend(keys)
                    pending.append(features)
                    bar.update(len(keys))
                    if len(pending_keys) >= self.shard_size:
                        self._flush(directory, backbone, pending_keys, pending, found)
                        pending_keys, pending = [], []

            for batch in loader:
                # CUDA: no host copy here (encode's .cpu() would wait for this batch to finish).
                features = device_features(backbone, batch) if cuda else backbone.encode(batch)
                collect(copies.put(features.to(_STORE_DTYPE), start))
                start += len(batch)
            collect(copies.drain())
        if pending_keys:
            self._flush(directory, backbone, pending_keys, pending, found)
        return found

    def _flush(self, directory, backbone, keys: list[str], chunks: list[np.ndarray], found: dict) -> None:
        features = np.concatenate(chunks, axis=0)
        self._write_shard(directory, backbone, keys, features)
        for row, key in enumerate(keys):
            found[key] = features[row]


def device_features(backbone: Backbone, batch: torch.Tensor) -> torch.Tensor:
    """`Backbone.encode` without its copy to the host: (B, D) float32 left on the backbone's device."""
    return backbone.encode(batch, to_host=False)


__all__ = ["CACHE_SCHEMA_VERSION", "FeatureCache", "ImageDataset", "device_features", "image_loader"]
