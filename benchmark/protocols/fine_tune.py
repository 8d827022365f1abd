"""The fine-tune protocol: end-to-end training of the image encoder and a linear head.

Recipe (benchmark.protocol.PROTOCOLS["fine-tune"]; a `recipe` dict overrides single keys):

* a FIXED number of training images seen (`images_seen`), whatever the size of the training set:
  `ceil(images_seen / batch_size)` steps over concatenated shuffled passes of the set, so `real`
  (600 images) and `mixed@4` (3000 images) get the same compute and differ only in data;
* AdamW, separate learning rates for the encoder (`lr_backbone`) and the head (`lr_head`), weight
  decay on weight matrices only (not on biases and normalisation parameters), linear warm-up over
  `warmup_fraction` of the steps then cosine decay to zero;
* soft-label cross-entropy (Mixup-style submissions carry soft labels);
* classic augmentation on the fly on uint8 tensors (torchvision.transforms.v2): random resized crop,
  horizontal and vertical flips, rotations by multiples of 90 degrees (overhead imagery has no
  "up"), brightness/contrast/saturation jitter; evaluation uses the backbone's deterministic preprocessing only;
* on CUDA: bf16 autocast and fused AdamW; on CPU: float32 and deterministic for a given seed.

Training images are decoded at the backbone's input size and kept as uint8 tensors; augmentation
then runs per sample on every step (in DataLoader workers when `num_workers` > 0). Decoded images
are kept in a process-wide, size-bounded cache (`DecodedImages`, keyed by preprocessing and image
SHA-256): the runs of a grid (settings x ratios x seeds, and the next submission's real images)
decode each image once, and so does the test split they are all scored on. On CUDA the loop also
never waits for the GPU within a step: losses stay on the device and are checked for finiteness
every `_CUDA_CHECK_EVERY` steps; test predictions come back in one transfer.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from ..backbones import Backbone, load_backbone
from ..device import encoding_defaults, is_cuda, resolve_device
from ..errors import HarnessError
from ..protocol import PROTOCOLS
from .checkpoint import CheckpointModel, predict_images, save_checkpoint
from .data import DecodedImages, TestData, TrainData, shared_decoded_images

log = logging.getLogger(__name__)

#: Augmentation used when the recipe has no "augmentation" entry. (The protocol registry is the
#: place for it; this default keeps the recipe complete until it is listed there.)
#: The registry's augmentation recipe (benchmark.protocol.PROTOCOLS["fine-tune"]["augmentation"]).
DEFAULT_AUGMENTATION: dict[str, Any] = PROTOCOLS["fine-tune"]["augmentation"]
_REQUIRED_KEYS = ("images_seen", "batch_size", "lr_backbone", "lr_head", "weight_decay", "warmup_fraction")
#: On CUDA, losses are read back (a synchronisation) once per this many steps, not every step.
_CUDA_CHECK_EVERY = 25


def resolve_recipe(recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registry's fine-tune recipe with `recipe`'s keys overriding it, checked."""
    merged = {k: v for k, v in PROTOCOLS["fine-tune"].items() if k not in ("description", "ranking")}
    merged.setdefault("augmentation", DEFAULT_AUGMENTATION)
    merged.update(recipe or {})
    missing = [k for k in _REQUIRED_KEYS if k not in merged]
    if missing:
        raise HarnessError(f"fine-tune recipe lacks {', '.join(missing)}")
    if int(merged["images_seen"]) < 1 or int(merged["batch_size"]) < 1:
        raise HarnessError("fine-tune recipe: images_seen and batch_size must be >= 1")
    if not 0 <= float(merged["warmup_fraction"]) < 1:
        raise HarnessError("fine-tune recipe: warmup_fraction must lie in [0, 1)")
    return merged


class RandomRot90(nn.Module):
    """Rotate a (..., H, W) tensor by k * 90 degrees, k uniform in {0, 1, 2, 3} (exact, lossless)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(0, 4, ()).item())
        return torch.rot90(image, k, dims=(-2, -1)) if k else image


def build_augmentation(size: int, params: dict[str, Any]) -> v2.Compose:
    """Per-sample training augmentation on (3, S, S) uint8 tensors, output (3, size, size) uint8."""
    steps: list[nn.Module] = [
        v2.RandomResizedCrop(size, scale=tuple(params["crop_scale"]), antialias=True),
        v2.RandomHorizontalFlip(params["hflip"]),
        v2.RandomVerticalFlip(params["vflip"]),
    ]
    if params.get("rot90"):
        steps.append(RandomRot90())
    steps.append(
        v2.ColorJitter(
            brightness=params["brightness"], contrast=params["contrast"],
            saturation=params["saturation"], hue=params["hue"],
        )
    )
    return v2.Compose(steps)


class _AugmentedSamples(Dataset):
    """Item i: augmented image and soft target of training sample order[i]."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, order: np.ndarray, augment: v2.Compose):
        self.images, self.targets, self.order, self.augment = images, targets, order, augment

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = int(self.order[i])
        return self.augment(self.images[j]), self.targets[j]


