"""Near-duplicate detection between two sets of images: which query images are near-copies of
which reference images. The submissions' leakage gate (`benchmark.submissions.leakage`: which
references for which track, the same-pair exemption, the stored indexes) and the task builders'
deduplication of training splits against the test split (`find_near_duplicate_pairs`) both use it.

A near-copy survives flips, 90-degree rotations, crops down to 70 % of the side, resizing, JPEG
re-encoding, colour jitter and light noise, so no single signature is enough. The gate is a
cascade, cheapest first; each stage keeps only the pairs (query, reference) that could still be
near-copies:

1. **Retrieval**, every query against every reference, as matrix products over blocks of queries:
   * a perceptual hash (pHash, 64 bits, as `imagehash.phash` defines it) of each reference in its 8 dihedral
     orientations (flips x 90-degree rotations, from one DCT); distance = min Hamming distance over
     them. A distance of at most PHASH_MAX_DISTANCE decides alone;
   * backbone embeddings (EfficientNet-Lite0 through the shared `FeatureCache`, cosine
     similarity): the very features the grid computes for the same images, so the gate encodes
     nothing the grid would not.
   The EMBEDDING_CANDIDATES and PHASH_CANDIDATES nearest references become candidates.
2. **Prefilter** (PREFILTER_STAGES): the verification's coarse search (every orientation, crop
   scale and offset, NCC) on band-passed thumbnails, at 16 px and then at 32 px (in the
   orientations that passed at 16 px); run for all queries at once, reference by reference. A
   candidate whose embedding disagrees (cosine under COSINE_MIN) can only be matched decisively,
   so it goes on only from DECISIVE_PREFILTER_MIN.
3. **Geometric verification** of the candidates left:
   * coarse: the query's 32-px grayscale thumbnail, in all 8 orientations, is slid by normalised
     cross-correlation over the candidate rescaled so that the query covers 100 % down to 66 % of
     its side (crops, flips, rotations and resizing are searched explicitly);
   * fine: at each candidate's best coarse alignment for every crop scale (its peak placed to a
     fraction of a pixel), the query and the candidate's region are compared at 64 px after a
     band-pass (difference of Gaussians) in a 6 x 6 grid of patches; the score is the median
     patch NCC. The 3 best are then re-scored at half-pixel shifts and half-scale-step zooms
     around their alignment, then at half and at a quarter of those steps around the best found
     each time (the coarse search is quantised, and band-passed detail disagrees a fraction of a
     pixel off). NCC ignores brightness and contrast
     changes, the band-pass drops noise, JPEG blocks and large smooth structures, and the median
     asks for agreement everywhere, not along one coastline or road.

Flat areas are no evidence: a query's constant borders (padding, letterboxing, nodata) are
trimmed before its signature (both its pHashes are kept), and flat pixels (`_flat_mask`: a cutout
box, a fill colour) are filled smoothly before every band-pass and masked after it, on both sides;
a fine patch counts only when both sides have content there, and the fine score needs at least
MIN_INFORMATIVE_PATCHES of them.

**The decision: two signals that agree, unless one is decisive.** A query is a near-copy of a
reference when its pHash distance is at most PHASH_MAX_DISTANCE (decisive), or its fine score
reaches NCC_DECISIVE (decisive), or its fine score reaches NCC_MIN, its embedding cosine with the
same reference reaches COSINE_MIN and the two sum to EVIDENCE_MIN. The prefilter only drops
candidates: with it open every decision stays or becomes a rejection (tests/test_leakage_cascade.py).

Calibration (real aerial images: the six-class AID sample the tests use, 150 px JPEGs;
EfficientNet-Lite0 at 224 px; an image-folder task of 100 train / 100 test images per class):
distinct images (999 held out, the four harness baselines) aligned with a test image at fine scores
up to 0.60 (beaches with the same surf), with cosines up to 0.69, and score + cosine up to 1.27
(two such beach pairs; EVIDENCE_MIN is 1.30); near-copies that geometry decided scored >= 0.71
with score + cosine >= 1.34 on 70 % crops (all 600 test images). Figures in docs/SUBMITTING.md
section 4 (benchmarks/test_gate_bench.py).
Images dominated by one periodic pattern (pure stripes) match each other at some shift: such an
image carries no evidence of where it came from.

The reference side (hashes, thumbnails, embeddings) is computed once per split and embedder and
stored under `<feature cache>/leakage/`, keyed by the reference images' SHA-256s; a fresh index is
rounded as the stored one is, so a cold and a warm run decide alike.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .images import ImageRef
from .io import atomic_write_bytes, sha256_json
from .paths import default_cache_dir

log = logging.getLogger(__name__)

#: Bumped whenever signatures or thresholds change (part of the reference-index cache key).
GATE_VERSION = 5

# -- signatures ---------------------------------------------------------------------------------
#: pHash size: 8 -> 64-bit hashes (as imagehash's default).
PHASH_SIZE = 8
#: Side of the grayscale thumbnail slid over candidates in the coarse search.
THUMB_SIZE = 32
#: Side of the query thumbnail compared in the fine stage; a smaller query is compared at its own
#: short side (no less than MIN_FINE_SIZE): upsampling adds no detail to compare.
FINE_SIZE = 64
MIN_FINE_SIZE = 36
#: Sides of the stored reference thumbnails (source of the prefilter and the coarse search; of the
#: fine stage).
REFERENCE_THUMB_SIZE = 64
REFERENCE_FINE_SIZE = 96
#: The fine stage compares detail through a band-pass (difference of Gaussians, sigmas in pixels
#: at FINE_SIZE): the wide blur removes large smooth structures (water, haze, fields) that make
#: distinct images agree at low resolution; the narrow one removes pixel-level noise, JPEG blocks
#: and resampling aliasing. Edges and texture a copy shares with its source remain.
BANDPASS_SIGMAS = (0.7, 2.0)
#: Crop scales searched (fraction of the reference's side the query covers): 100 % down to 66 %,
#: steps of about 7 %; the fine stage refines the scale by +/- FINE_ZOOM around the best one.
CROP_SCALES: tuple[float, ...] = (1.0, 0.93, 0.86, 0.79, 0.72, 0.66)
MIN_CROP = min(CROP_SCALES)
FINE_ZOOM = 0.035
#: The fine score is the median of band-passed NCCs over PATCH_GRID x PATCH_GRID patches: a copy
#: agrees everywhere, while distinct images that share one strong structure (a straight coast, a
#: road, the border of a fill) agree only in the few patches it crosses. 6 x 6 rather than 4 x 4:
#: on sparse scenes (a coast and a road on bare terrain) such lines filled too many of 16 patches.
PATCH_GRID = 6
#: Query patches with less band-pass energy than this fraction of the median patch's are flat
#: (water, sky, a fill colour): no evidence either way, left out of the median.
FLAT_PATCH_FRACTION = 0.2

#: Flat pixels (`_flat_mask`): 3 x 3 neighbourhoods whose grayscale standard deviation is under
#: this (of 255). They carry no evidence: excluded from every NCC, their borders too.
FLAT_STD = 0.5
#: Sigma of the smooth fill of flat areas, as a fraction of the thumbnail's side.
FILL_SIGMA = 0.08
#: A patch is compared only when at most this fraction of it is flat, in the query and in the
#: reference region it is aligned with.
MAX_FLAT_IN_PATCH = 0.25
#: The geometric score needs at least this many informative patches (of PATCH_GRID^2): with less
#: content left, geometry decides nothing.
MIN_INFORMATIVE_PATCHES = 9
#: Constant borders (padding, letterboxing, nodata frames) are trimmed before any signature: rows
#: and columns at the edges whose grayscale range is within BORDER_TOLERANCE and standard deviation
#: within BORDER_MAX_STD (a re-encoded border varies a little; calm water varies more), as long as
#: at least MIN_KEPT of each side is left (within the crops the verification searches).
BORDER_TOLERANCE = 10
BORDER_MAX_STD = 0.6
MIN_KEPT = 0.7

# -- decision (calibration: module docstring) ---------------------------------------------------
#: Candidates per query from each retrieval signature. The embeddings are the grid's (upright
#: images): a turned or mirrored near-copy can rank its source lower than an upright one would, so
#: the embedding proposes more; the prefilter keeps the cost of the extra candidates small.
EMBEDDING_CANDIDATES = 50
PHASH_CANDIDATES = 20
#: Alignments whose fine score is refined (shift and zoom search) after a first pass at their
#: coarse alignment.
FINE_REFINED = 3
#: The refinement's searches, each a 3 x 3 x 3 grid of shifts and zooms centred on the best of the
#: one before, in steps of this fraction of (half a coarse pixel, FINE_ZOOM): the band-passed
#: detail compared loses much of its agreement a fraction of a pixel off (70 % crops of aid6
#: scenes scored 0.39-0.58 after the first search alone, 0.71-0.78 after all three).
REFINE_STEPS = (1.0, 0.5, 0.25)
#: An alignment goes on to the next, finer search only when it scored at least this (the finer
#: searches added up to about 0.3 to near-copies that scored 0.39 and more after the first).
REFINE_FURTHER_MIN = 0.3
#: The cascade's prefilter, run on the retrieved candidates before verification: (thumbnail side,
#: minimum score) per stage, cheapest first. The score is the verification's coarse search (crop
#: scales and offsets; every orientation at the first stage, those that passed it at the next) on
#: band-passed thumbnails. Against its source, a near-copy of an aid6 test image scored >= 0.59
#: and >= 0.60 (600 of every kind but colour jitter, whose pHash decides: 0.46 at 16 px once);
#: thresholds leave a margin of about 0.15 below that.
PREFILTER_STAGES: tuple[tuple[int, float], ...] = ((16, 0.45), (32, 0.40))
#: The prefilter searches the crop shapes of the query's aspect rounded to a power of a step, per
#: stage size: queries trimmed of borders of all widths then share the references' windows (one
#: matrix product per reference, not per query). At 16 px a shape off by up to 12 % (a pixel at
#: the far edge, of a band-passed thumbnail), at 32 px by up to 6 %; verification uses the exact one.
PREFILTER_ASPECT_STEPS: dict[int, float] = {16: 1.25, 32: 1.12}
#: A query with flat areas has its prefilter scores divided by the share of content left (no less
#: than this): its window norms count the masked area too.
MIN_PREFILTER_VALID = 0.5
#: A candidate whose embedding disagrees (cosine below COSINE_MIN) can only be matched by a fine
#: score of NCC_DECISIVE: it goes on from each prefilter stage only from this score. On aid6, the
#: near-copies of every kind whose cosine with their source was under COSINE_MIN (turned, padded,
#: heavily cropped ones) scored >= 0.73 at 16 px and >= 0.71 at 32 px; three quarters of the
#: classic baseline's candidates that passed the thresholds above have such cosines.
DECISIVE_PREFILTER_MIN = 0.55
#: Difference-of-Gaussians sigmas (pixels at the prefilter's own size) of its band-pass.
PREFILTER_SIGMAS = (0.7, 2.0)
#: pHash Hamming distance at or below which an image is a near-copy by itself (distinct aerial
#: images came as close as 8; exact, resized, noisy or re-encoded copies are mostly at 0-2).
PHASH_MAX_DISTANCE = 4
#: Fine score (median band-passed patch NCC) from which geometry counts as evidence at all. It
#: does not decide alone: distinct aerial images reached 0.60 (beaches with the same surf), sparse
#: procedural scenes 0.47; near-copies scored >= 0.71 (aid6, 70 % crops), so the embedding must
#: agree below NCC_DECISIVE.
NCC_MIN = 0.50
#: A geometric match needs the embedding to agree: a fine score of at least NCC_MIN, an embedding
#: cosine of at least COSINE_MIN, and the two summing to EVIDENCE_MIN (distinct beaches reached
#: 1.27 once the fine stage's refinement became finer); a fine score of NCC_DECISIVE or more decides
#: alone (calibration: module docstring).
COSINE_MIN = 0.55
EVIDENCE_MIN = 1.30
NCC_DECISIVE = 0.75
#: Same-pair exemption (generated track): an image made from a train tile's pre-disaster twin is
#: aligned with that tile's post image by construction, so against that one image only an exact
#: copy counts: pHash distance 0 and full-frame NCC of the 32-px thumbnails at least this.
SAME_PAIR_NCC_MIN = 0.99

_DIHEDRAL = tuple(range(8))


def dihedral(image: Image.Image, k: int) -> Image.Image:
    """The k-th of the 8 dihedral transforms: k % 4 quarter turns, mirrored first when k >= 4."""
    if k >= 4:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    turns = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)[k % 4]
    return image.transpose(turns) if turns is not None else image


def _dihedral_array(array: np.ndarray, k: int) -> np.ndarray:
    """`dihedral` on an (H, W) array (np.rot90 turns counter-clockwise, as PIL's ROTATE_90)."""
    if k >= 4:
        array = array[:, ::-1]
    return np.rot90(array, k % 4)


def phash_bits(image: Image.Image) -> np.uint64:
    """64-bit pHash (as `imagehash.phash` defines it) packed into an unsigned integer."""
    return phash_dihedral(image)[0]


def phash_dihedral(image: Image.Image) -> np.ndarray:
    """(8,) uint64: the pHash of `dihedral(image, k)` for k = 0..7, from one resize and one DCT.

    Same steps as `imagehash.phash` (32-px Lanczos grayscale, 2-D DCT-II, low 8 x 8 block above its
    median). A mirrored image's DCT is the original's with every odd row or column negated, and a
    transposed image's is the transpose, so the 8 variants come from the one block; they differ
    from hashing each rotated image only where Pillow's two-pass resize rounds differently.
    Not `imagehash` itself: it hashes one orientation per call (8 calls, about 2.1 ms for a 150-px
    image, against 0.26 ms for the 8 here), and the gate hashes every reference in all 8.
    """
    import scipy.fftpack

    side = PHASH_SIZE * 4
    pixels = np.asarray(image.convert("L").resize((side, side), Image.Resampling.LANCZOS))
    block = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:PHASH_SIZE, :PHASH_SIZE]
    out = np.zeros(8, dtype=np.uint64)
    for k in _DIHEDRAL:
        variant = _dihedral_dct(block, k)
        bits = (variant > np.median(variant)).flatten()
        out[k] = np.uint64(int.from_bytes(np.packbits(bits).tobytes(), "big"))
    return out


