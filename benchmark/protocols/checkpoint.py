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
saying so), and every tensor name, shape and dtype is checked against the registered architecture
before anything is loaded, by `benchmark.submissions.checkpoints.check_checkpoint`, the check
`synthbench validate` runs too. Each refusal names the file and the problem.
"""

from __future__ import annotations

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

from ..backbones import Backbone, ImageTransform
from ..device import is_cuda, resolve_device
from ..errors import HarnessError
from ..io import atomic_write_bytes, atomic_write_text, sha256_file

# The checks live with the submission format: `synthbench validate` runs the very same ones.
from ..submissions.checkpoints import (  # re-exported: the checkpoint format's names
    CHECKPOINT_SCHEMA_VERSION,
    CONFIG_FILE,
    REFUSED_WEIGHT_SUFFIXES,
    WEIGHTS_FILE,
    CheckpointModel,
    check_checkpoint,
    check_checkpoint_config,
    check_safetensors_file,
)
from .data import DecodedImages, TestData, shared_decoded_images

log = logging.getLogger(__name__)


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
# Reading (checked by benchmark.submissions.checkpoints.check_checkpoint, as validate does)
# ----------------------------------------------------------------------------------------------


def load_checkpoint(
    directory: str | os.PathLike,
    task_classes: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> LoadedCheckpoint:
    """Check and load a checkpoint folder for a task with `task_classes`; refuse anything unsafe.

    Refuses (HarnessError naming the file) whatever `check_checkpoint` refuses: a missing folder
    or file, weights that are not safetensors (pickles and torch zip archives are never opened
    with torch.load), missing or ill-typed model.yaml keys, an unknown backbone or backbone_config,
    a class count or class names that differ from the task's, any tensor whose name, shape or
    dtype differs from the architecture's, and non-finite weights.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    # The same check as `synthbench validate`'s (which builds the architecture on the CPU).
    torch_device = resolve_device(device)
    checked = check_checkpoint(directory, task_classes, device=torch_device, cache_dir=cache_dir)
    weights_path, parsed, backbone, model = checked.weights_path, checked.config, checked.backbone, checked.model
    transform: ImageTransform = parsed["transform"]
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _refuse(weights_path, f"unreadable safetensors file ({exc})") from None
    expected = model.state_dict()
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


def _refuse(path: Path, problem: str) -> HarnessError:
    return HarnessError(f"{path}: {problem}")


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
    "REFUSED_WEIGHT_SUFFIXES",
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