def _decode_all(
    backbone: Backbone, refs: Sequence, num_workers: int, cache: DecodedImages, batch_size: int = 64
) -> torch.Tensor:
    """Every ref at the backbone's input size: (N, 3, S, S) uint8 on the CPU, in the order of `refs`.

    Images in `cache` are not decoded again; the others are decoded (and SHA-256-checked) once each,
    duplicates included, and offered to the cache.
    """
    from ..features import image_loader

    key = backbone.transform.id
    images: dict[str, torch.Tensor] = {}
    missing: dict[str, Any] = {}
    for ref in refs:
        if ref.sha256 in images or ref.sha256 in missing:
            continue
        cached = cache.get(key, ref.sha256)
        if cached is None:
            missing[ref.sha256] = ref
        else:
            images[ref.sha256] = cached
    if missing:
        loader = image_loader(
            list(missing.values()), backbone.transform, batch_size=batch_size, num_workers=num_workers
        )
        shas = iter(missing)
        for batch in loader:
            for image in batch:
                sha = next(shas)
                images[sha] = image
                cache.put(key, sha, image)
    log.info("fine-tune images: %d decoded, %d from memory", len(missing), len(images) - len(missing))
    return torch.stack([images[ref.sha256] for ref in refs])


def _check_losses(losses: torch.Tensor, first_step: int, name: str) -> None:
    """Raise if any loss (steps first_step, first_step + 1, ...) is not finite (reads them back)."""
    finite = torch.isfinite(losses)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise HarnessError(f"fine-tuning {name}: loss became {losses[bad].item()} at step {first_step + bad}")