_DCT_SIGNS = (-1.0) ** np.arange(PHASH_SIZE)


def _dihedral_dct(block: np.ndarray, k: int) -> np.ndarray:
    """`_dihedral_array` applied in the DCT domain: a left-right mirror negates odd columns, and a
    quarter turn (np.rot90) is a left-right mirror then a transpose."""
    if k >= 4:
        block = block * _DCT_SIGNS[None, :]
    for _ in range(k % 4):
        block = (block * _DCT_SIGNS[None, :]).T
    return block


def gray_thumb(image: Image.Image, width: int, height: int | None = None) -> np.ndarray:
    """Grayscale thumbnail (box-filtered: averages noise and JPEG blocks) as float32."""
    return np.asarray(image.convert("L").resize((width, height or width), Image.Resampling.BOX), dtype=np.float32)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between uint64 hash arrays, broadcasting."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int16)


@dataclass
class QuerySignature:
    """What the gate needs of one submitted image (computed while validation decodes it)."""

    phash: np.uint64  # of the image with its constant borders trimmed
    thumb: np.ndarray  # (THUMB_SIZE, THUMB_SIZE) float32
    fine: np.ndarray  # (S, S) float32, S = the short side clipped to MIN_FINE_SIZE..FINE_SIZE
    aspect: float  # width / height
    phash_full: np.uint64 | None = None  # of the whole image, when trimming changed it

    @functools.cached_property
    def prefilter_flat(self) -> torch.Tensor:
        """(1, 1, THUMB_SIZE, THUMB_SIZE): the flat mask the prefilter compares this query by
        (`_prefilter_flat_mask`), made once for all its stages."""
        return _prefilter_flat_mask(torch.from_numpy(self.thumb)[None, None], torch.from_numpy(self.fine)[None, None])

    def phashes(self) -> np.ndarray:
        """(2,) uint64: the trimmed and the whole image's pHash (the same twice when untrimmed)."""
        return np.array([self.phash, self.phash if self.phash_full is None else self.phash_full], dtype=np.uint64)

    def distances(self, hashes: np.ndarray) -> np.ndarray:
        """Hamming distances to (..., 8) reference hashes: the best orientation and hash, (...)."""
        return hamming(hashes[..., None, :], self.phashes()[:, None]).min(axis=(-2, -1))


def trim_borders(image: Image.Image) -> Image.Image:
    """`image` without its constant borders (padding, letterboxing, a nodata frame): edge rows and
    columns whose grayscale range is within BORDER_TOLERANCE and whose level matches the outermost
    line's. Each axis keeps at least MIN_KEPT of its side (an image that flat is left as it is)."""
    gray = np.asarray(image.convert("L"), dtype=np.int16)

    def run(lines: np.ndarray) -> int:
        # The range first (cheap): only the lines before the first that varies more can be border.
        narrow = lines.max(axis=1) - lines.min(axis=1) <= BORDER_TOLERANCE
        head = lines[: len(lines) if narrow.all() else int(narrow.argmin())]
        constant = (head.std(axis=1) <= BORDER_MAX_STD) & (np.abs(head.mean(axis=1) - lines[0].mean()) <= BORDER_TOLERANCE)
        return len(constant) if constant.all() else int(constant.argmin())

    top, bottom, left, right = run(gray), run(gray[::-1]), run(gray.T), run(gray.T[::-1])
    height, width = gray.shape
    if height - top - bottom < MIN_KEPT * height:
        top = bottom = 0
    if width - left - right < MIN_KEPT * width:
        left = right = 0
    if top == bottom == left == right == 0:
        return image
    return image.crop((left, top, width - right, height - bottom))


