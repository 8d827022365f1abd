"""The leakage gate's matching cascade on procedural scenes, with stand-in embeddings (no backbone):
pHash variants, the prefilter that spares distinct images the verification, and near-copies still
found through it."""

from __future__ import annotations


import numpy as np
import scipy.fft
import pytest
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageEnhance
from scipy import ndimage

from benchmark import nearcopy as leakage
from benchmark.nearcopy import (
    ReferenceGroup,
    dihedral,
    find_near_copies,
    hamming,
    phash_bits,
    phash_dihedral,
    query_signature,
    reference_index,
)

from .scenes import image_ref as _ref, scene as _scene, stand_in_embed as _embed

N_REFS = 40


@pytest.fixture(scope="module")
def index():
    refs = [_ref(_scene(i), f"ref-{i}") for i in range(N_REFS)]
    return reference_index([ReferenceGroup("test", refs, [""] * N_REFS)], _embed, embedder_id="stand-in", cache_dir=None)


def _phash_by_definition(image: Image.Image) -> np.uint64:
    """pHash as `imagehash.phash` defines it: 32-px Lanczos grayscale, 2-D DCT-II, the low 8 x 8
    block above its median, bits packed row by row."""
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    block = scipy.fft.dctn(pixels, type=2)[:8, :8]
    bits = (block > np.median(block)).flatten()
    return np.uint64(int.from_bytes(np.packbits(bits).tobytes(), "big"))


def test_phash_variants_match_hashing_each_orientation():
    for seed in range(6):
        image = _scene(100 + seed)
        variants = phash_dihedral(image)
        assert variants[0] == _phash_by_definition(image) == phash_bits(image)
        # The other 7 come from the DCT of the upright image; hashing each turned image differs
        # only where Pillow's resize rounds differently (a bit or two at most).
        distances = [int(hamming(variants[k], phash_bits(dihedral(image, k)))) for k in range(8)]
        assert max(distances) <= 2, distances
        assert len(set(variants.tolist())) > 1  # the orientations really differ


def _near_copy(image: Image.Image, k: int) -> Image.Image:
    # Beyond what pHash survives: a 72 % crop, a quarter turn or mirror, and jitter.
    side = round(image.width * 0.72)
    cropped = image.crop((9, 17, 9 + side, 17 + side)).resize((110, 110), Image.Resampling.BILINEAR)
    return ImageEnhance.Contrast(ImageEnhance.Brightness(dihedral(cropped, k)).enhance(1.2)).enhance(0.85)


def test_cascade_spares_distinct_images_verification_and_finds_near_copies(index):
    distinct = [_scene(1000 + i) for i in range(30)]
    sources = [3, 11, 27]
    copies = [_near_copy(_scene(j), k) for j, k in zip(sources, (1, 4, 6))]
    images = distinct + copies
    names = [f"q{i}" for i in range(len(distinct))] + [f"ref-{j}#copy" for j in sources]
    signatures = [query_signature(image) for image in images]
    embeddings = _embed([_ref(image, name) for image, name in zip(images, names)])

    result = find_near_copies(index, signatures, embeddings, workers=2)

    found = {m.query: m for m in result.matches}
    assert sorted(found) == list(range(len(distinct), len(images)))
    assert [found[len(distinct) + i].reference_id for i in range(len(sources))] == [f"ref-{j}" for j in sources]
    assert all(m.reason == "geometry" for m in found.values())
    stages = result.stages
    # With 40 references every one is a candidate (the embedding proposes 50); most distinct pairs
    # stop at the prefilter (procedural scenes are largely flat fills, masked: fewer than on aerial
    # images, where about 99 % stop).
    assert N_REFS <= leakage.EMBEDDING_CANDIDATES and stages["candidates"] == len(images) * N_REFS
    assert stages["prefilter16"] <= stages["candidates"] // 2
    assert len(sources) <= stages["verified"] == stages["prefilter32"] <= stages["candidates"] // 8

    # Two signals: with features that disagree (a blind vector per copy), geometry alone decides
    # only from NCC_DECISIVE up (and such a candidate goes on from the prefilter only from
    # DECISIVE_PREFILTER_MIN); a plain mirror of an 86 % crop is found so.
    plain = dihedral(_scene(5).crop((0, 0, 83, 83)), 4)
    blind_images, blind_signatures = images + [plain], signatures + [query_signature(plain)]
    blind = _embed([_ref(image, f"q{i}") for i, image in enumerate(blind_images)])
    alone = {m.query: m for m in find_near_copies(index, blind_signatures, blind, workers=2).matches}
    assert len(images) in alone and alone[len(images)].reference_id == "ref-5"
    assert set(alone) <= {q for q, m in found.items() if m.ncc >= leakage.NCC_DECISIVE} | {len(images)}
    assert all(m.ncc >= leakage.NCC_DECISIVE and m.cosine < leakage.COSINE_MIN for m in alone.values())


