"""The procedural demo task `demo-disaster6`: a pipeline demo, NOT a scientific result.

Six disaster classes rendered with numpy/PIL, so the whole pipeline (build a task, generate a
submission, validate, score, publish the leaderboard) runs in seconds with no download:

- `render_scene(rng, size)` draws a pre-disaster scene: terrain, fields, water, trees, roads,
  buildings (each scene a fresh random layout and palette).
- `edit_image(pre, class_name, seed)` turns a pre-disaster image into a post-disaster one:
  flooding (muddy flood water), wildfire (burn scars), volcano (lava flows and ash), earthquake
  (collapsed rubble and cracks), storm (debris swath, tarps and stripped roofs), tsunami
  (sediment and wash lines). It is the demo's stand-in for a generative editor; it only reads
  pixels, so it accepts any RGB image.

`train_real` and `test` post images are `edit_image` of fresh scenes; `generation_inputs` are the
pre scenes of the `train_real` tiles. Classes are learnable but not trivially: damage severity
varies down to faint, effects share textures (brown water vs sediment, dark burn scars vs cooled
lava, rubble vs debris), and every image gets sensor jitter, haze and noise.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ..errors import TaskError
from ..images import encode_png
from ..protocol import PROMPT_TEMPLATES, XBD_CLASSES, prompt_for
from .dedup import TrainingUnit, deduplicate, resolve_embedder
from .record import TaskImage, save_task

DEMO_TASK_NAME = "demo-disaster6"
#: 2: the training side is deduplicated against the test split.
DEMO_BUILDER_VERSION = 2
#: The demo's classes are the flagship task's classes.
DEMO_CLASSES: tuple[str, ...] = XBD_CLASSES
#: The demo images are made by this package: its licence.
DEMO_LICENCE = "apache-2.0"

_PALETTES = {  # terrain base colours (RGB 0..1): lush, dry, arid, mixed
    "lush": ((0.27, 0.42, 0.20), (0.35, 0.50, 0.25)),
    "dry": ((0.48, 0.47, 0.28), (0.55, 0.52, 0.33)),
    "arid": ((0.62, 0.55, 0.42), (0.70, 0.62, 0.48)),
    "mixed": ((0.36, 0.44, 0.27), (0.52, 0.50, 0.36)),
}
_ROOFS = ((0.65, 0.30, 0.25), (0.55, 0.55, 0.57), (0.85, 0.85, 0.82), (0.45, 0.35, 0.28), (0.30, 0.38, 0.45))


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator seeded by `seed` and stable string keys (crc32, not Python's salted hash)."""
    return np.random.default_rng([seed] + [zlib.crc32(str(k).encode()) for k in keys])


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a random `cells` x `cells` grid upsampled bicubically."""
    grid = rng.random((cells, cells)).astype(np.float32)
    noise = np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    noise = (noise - noise.min()) / max(float(noise.max() - noise.min()), 1e-6)
    return noise


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    return ndimage.gaussian_filter(mask.astype(np.float32), radius, mode="nearest")


def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def _colour(rng: np.random.Generator, base, jitter: float = 0.05) -> tuple[int, int, int]:
    rgb = np.clip(np.asarray(base) + rng.normal(0, jitter, 3), 0, 1)
    return tuple(int(v * 255) for v in rgb)


# ----------------------------------------------------------------------------------------------
# Pre-disaster scenes
# ----------------------------------------------------------------------------------------------


def render_scene(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A random pre-disaster scene: terrain, fields, water, trees, roads and buildings."""
    low, high = _PALETTES[rng.choice(list(_PALETTES))]
    mix = _smooth_noise(rng, size, size, int(rng.integers(3, 7)))[..., None]
    base = np.asarray(low) * (1 - mix) + np.asarray(high) * mix
    base = base + 0.025 * rng.standard_normal((size, size, 3), dtype=np.float32)
    image = _to_image(base)
    draw = ImageDraw.Draw(image)
    unit = size / 96.0

    for _ in range(int(rng.integers(0, 6))):  # fields: tinted rectangles with furrows
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(int(12 * unit), int(40 * unit) + 1, 2)
        tint = _colour(rng, rng.choice([(0.55, 0.60, 0.30), (0.60, 0.50, 0.30), (0.30, 0.48, 0.22), (0.70, 0.66, 0.45)]))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=tint)
        dark = tuple(max(c - 18, 0) for c in tint)
        for offset in range(0, int(w), max(2, int(3 * unit))):
            draw.line([x0 + offset, y0, x0 + offset, y0 + h], fill=dark, width=1)

    water_kind = rng.choice(["none", "river", "lake", "coast"], p=[0.35, 0.3, 0.15, 0.2])
    water = _colour(rng, (0.18, 0.30, 0.42), 0.04)
    if water_kind == "river":
        points, x = [], float(rng.uniform(0, size))
        for y in np.linspace(-5, size + 5, 8):
            x += rng.normal(0, 8 * unit)
            points.append((x, y))
        if rng.random() < 0.5:
            points = [(y, x) for x, y in points]
        draw.line(points, fill=water, width=int(rng.integers(int(4 * unit), int(10 * unit) + 1)), joint="curve")
    elif water_kind == "lake":
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(8, 22, 2) * unit
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=water)
    elif water_kind == "coast":
        depth = rng.uniform(0.12, 0.3) * size
        side = int(rng.integers(4))
        box = [(0, 0, size, depth), (0, size - depth, size, size), (0, 0, depth, size), (size - depth, 0, size, size)][side]
        draw.rectangle(box, fill=water)

    for _ in range(int(rng.integers(0, 5))):  # tree clusters
        cx, cy = rng.uniform(0, size, 2)
        for _ in range(int(rng.integers(4, 14))):
            x, y = cx + rng.normal(0, 5 * unit), cy + rng.normal(0, 5 * unit)
            r = rng.uniform(1.2, 3.0) * unit
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_colour(rng, (0.15, 0.30, 0.12), 0.03))

    urban = float(rng.uniform(0.1, 1.0))
    road = _colour(rng, (0.42, 0.42, 0.42), 0.03)
    n_roads = int(rng.integers(1, 3 + int(3 * urban)))
    roads = []
    for _ in range(n_roads):
        horizontal = rng.random() < 0.5
        at = float(rng.uniform(0.1, 0.9) * size)
        width = max(1, int(rng.integers(2, 4) * unit))
        line = [(0, at), (size, at)] if horizontal else [(at, 0), (at, size)]
        draw.line(line, fill=road, width=width)
        roads.append((horizontal, at))

    n_buildings = int(urban * rng.integers(8, 40))
    for _ in range(n_buildings):
        if roads and rng.random() < 0.7:  # most houses line a road
            horizontal, at = roads[int(rng.integers(len(roads)))]
            along, across = rng.uniform(0, size), at + rng.choice([-1, 1]) * rng.uniform(4, 9) * unit
            x, y = (along, across) if horizontal else (across, along)
        else:
            x, y = rng.uniform(0, size, 2)
        w, h = rng.uniform(3, 8, 2) * unit
        draw.rectangle([x + 1, y + 1, x + w + 1, y + h + 1], fill=(40, 40, 35))  # shadow
        draw.rectangle([x, y, x + w, y + h], fill=_colour(rng, _ROOFS[int(rng.integers(len(_ROOFS)))], 0.05))
    return image