def query_signature(image: Image.Image) -> QuerySignature:
    """The query's signature, of the image with its constant borders trimmed (a padded copy is then
    the original again, and anything trimmed is at worst a crop of the reference, which the
    verification searches); the whole image's pHash is kept too."""
    gray = image.convert("L")  # once: every signature below is of the grayscale image
    trimmed = trim_borders(gray)
    fine = int(np.clip(min(trimmed.size), MIN_FINE_SIZE, FINE_SIZE))
    return QuerySignature(
        phash_bits(trimmed), gray_thumb(trimmed, THUMB_SIZE), gray_thumb(trimmed, fine), trimmed.width / trimmed.height,
        phash_full=phash_bits(gray) if trimmed is not gray else None,
    )


# ----------------------------------------------------------------------------------------------
# embeddings
# ----------------------------------------------------------------------------------------------

#: (refs, progress) -> (N, D) float32 features; L2 normalisation happens here.
EmbedFn = Callable[[Sequence[ImageRef], bool], np.ndarray]


class BackboneEmbedder:
    """Backbone features through the shared feature cache (so the grid reuses them)."""

    def __init__(self, cache, backbone):
        self.cache = cache
        self.backbone = backbone

    @property
    def id(self) -> str:
        b = self.backbone
        return f"{b.name}/{b.weights_id}/{b.preprocessing_id}"

    def __call__(self, refs: Sequence[ImageRef], progress: bool = False) -> np.ndarray:
        if not refs:
            return np.zeros((0, self.backbone.feature_dim), dtype=np.float32)
        features = self.cache.features(self.backbone, list(refs), progress=progress)
        return _normalise(features)


def default_embedder(cache_root: str | Path, *, device: str = "cpu", image_size: int | None = None) -> BackboneEmbedder:
    """EfficientNet-Lite0 (the offline default backbone) over a FeatureCache at `cache_root`."""
    from .backbones import DEFAULT_BACKBONE, load_backbone
    from .features import FeatureCache

    backbone = load_backbone(DEFAULT_BACKBONE, device=device, image_size=image_size)
    return BackboneEmbedder(FeatureCache(cache_root), backbone)


def _normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


# ----------------------------------------------------------------------------------------------
# the reference index
# ----------------------------------------------------------------------------------------------


@dataclass
class ReferenceIndex:
    """Signatures of the reference images (test split, and train_real for the generated track)."""

    ids: list[str]
    splits: list[str]
    pair_ids: list[str]
    hashes: np.ndarray  # (R, 8) uint64, one per dihedral orientation
    thumbs: np.ndarray  # (R, REFERENCE_THUMB_SIZE, REFERENCE_THUMB_SIZE) float32, upright
    fines: np.ndarray  # (R, REFERENCE_FINE_SIZE, REFERENCE_FINE_SIZE) float32, upright
    aspects: np.ndarray  # (R,) width / height
    embeddings: np.ndarray  # (R, D) float32, L2-normalised
    key: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            ids=np.array(self.ids, dtype=str), splits=np.array(self.splits, dtype=str),
            pair_ids=np.array(self.pair_ids, dtype=str), hashes=self.hashes, thumbs=self.thumbs.astype(np.float16),
            fines=self.fines.astype(np.float16),
            aspects=self.aspects, embeddings=self.embeddings.astype(np.float16), key=np.array(self.key),
        )
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def concatenate(cls, parts: Sequence["ReferenceIndex"]) -> "ReferenceIndex":
        return cls(
            ids=[i for p in parts for i in p.ids], splits=[s for p in parts for s in p.splits],
            pair_ids=[q for p in parts for q in p.pair_ids],
            hashes=np.concatenate([p.hashes for p in parts]), thumbs=np.concatenate([p.thumbs for p in parts]),
            fines=np.concatenate([p.fines for p in parts]), aspects=np.concatenate([p.aspects for p in parts]),
            embeddings=np.concatenate([p.embeddings for p in parts]), key="+".join(p.key for p in parts),
        )

    @classmethod
    def load(cls, path: Path) -> "ReferenceIndex":
        with np.load(path, allow_pickle=False) as data:
            return cls(
                ids=data["ids"].tolist(), splits=data["splits"].tolist(), pair_ids=data["pair_ids"].tolist(),
                hashes=data["hashes"], thumbs=data["thumbs"].astype(np.float32),
                fines=data["fines"].astype(np.float32), aspects=data["aspects"],
                embeddings=data["embeddings"].astype(np.float32), key=str(data["key"]),
            )

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def build(
        cls, refs: Sequence[ImageRef], splits: Sequence[str], pair_ids: Sequence[str], embed: EmbedFn, *, progress: bool = False
    ) -> "ReferenceIndex":
        """Signatures of `refs`: hashes and thumbnails from the pixels, embeddings of the images as
        they are (the very features the grid computes for them, through the same cache)."""
        hashes = np.zeros((len(refs), 8), dtype=np.uint64)
        thumbs = np.zeros((len(refs), REFERENCE_THUMB_SIZE, REFERENCE_THUMB_SIZE), dtype=np.float32)
        fines = np.zeros((len(refs), REFERENCE_FINE_SIZE, REFERENCE_FINE_SIZE), dtype=np.float32)
        aspects = np.zeros(len(refs), dtype=np.float64)
        for row, ref in enumerate(refs):
            image = ref.open()
            aspects[row] = image.width / image.height
            thumbs[row] = gray_thumb(image, REFERENCE_THUMB_SIZE)
            fines[row] = gray_thumb(image, REFERENCE_FINE_SIZE)
            hashes[row] = phash_dihedral(image)
        embeddings = _normalise(np.asarray(embed(list(refs), progress), dtype=np.float32).reshape(len(refs), -1))
        # Rounded as `save` stores them, so a fresh index and one read back decide alike.
        return cls(
            ids=[r.name for r in refs], splits=list(splits), pair_ids=[p or "" for p in pair_ids],
            hashes=hashes, thumbs=_float16_rounded(thumbs), fines=_float16_rounded(fines), aspects=aspects,
            embeddings=_float16_rounded(embeddings),
        )


def _float16_rounded(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float16).astype(np.float32)


@dataclass(frozen=True)
class ReferenceGroup:
    """Reference images of one split, with each image's pair id ("" when it has none)."""

    split: str
    refs: Sequence[ImageRef]
    pair_ids: Sequence[str]


def reference_index(
    groups: Sequence[ReferenceGroup],
    embed: EmbedFn,
    *,
    embedder_id: str,
    cache_dir: Path | None,
    progress: bool = False,
) -> ReferenceIndex:
    """The ReferenceIndex of every group, each read from `cache_dir/leakage/` when built before.

    Each split is cached on its own (keyed by its images' SHA-256s, the embedder and GATE_VERSION),
    so the open track (test only) and the generated track (test + train_real) share the test part.
    """
    parts = []
    for group in groups:
        key = sha256_json({
            "gate_version": GATE_VERSION, "embedder": embedder_id, "split": group.split,
            "refs": [[r.sha256, p or ""] for r, p in zip(group.refs, group.pair_ids)],
        })
        path = cache_dir / "leakage" / f"reference-{key[:32]}.npz" if cache_dir is not None else None
        index = None
        if path is not None and path.is_file():
            try:
                index = ReferenceIndex.load(path)
                if index.key != key:
                    index = None
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                # Truncated or corrupted (a killed write, a full disk): discarded, rebuilt below.
                log.warning("leakage index %s is unreadable (%s: %s); discarding and rebuilding it",
                            path, type(exc).__name__, exc)
                path.unlink(missing_ok=True)
                index = None
        if index is None:
            index = ReferenceIndex.build(group.refs, [group.split] * len(group.refs), group.pair_ids, embed, progress=progress)
            index.key = key
            if path is not None:
                index.save(path)
        parts.append(index)
    return ReferenceIndex.concatenate(parts)


# ----------------------------------------------------------------------------------------------
# matching
# ----------------------------------------------------------------------------------------------


@dataclass
class LeakageMatch:
    """A submitted image found to be a near-copy of a reference image."""

    query: int  # row in the query list
    reference_id: str
    split: str
    reason: str  # "phash" (hash alone), "geometry" (verified alignment) or "exact" (same-pair copy)
    phash_distance: int
    cosine: float
    ncc: float  # the fine score (nan when the pHash alone decided)

    def describe(self) -> str:
        score = "" if np.isnan(self.ncc) else f", match score {self.ncc:.3f}"
        return (
            f"near-copy of {self.split} image {self.reference_id} "
            f"(pHash distance {self.phash_distance}/64{score}, embedding cosine {self.cosine:.3f})"
        )


#: (8,) bool: the orientations that swap an image's axes (odd quarter turns).
_TRANSPOSED = torch.tensor([k % 2 == 1 for k in _DIHEDRAL])


