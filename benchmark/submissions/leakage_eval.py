"""Measuring the leakage gate: recall on near-copies of reference images, false rejections of
distinct images. Shared by `benchmarks/test_leakage_bench.py` and `tests/test_validate_leakage.py`.

Near-copies are made with the transformations the gate must see through, each at random strength
up to the limit the gate promises (docs/SUBMITTING.md): a random dihedral transform (flips and
90-degree rotations), a crop to 70-75 % of the side, resizing by 0.5-2x, JPEG re-encoding at
quality 30-95, colour jitter (brightness, contrast, saturation +/-30 %), Gaussian noise of sigma 2-10
(of 255); `combo` chains all of them at moderate strength and `all` chains all of them at full
strength (a stress case beyond the promise).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance

from ..images import ImageRef, encode_png
from ..io import sha256_bytes
from ..nearcopy import ReferenceGroup, dihedral, find_near_copies, query_signature, reference_index


def _flip(image: Image.Image, rng: random.Random) -> Image.Image:
    """A mirror: left-right, top-bottom, or along a diagonal (dihedral transforms 4-7)."""
    return dihedral(image, rng.randrange(4, 8))


def _rotation(image: Image.Image, rng: random.Random) -> Image.Image:
    """A quarter, half or three-quarter turn."""
    return dihedral(image, rng.randrange(1, 4))


def _dihedral(image: Image.Image, rng: random.Random) -> Image.Image:
    return dihedral(image, rng.randrange(1, 8))


def _crop(image: Image.Image, rng: random.Random, low: float = 0.70, high: float = 0.75) -> Image.Image:
    fraction = rng.uniform(low, high)
    width, height = max(1, round(image.width * fraction)), max(1, round(image.height * fraction))
    left, top = rng.randint(0, image.width - width), rng.randint(0, image.height - height)
    return image.crop((left, top, left + width, top + height))


def _resize(image: Image.Image, rng: random.Random, low: float = 0.5, high: float = 2.0) -> Image.Image:
    scale = rng.uniform(low, high)
    size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _jpeg(image: Image.Image, rng: random.Random, low: int = 30) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(low, 95))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _jitter(image: Image.Image, rng: random.Random, amount: float = 0.3) -> Image.Image:
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(rng.uniform(1 - amount, 1 + amount))
    return image


def _noise(image: Image.Image, rng: random.Random, high: float = 10.0) -> Image.Image:
    noise_rng = np.random.default_rng(rng.randrange(1 << 30))
    array = np.asarray(image, dtype=np.float32)
    array = array + noise_rng.normal(0.0, rng.uniform(2.0, high), array.shape)
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))


def _cutout(image: Image.Image, rng: random.Random, low: float = 0.02, high: float = 0.15) -> Image.Image:
    """A black box of 2-15 % of the area, aspect 0.3-3.3, anywhere (the classic baseline's erasing)."""
    area = rng.uniform(low, high) * image.width * image.height
    aspect = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
    width = int(min(image.width, max(1, round((area * aspect) ** 0.5))))
    height = int(min(image.height, max(1, round((area / aspect) ** 0.5))))
    left, top = rng.randint(0, image.width - width), rng.randint(0, image.height - height)
    array = np.asarray(image).copy()
    array[top : top + height, left : left + width] = 0
    return Image.fromarray(array)


def _padding(image: Image.Image, rng: random.Random, high: float = 0.15) -> Image.Image:
    """Black borders of 0-15 % of the side on each side, independently (padding, letterboxing)."""
    left, right, top, bottom = (round(rng.uniform(0, high) * side) for side in (image.width, image.width, image.height, image.height))
    canvas = Image.new("RGB", (image.width + left + right, image.height + top + bottom))
    canvas.paste(image, (left, top))
    return canvas


def _chain(strong: bool) -> Callable[[Image.Image, random.Random], Image.Image]:
    def apply(image: Image.Image, rng: random.Random) -> Image.Image:
        image = _dihedral(image, rng)
        image = _crop(image, rng, 0.70 if strong else 0.85, 1.0)
        image = _resize(image, rng, 0.5 if strong else 0.75, 2.0 if strong else 1.5)
        image = _jitter(image, rng, 0.3 if strong else 0.15)
        image = _noise(image, rng, 10.0 if strong else 5.0)
        return _jpeg(image, rng, 30 if strong else 60)

    return apply


#: name -> near-copy maker (image, rng) -> image: the transformations the gate promises to see
#: through, each at random strength up to its limit (docs/SUBMITTING.md section 4), then `noise`
#: and `combo` (all of the first six chained at moderate strength).
NEAR_COPIES: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "flip": _flip,
    "rotation": _rotation,
    "crop": _crop,
    "jpeg": _jpeg,
    "colour": _jitter,
    "rescale": _resize,
    "cutout": _cutout,
    "padding": _padding,
    "noise": _noise,
    "combo": _chain(strong=False),
}
#: The transformations the gate promises to see through (docs/SUBMITTING.md section 4).
PROMISED: tuple[str, ...] = ("flip", "rotation", "crop", "jpeg", "colour", "rescale", "cutout", "padding")
#: Beyond the promise: every transformation at its limit at once (reported, not a target).
STRESS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {"all": _chain(strong=True)}