def test_prefilter_only_drops_candidates(index, monkeypatch):
    # With the prefilter open, every candidate is verified and the decisions are the same.
    images = [_scene(2000 + i) for i in range(6)] + [_near_copy(_scene(5), 2)]
    signatures = [query_signature(image) for image in images]
    embeddings = _embed([_ref(image, f"q{i}") for i, image in enumerate(images[:6])] + [_ref(images[6], "ref-5#copy")])
    cascaded = find_near_copies(index, signatures, embeddings)
    monkeypatch.setattr(leakage, "PREFILTER_STAGES", tuple((size, -1.0) for size, _ in leakage.PREFILTER_STAGES))
    monkeypatch.setattr(leakage, "DECISIVE_PREFILTER_MIN", -1.0)
    unfiltered = find_near_copies(index, signatures, embeddings)
    assert unfiltered.stages["verified"] == unfiltered.stages["candidates"] > cascaded.stages["verified"]
    assert [(m.query, m.reference_id) for m in cascaded.matches] == [(m.query, m.reference_id) for m in unfiltered.matches]
    assert [m.query for m in cascaded.matches] == [6]


def _dog(a: np.ndarray) -> np.ndarray:
    fine, coarse = leakage.PREFILTER_SIGMAS
    return ndimage.gaussian_filter(a, fine, mode="nearest", truncate=3.0) - ndimage.gaussian_filter(
        a, coarse, mode="nearest", truncate=3.0
    )


def _band(a: np.ndarray) -> np.ndarray:
    # The gate's band-pass with flat areas masked (tested against _dog in test_masked_bandpass).
    x = torch.from_numpy(a.astype(np.float32))[None, None]
    return leakage._masked_bandpass(x, leakage.PREFILTER_SIGMAS)[0][0, 0].double().numpy()


def _resized_band(thumb: np.ndarray, height: int, width: int, flat: torch.Tensor | None = None) -> np.ndarray:
    # The prefilter's: flat areas found at the query thumbnails' size (or given), then resized
    # with the image.
    x = torch.from_numpy(thumb.astype(np.float32))[None, None]
    side = leakage.THUMB_SIZE
    flat = leakage._flat_mask(F.interpolate(x, size=(side, side), mode="area")) if flat is None else flat
    return leakage._resized_masked_bandpass(x, flat, height, width, leakage.PREFILTER_SIGMAS)[0, 0].double().numpy()


def test_thin_cutout_boxes_are_masked_at_the_thumbnail_size():
    # A box 5 px wide at the fine size is under 3 px at THUMB_SIZE: flat only through the fine
    # thumbnail's mask (carried down), and then masked as a wide box is.
    image = np.asarray(_scene(6, size=128)).copy()
    image[20:100, 60:70] = 0
    sig = query_signature(Image.fromarray(image))
    thumb_only = leakage._flat_mask(torch.from_numpy(sig.thumb)[None, None])[0, 0]
    carried = sig.prefilter_flat[0, 0]
    assert not thumb_only[8:22, 16].any() and carried[8:22, 16].all()
    assert (carried | ~thumb_only).all()  # carried adds to the thumbnail's own mask


def test_masked_bandpass_is_a_dog_that_ignores_flat_areas():
    textured = np.random.default_rng(0).uniform(0, 255, (32, 32)).astype(np.float32)
    band = _band(textured)
    assert np.abs(band - _dog(textured.astype(np.float64))).max() < 1e-3  # nothing flat: a plain DoG
    boxed = textured.copy()
    boxed[8:20, 10:24] = 0.0  # a cutout box
    x = torch.from_numpy(boxed)[None, None]
    band, flat = leakage._masked_bandpass(x, leakage.PREFILTER_SIGMAS)
    assert flat[0, 0, 9:19, 11:23].all() and not flat[0, 0, :6].any()
    assert (band[flat] == 0).all()
    # Away from the box the band is the content's own, not the step where the box meets it.
    plain = torch.from_numpy(_dog(boxed.astype(np.float64)).astype(np.float32))
    near_rim = (~flat[0, 0]) & (F.max_pool2d(flat[0].float(), 7, stride=1, padding=3)[0] > 0)
    own = torch.from_numpy(_dog(textured.astype(np.float64)).astype(np.float32))  # without the box
    assert (band[0, 0] - own)[near_rim].abs().mean() < 0.5 * (plain - own)[near_rim].abs().mean()


