"""Checkpoint submissions: a trained classifier scored directly on the real test split.

A checkpoint is a folder with two files (docs/RECORDS.md, section 2, kind `checkpoint`):

    model.safetensors   the image encoder's tensors under "encoder.*" and the linear head's
                        "head.weight" (n_classes, D) and "head.bias" (n_classes,)
    model.yaml          schema_version: 1
                        backbone: a name from benchmark.backbones.BACKBONES
                        backbone_config: null, or the (tiny) configuration the encoder was built from
                        head: {type: linear, n_classes: 6}
                        classes: [earthquake, wildfire, ...]   (the task's classes, in its order)
                        preprocessing: {image_size: 224, mean: [r, g, b], std: [r, g, b]}

Participants' files are never unpickled: the weights must be safetensors (checked by extension
and by the file's first bytes, so a renamed pickle or torch zip archive is refused with a message
saying so), and every tensor name and shape is checked against the registered architecture before
anything is loaded. Each refusal names the file and the problem.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml
from torch import nn

from ..backbones import BACKBONES, Backbone, ImageTransform, get_spec, load_backbone
from ..device import is_cuda, resolve_device
from ..errors import HarnessError
from ..io import atomic_write_bytes, atomic_write_text, sha256_file
from .data import DecodedImages, TestData, shared_decoded_images

log = logging.getLogger(__name__)

CHECKPOINT_SCHEMA_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.yaml"
#: Weight formats that can carry code (pickle) or that the harness does not read.
REFUSED_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".joblib", ".npz", ".h5", ".onnx")
#: Largest safetensors JSON header accepted (real headers are a few hundred KB at most).
_MAX_HEADER_BYTES = 64 * 1024 * 1024


class CheckpointModel(nn.Module):
    """Image encoder + linear head: normalised images -> class logits."""

    def __init__(self, encoder: nn.Module, head: nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images).float())


@dataclass
class LoadedCheckpoint:
    directory: Path
    backbone: Backbone
    model: CheckpointModel  # eval mode, on the backbone's device
    transform: ImageTransform
    classes: list[str]
    config: dict[str, Any]
    weights_sha256: str


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | os.PathLike,
    backbone: Backbone,
    head: nn.Linear,
    classes: Sequence[str],
    *,
    encoder: nn.Module | None = None,
) -> Path:
    """Write a valid checkpoint folder (model.safetensors + model.yaml) for `backbone` + `head`.

    `encoder` defaults to `backbone.trainable_encoder()` (pass the fine-tuned one otherwise).
    Both files are written atomically; the yaml last, so a folder with a yaml is complete.
    """
    from safetensors.torch import save

    directory = Path(directory)
    encoder = encoder if encoder is not None else backbone.trainable_encoder()
    classes = [str(c) for c in classes]
    if head.out_features != len(classes):
        raise HarnessError(f"head has {head.out_features} outputs but {len(classes)} classes were given")
    tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
    # safetensors refuses shared or non-contiguous storage: store independent contiguous copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    transform = backbone.transform
    config = {
        "schema_version": CHECKPOINT_SCHEMA_VERSION,
        "backbone": backbone.name,
        "backbone_config": backbone.random_init_config,
        "head": {"type": "linear", "n_classes": len(classes)},
        "classes": classes,
        "preprocessing": {
            "image_size": int(transform.size),
            "mean": [float(m) for m in transform.mean],
            "std": [float(s) for s in transform.std],
            "interpolation": transform.interpolation,
            "resize_mode": transform.resize_mode,
        },
    }
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"format": "pt", "synthbench": "checkpoint"}))
    atomic_write_text(directory / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    return directory


# ----------------------------------------------------------------------------------------------
# Reading and checking
# ----------------------------------------------------------------------------------------------


def _refuse(path: Path, problem: str) -> HarnessError:
    return HarnessError(f"{path}: {problem}")


def check_safetensors_file(path: Path) -> None:
    """Refuse anything but a well-formed safetensors file, by extension and by its first bytes."""
    if path.suffix != ".safetensors":
        raise _refuse(path, "weights must be a .safetensors file")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if head[:4] == b"PK\x03\x04":
            raise _refuse(path, "is a zip archive (a torch.save file), not safetensors; it is never unpickled. "
                          "Convert it with safetensors.torch.save_file(state_dict, 'model.safetensors')")
        if head[:1] == b"\x80":
            raise _refuse(path, "is a Python pickle, not safetensors; it is never unpickled. "
                          "Convert it with safetensors.torch.save_file(state_dict, 'model.safetensors')")
        if len(head) < 8:
            raise _refuse(path, f"is {size} bytes: too short to be a safetensors file")
        header_len = int.from_bytes(head, "little")
        if header_len <= 1 or header_len > min(_MAX_HEADER_BYTES, size - 8):
            raise _refuse(path, f"not a safetensors file (header length {header_len} for a {size}-byte file)")
        header = handle.read(header_len)
    try:
        parsed = json.loads(header)
    except (ValueError, UnicodeDecodeError):
        raise _refuse(path, "not a safetensors file (its header is not JSON)") from None
    if not isinstance(parsed, dict):
        raise _refuse(path, "not a safetensors file (its header is not a JSON object)")


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise _refuse(path, "missing (a checkpoint needs model.yaml beside model.safetensors)")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _refuse(path, f"not valid YAML ({exc})") from None
    if not isinstance(config, dict):
        raise _refuse(path, "must be a YAML mapping")
    return config


def _require(config: dict, key: str, kind: type | tuple[type, ...], path: Path, where: str = "") -> Any:
    label = f"{where}.{key}" if where else key
    if key not in config:
        raise _refuse(path, f"missing key {label!r}")
    value = config[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass in Python: `n_classes: true` must not pass as 1
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise _refuse(path, f"{label!r} must be a {names}, found {type(value).__name__}")
    return value


def _triple(value: Any, path: Path, label: str, positive: bool) -> tuple[float, float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )
    if not ok or (positive and min(value) <= 0):
        need = "three positive numbers" if positive else "three numbers"
        raise _refuse(path, f"{label!r} must be {need}, found {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def check_checkpoint_config(path: str | os.PathLike, task_classes: Sequence[str]) -> dict[str, Any]:
    """Check a checkpoint's model.yaml against the task (no model is built); HarnessError if wrong.

    Returns the parsed fields: backbone, backbone_config, n_classes, classes, transform, raw.
    """
    path = Path(path)
    config = _read_config(path)
    version = config.get("schema_version", CHECKPOINT_SCHEMA_VERSION)
    if version != CHECKPOINT_SCHEMA_VERSION:
        raise _refuse(path, f"schema_version {version!r} is not supported (this harness reads {CHECKPOINT_SCHEMA_VERSION})")
    name = _require(config, "backbone", str, path)
    if name not in BACKBONES:
        raise _refuse(path, f"unknown backbone {name!r}; use one of: {', '.join(BACKBONES)}")
    backbone_config = config.get("backbone_config")
    if backbone_config is not None and not isinstance(backbone_config, dict):
        raise _refuse(path, "'backbone_config' must be a mapping or null")
    head = _require(config, "head", dict, path)
    head_type = _require(head, "type", str, path, "head")
    if head_type != "linear":
        raise _refuse(path, f"head.type {head_type!r} is not supported (use 'linear')")
    n_classes = _require(head, "n_classes", int, path, "head")
    classes = _require(config, "classes", list, path)
    task_classes = list(task_classes)
    if n_classes != len(task_classes):
        raise _refuse(path, f"head.n_classes is {n_classes} but the task has {len(task_classes)} classes ({', '.join(task_classes)})")
    if [str(c) for c in classes] != task_classes:
        raise _refuse(
            path,
            f"classes {classes} differ from the task's classes {task_classes} "
            f"(names and order must match: output i is class i)",
        )
    pre = _require(config, "preprocessing", dict, path)
    image_size = _require(pre, "image_size", int, path, "preprocessing")
    if not 16 <= image_size <= 1024:
        raise _refuse(path, f"preprocessing.image_size {image_size} is outside 16..1024")
    mean = _triple(_require(pre, "mean", list, path, "preprocessing"), path, "preprocessing.mean", positive=False)
    std = _triple(_require(pre, "std", list, path, "preprocessing"), path, "preprocessing.std", positive=True)
    spec = get_spec(name)
    try:
        transform = ImageTransform(
            image_size, mean, std,
            str(pre.get("interpolation", spec.interpolation)), str(pre.get("resize_mode", spec.resize_mode)),
        )
    except HarnessError as exc:
        raise _refuse(path, f"preprocessing: {exc}") from None
    return {
        "backbone": name,
        "backbone_config": backbone_config,
        "n_classes": n_classes,
        "classes": task_classes,
        "transform": transform,
        "raw": config,
    }



def load_checkpoint(
    directory: str | os.PathLike,
    task_classes: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> LoadedCheckpoint:
    """Check and load a checkpoint folder for a task with `task_classes`; refuse anything unsafe.

    Refuses (HarnessError naming the file): a missing folder or file, weights that are not
    safetensors (pickles and torch zip archives are never opened with torch.load), missing or
    ill-typed model.yaml keys, an unknown backbone, a class count or class names that differ from
    the task's, and any tensor whose name or shape differs from the architecture's.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if not directory.is_dir():
        raise HarnessError(f"{directory}: checkpoint folder not found")
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        others = sorted(p.name for p in directory.iterdir() if p.suffix in REFUSED_WEIGHT_SUFFIXES)
        hint = (
            f"; found {', '.join(others)}: only safetensors is accepted (participant files are never unpickled)"
            if others else ""
        )
        raise _refuse(weights_path, f"missing{hint}")
    check_safetensors_file(weights_path)
    config_path = directory / CONFIG_FILE
    parsed = check_checkpoint_config(config_path, task_classes)
    transform: ImageTransform = parsed["transform"]

    torch_device = resolve_device(device)
    # The architecture only (random weights): every tensor comes from the checkpoint.
    backbone = load_backbone(
        parsed["backbone"],
        device=torch_device,
        image_size=transform.size,
        random_init_config=parsed["backbone_config"],
        architecture_only=True,
        cache_dir=cache_dir,
    )
    encoder = backbone.trainable_encoder()
    head = nn.Linear(backbone.feature_dim, parsed["n_classes"])
    model = CheckpointModel(encoder, head)

    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _refuse(weights_path, f"unreadable safetensors file ({exc})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    if wrong_shape:
        problems.append(f"shape mismatch: {'; '.join(wrong_shape[:5])}{' ...' if len(wrong_shape) > 5 else ''}")
    if problems:
        raise _refuse(
            weights_path,
            f"does not match backbone {parsed['backbone']!r} + linear head ({parsed['n_classes']} classes) at "
            f"{transform.size} px: " + "; ".join(problems),
        )
    non_finite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if non_finite:
        raise _refuse(weights_path, f"non-finite values in {', '.join(non_finite[:5])}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    model = model.to(torch_device).eval()
    backbone.transform = transform  # the checkpoint's own preprocessing
    log.info("checkpoint %s: %s + linear head (%d classes), %d tensors, %d px",
             directory, parsed["backbone"], parsed["n_classes"], len(state), transform.size)
    return LoadedCheckpoint(
        directory=directory,
        backbone=backbone,
        model=model,
        transform=transform,
        classes=parsed["classes"],
        config=parsed["raw"],
        weights_sha256=sha256_file(weights_path),
    )


@torch.no_grad()
def predict_images(
    model: nn.Module,
    backbone: Backbone,
    transform: ImageTransform,
    refs,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = False,
    image_cache: DecodedImages | None = None,
) -> np.ndarray:
    """Arg-max predictions of `model` (images -> logits) for `refs`, in order (eval preprocessing).

    Images are decoded once per process: `image_cache` (default: the process-wide
    `shared_decoded_images()`, keyed by `transform` and SHA-256) serves the test split to every
    later run and submission; `DecodedImages(0)` decodes afresh. Predictions stay on the device
    until the last batch (one transfer: reading each batch back would stall the GPU every time).
    """
    from tqdm.auto import tqdm

    refs = list(refs)
    if not refs:
        return np.zeros(0, dtype=np.int64)
    device = backbone.device
    cache = image_cache if image_cache is not None else shared_decoded_images()
    model.eval()
    predictions: list[torch.Tensor] = []
    batches = cache.batches(refs, transform, batch_size=batch_size, num_workers=num_workers, pin_memory=is_cuda(device))
    total = math.ceil(len(refs) / batch_size)
    for batch in tqdm(batches, total=total, desc="predicting", unit="batch", disable=not progress):
        x = backbone.prepare_input(transform.normalize(batch.to(device, non_blocking=True)))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=is_cuda(device)):
            logits = model(x)
        predictions.append(logits.float().argmax(dim=1))
    return torch.cat(predictions).cpu().numpy().astype(np.int64)


def score_checkpoint(
    directory: str | os.PathLike,
    task_classes: Sequence[str],
    test: TestData,
    device: str | torch.device = "cpu",
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    image_cache: DecodedImages | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Load a checkpoint (refusing unsafe or mismatched ones) and predict the test split.

    `image_cache`: see `predict_images` (the test split is decoded once per process)."""
    start = time.perf_counter()
    loaded = load_checkpoint(directory, task_classes, device=device, cache_dir=cache_dir)
    predictions = predict_images(
        loaded.model, loaded.backbone, loaded.transform, test.refs,
        batch_size=batch_size, num_workers=num_workers, progress=progress, image_cache=image_cache,
    )
    params = {
        "backbone": loaded.backbone.name,
        "checkpoint_sha256": loaded.weights_sha256,
        "preprocessing": loaded.transform.recipe,
        "n_parameters": int(sum(p.numel() for p in loaded.model.parameters())),
        "seconds": round(time.perf_counter() - start, 3),
    }
    return predictions, params


__all__ = [
    "CHECKPOINT_SCHEMA_VERSION",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "CheckpointModel",
    "LoadedCheckpoint",
    "check_checkpoint_config",
    "check_safetensors_file",
    "load_checkpoint",
    "predict_images",
    "save_checkpoint",
    "score_checkpoint",
]