@dataclass
class GateMeasurement:
    n_references: int
    n_negatives: int
    recall: dict[str, float] = field(default_factory=dict)  # per near-copy kind: flagged fraction
    correct_reference: dict[str, float] = field(default_factory=dict)  # flagged against its own source
    false_rejection_rate: float = 0.0
    false_rejections: list[str] = field(default_factory=list)
    seconds_per_query: float = 0.0
    #: Near-copies not flagged: "<kind> of <source>: <its scores against the source>".
    misses: list[str] = field(default_factory=list)
    #: The cascade's stage counts (`GateResult.stages`) summed over every query, near-copies included.
    stages: dict[str, int] = field(default_factory=dict)

    @property
    def pooled_recall(self) -> float:
        return float(np.mean(list(self.recall.values()))) if self.recall else 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v:.3f}" for k, v in self.recall.items())
        return (
            f"leakage gate on {self.n_references} references: recall {self.pooled_recall:.4f} ({kinds}); "
            f"false rejections {self.false_rejection_rate:.4f} of {self.n_negatives} distinct images; "
            f"{self.seconds_per_query * 1000:.0f} ms per query; cascade: "
            + ", ".join(f"{stage} {n}" for stage, n in self.stages.items())
        )


def _as_ref(image: Image.Image, name: str) -> ImageRef:
    data = encode_png(image)
    return ImageRef(sha256_bytes(data), data, name=name)