def _sample_order(n: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """`total` sample indices: concatenated random permutations of range(n) (epochs), truncated."""
    passes = math.ceil(total / n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:total]


def _param_groups(encoder: nn.Module, head: nn.Module, recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """Decay on weight matrices/kernels only; biases, norms, embeddings' scalars are not decayed."""
    groups = []
    for module, lr in ((encoder, float(recipe["lr_backbone"])), (head, float(recipe["lr_head"]))):
        params = [p for p in module.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups.append({"params": decay, "lr": lr, "weight_decay": float(recipe["weight_decay"])})
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def _warmup_cosine(steps: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train_classifier(
    backbone: Backbone,
    train: TrainData,
    *,
    n_classes: int,
    seed: int,
    recipe: dict[str, Any] | None = None,
    num_workers: int | None = 0,
    progress: bool = True,
    image_cache: DecodedImages | None = None,
) -> tuple[nn.Module, nn.Linear, dict[str, Any]]:
    """Fine-tune `backbone`'s image encoder + a new linear head on `train`; returns both and params.

    The encoder is trained in place: afterwards `backbone.weights_id` is replaced by a unique
    `fine-tuned-...` id, so its features can never be cached as the pretrained model's.
    Deterministic on CPU for a given seed (and num_workers); the global RNG state is restored.
    `num_workers` None: the device's default (`benchmark.device.encoding_defaults`: none on the
    CPU, up to 8 on CUDA, where per-sample augmentation in the main process would starve the GPU).
    `image_cache`: where decoded training images are kept between runs (default: the process-wide
    `shared_decoded_images()`; `DecodedImages(0)` decodes every run afresh).
    """
    recipe = resolve_recipe(recipe)
    if train.n_classes != n_classes:
        raise HarnessError(f"training targets have {train.n_classes} classes, the task has {n_classes}")
    device = backbone.device
    cuda = is_cuda(device)
    _, num_workers = encoding_defaults(device, None, num_workers)
    batch_size = int(recipe["batch_size"])
    steps = math.ceil(int(recipe["images_seen"]) / batch_size)
    warmup = max(1, round(float(recipe["warmup_fraction"]) * steps))
    start = time.perf_counter()

    decoded = image_cache if image_cache is not None else shared_decoded_images()
    images = _decode_all(backbone, train.refs, num_workers, decoded)
    targets = torch.from_numpy(train.targets)
    rng_devices = [device] if cuda else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        order = _sample_order(len(train), steps * batch_size, rng)
        encoder = backbone.trainable_encoder()
        for parameter in encoder.parameters():
            parameter.requires_grad_(True)
        head = nn.Linear(backbone.feature_dim, n_classes).to(device)
        optimizer = torch.optim.AdamW(_param_groups(encoder, head, recipe), fused=cuda or None)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps, warmup))
        augment = build_augmentation(backbone.image_size, recipe["augmentation"])
        loader = DataLoader(
            _AugmentedSamples(images, targets, order, augment),
            batch_size=batch_size,
            shuffle=False,  # the order is already the seeded sample order
            num_workers=num_workers,
            pin_memory=cuda,
            drop_last=False,
            generator=torch.Generator().manual_seed(seed),  # seeds the workers' augmentation RNGs
            persistent_workers=False,
        )
        encoder.train()
        head.train()
        # Losses stay on the device: reading one back every step would stall the GPU each time.
        step_losses = torch.zeros(steps, dtype=torch.float32, device=device)
        check_every = _CUDA_CHECK_EVERY if cuda else 1
        checked = 0
        batches = tqdm(loader, total=steps, desc=f"fine-tuning {backbone.name}", unit="step", disable=not progress)
        for step, (x, y) in enumerate(batches):
            x = backbone.prepare_input(backbone.transform.normalize(x.to(device, non_blocking=True)))
            y = y.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = head(encoder(x).float())
            loss = F.cross_entropy(logits.float(), y)  # probabilities as targets: soft-label CE
            step_losses[step] = loss.detach()
            if step + 1 - checked >= check_every:  # on the CPU: every step, before its update
                _check_losses(step_losses[checked : step + 1], checked, backbone.name)
                checked = step + 1
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        _check_losses(step_losses[checked:], checked, backbone.name)
        losses = step_losses.tolist()
    encoder.eval()
    head.eval()
    backbone.weights_id = f"fine-tuned-{uuid.uuid4().hex[:12]}"
    tail = max(1, len(losses) // 10)
    params = {
        "images_seen": steps * batch_size,
        "steps": steps,
        "batch_size": batch_size,
        "warmup_steps": warmup,
        "lr_backbone": float(recipe["lr_backbone"]),
        "lr_head": float(recipe["lr_head"]),
        "weight_decay": float(recipe["weight_decay"]),
        "augmentation": dict(recipe["augmentation"]),
        "n_train": len(train),
        "epochs": round(steps * batch_size / len(train), 3),
        "loss_first": round(float(np.mean(losses[:tail])), 6),
        "loss_last": round(float(np.mean(losses[-tail:])), 6),
        "seconds_training": round(time.perf_counter() - start, 3),
    }
    log.info(
        "fine-tuned %s on %d images (seed %d): %d steps, loss %.4f -> %.4f in %.1f s",
        backbone.name, len(train), seed, steps, params["loss_first"], params["loss_last"], params["seconds_training"],
    )
    return encoder, head, params


def fine_tune_predict(
    backbone_name: str,
    train: TrainData,
    test: TestData,
    *,
    n_classes: int,
    seed: int,
    recipe: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    weights: str | os.PathLike | None = None,
    image_size: int | None = None,
    random_init_config: dict | None = None,
    progress: bool = True,
    num_workers: int | None = 0,
    cache_dir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    image_cache: DecodedImages | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fine-tune a fresh copy of `backbone_name` on `train`, predict `test`: (predictions, params).

    `recipe` overrides keys of PROTOCOLS["fine-tune"] (tests use a small `images_seen`).
    With `checkpoint_dir` (and `classes`), the trained model is also saved as a checkpoint
    submission (model.safetensors + model.yaml). `num_workers` and `image_cache`: see
    `train_classifier`; the cache serves the test split too (`predict_images`), so every run after
    the first decodes no test image.
    """
    if checkpoint_dir is not None and classes is None:
        raise HarnessError("fine_tune_predict: saving a checkpoint needs the task's classes")
    backbone = load_backbone(
        backbone_name,
        weights=weights,
        device=resolve_device(device),
        image_size=image_size,
        random_init_config=random_init_config,
        cache_dir=cache_dir,
    )
    pretrained_id = backbone.weights_id
    _, num_workers = encoding_defaults(backbone.device, None, num_workers)
    encoder, head, params = train_classifier(
        backbone, train, n_classes=n_classes, seed=seed, recipe=recipe, num_workers=num_workers, progress=progress,
        image_cache=image_cache,
    )
    model = CheckpointModel(encoder, head)
    predictions = predict_images(
        model, backbone, backbone.transform, test.refs, num_workers=num_workers, progress=False,
        image_cache=image_cache,
    )
    params["weights_id"] = pretrained_id  # the starting point of fine-tuning
    params["preprocessing"] = backbone.preprocessing_id
    if checkpoint_dir is not None:
        save_checkpoint(Path(checkpoint_dir), backbone, head, list(classes), encoder=encoder)
    return predictions, params


__all__ = [
    "DEFAULT_AUGMENTATION",
    "build_augmentation",
    "fine_tune_predict",
    "resolve_recipe",
    "shared_decoded_images",
    "train_classifier",
]