def _plain_prefilter(signature, ref_thumb, ref_flat, ref_aspect, size) -> np.ndarray:
    """(8,): per orientation k, the best NCC of the query's band-passed size-px thumbnail turned
    by k against every size x size window of the band-passed reference (its flat mask `ref_flat`),
    resized for each crop scale so that the region the turned query covers there is size x size."""
    flat = signature.prefilter_flat
    query = _resized_band(signature.thumb, size, size, flat)
    # The gate's: scores of a query with flat areas divided by its share of content; the query's
    # aspect rounded to the stage's step.
    valid = 1.0 - float(flat.float().mean())
    boost = 1.0 / min(1.0, max(valid, leakage.MIN_PREFILTER_VALID))
    step = leakage.PREFILTER_ASPECT_STEPS[size]
    query_aspect = step ** round(np.log(signature.aspect) / np.log(step))
    best = np.full(8, -np.inf)
    windows_at: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for k in range(8):
        template = np.rot90(query[:, ::-1] if k >= 4 else query, k % 4)
        template = (template - template.mean()) / np.linalg.norm(template - template.mean())
        aspect = (query_aspect if k % 2 == 0 else 1 / query_aspect) / ref_aspect
        for scale in leakage.CROP_SCALES:
            fx, fy = (scale, scale / aspect) if aspect >= 1 else (scale * aspect, scale)
            if min(fx, fy) < min(leakage.CROP_SCALES) - 1e-9:
                continue
            shape = (round(size / fy), round(size / fx))
            if shape not in windows_at:
                windows = sliding_window_view(_resized_band(ref_thumb, *shape, ref_flat), (size, size))
                windows = windows - windows.mean(axis=(2, 3), keepdims=True)
                windows_at[shape] = windows, np.linalg.norm(windows, axis=(2, 3))
            windows, norms = windows_at[shape]
            # The gate's guard for flat windows (no detail: they score ~0, not 0/0).
            ncc = np.einsum("ijkl,kl->ij", windows, template) / (norms + 1e-3)
            best[k] = max(best[k], ncc.max())
    return best * boost


def test_prefilter_scores_are_band_passed_template_ncc(index):
    # Against a plain NCC search in numpy (scipy blurs, explicit windows), pair by pair and
    # orientation by orientation; a non-square query too, whose crop-scale shapes differ from the
    # square ones', and one with a cutout box.
    boxed = np.asarray(_scene(3200)).copy()
    boxed[10:40, 50:58] = 0
    images = [_scene(3000 + i) for i in range(3)] + [_scene(3100).crop((0, 0, 96, 70)), Image.fromarray(boxed),
                                                      _near_copy(_scene(8), 5)]
    signatures = [query_signature(image) for image in images]
    tensors = leakage._ReferenceTensors(index)
    rng = np.random.default_rng(0)
    candidates = [np.sort(rng.choice(N_REFS, size=n, replace=False)) for n in (4, 6, 1, 5, 2, 3)]
    candidates[-1] = np.union1d(candidates[-1], [8])  # the near-copy's source
    (first, threshold), (second, _) = leakage.PREFILTER_STAGES[:2]
    scores = leakage._batched_prefilter(tensors, signatures, candidates, first)
    # The next stage searches only the orientations allowed (here: random ones).
    allowed = [rng.random((len(c), 8)) < 0.3 for c in candidates]
    restricted = leakage._batched_prefilter(tensors, signatures, candidates, second, allowed)
    for q, (sig, cand) in enumerate(zip(signatures, candidates)):
        for c, r in enumerate(cand):
            plain = _plain_prefilter(sig, index.thumbs[r], tensors.flat[r : r + 1], index.aspects[r], first)
            assert scores[q][c] == pytest.approx(plain, abs=1e-4)
            plain = _plain_prefilter(sig, index.thumbs[r], tensors.flat[r : r + 1], index.aspects[r], second)
            assert restricted[q][c] == pytest.approx(np.where(allowed[q][c], plain, -1.0), abs=1e-4)
    source = list(candidates[-1]).index(8)
    # dihedral(., 5) is a reflection: the query turned by 5 again lines up with its source.
    assert scores[-1][source].max() >= threshold and scores[-1][source].argmax() == 5
    assert np.delete(scores[-1], source, axis=0).max() < threshold
    # The orientations passed on: those that reached the threshold (the best one if none did).
    passing = leakage._orientations_passing(scores[-1], threshold)
    assert passing[source, 5] and (passing.sum(axis=1) >= 1).all()


def test_query_scores_of_a_near_copy_and_a_distinct_image(index):
    # The one-query calibration path: every stage scored, whatever the decision.
    images = [_near_copy(_scene(19), 3), _scene(4000)]
    embeddings = _embed([_ref(images[0], "ref-19#copy"), _ref(images[1], "q1")])
    copy, distinct = (leakage.query_scores(index, query_signature(im), e) for im, e in zip(images, embeddings))
    (first, first_min), (second, second_min) = leakage.PREFILTER_STAGES[:2]
    assert copy[f"prefilter{first}"] >= first_min and copy[f"prefilter{second}"] >= second_min
    assert copy["ncc"] >= leakage.NCC_MIN > distinct["ncc"]
    assert min(copy["phash_distance"], distinct["phash_distance"]) > leakage.PHASH_MAX_DISTANCE
