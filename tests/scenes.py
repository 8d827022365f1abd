"""Procedural scenes and stand-in embeddings for the near-copy detector's tests (no backbone)."""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image

from benchmark.images import ImageRef, encode_png
from benchmark.io import sha256_bytes
from benchmark.tasks.demo import render_scene


def scene(seed: int, size: int = 96) -> Image.Image:
    return render_scene(np.random.default_rng(seed), size)


def image_ref(image: Image.Image, name: str) -> ImageRef:
    data = encode_png(image)
    return ImageRef(sha256_bytes(data), data, name=name)


def stand_in_embed(refs, progress=False):
    """Stand-in features: a fixed random vector per name, so retrieval by embedding is blind; a
    near-copy named "<source>#<how>" gets its source's vector (a second signal that agrees, as a
    real backbone's features roughly do) plus a little noise."""
    def vector(ref):
        key, _, how = ref.name.partition("#")
        base = np.random.default_rng(zlib.crc32(key.encode())).normal(size=32)
        return base + (0.3 * np.random.default_rng(zlib.crc32(how.encode())).normal(size=32) if how else 0)

    return np.stack([vector(r) for r in refs]).astype(np.float32)