# ----------------------------------------------------------------------------------------------
# Post-disaster editing
# ----------------------------------------------------------------------------------------------


def _built_mask(array: np.ndarray) -> np.ndarray:
    """Pixels that stand out from their surroundings (roofs, roads' edges): where structures are."""
    blurred = ndimage.gaussian_filter(array, (2.0, 2.0, 0), mode="nearest")
    contrast = np.abs(array - blurred).sum(axis=-1)
    return np.clip((contrast - 0.08) / 0.15, 0, 1)


def _blend(array: np.ndarray, colour, alpha: np.ndarray) -> np.ndarray:
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 1:
        colour = colour[None, None, :]
    alpha = alpha[..., None]
    return array * (1 - alpha) + colour * alpha


def _textured(rng, colour, shape, spread=0.06) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32)[None, None, :] + spread * rng.standard_normal(shape, dtype=np.float32)


def _region(rng, h, w, coverage: float, cells: int, edge: float = 0.06) -> np.ndarray:
    """A soft random blob mask covering about `coverage` of the image."""
    noise = _smooth_noise(rng, h, w, cells)
    threshold = np.quantile(noise, 1 - coverage)
    return np.clip((noise - threshold) / edge, 0, 1)


def _directional(rng, h, w) -> np.ndarray:
    """A ramp from one random side of the image (0 at the far side, 1 at the near side)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    return (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)


def _flooding(array, rng, severity):
    h, w, _ = array.shape
    level = 0.55 * _smooth_noise(rng, h, w, 4) + 0.45 * _directional(rng, h, w)
    threshold = np.quantile(level, 1 - (0.25 + 0.5 * severity))
    water = np.clip((level - threshold) / 0.05, 0, 1)
    colour = [(0.42, 0.36, 0.22), (0.30, 0.36, 0.38), (0.38, 0.40, 0.30)][int(rng.integers(3))]
    # Roofs stay partly above the water.
    alpha = water * (0.9 - 0.45 * _built_mask(array))
    return _blend(array, _textured(rng, colour, array.shape, 0.03), alpha)


def _wildfire(array, rng, severity):
    h, w, _ = array.shape
    burn = _region(rng, h, w, 0.2 + 0.55 * severity, int(rng.integers(3, 7)))
    scorch = np.clip(_blur(burn, 2.5) - burn, 0, 1) * 2.0
    array = _blend(array, _textured(rng, (0.45, 0.27, 0.12), array.shape, 0.05), np.clip(scorch, 0, 0.8))
    char = _textured(rng, (0.13, 0.11, 0.09), array.shape, 0.04)
    array = _blend(array, char, burn * rng.uniform(0.7, 0.95))
    ash = burn * _built_mask(array) * 0.8  # burnt-out houses: pale ash footprints
    return _blend(array, _textured(rng, (0.55, 0.54, 0.50), array.shape, 0.04), ash)


def _volcano(array, rng, severity):
    h, w, _ = array.shape
    mask = Image.new("F", (w, h), 0.0)
    draw = ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 3))):
        x, y = rng.uniform(0, w), -5.0
        points = []
        step = h / 8
        direction = rng.uniform(-0.6, 0.6)
        for _ in range(10):
            points.append((x, y))
            x += step * (direction + rng.normal(0, 0.5))
            y += step
        if rng.random() < 0.5:
            points = [(py, px) for px, py in points]
        draw.line(points, fill=1.0, width=int((6 + 14 * severity) * w / 96), joint="curve")
    flow = np.clip(_blur(np.asarray(mask, dtype=np.float32), 1.2), 0, 1)
    lava = _textured(rng, (0.10, 0.09, 0.09), array.shape, 0.03)
    array = _blend(array, lava, flow * 0.95)
    core = np.clip((flow - 0.85) / 0.15, 0, 1) * (rng.random() < 0.6)  # still-glowing core, sometimes
    array = _blend(array, _textured(rng, (0.85, 0.35, 0.08), array.shape, 0.06), core * 0.9)
    ash = _smooth_noise(rng, h, w, 3) * rng.uniform(0.15, 0.5) * severity
    return _blend(array, (0.52, 0.51, 0.50), ash)


def _earthquake(array, rng, severity):
    h, w, _ = array.shape
    hit = _region(rng, h, w, 0.4 + 0.5 * severity, 4, edge=0.1)
    built = np.clip(_blur(_built_mask(array), 0.8) * 1.6, 0, 1)
    rubble = built * hit
    speckle = rng.uniform(0.3, 0.72, (h, w, 1)).astype(np.float32) * np.asarray([1.0, 0.95, 0.85], np.float32)
    array = _blend(array, speckle, rubble * 0.95)
    crack_mask = Image.new("F", (w, h), 0.0)
    draw = ImageDraw.Draw(crack_mask)
    for _ in range(int(1 + 3 * severity)):
        x, y = rng.uniform(0, w, 2)
        points = [(x, y)]
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(12):
            angle += rng.normal(0, 0.6)
            x, y = x + 4 * np.cos(angle), y + 4 * np.sin(angle)
            points.append((x, y))
        draw.line(points, fill=1.0, width=1)
    array = _blend(array, (0.08, 0.07, 0.06), np.asarray(crack_mask, dtype=np.float32) * 0.85)
    dust = _smooth_noise(rng, h, w, 3) * 0.25 * severity
    return _blend(array, (0.72, 0.68, 0.60), dust)


def _storm(array, rng, severity):
    h, w, _ = array.shape
    ramp = _directional(rng, h, w)
    centre = rng.uniform(0.3, 0.7)
    swath = np.clip(1 - np.abs(ramp - centre) / (0.15 + 0.3 * severity), 0, 1)
    built = _built_mask(array) * swath
    roof = [(0.20, 0.42, 0.75), (0.72, 0.62, 0.45)][int(rng.integers(2))]  # tarps or bare decking
    array = _blend(array, _textured(rng, roof, array.shape, 0.05), np.clip(built * 1.3, 0, 0.9))
    green = np.clip((array[..., 1] - array[..., 0]) * 5, 0, 1) * swath * 0.6  # battered vegetation
    array = _blend(array, (0.50, 0.45, 0.30), green)
    debris = (rng.random((h, w)) < 0.10 * severity) * swath
    debris_colour = rng.uniform(0.25, 0.9, (h, w, 1)) * np.asarray([1.0, 0.92, 0.8], np.float32)
    return _blend(array, debris_colour, debris.astype(np.float32) * 0.9)


def _tsunami(array, rng, severity):
    h, w, _ = array.shape
    ramp = _directional(rng, h, w)
    reach = 0.3 + 0.5 * severity
    inundated = np.clip((ramp - (1 - reach)) / 0.08, 0, 1) * (0.8 + 0.2 * _smooth_noise(rng, h, w, 5))
    sediment = _textured(rng, (0.62, 0.55, 0.42), array.shape, 0.04)
    array = _blend(array, sediment, inundated * 0.9)  # houses inside are scoured away
    wash = 0.5 + 0.5 * np.sin(ramp * rng.uniform(30, 60) + 3 * _smooth_noise(rng, h, w, 4))
    array = _blend(array, (0.40, 0.34, 0.25), inundated * np.clip(wash - 0.75, 0, 1) * 2.0)
    pools = _region(rng, h, w, 0.08 * severity + 0.01, 6) * inundated
    return _blend(array, (0.22, 0.30, 0.30), pools * 0.8)


_EFFECTS = {
    "flooding": _flooding,
    "wildfire": _wildfire,
    "volcano": _volcano,
    "earthquake": _earthquake,
    "storm": _storm,
    "tsunami": _tsunami,
}


def _sensor(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What every capture adds whatever the class: exposure, colour cast, thin haze, noise."""
    h, w, _ = array.shape
    array = array * rng.uniform(0.85, 1.12) * (1 + rng.normal(0, 0.04, 3))
    haze = _smooth_noise(rng, h, w, 3) * rng.uniform(0.0, 0.3)
    array = _blend(array, (0.85, 0.86, 0.88), haze)
    return array + 0.025 * rng.standard_normal(array.shape, dtype=np.float32)


