"""Baseline "generators": what a generative model has to beat, made from the real train images.

Each writes a valid open-track submission with `multiplier` x (real images per class) images per
class, deterministically for a seed (the same seed gives byte-identical folders):

* `classic`: flips, 90-degree rotations, scale/crop, translation, colour jitter, Gaussian noise and
  cutout (torchvision transforms v2 on PIL images);
* `mixup` (Zhang et al., 2018): lambda * A + (1 - lambda) * B with the soft label
  lambda * label_A + (1 - lambda) * label_B;
* `cutmix` (Yun et al., 2019): a box of B pasted into A, lambda = the area left to A, same soft label;
* `duplicate`: the real images themselves, repeated ("more of the same").

For mixup and cutmix, B always comes from another class, so every label is genuinely soft, and
lambda ~ Beta(1, 1) is folded onto [0.5, 1) (lambda <- max(lambda, 1 - lambda)) so that A's class
keeps the larger weight: an image made for class c counts towards c, and each class gets exactly
its share. Rows carry `sources` (the train image ids mixed) and `lambda` as extra columns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..errors import SynthbenchError
from ..io import atomic_directory
from ..protocol import lookup
from ..registry import BASELINES  # the baseline registry (names and descriptions), plain data
from .common import SubmissionWriter, derived_seed, harness_generator, rng_for, submission_meta, team_and_method

log = logging.getLogger(__name__)

#: Classic augmentation strengths (one place; the docs quote them).
CLASSIC_RECIPE: dict[str, Any] = {
    "crop_scale": (0.6, 1.0),  # RandomResizedCrop area fraction
    "crop_ratio": (3 / 4, 4 / 3),
    "translate": (0.1, 0.1),  # RandomAffine fraction of width/height
    "brightness": 0.3,
    "contrast": 0.3,
    "saturation": 0.3,
    "hue": 0.05,
    "noise_sigma": 0.03,  # on [0, 1] pixels
    "noise_p": 0.5,
    "cutout_p": 0.5,
    "cutout_scale": (0.02, 0.15),  # area fraction of the erased box
}


def _class_images(task) -> dict[str, list[tuple[str, bytes]]]:
    """(image_id, PNG bytes) of each class's train_real images, in split order."""
    refs = task.image_refs("train_real")
    labels = task.labels("train_real")
    grouped: dict[str, list[tuple[str, bytes]]] = {name: [] for name in task.classes}
    for ref, label in zip(refs, labels):
        grouped[task.classes[int(label)]].append((ref.name, ref.read_bytes()))
    empty = [name for name, images in grouped.items() if not images]
    if empty:
        raise SynthbenchError(f"task {task.name}: no train_real images for class(es) {', '.join(empty)}")
    return grouped


def _open(image_id: str, data: bytes) -> Image.Image:
    from ..images import open_rgb

    return open_rgb(data, name=image_id)


# ----------------------------------------------------------------------------------------------
# classic
# ----------------------------------------------------------------------------------------------


def classic_transform(size: tuple[int, int]):
    """The classic augmentation pipeline for images of (height, width) `size` (PIL in, PIL out)."""
    import torch
    from torchvision.transforms import v2

    r = CLASSIC_RECIPE
    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomChoice([v2.RandomRotation((angle, angle)) for angle in (0, 90, 180, 270)]),
        v2.RandomResizedCrop(size, scale=r["crop_scale"], ratio=r["crop_ratio"], antialias=True),
        v2.RandomAffine(degrees=0, translate=r["translate"]),
        v2.ColorJitter(r["brightness"], r["contrast"], r["saturation"], r["hue"]),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomApply([v2.GaussianNoise(sigma=r["noise_sigma"], clip=True)], p=r["noise_p"]),
        v2.RandomErasing(p=r["cutout_p"], scale=r["cutout_scale"], value=0.0),
        v2.ToDtype(torch.uint8, scale=True),
        v2.ToPILImage(),
    ])


def _classic(task, writer: SubmissionWriter, multiplier: int, seed: int) -> None:
    import torch

    for class_name, images in _class_images(task).items():
        for image_id, data in images:
            image = _open(image_id, data)
            transform = classic_transform((image.height, image.width))
            for j in range(multiplier):
                # v2 transforms draw from the global torch RNG: seed it per output, restore it after.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(derived_seed(seed, "classic", image_id, j))
                    out = transform(image)
                writer.add(
                    f"images/{class_name}/{image_id}__classic{j}.png", out,
                    label=class_name, source_id=image_id, prompt="",
                )


# ----------------------------------------------------------------------------------------------
# mixup / cutmix
# ----------------------------------------------------------------------------------------------