def _oriented_kernels(thumbs: torch.Tensor) -> torch.Tensor:
    """(N, S, S) thumbnails -> (N, 8, S*S) NCC kernels: each thumbnail in the 8 orientations of
    `_dihedral_array`, zero-mean and unit-norm."""
    mirrored = thumbs.flip(2)
    # torch.rot90 turns counter-clockwise like np.rot90.
    oriented = torch.stack([torch.rot90(mirrored if k >= 4 else thumbs, k % 4, dims=(1, 2)) for k in _DIHEDRAL], dim=1)
    kernels = oriented.flatten(2)
    kernels = kernels - kernels.mean(dim=2, keepdim=True)
    return kernels / kernels.norm(dim=2, keepdim=True).clamp_min(1e-6)


@dataclass
class _Alignment:
    """Where a query sits in a reference: orientation k and the box (x0, y0, x1, y1) in [0, 1]."""

    score: float
    k: int
    box: tuple[float, float, float, float]


def _coarse_align(
    kernels: torch.Tensor, tensors: "_ReferenceTensors", rows: np.ndarray, ref_aspect: float, query_aspect: float
) -> list[list[_Alignment]]:
    """Coarse alignments of the query in each reference: per crop scale, the best orientation and
    offset. Returns, per reference, one _Alignment per scale searched.

    `kernels` is (8, 1, T, T): the query's THUMB_SIZE thumbnail as `_oriented_kernels`; `rows` are
    the C candidate references (of the same aspect), whose thumbnails come resized to each search
    size from `tensors.coarse_level` (shared by every query). The query (aspect
    `query_aspect`, width/height) covers a `fx` x `fy` fraction of a reference; the template is
    slid over the reference resized so that such a region is THUMB_SIZE x THUMB_SIZE.
    Orientations are applied to the query (the reference stays upright): kernel
    dihedral(q, k) matches a region shaped like dihedral(q, k), so for odd quarter turns the
    query's aspect is transposed. Every scale is kept, not only the best: at 32 px neighbouring
    scales score alike, and the fine stage tells them apart.
    """
    T = THUMB_SIZE
    n = len(rows)
    index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    best: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # scale index -> score, k, box
    for transposed in (False, True):
        ks = (_TRANSPOSED == transposed).nonzero().flatten()
        for scale_index, width, height in _search_sizes(T, ref_aspect, query_aspect, transposed):
            x, spread = tensors.coarse_level(width, height)
            x, spread = x[index], spread[index]
            numerator = F.conv2d(x, kernels[ks])  # (C, K, h, w): sum(t * window), t zero-mean unit-norm
            # + 1e-3 keeps flat windows (variance ~0) from dividing by zero; they score ~0.
            ncc = numerator / (spread + 1e-3)
            values, where = ncc.flatten(1).max(dim=1)
            h_out, w_out = numerator.shape[-2:]
            k_index, rest = where // (h_out * w_out), where % (h_out * w_out)
            top, left = _subpixel_peak(ncc[torch.arange(n), k_index], rest // w_out, rest % w_out)
            box = torch.stack([left / width, top / height, (left + T) / width, (top + T) / height], dim=1)
            if scale_index in best:
                old_values, old_k, old_box = best[scale_index]
                better = values > old_values
                values = torch.where(better, values, old_values)
                k_found = torch.where(better, ks[k_index], old_k)
                box = torch.where(better[:, None], box, old_box)
            else:
                k_found = ks[k_index]
            best[scale_index] = (values, k_found, box)
    return [
        [
            _Alignment(float(values[c]), int(k_found[c]), tuple(float(v) for v in box[c]))
            for values, k_found, box in best.values()
        ]
        for c in range(n)
    ]


def _subpixel_peak(ncc: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The NCC peaks of (C, h, w) maps at integer (top, left), refined to a fraction of a pixel by
    a parabola through each peak and its two neighbours per axis (none at an edge). The fine
    stage's band-passed detail loses much of its agreement at half a pixel off, so it starts from
    here rather than from the coarse grid."""

    def offset(before: torch.Tensor, peak: torch.Tensor, after: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        curvature = before - 2 * peak + after
        shift = torch.where(curvature < -1e-6, 0.5 * (before - after) / curvature.clamp_max(-1e-6), torch.zeros_like(peak))
        return torch.where(inside, shift.clamp(-0.5, 0.5), torch.zeros_like(peak))

    rows = torch.arange(ncc.shape[0])
    h, w = ncc.shape[-2:]
    up, down = (top - 1).clamp_min(0), (top + 1).clamp_max(h - 1)
    west, east = (left - 1).clamp_min(0), (left + 1).clamp_max(w - 1)
    peak = ncc[rows, top, left]
    dy = offset(ncc[rows, up, left], peak, ncc[rows, down, left], (top > 0) & (top < h - 1))
    dx = offset(ncc[rows, top, west], peak, ncc[rows, top, east], (left > 0) & (left < w - 1))
    return top.float() + dy, left.float() + dx


def _search_sizes(size: int, ref_aspect: float, query_aspect: float, transposed: bool) -> list[tuple[int, int, int]]:
    """(scale index, width, height) to resize a reference to, per crop scale searched, so that the
    region a query (in an orientation that swaps its axes or not) covers is size x size."""
    aspect = (1.0 / query_aspect if transposed else query_aspect) / ref_aspect
    sizes = []
    for scale_index, scale in enumerate(CROP_SCALES):
        fx, fy = (scale, scale / aspect) if aspect >= 1 else (scale * aspect, scale)
        if min(fx, fy) < MIN_CROP - 1e-9:
            continue
        sizes.append((scale_index, max(size, round(size / fx)), max(size, round(size / fy))))
    return sizes


def _window_spread(x: torch.Tensor, size: int) -> torch.Tensor:
    """sqrt(size^2 x variance) of every size x size window of (N, 1, H, W): the norm of the
    zero-mean window, the NCC denominator for a zero-mean unit-norm template."""
    mean = _window_sums(x, size) / (size * size)
    mean_sq = _window_sums(x * x, size) / (size * size)
    return ((mean_sq - mean * mean).clamp_min(0) * (size * size)).sqrt()


def _window_sums(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sums over every size x size window of (N, 1, H, W), stride 1, from an integral image."""
    integral = F.pad(x.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    return (
        integral[..., size:, size:] - integral[..., :-size, size:]
        - integral[..., size:, :-size] + integral[..., :-size, :-size]
    )


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x * x) / (2 * sigma * sigma))
    return kernel / kernel.sum()


@functools.lru_cache(maxsize=256)
def _blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """(size, size) matrix of a 1-D Gaussian blur with replicated borders: blur(v) = M @ v."""
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    matrix = torch.zeros(size, size)
    for i in range(size):
        for offset in range(-radius, radius + 1):
            matrix[i, min(max(i + offset, 0), size - 1)] += kernel[offset + radius]
    return matrix


def _bandpass(x: torch.Tensor) -> torch.Tensor:
    """Difference of Gaussians on (N, 1, S, S): the detail a copy shares with its source.

    The sigmas scale with the thumbnail (BANDPASS_SIGMAS at FINE_SIZE), so the same band of detail
    is kept whatever the fine size. Each separable blur is two small matrix products (M X M^T),
    much faster on CPU than a one-channel convolution.
    """
    return _bandpass_rect(x, _fine_sigmas(x.shape[-1]))


def _fine_sigmas(size: int) -> tuple[float, float]:
    return tuple(round(sigma * size / FINE_SIZE, 4) for sigma in BANDPASS_SIGMAS)


def _bandpass_rect(x: torch.Tensor, sigmas: tuple[float, float]) -> torch.Tensor:
    """Difference of Gaussians (sigmas in pixels) on (N, 1, H, W), any H and W."""
    height, width = x.shape[-2:]
    (fine, coarse) = sigmas
    return (
        _blur_matrix(height, fine) @ x @ _blur_matrix(width, fine).T
        - _blur_matrix(height, coarse) @ x @ _blur_matrix(width, coarse).T
    )


def _flat_mask(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grayscale -> bool mask of its flat pixels: 3 x 3 neighbourhoods whose standard
    deviation is under FLAT_STD (a cutout box, a padding border, nodata, a fill colour; also calm
    water), grown by one pixel so that the rim where a flat area meets content is included."""
    mean = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    mean_sq = F.avg_pool2d(x * x, 3, stride=1, padding=1, count_include_pad=False)
    flat = ((mean_sq - mean * mean).clamp_min(0) < FLAT_STD * FLAT_STD).float()
    return F.max_pool2d(flat, 3, stride=1, padding=1) > 0


def _prefilter_flat_mask(thumbs: torch.Tensor, fines: torch.Tensor) -> torch.Tensor:
    """(N, 1, T, T) flat mask of THUMB_SIZE thumbnails (as `_flat_mask`), with the flat areas of
    their fine thumbnails (N, 1, F, F) carried down: a thin cutout box (a few thumbnail pixels wide)
    has no flat 3 x 3 neighbourhood at THUMB_SIZE, only at the fine size, and unmasked its edges
    would dominate the prefilter's scores (aid6: 4 of 600 cutouts of test images were dropped so).
    Queries and references are masked alike, so that an image matches itself."""
    carried = F.interpolate(_flat_mask(fines).float(), size=thumbs.shape[-2:], mode="area") >= 0.5
    return _flat_mask(thumbs) | carried


def _filled(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`x` with its masked pixels replaced by a smooth fill from the content around them
    (normalised convolution, Gaussian of sigma FILL_SIGMA x the side; the mean of the content
    where none is near). A band-pass of the result then shows the content's own detail, not the
    step where a cutout box or a border meets it."""
    valid = (~mask).float()
    size = max(x.shape[-2:])
    sigma = max(1.0, FILL_SIGMA * size)
    height, width = x.shape[-2:]
    blur_h, blur_w = _blur_matrix(height, sigma), _blur_matrix(width, sigma)
    weight = blur_h @ valid @ blur_w.T
    smooth = (blur_h @ (x * valid) @ blur_w.T) / weight.clamp_min(1e-3)
    content_mean = (x * valid).sum(dim=(-2, -1), keepdim=True) / valid.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
    smooth = torch.where(weight > 1e-3, smooth, content_mean)
    return torch.where(mask, smooth, x)


def _masked_bandpass(
    x: torch.Tensor, sigmas: tuple[float, float], mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Band-pass of (N, 1, H, W) with flat areas filled first and zeroed after: (band, flat mask).
    Flat areas then add nothing to any NCC, and their borders add no false edge. `mask` (flat
    pixels, as `_flat_mask`) is computed from `x` when not given."""
    mask = _flat_mask(x) if mask is None else mask
    if not bool(mask.any()):
        return _bandpass_rect(x, sigmas), mask
    band = _bandpass_rect(_filled(x, mask), sigmas)
    return band.masked_fill(mask, 0.0), mask


def _resized_masked_bandpass(
    thumbs: torch.Tensor, flat: torch.Tensor, height: int, width: int, sigmas: tuple[float, float]
) -> torch.Tensor:
    """`_masked_bandpass` of thumbnails resized to height x width, their flat mask found at their
    own size (a small cutout box is no longer flat once a thumbnail is shrunk) and resized too."""
    if thumbs.shape[-2:] == (height, width):
        return _masked_bandpass(thumbs, sigmas, flat)[0]
    x = F.interpolate(thumbs, size=(height, width), mode="area")
    mask = F.interpolate(flat.float(), size=(height, width), mode="area") > 0.25
    return _masked_bandpass(x, sigmas, mask)[0]


def _unit(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-6)


def _patches(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, S, S) -> unit vectors of its PATCH_GRID x PATCH_GRID patches, zero-mean each,
    (N, P, p*p), and each patch's energy (N, P)."""
    n, size = x.shape[0], x.shape[-1]
    p = size // PATCH_GRID
    patches = x[..., : p * PATCH_GRID, : p * PATCH_GRID].reshape(n, PATCH_GRID, p, PATCH_GRID, p)
    patches = patches.permute(0, 1, 3, 2, 4).reshape(n, PATCH_GRID * PATCH_GRID, p * p)
    patches = patches - patches.mean(dim=2, keepdim=True)
    energy = patches.norm(dim=2)
    return patches / energy.clamp_min(1e-6)[..., None], energy


@dataclass
class _QueryBands:
    """The query's band-passed fine thumbnail in its 8 orientations: whole and per patch."""

    whole: torch.Tensor  # (8, S*S) unit vectors
    patches: torch.Tensor  # (8, P, p*p) unit vectors
    informative: torch.Tensor  # (8, P) bool: patches with detail enough to compare, per orientation


def _query_bands(query_fine: np.ndarray) -> _QueryBands:
    oriented = np.stack([np.ascontiguousarray(_dihedral_array(query_fine, k)) for k in _DIHEDRAL])
    x = torch.from_numpy(oriented)[:, None]
    bands, flat = _masked_bandpass(x, _fine_sigmas(x.shape[-1]))
    patches, energy = _patches(bands)
    # Patches of low detail (sky, water) or mostly flat (a cutout box, a border) carry no evidence
    # either way: they are left out of the median.
    informative = energy >= FLAT_PATCH_FRACTION * energy.median(dim=1, keepdim=True).values
    informative &= _patch_means(flat.float()) <= MAX_FLAT_IN_PATCH
    return _QueryBands(_unit(bands), patches, informative)


def _patch_means(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) -> (N, P): the mean of each of the PATCH_GRID x PATCH_GRID patches."""
    p = x.shape[-1] // PATCH_GRID
    return F.avg_pool2d(x[..., : p * PATCH_GRID, : p * PATCH_GRID], p).flatten(1)


def _fine_ncc(
    bands: _QueryBands, reference_fines: torch.Tensor, alignments: Sequence[_Alignment], *, refine: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, list[_Alignment]]:
    """Fine scores of the query against the region of each reference the coarse stage found.
    `reference_fines` is (C, 2, S, S): each reference's fine thumbnail with its flat areas filled,
    and its flat mask (`_ReferenceTensors.fines_masked`).

    Returns (patch score, whole NCC, alignment): the median over informative patches of the
    band-passed patch NCCs, the band-passed NCC of the whole thumbnail, each (C,), and the
    alignments with the box of the best resampling. Each region is resampled (bilinear
    `grid_sample`) at its box and, with `refine` > 0, at small shifts and scalings around it
    (`refine` x half a coarse pixel, `refine` x FINE_ZOOM), since the coarse search is quantised.
    """
    size = int(round(bands.whole.shape[1] ** 0.5))
    zoom_step = FINE_ZOOM * refine
    zooms, shifts = ((1.0 - zoom_step, 1.0, 1.0 + zoom_step), (-refine, 0.0, refine)) if refine else ((1.0,), (0.0,))
    warps = []  # (scale x, offset x, scale y, offset y) in grid_sample's [-1, 1] units
    for alignment in alignments:
        x0, y0, x1, y1 = alignment.box
        cx, cy, half_w, half_h = x0 + x1 - 1.0, y0 + y1 - 1.0, x1 - x0, y1 - y0
        step_x, step_y = half_w / THUMB_SIZE, half_h / THUMB_SIZE
        for zoom in zooms:
            for dy in shifts:
                for dx in shifts:
                    warps.append((half_w * zoom, cx + dx * step_x, half_h * zoom, cy + dy * step_y))
    per = len(warps) // len(alignments)
    warp = torch.tensor(warps, dtype=torch.float32)
    # Axis-aligned warps: the sampling grid is separable (cheaper than affine_grid).
    base = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1  # pixel centres
    grid_x = (warp[:, 0:1] * base + warp[:, 1:2])[:, None, :].expand(-1, size, -1)
    grid_y = (warp[:, 2:3] * base + warp[:, 3:4])[:, :, None].expand(-1, -1, size)
    grid = torch.stack([grid_x, grid_y], dim=-1)
    source = reference_fines.repeat_interleave(per, dim=0) if per > 1 else reference_fines
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    flat = warped[:, 1:] > 0.5
    warped = _bandpass(warped[:, :1]).masked_fill(flat, 0.0)
    orientation = torch.tensor([a.k for a in alignments]).repeat_interleave(per)
    whole = (_unit(warped) * bands.whole[orientation]).sum(dim=1)
    patch_units, _ = _patches(warped)
    per_patch = (patch_units * bands.patches[orientation]).sum(dim=2)  # (C * per, P)
    # Content left on both sides only: flat areas of the reference region are no evidence either.
    informative = bands.informative[orientation] & (_patch_means(flat.float()) <= MAX_FLAT_IN_PATCH)
    per_patch = torch.where(informative, per_patch, torch.full_like(per_patch, float("nan")))
    patch_score = per_patch.nanmedian(dim=1).values
    # Too little content left to align: geometry decides nothing (scored below any threshold).
    patch_score = torch.where(informative.sum(dim=1) >= MIN_INFORMATIVE_PATCHES, patch_score, torch.tensor(-1.0))
    best_score, best = patch_score.view(len(alignments), per).max(dim=1)
    chosen = warp.view(len(alignments), per, 4)[torch.arange(len(alignments)), best]
    boxes = torch.stack([(chosen[:, 1] - chosen[:, 0] + 1) / 2, (chosen[:, 3] - chosen[:, 2] + 1) / 2,
                         (chosen[:, 1] + chosen[:, 0] + 1) / 2, (chosen[:, 3] + chosen[:, 2] + 1) / 2], dim=1)
    moved = [_Alignment(a.score, a.k, tuple(float(v) for v in box)) for a, box in zip(alignments, boxes)]
    return best_score, whole.view(len(alignments), per).max(dim=1).values, moved


# -- the cascade's prefilter --------------------------------------------------------------------


class _ReferenceTensors:
    """The index's thumbnails as torch tensors, and their band-passed crop-scale pyramids for the
    prefilter (built on first use, shared by every query and thread of a gate run)."""

    def __init__(self, index: ReferenceIndex):
        self.thumbs = torch.from_numpy(index.thumbs)[:, None]  # (R, 1, S, S)
        self.fines = torch.from_numpy(index.fines)[:, None]
        self.aspect_keys = np.round(index.aspects, 2)
        # Flat areas found at the query thumbnails' sizes, so that both sides mask alike.
        self.flat = _prefilter_flat_mask(F.interpolate(self.thumbs, size=(THUMB_SIZE, THUMB_SIZE), mode="area"),
                                         F.interpolate(self.fines, size=(FINE_SIZE, FINE_SIZE), mode="area"))
        # The fine stage's references: flat areas found at the query's fine size, filled once here
        # (image and mask are then warped together, two channels of one resampling).
        side = self.fines.shape[-1]
        flat = _flat_mask(F.interpolate(self.fines, size=(FINE_SIZE, FINE_SIZE), mode="area"))
        flat = F.interpolate(flat.float(), size=(side, side), mode="bilinear", align_corners=False) > 0.5
        self.fines_masked = torch.cat([_filled(self.fines, flat), flat.float()], dim=1)  # (R, 2, S, S)
        self._levels: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def coarse_level(self, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every reference thumbnail resized to width x height, (R, 1, height, width), and the
        spread of each of its THUMB_SIZE windows (the coarse search's sizes, `_coarse_align`)."""
        return self._cached(("coarse", width, height), lambda: self._with_spread(
            F.interpolate(self.thumbs, size=(height, width), mode="area"), THUMB_SIZE))

    def _with_spread(self, x: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return x, _window_spread(x, size)

    def _cached(self, key: tuple, make: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        found = self._levels.get(key)
        if found is None:
            with self._lock:
                found = self._levels.get(key)
                if found is None:
                    found = self._levels[key] = make()
        return found

    def level(self, size: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every reference resized to width x height and band-passed, (R, 1, height, width), and
        the spread of each of its size x size windows, (R, 1, h, w)."""
        return self._cached(("prefilter", size, width, height), lambda: self._with_spread(
            _resized_masked_bandpass(self.thumbs, self.flat, height, width, PREFILTER_SIGMAS), size))


def _batched_prefilter(
    tensors: _ReferenceTensors,
    signatures: Sequence[QuerySignature],
    candidates: Sequence[np.ndarray],
    size: int,
    allowed: Sequence[np.ndarray] | None = None,
    pool=None,
) -> list[np.ndarray]:
    """The prefilter's scores of every (query, candidate) pair at one thumbnail size, per
    orientation: the best band-passed NCC of the query's size-px thumbnail, turned by k, in the
    candidate, over every crop scale and offset. This is the verification's coarse search on
    band-passed thumbnails, where distinct images agree far less than on raw intensities. Returns,
    per query, a (C, 8) array in its candidates' order; with `allowed` (per query, (C, 8) bool) only
    those orientations are searched, the others score -1.

    Pairs are grouped by reference, so each reference's windows at each crop scale are unfolded
    once and scored against the kernels of every query that has it as a candidate in one matrix
    product (a per-query convolution spends most of its time on tiny single-channel images).
    References are scored in `pool` (an executor) when given."""
    n_pairs = sum(len(c) for c in candidates)
    splits = np.cumsum([len(c) for c in candidates])[:-1]
    per_k = torch.full((n_pairs, len(_DIHEDRAL)), -1.0)
    if n_pairs == 0:
        return [np.zeros((0, len(_DIHEDRAL)), np.float32) for _ in candidates]
    thumbs = torch.from_numpy(np.stack([s.thumb for s in signatures]))[:, None]
    flat = torch.cat([s.prefilter_flat for s in signatures])
    band = _resized_masked_bandpass(thumbs, flat, size, size, PREFILTER_SIGMAS)
    kernels = _oriented_kernels(band[:, 0])  # (Q, 8, size^2)
    # A masked query (a cutout box) is compared on its content only, but each window's norm counts
    # the whole window, and the box's rim loses detail too: its scores are divided by the share of
    # content left (an only-dropping stage: this lets more of such queries' candidates through).
    valid = 1.0 - flat.float().mean(dim=(1, 2, 3))
    boost = 1.0 / valid.clamp(MIN_PREFILTER_VALID, 1.0)

    query_of = np.repeat(np.arange(len(candidates)), [len(c) for c in candidates])
    reference_of = np.concatenate(candidates)
    pair_allowed = torch.from_numpy(np.concatenate(allowed)) if allowed is not None else None
    plan_list, plan_of = _prefilter_plans(tensors, signatures, query_of, reference_of, size)
    order = np.lexsort((plan_of, reference_of))
    bounds = np.flatnonzero(np.diff(reference_of[order] * len(plan_list) + plan_of[order])) + 1

    def score(run: np.ndarray) -> None:
        r, plan = int(reference_of[run[0]]), plan_list[plan_of[run[0]]]
        run_t = torch.from_numpy(run)
        queries = torch.from_numpy(query_of[run])
        for (width, height), ks in plan:
            x, spread = tensors.level(size, width, height)
            windows = F.unfold(x[r : r + 1], size)[0] / (spread[r].flatten() + 1e-3)  # (size^2, P)
            ks_tensor = torch.tensor(ks)
            if pair_allowed is None:
                pairs, k = torch.arange(len(run)).repeat_interleave(len(ks)), ks_tensor.repeat(len(run))
            else:
                pairs, which = pair_allowed[run_t][:, ks_tensor].nonzero(as_tuple=True)
                k = ks_tensor[which]
            if len(pairs) == 0:
                continue
            values = (kernels[queries[pairs], k] @ windows).amax(dim=1)
            rows = run_t[pairs]
            per_k[rows, k] = torch.maximum(per_k[rows, k], values)

    runs = np.split(order, bounds)
    for _ in pool.map(score, runs) if pool is not None else map(score, runs):
        pass
    per_k = torch.where(per_k > -1.0, per_k * boost[torch.from_numpy(query_of)][:, None], per_k)
    return np.split(per_k.numpy(), splits)


def _prefilter_plans(
    tensors: _ReferenceTensors, signatures: Sequence[QuerySignature], query_of: np.ndarray, reference_of: np.ndarray, size: int
) -> tuple[list[tuple], np.ndarray]:
    """The search plans of the prefilter's pairs: per plan, the reference shapes to unfold and the
    orientations to score in each (they depend on the query's and the reference's aspect; usually
    one plan), and each pair's plan. Query aspects are rounded to PREFILTER_ASPECT_STEPS."""
    step = PREFILTER_ASPECT_STEPS.get(size, PREFILTER_ASPECT_STEPS[max(PREFILTER_ASPECT_STEPS)])
    query_aspects = (step ** np.round(np.log([s.aspect for s in signatures]) / np.log(step))).tolist()
    plans: dict[tuple, int] = {}
    plan_of = np.zeros(len(query_of), dtype=np.int64)
    plan_cache: dict[tuple[float, float], int] = {}
    for pair, (q, r) in enumerate(zip(query_of, reference_of)):
        key = (float(tensors.aspect_keys[r]), query_aspects[q])
        if key not in plan_cache:
            by_shape: dict[tuple[int, int], list[int]] = {}
            for transposed in (False, True):
                ks = (_TRANSPOSED == transposed).nonzero().flatten().tolist()
                for _, width, height in _search_sizes(size, key[0], key[1], transposed):
                    by_shape.setdefault((width, height), []).extend(ks)
            plan = tuple((shape, tuple(ks)) for shape, ks in by_shape.items())
            plan_cache[key] = plans.setdefault(plan, len(plans))
        plan_of[pair] = plan_cache[key]
    return list(plans), plan_of


def _orientations_passing(per_k: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """(C, 8) bool: the orientations a prefilter stage passes on to the next, those scoring at
    least `threshold` (a number, or (C, 1) per candidate; the best one where none does, so that
    calibration scores every stage). A query half masked by a box can find a mirror of itself
    nearly as good as the true orientation at 16 px: every orientation that passed is searched at
    32 px."""
    passing = per_k >= threshold
    best = per_k == per_k.max(axis=1, keepdims=True)
    return np.where(passing.any(axis=1, keepdims=True), passing, best)


# -- the decision --------------------------------------------------------------------------------


@dataclass
class GateResult:
    matches: list[LeakageMatch] = field(default_factory=list)
    n_checked: int = 0
    #: How far the cascade went, summed over queries: "candidates" (query x reference pairs
    #: retrieved), "prefilter<size>" (pairs past that stage), "verified" (pairs geometrically
    #: verified), "phash" (queries decided by the hash alone).
    stages: dict[str, int] = field(default_factory=dict)


@dataclass
class _Retrieved:
    """One query's candidates left (after retrieval, then after each prefilter stage), with their
    embedding cosine and pHash distance."""

    candidates: np.ndarray  # reference rows
    cosine: np.ndarray
    distance: np.ndarray


def find_near_copies(
    index: ReferenceIndex,
    signatures: Sequence[QuerySignature | None],
    embeddings: np.ndarray,
    *,
    same_pair: Sequence[str | None] | None = None,
    progress: bool = False,
    workers: int | None = None,
    candidates: tuple[int, int] = (EMBEDDING_CANDIDATES, PHASH_CANDIDATES),
) -> GateResult:
    """Near-copies among the queries (one signature + embedding row each; None rows are skipped).

    `same_pair[i]` is the pair id of the generation input query i was made from: the reference
    with that pair id (its own tile's post image) only counts as matched by an exact copy.
    Retrieval (pHash distances and embedding cosines to every reference) runs for a block of
    queries at once, and each prefilter stage for all queries at once, reference by reference;
    both prefilter and verification run in `workers` threads (default: one per CPU core), each
    running torch single-threaded: the tensors per query or reference are too small for intra-op
    parallelism to pay. A query's decision depends on no other query. `candidates`: how many
    nearest references by embedding and by pHash each query is verified against.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    result = GateResult(stages=dict.fromkeys(_STAGES, 0))
    if len(index) == 0:
        return result
    embeddings = _normalise(embeddings) if len(embeddings) else embeddings
    tensors = _ReferenceTensors(index)
    pair_array = np.array(index.pair_ids, dtype=object)
    rows = [i for i, s in enumerate(signatures) if s is not None]
    decided: dict[int, LeakageMatch] = {}
    retrieved: dict[int, _Retrieved] = {}
    with tqdm(total=len(rows), desc="leakage gate", unit="img", disable=not progress) as bar:
        for start in range(0, len(rows), _QUERY_BLOCK):
            block = rows[start : start + _QUERY_BLOCK]
            cosines = embeddings[block] @ index.embeddings.T  # (B, R)
            hashes = np.stack([signatures[i].phashes() for i in block])  # (B, 2)
            # (B, R): the best orientation, and the better of the trimmed and the whole image's hash
            distances = hamming(index.hashes[None, None], hashes[:, :, None, None]).min(axis=(1, 3))
            for i, cosine, distance in zip(block, cosines, distances):
                exempt = pair_array == same_pair[i] if same_pair is not None and same_pair[i] else None
                outcome = _retrieve(index, tensors, signatures[i], cosine, distance, exempt, None, result.stages, candidates)
                if isinstance(outcome, LeakageMatch):
                    decided[i] = outcome
                else:
                    retrieved[i] = outcome
        result.stages["candidates"] = sum(len(r.candidates) for r in retrieved.values())

        def verify(i: int) -> tuple[int, LeakageMatch | None, dict[str, int]]:
            stages: dict[str, int] = {}
            return i, _verify(index, tensors, signatures[i], retrieved[i], None, stages), stages

        workers = max(1, workers or os.cpu_count() or 1)
        threads = torch.get_num_threads()
        # Threads of single-threaded torch: its own thread pool would spin on these small tensors.
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                retrieved = _prefilter(tensors, signatures, retrieved, result.stages, pool)
                bar.update(len(rows) - len(retrieved))
                for i, found, stages in pool.map(verify, list(retrieved)):
                    for stage, n in stages.items():
                        result.stages[stage] += n
                    if found is not None:
                        decided[i] = found
                    bar.update(1)
        finally:
            torch.set_num_threads(threads)
    result.n_checked = len(rows)
    for i in sorted(decided):
        decided[i].query = i
        result.matches.append(decided[i])
    return result


def query_scores(
    index: ReferenceIndex, sig: QuerySignature, embedding: np.ndarray, tensors: _ReferenceTensors | None = None
) -> dict[str, float]:
    """The gate's scores for one query against its candidates (for calibration).

    Keys: phash_distance (min over references), cosine (max), prefilter<size> (best prefilter score
    of each stage), coarse_ncc, ncc and whole_ncc (verification, best refined candidate): every
    stage is run on every candidate, whatever the decision.
    """
    embedding = _normalise(np.asarray(embedding, dtype=np.float32)[None])[0]
    tensors = _ReferenceTensors(index) if tensors is None else tensors
    scores: dict[str, float] = {}
    distance = sig.distances(index.hashes)
    retrieved = _retrieve(index, tensors, sig, index.embeddings @ embedding, distance, None, scores, {})
    allowed = None
    for size, threshold in PREFILTER_STAGES:
        per_k = _batched_prefilter(tensors, [sig], [retrieved.candidates], size, allowed)[0]
        scores[f"prefilter{size}"] = float(per_k.max())
        allowed = [_orientations_passing(per_k, threshold)]
    _verify(index, tensors, sig, retrieved, scores, {})
    return scores


def _exact_copy_ncc(sig: QuerySignature, reference_thumb: torch.Tensor, reference_hashes: np.ndarray) -> float:
    """Plain NCC of the query and a reference, full frame, in the orientation their pHashes agree on.

    Both thumbnails are box-filtered from the full images (the reference's 2x2-averaged from its
    REFERENCE_THUMB_SIZE one), so a byte or pixel copy scores ~1 and anything edited visibly less.
    """
    k = int(np.argmin(hamming(reference_hashes, sig.phash)))
    ref = F.avg_pool2d(reference_thumb[None, None], REFERENCE_THUMB_SIZE // THUMB_SIZE)[0, 0]
    query = torch.from_numpy(np.ascontiguousarray(_dihedral_array(sig.thumb, k)))
    return float((_unit(query[None]) * _unit(ref[None])).sum())


#: Queries whose retrieval matrices (pHash distances, cosines to every reference) are computed
#: together: bounds memory at B x R x 8 hashes.
_QUERY_BLOCK = 256
_STAGES = ("phash", "candidates", *(f"prefilter{size}" for size, _ in PREFILTER_STAGES), "verified")


def _retrieve(
    index: ReferenceIndex,
    tensors: _ReferenceTensors,
    sig: QuerySignature,
    cosine: np.ndarray,
    distance: np.ndarray,
    exempt: np.ndarray | None,
    scores: dict | None,
    stages: dict,
    candidates: tuple[int, int] = (EMBEDDING_CANDIDATES, PHASH_CANDIDATES),
) -> LeakageMatch | _Retrieved:
    """The decisions that need no verification (an exact copy of the exempt same-pair image, a
    pHash distance within PHASH_MAX_DISTANCE), else the candidates for the cascade."""
    if exempt is not None:
        # The exempt same-pair image still counts when it is an exact copy.
        for j in np.flatnonzero(exempt):
            ncc = _exact_copy_ncc(sig, tensors.thumbs[j, 0], index.hashes[j]) if distance[j] == 0 else 0.0
            if ncc >= SAME_PAIR_NCC_MIN:
                return LeakageMatch(-1, index.ids[j], index.splits[j], "exact", 0, float(cosine[j]), ncc)
        distance = np.where(exempt, 99, distance)
        cosine = np.where(exempt, -2.0, cosine)
    else:
        exempt = np.zeros(len(index), dtype=bool)
    nearest = int(distance.argmin())
    if scores is not None:
        scores.update(phash_distance=float(distance[nearest]), cosine=float(cosine.max()))
    elif distance[nearest] <= PHASH_MAX_DISTANCE:
        stages["phash"] = stages.get("phash", 0) + 1
        return LeakageMatch(-1, index.ids[nearest], index.splits[nearest], "phash", int(distance[nearest]),
                            float(cosine[nearest]), float("nan"))
    by_embedding = np.argsort(-cosine, kind="stable")[: candidates[0]]
    by_hash = np.argsort(distance, kind="stable")[: candidates[1]]
    candidates = np.array(sorted(set(by_embedding.tolist()) | set(by_hash.tolist())), dtype=np.int64)
    candidates = candidates[~exempt[candidates]]
    return _Retrieved(candidates, cosine[candidates], distance[candidates])


def _prefilter(
    tensors: _ReferenceTensors,
    signatures: Sequence[QuerySignature],
    retrieved: dict[int, _Retrieved],
    stages: dict,
    pool=None,
) -> dict[int, _Retrieved]:
    """The PREFILTER_STAGES, each for every query at once: per query (a row of `signatures`), the
    candidates that could still be near-copies; queries left with none are dropped. The first
    stage searches every orientation, the next ones only those that passed the one before."""
    allowed: list[np.ndarray] | None = None
    for size, threshold in PREFILTER_STAGES:
        if not retrieved:
            break
        queries = list(retrieved)
        per_query = _batched_prefilter(
            tensors, [signatures[i] for i in queries], [retrieved[i].candidates for i in queries], size, allowed, pool,
        )
        kept: dict[int, _Retrieved] = {}
        allowed = []
        for i, per_k in zip(queries, per_query):
            r = retrieved[i]
            needed = _prefilter_minimum(threshold, r.cosine)[:, None]
            keep = (per_k >= needed).any(axis=1)
            stages[f"prefilter{size}"] = stages.get(f"prefilter{size}", 0) + int(keep.sum())
            if keep.any():
                kept[i] = _Retrieved(r.candidates[keep], r.cosine[keep], r.distance[keep])
                allowed.append(_orientations_passing(per_k[keep], needed[keep]))
        retrieved = kept
    return retrieved


def _prefilter_minimum(threshold: float, cosine: np.ndarray) -> np.ndarray:
    """Per candidate, the prefilter score it needs to go on: the stage's threshold, or
    DECISIVE_PREFILTER_MIN where the embedding disagrees (below COSINE_MIN such a candidate can
    only be matched by a decisive fine score, and near-copies that geometry decides alone score
    far above the stage's threshold)."""
    return np.where(np.asarray(cosine) >= COSINE_MIN, threshold, max(threshold, DECISIVE_PREFILTER_MIN))


def _verify(
    index: ReferenceIndex,
    tensors: _ReferenceTensors,
    sig: QuerySignature,
    retrieved: _Retrieved,
    scores: dict | None,
    stages: dict,
) -> LeakageMatch | None:
    """The geometric verification of a query's candidates: a near-copy when the best fine score
    reaches NCC_MIN. `scores` (calibration) collects the best coarse, fine and whole scores
    instead of deciding."""
    candidates, cosine, distance = retrieved.candidates, retrieved.cosine, retrieved.distance
    if len(candidates) == 0:
        return None
    stages["verified"] = len(candidates)
    thumb = torch.from_numpy(sig.thumb)[None, None]
    thumb = _filled(thumb, _flat_mask(thumb))[0, 0]  # a cutout box would dominate the raw NCC
    kernels = _oriented_kernels(thumb[None])[0].reshape(8, 1, *thumb.shape)
    alignments: list[tuple[int, _Alignment]] = []  # (candidate position, alignment), one per candidate and scale
    for key in np.unique(tensors.aspect_keys[candidates]):
        group = np.flatnonzero(tensors.aspect_keys[candidates] == key)
        found = _coarse_align(kernels, tensors, candidates[group], float(key), sig.aspect)
        alignments += [(c, alignment) for c, per_scale in zip(group.tolist(), found) for alignment in per_scale]
    # Every candidate gets a fine score at its coarse alignment at every scale (on aerial textures
    # the coarse score alone ranks poorly); the FINE_REFINED best are then refined around theirs,
    # each search (REFINE_STEPS) centred on the best resampling of the one before.
    bands = _query_bands(sig.fine)
    order = [int(candidates[c]) for c, _ in alignments]
    fine, whole, _ = _fine_ncc(bands, tensors.fines_masked[order], [a for _, a in alignments], refine=0.0)
    top = torch.argsort(fine, descending=True)[:FINE_REFINED].tolist()
    boxes = [alignments[t][1] for t in top]
    for step in REFINE_STEPS:
        refined, refined_whole, boxes = _fine_ncc(bands, tensors.fines_masked[[order[t] for t in top]], boxes, refine=step)
        fine[top] = torch.maximum(fine[top], refined)
        whole[top] = torch.maximum(whole[top], refined_whole)
        # Finer steps only where the score could still reach the thresholds (most distinct pairs
        # stay far below: the finer searches are then skipped).
        further = [i for i, t in enumerate(top) if float(fine[t]) >= REFINE_FURTHER_MIN]
        top, boxes = [top[i] for i in further], [boxes[i] for i in further]
        if not top:
            break
    if scores is not None:
        best = int(fine.argmax())
        scores.update(coarse_ncc=max(a.score for _, a in alignments), ncc=float(fine[best]), whole_ncc=float(whole.max()),
                      ncc_cosine=float(cosine[alignments[best][0]]))
        return None
    position = torch.tensor([c for c, _ in alignments])
    cosines = torch.from_numpy(np.asarray(cosine, dtype=np.float32))[position]
    matching = (fine >= NCC_DECISIVE) | ((fine >= NCC_MIN) & (cosines >= COSINE_MIN) & (fine + cosines >= EVIDENCE_MIN))
    if not bool(matching.any()):
        return None
    best = int(torch.where(matching, fine, torch.tensor(-2.0)).argmax())
    best_c, best_ncc = alignments[best][0], float(fine[best])
    best_j = int(candidates[best_c])
    return LeakageMatch(-1, index.ids[best_j], index.splits[best_j], "geometry", int(distance[best_c]),
                        float(cosine[best_c]), best_ncc)


# ----------------------------------------------------------------------------------------------
# the task builders' entry point
# ----------------------------------------------------------------------------------------------

#: Partial overlaps (`find_near_duplicate_pairs(partial=True)`): each query's four corner windows
#: of this fraction of its side are queried too. Two captures of one site shifted by up to
#: 1 - PARTIAL_WINDOW of the side in each axis share a corner window, and a crop of one of them
#: (the classic baseline's, a participant's) can then be a near-copy of the other; the gate looks
#: inside a reference for crops down to MIN_CROP, so shifts much larger leave it nothing to find.
PARTIAL_WINDOW = 0.7
#: A window's candidates (nearest references by embedding, by pHash): fewer than a whole query's.
#: A window has its query's embedding, and a reference that shares most of a window's content with
#: it is among the query's nearest; the pHash of a window rarely finds a shifted capture.
PARTIAL_CANDIDATES = (10, 5)


def corner_windows(image: Image.Image, fraction: float = PARTIAL_WINDOW) -> list[Image.Image]:
    """The four corner crops of `image`, each `fraction` of its width and height."""
    width, height = image.size
    w, h = max(1, round(width * fraction)), max(1, round(height * fraction))
    return [image.crop((x, y, x + w, y + h)) for y in (0, height - h) for x in (0, width - w)]


@dataclass(frozen=True)
class NearDuplicatePair:
    """Query image `query` is a near-duplicate of reference image `reference` (rows in the lists
    given to `find_near_duplicate_pairs`), with the evidence: the pHash Hamming distance (best
    dihedral orientation, of 64 bits), the geometric match score (median band-passed patch NCC at
    the best alignment) and the embedding cosine."""

    query: int
    reference: int
    phash_distance: int
    match_score: float
    cosine: float


def find_near_duplicate_pairs(
    queries: Sequence[ImageRef],
    references: Sequence[ImageRef],
    *,
    embedder: Callable | None,
    progress: bool = False,
    partial: bool = False,
) -> list[NearDuplicatePair]:
    """The queries that are near-copies of a reference, each with the reference it matches best.

    The same detector and decision as the submissions' leakage gate (flips, 90-degree rotations,
    crops to 70 %, resizing, JPEG, colour jitter, noise, cutout and padding are seen through), so
    a task deduplicated with it gives the gate nothing to find in the harness's own baselines.
    With `partial`, a query that only overlaps a reference is a near-duplicate too: its
    `corner_windows` are queried as well when the whole image matched nothing (each with the whole
    query's embedding: the windows are not encoded; against PARTIAL_CANDIDATES references), and a
    window found in a reference, and aligned with it, names its query.
    `embedder` is what `default_embedder(...)` returns (embeddings through the feature cache, shared
    with the grid); None uses the default backbone at its native size over the default feature
    cache ($SYNTHBENCH_CACHE or ~/.cache/synthbench/features). At most one pair per query (its
    whole image's match before its windows'), sorted by query; `match_score` is finite for every
    pair (a pair decided by its hash is also aligned). Typical use: queries = a task's training
    images, references = its test images; drop the training images named in the pairs.
    """
    if embedder is None:
        embedder = default_embedder(default_cache_dir())
    if not queries or not references:
        return []
    index = ReferenceIndex.build(references, ["reference"] * len(references), [""] * len(references), embedder, progress=progress)
    index.ids = [str(row) for row in range(len(references))]  # names need not be unique: match by row
    signatures: list[QuerySignature] = []
    windows: list[tuple[int, QuerySignature]] = []  # (query row, signature of one of its windows)
    for row, ref in enumerate(queries):
        image = ref.open()
        signatures.append(query_signature(image))
        if partial:
            windows += [(row, query_signature(window)) for window in corner_windows(trim_borders(image))]
    embeddings = np.asarray(embedder(list(queries), progress))
    tensors = _ReferenceTensors(index)
    found: dict[int, NearDuplicatePair] = {}

    def collect(result: GateResult, owners: Sequence[int], sigs: Sequence[QuerySignature], windows: bool = False) -> None:
        for match in result.matches:  # in row order: the first of a query's windows that matches
            query = owners[match.query]
            if query in found:
                continue
            reference = int(match.reference_id)
            score = match.ncc
            if not np.isfinite(score):
                score = geometry_score(index, tensors, sigs[match.query], reference)
            if windows and score < NCC_MIN:
                # The hash alone does not decide for a window: a window's hash (a part of an image,
                # often plainer) met a distinct image's at 4 of 64 bits (aid6), never aligned.
                continue
            found[query] = NearDuplicatePair(query, reference, int(match.phash_distance), float(score), float(match.cosine))

    collect(find_near_copies(index, signatures, embeddings, progress=progress), range(len(queries)), signatures)
    windows = [(row, sig) for row, sig in windows if row not in found]  # a whole match says enough
    if windows:
        owners, window_signatures = [row for row, _ in windows], [sig for _, sig in windows]
        collect(find_near_copies(index, window_signatures, embeddings[owners], progress=progress, candidates=PARTIAL_CANDIDATES),
                owners, window_signatures, windows=True)
    return [found[query] for query in sorted(found)]


def geometry_score(index: ReferenceIndex, tensors: "_ReferenceTensors", sig: QuerySignature, reference: int) -> float:
    """The verification's fine score of one query against one reference row, whatever the cascade."""
    scores: dict[str, float] = {}
    one = np.array([reference])
    _verify(index, tensors, sig, _Retrieved(one, index.embeddings[one, 0] * 0, np.zeros(1, np.int16)), scores, {})
    return scores["ncc"]