def edit_image(pre: Image.Image, class_name: str, seed: int) -> Image.Image:
    """The demo's procedural editor: a post-disaster version of `pre` for `class_name`.

    Deterministic for (pre, class_name, seed); accepts any RGB image and keeps its size. The damage
    severity is drawn from [0.1, 1], so some edits are faint.
    """
    if class_name not in _EFFECTS:
        raise TaskError(f"unknown demo class {class_name!r}; use one of: {', '.join(DEMO_CLASSES)}")
    rng = _rng(seed, "edit", class_name)
    severity = float(rng.uniform(0.1, 1.0))
    array = _EFFECTS[class_name](_to_array(pre), rng, severity)
    return _to_image(_sensor(array, rng))


# ----------------------------------------------------------------------------------------------
# The task
# ----------------------------------------------------------------------------------------------


def demo_tile(seed: int, split: str, class_name: str, index: int, image_size: int) -> TrainingUnit:
    """One demo tile: its post image (in `split`) and, for a training tile, its pre scene as a
    generation input. Each tile is a fresh scene, its post image an edit of it."""
    tile = f"demo-{split.replace('_', '-')}-{class_name}-{index:04d}"
    pre = render_scene(_rng(seed, "scene", tile), image_size)
    post = edit_image(pre, class_name, int(_rng(seed, "post", tile).integers(2**31)))
    event = f"demo-{class_name}"
    rows = [(split, TaskImage(encode_png(post), class_name, f"{tile}_post", event, f"procedural:{tile}", "", tile))]
    if split == "train_real":  # only train tiles give generation inputs
        rows.append(
            ("generation_inputs",
             TaskImage(encode_png(pre), class_name, f"{tile}_pre", event, f"procedural:{tile}", prompt_for(class_name), tile))
        )
    return TrainingUnit(class_name, tuple(rows))