def _folded_lambda(rng: np.random.Generator) -> float:
    lam = float(rng.beta(1.0, 1.0))
    return max(lam, 1.0 - lam)


def _mixup_pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    lam = _folded_lambda(rng)
    mixed = lam * a.astype(np.float64) + (1.0 - lam) * b.astype(np.float64)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8), lam


def _cutmix_pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Paste a box of `b` into `a`; lambda is the exact fraction of `a`'s pixels left, in (0.5, 1)."""
    height, width = a.shape[:2]
    for _ in range(100):
        side = np.sqrt(1.0 - _folded_lambda(rng))
        box_h = int(round(height * side))
        box_w = int(round(width * side))
        lam = 1.0 - (box_h * box_w) / (height * width)
        if box_h >= 1 and box_w >= 1 and 0.5 < lam < 1.0:
            break
    else:  # pragma: no cover - needs 100 draws of a box under one pixel or over half the image
        raise SynthbenchError("cutmix: could not draw a valid box")
    top = int(rng.integers(0, height - box_h + 1))
    left = int(rng.integers(0, width - box_w + 1))
    out = a.copy()
    out[top : top + box_h, left : left + box_w] = b[top : top + box_h, left : left + box_w]
    return out, lam


def _mixing(kind: str, combine: Callable) -> Callable:
    def generate(task, writer: SubmissionWriter, multiplier: int, seed: int) -> None:
        grouped = _class_images(task)
        if len(grouped) < 2:
            raise SynthbenchError(f"{kind} needs at least two classes (task {task.name} has {len(grouped)})")
        for class_name, images in grouped.items():
            others = [(c, item) for c, items in grouped.items() if c != class_name for item in items]
            for index in range(multiplier * len(images)):
                rng = rng_for(seed, kind, class_name, index)
                a_id, a_data = images[index % len(images)]
                b_class, (b_id, b_data) = others[int(rng.integers(len(others)))]
                a = _open(a_id, a_data)
                b = _open(b_id, b_data)
                if b.size != a.size:
                    b = b.resize(a.size, Image.Resampling.BICUBIC)
                mixed, lam = combine(np.asarray(a), np.asarray(b), rng)
                writer.add(
                    f"images/{class_name}/{kind}-{index:05d}.png", Image.fromarray(mixed),
                    label={class_name: lam, b_class: 1.0 - lam}, source_id=a_id, prompt="",
                    sources=[a_id, b_id], **{"lambda": lam},
                )

    return generate


# ----------------------------------------------------------------------------------------------
# duplicate
# ----------------------------------------------------------------------------------------------


def _duplicate(task, writer: SubmissionWriter, multiplier: int, seed: int) -> None:
    del seed  # copies involve no randomness
    for class_name, images in _class_images(task).items():
        for image_id, data in images:
            name = f"images/{class_name}/{image_id}.png"
            writer.add(name, data, label=class_name, source_id=image_id, prompt="")
            for _ in range(multiplier - 1):
                writer.add_reference(name, label=class_name, source_id=image_id, prompt="")


_GENERATE: dict[str, Callable] = {
    "classic": _classic,
    "mixup": _mixing("mixup", _mixup_pair),
    "cutmix": _mixing("cutmix", _cutmix_pair),
    "duplicate": _duplicate,
}


def generate_baseline(
    name: str,
    task,
    out_dir: str | Path,
    *,
    multiplier: int = 4,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write baseline `name`'s submission for `task` into `out_dir` (built aside, moved in when complete).

    Its id is `out_dir`'s name (`<team>__<method>`, e.g. baseline__classic)."""
    lookup(BASELINES, name, "baseline")
    if not 1 <= int(multiplier) <= 16:
        raise SynthbenchError(f"multiplier must be between 1 and 16 (got {multiplier})")
    out_dir = Path(out_dir)
    team, method = team_and_method(out_dir, "baseline", name)
    meta = submission_meta(
        team=team,
        method=method,
        track="open",
        generator=harness_generator(f"{name}-baseline", BASELINES[name]),
        task={"name": task.name, "revision": task.revision},
        licence=str(task.info.get("licence") or "same as the task"),
        baseline=name,
        notes=f"made by `synthbench generate {name}` with multiplier {multiplier} and seed {seed}",
    )
    with atomic_directory(out_dir, overwrite=overwrite, replaces=("submission.yaml", "a submission folder")) as tmp:
        writer = SubmissionWriter(tmp, meta, resume=False)
        _GENERATE[name](task, writer, int(multiplier), int(seed))
        log.info("%s: %d images written", out_dir, len(writer))
    return out_dir
