"""Safe image decoding shared by task builders, validation, generators and the feature cache.

Images come from participants, so the header is checked before any pixel is decoded: a
30000x30000 PNG header is refused without allocating 2.7 GB. Every image is returned as RGB.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import SynthbenchError

#: Formats a submission may use (Pillow format names).
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
#: Largest accepted image, in pixels (4096 x 4096). xBD tiles are 1024 x 1024.
MAX_PIXELS = 4096 * 4096
#: Largest accepted encoded file, in bytes.
MAX_FILE_BYTES = 64 * 1024 * 1024


class ImageDecodeError(SynthbenchError):
    """An image that is missing, not an allowed format, too large or does not decode."""


def _describe(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"


def read_image_bytes(path: str | os.PathLike, max_file_bytes: int = MAX_FILE_BYTES) -> bytes:
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found") from None
    if size == 0:
        raise ImageDecodeError(f"{path}: empty file (0 bytes)")
    if size > max_file_bytes:
        raise ImageDecodeError(f"{path}: file is {size} bytes, above the limit of {max_file_bytes}")
    return path.read_bytes()


def open_rgb(
    source: str | os.PathLike | bytes,
    *,
    allowed_formats: tuple[str, ...] = ALLOWED_FORMATS,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Decode `source` (a path or encoded bytes) fully into an RGB image, or raise ImageDecodeError.

    The message names `name` (or the path) and says exactly what is wrong: not an image, a format
    outside `allowed_formats`, a header above `max_pixels`, or truncated/corrupt data.
    """
    label = name or _describe(source)
    data = source if isinstance(source, (bytes, bytearray)) else read_image_bytes(source)
    if len(data) == 0:
        raise ImageDecodeError(f"{label}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            width, height = probe.size
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{label}: not a decodable image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{label}: image header too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # e.g. a PNG signature then a cut header
        raise ImageDecodeError(f"{label}: corrupt or truncated image header ({exc})") from None
    if fmt not in allowed_formats:
        raise ImageDecodeError(f"{label}: format {fmt} not allowed (use one of {', '.join(allowed_formats)})")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{label}: {width}x{height} = {width * height} pixels, above the limit of {max_pixels}"
        )
    if width == 0 or height == 0:
        raise ImageDecodeError(f"{label}: image has zero size ({width}x{height})")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{label}: corrupt or truncated {fmt} data ({exc})") from None


def encode_png(image: Image.Image) -> bytes:
    """Deterministic PNG bytes for an image (no timestamps or text chunks)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


class ImageRef:
    """An image identified by the SHA-256 of its encoded bytes, with where to read them.

    The feature cache keys on `sha256`, so the same bytes are encoded once whichever task,
    submission or setting they come from. `source` is a file path or the encoded bytes themselves
    (task images live inside parquet files).
    """

    __slots__ = ("sha256", "source", "name")

    def __init__(self, sha256: str, source: str | os.PathLike | bytes, name: str | None = None):
        self.sha256 = sha256
        self.source = source
        self.name = name or (str(source) if not isinstance(source, (bytes, bytearray)) else sha256[:12])

    def read_bytes(self) -> bytes:
        if isinstance(self.source, (bytes, bytearray)):
            return bytes(self.source)
        return read_image_bytes(self.source)

    def open(self) -> Image.Image:
        return open_rgb(self.read_bytes(), name=self.name)

    def __repr__(self) -> str:
        return f"ImageRef({self.sha256[:12]}, {self.name})"