def demo_rows(
    *, seed: int = 0, train_per_class: int = 100, test_per_class: int = 50, image_size: int = 96
) -> dict[str, list[TaskImage]]:
    """The demo task's rows before deduplication (tiles 0..n-1 of each class and split)."""
    splits: dict[str, list[TaskImage]] = {"train_real": [], "test": [], "generation_inputs": []}
    for split, per_class in (("train_real", train_per_class), ("test", test_per_class)):
        for class_name in DEMO_CLASSES:
            for index in range(per_class):
                for row_split, row in demo_tile(seed, split, class_name, index, image_size).rows:
                    splits[row_split].append(row)
    return splits


def _training_pool(seed: int, class_name: str, image_size: int, per_class: int) -> Iterator[TrainingUnit]:
    # Tiles per_class, per_class + 1, ... replace removed ones; procedural scenes are all distinct,
    # so a spare of the class's size is far more than deduplication can use.
    for index in range(2 * per_class + 10):
        yield demo_tile(seed, "train_real", class_name, index, image_size)


def build_demo_task(
    out_dir: str | Path,
    *,
    seed: int = 0,
    train_per_class: int = 100,
    test_per_class: int = 50,
    image_size: int = 96,
    embedder: Callable | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Build the procedural `demo-disaster6` task folder at `out_dir` (a pipeline demo).

    The training side is deduplicated against the test split (`benchmark.tasks.dedup`) with
    `embedder` (default: the default backbone at `image_size` over the grid's feature cache, so
    a grid at the demo's size reuses the features).
    """
    if train_per_class < 1 or test_per_class < 1:
        raise TaskError("the demo task needs at least 1 train and 1 test image per class")
    if not 32 <= image_size <= 1024:
        raise TaskError(f"demo image size {image_size} is outside 32..1024")
    if Path(out_dir).exists() and not overwrite:
        raise TaskError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    test = [
        row
        for class_name in DEMO_CLASSES
        for index in range(test_per_class)
        for _, row in demo_tile(seed, "test", class_name, index, image_size).rows
    ]
    pools = {c: _training_pool(seed, c, image_size, train_per_class) for c in DEMO_CLASSES}
    embedder = resolve_embedder(embedder, image_size=image_size)
    kept = deduplicate(test, pools, train_per_class, embedder=embedder, progress=progress)
    splits = {"train_real": kept.rows("train_real"), "test": test, "generation_inputs": kept.rows("generation_inputs")}
    return save_task(
        out_dir,
        splits,
        name=DEMO_TASK_NAME,
        builder="demo",
        builder_version=DEMO_BUILDER_VERSION,
        seed=seed,
        classes=DEMO_CLASSES,
        prompt_templates=PROMPT_TEMPLATES,
        licence=DEMO_LICENCE,
        label_source="procedural",
        resize=None,
        is_demo=True,
        notes=[
            "Pipeline demo, not a scientific result: every image is procedurally rendered by "
            "benchmark.tasks.demo (render_scene + edit_image).",
            f"Images are {image_size}x{image_size}; post images of train_real and test are edit_image of fresh scenes.",
            *kept.notes(train_per_class),
        ],
        description=(
            "Six procedurally rendered disaster classes (flooding, wildfire, volcano, earthquake, storm, "
            "tsunami) on synthetic overhead scenes. `generation_inputs` holds the pre-disaster scenes of "
            "the `train_real` tiles; `benchmark.tasks.demo.edit_image` is the demo's procedural editor."
        ),
        near_duplicates=kept.record(["train_real", "generation_inputs"]),
        overwrite=overwrite,
    )