def measure_gate(
    references: Sequence[ImageRef],
    negatives: Sequence[ImageRef],
    embedder,
    *,
    kinds: Sequence[str] = tuple(NEAR_COPIES),
    seed: int = 0,
    cache_dir=None,
    progress: bool = False,
    sources: Sequence[ImageRef] | None = None,
) -> GateMeasurement:
    """Recall of the gate on near-copies of `sources` (default: every reference) among
    `references`, and its false rejections of `negatives`."""
    import time

    from ..nearcopy import _ReferenceTensors, geometry_score

    group = ReferenceGroup("test", references, [""] * len(references))
    index = reference_index([group], embedder, embedder_id=embedder.id, cache_dir=cache_dir, progress=progress)
    result = GateMeasurement(len(references), len(negatives))
    sources = list(references if sources is None else sources)
    source_images = [ref.open() for ref in sources]
    n_queries, seconds = 0, 0.0

    def run(queries: list[ImageRef], images: list[Image.Image]):
        nonlocal n_queries, seconds
        embeddings = embedder(queries, progress)
        start = time.perf_counter()
        signatures = [query_signature(im) for im in images]
        found = find_near_copies(index, signatures, embeddings)
        seconds += time.perf_counter() - start
        n_queries += len(queries)
        for stage, n in found.stages.items():
            result.stages[stage] = result.stages.get(stage, 0) + n
        return {m.query: m for m in found.matches}, signatures, embeddings

    rows = {name: row for row, name in enumerate(index.ids)}
    tensors = _ReferenceTensors(index)
    makers = dict(NEAR_COPIES, **STRESS)
    for kind in kinds:
        rng = random.Random(f"{seed}:{kind}")
        images = [makers[kind](source.convert("RGB"), rng) for source in source_images]
        queries = [_as_ref(image, f"{ref.name}#{kind}") for image, ref in zip(images, sources)]
        matches, signatures, embeddings = run(queries, images)
        result.recall[kind] = len(matches) / len(images)
        result.correct_reference[kind] = sum(m.reference_id == sources[i].name for i, m in matches.items()) / len(images)
        for i in sorted(set(range(len(images))) - set(matches)):
            j = rows[sources[i].name]
            cosine = float(embeddings[i] @ index.embeddings[j] / max(1e-12, float(np.linalg.norm(embeddings[i]))))
            result.misses.append(
                f"{kind} of {sources[i].name}: match score {geometry_score(index, tensors, signatures[i], j):.3f}, "
                f"pHash distance {int(signatures[i].distances(index.hashes[j]))}, cosine {cosine:.3f}"
            )
    if not negatives:
        result.seconds_per_query = seconds / max(1, n_queries)
        return result
    negative_images = [ref.open() for ref in negatives]
    matches, _, _ = run(list(negatives), negative_images)
    result.false_rejection_rate = len(matches) / max(1, len(negatives))
    result.false_rejections = [f"{negatives[i].name} ~ {m.reference_id} ({m.describe()})" for i, m in matches.items()]
    result.seconds_per_query = seconds / max(1, n_queries)
    return result


def aid6_split(root, *, references_per_class: int, negatives_per_class: int, seed: int = 0):
    """(references, negatives): disjoint, seeded samples of each AID class folder, as ImageRefs."""
    from pathlib import Path

    from ..io import sha256_file

    rng = random.Random(seed)
    references, negatives = [], []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.jpg"))
        rng.shuffle(files)
        chosen = files[: references_per_class + negatives_per_class]
        refs = [ImageRef(sha256_file(p), p, name=f"{folder.name}/{p.name}") for p in chosen]
        references += refs[:references_per_class]
        negatives += refs[references_per_class:]
    return references, negatives


def pixel_copies(queries: Sequence[ImageRef], references: Sequence[ImageRef], *, min_ncc: float = 0.98) -> dict[int, str]:
    """{query row: reference name} for the queries that are pixel copies of a reference (full-frame
    NCC of 32-px grayscale thumbnails >= min_ncc, upright): copies a dataset itself holds, found
    without the gate, so that a measurement can set them apart from genuine distinct images."""
    from ..nearcopy import gray_thumb

    def units(refs):
        x = np.stack([gray_thumb(r.open(), 32).flatten() for r in refs]).astype(np.float64)
        x -= x.mean(axis=1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)

    if not queries or not references:
        return {}
    ncc = units(queries) @ units(references).T
    best = ncc.argmax(axis=1)
    return {q: references[int(best[q])].name for q in np.flatnonzero(ncc.max(axis=1) >= min_ncc).tolist()}


def deduplicated_imagefolder_task(root, out_dir, embedder, *, train_per_class: int, test_per_class: int, seed: int = 0):
    """An image-folder task of `root` built as a user builds it (its builder deduplicates the
    training side against the test split with `embedder`): (task, the training source files
    removed as near-copies, or partial overlaps, of test images)."""
    from pathlib import Path

    from ..tasks import load_task
    from ..tasks.imagefolder import build_imagefolder_task

    build_imagefolder_task(root, out_dir, train_per_class=train_per_class, test_per_class=test_per_class, seed=seed,
                           name=Path(root).name, embedder=embedder, overwrite=True, progress=False)
    task = load_task(out_dir)
    removed = sorted({pair["source_file"] for pair in task.near_duplicates["removed"] if pair["split"] == "train_real"})
    return task, removed
