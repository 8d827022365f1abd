"""Safe image decoding shared by task builders, validation, generators and the feature cache.

Images come from participants, so the file is checked by `os.stat` before it is read (a regular
file, at most MAX_FILE_BYTES) and the header before any pixel is decoded: a 30000x30000 PNG header
is refused without allocating 2.7 GB, and a 16777216x1 one (within the pixel limit) by its aspect
ratio, before a resize could ask for hundreds of gigabytes. Every image is returned as 8-bit RGB:
16-bit greyscale is scaled to 8 bits (not clipped to white), an alpha channel is composited over
black, CMYK and palette images are converted; 32-bit integer or float pixels are refused.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import SynthbenchError
from .io import read_bounded

#: Formats a submission may use (Pillow format names).
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
#: Largest accepted image, in pixels (4096 x 4096). xBD tiles are 1024 x 1024.
MAX_PIXELS = 4096 * 4096
#: Largest accepted encoded file, in bytes.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Largest accepted ratio of the long side to the short side (xBD tiles are square; 16:9 is 1.8).
MAX_ASPECT_RATIO = 8
#: Pixel modes decoded as they are (with `Image.convert`) and those scaled from 16 bits.
_DIRECT_MODES = frozenset({"1", "L", "P", "RGB", "RGBA", "LA", "PA", "La", "RGBa", "CMYK", "YCbCr", "RGBX"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
#: First bytes of archive formats (an archive renamed .png is named as what it is).
ARCHIVE_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PK\x03\x04", "zip"), (0, b"PK\x05\x06", "zip"), (0, b"\x1f\x8b", "gzip"), (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"), (0, b"7z\xbc\xaf\x27\x1c", "7z"), (0, b"Rar!\x1a\x07", "rar"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"), (257, b"ustar", "tar"),
)


def archive_format(head: bytes) -> str | None:
    """The archive format whose magic bytes `head` (a file's first 512 bytes) start with, or None."""
    for offset, magic, name in ARCHIVE_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


class ImageDecodeError(SynthbenchError):
    """An image that is missing, not an allowed format, too large or does not decode."""


def _describe(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"


def read_image_bytes(path: str | os.PathLike, max_file_bytes: int = MAX_FILE_BYTES, *, name: str | None = None) -> bytes:
    """The bytes of an image file: a regular file of at most `max_file_bytes` (checked by stat
    before it is opened: a FIFO, a device or a sparse terabyte file is refused, never read)."""
    label = name or str(path)
    try:
        data = read_bounded(path, max_file_bytes)
    except ValueError as exc:
        raise ImageDecodeError(f"{label}: {exc}") from None
    except OSError as exc:
        raise ImageDecodeError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise ImageDecodeError(f"{label}: empty file (0 bytes)")
    return data


def _size_problem(width: int, height: int, max_pixels: int) -> str | None:
    if width <= 0 or height <= 0:
        return f"image has zero size ({width}x{height})"
    if width * height > max_pixels:
        return f"{width}x{height} = {width * height} pixels, above the limit of {max_pixels}"
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return f"{width}x{height}: aspect ratio above {MAX_ASPECT_RATIO}:1 (the long side may be at most {MAX_ASPECT_RATIO}x the short one)"
    return None


def to_rgb(image: Image.Image, label: str) -> Image.Image:
    """A decoded image as 8-bit RGB, its values scaled rather than clipped (see the module doc)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or (mode == "I" and image.format == "PNG"):
        values = np.asarray(image, dtype=np.int64)
        if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
            raise ImageDecodeError(f"{label}: {mode} pixels outside 0..65535")
        eight = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(eight, mode="L").convert("RGB")
    if mode not in _DIRECT_MODES:
        raise ImageDecodeError(f"{label}: pixel mode {mode} is not accepted (use 8- or 16-bit greyscale, RGB or RGBA)")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:  # some transparency: composite over black
            black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return Image.alpha_composite(black, rgba).convert("RGB")
        return rgba.convert("RGB")
    return image.convert("RGB")


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
        archive = archive_format(bytes(data[:512]))
        if archive is not None:
            raise ImageDecodeError(f"{label}: is a {archive} archive, not an image (archives are not accepted: unpack the images)") from None
        raise ImageDecodeError(f"{label}: not a decodable image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{label}: image header too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # e.g. a PNG signature then a cut header
        raise ImageDecodeError(f"{label}: corrupt or truncated image header ({exc})") from None
    if fmt not in allowed_formats:
        raise ImageDecodeError(f"{label}: format {fmt} not allowed (use one of {', '.join(allowed_formats)})")
    problem = _size_problem(width, height, max_pixels)
    if problem is not None:
        raise ImageDecodeError(f"{label}: {problem}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return to_rgb(image, label)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
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
        return read_image_bytes(self.source, name=self.name)

    def open(self) -> Image.Image:
        return open_rgb(self.read_bytes(), name=self.name)

    def __repr__(self) -> str:
        return f"ImageRef({self.sha256[:12]}, {self.name})"
