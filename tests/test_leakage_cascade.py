"""The leakage gate's matching cascade on procedural scenes, with stand-in embeddings (no backbone):
pHash variants, the prefilter that spares distinct images the verification, and near-copies still
found through it."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from benchmark.images import ImageRef, encode_png
from benchmark.io import sha256_bytes
from benchmark.submissions import leakage
from benchmark.submissions.leakage import (
    ReferenceGroup,
    dihedral,
    find_near_copies,
    hamming,
    phash_bits,
    phash_dihedral,
    query_signature,
    reference_index,
)
from benchmark.tasks.demo import render_scene

N_REFS = 40


def _scene(seed: int, size: int = 96) -> Image.Image:
    return render_scene(np.random.default_rng(seed), size)


def _ref(image: Image.Image, name: str) -> ImageRef:
    data = encode_png(image)
    return ImageRef(sha256_bytes(data), data, name=name)


def _embed(refs, progress=False):
    # Stand-in features: a fixed random vector per image, so retrieval by embedding is blind and
    # only the pHash ranking and the cascade can find a near-copy.
    return np.stack([np.random.default_rng(int(r.sha256[:8], 16)).normal(size=32) for r in refs]).astype(np.float32)


@pytest.fixture(scope="module")
def index():
    refs = [_ref(_scene(i), f"ref-{i}") for i in range(N_REFS)]
    return reference_index([ReferenceGroup("test", refs, [""] * N_REFS)], _embed, embedder_id="stand-in", cache_dir=None)


def test_phash_variants_match_hashing_each_orientation():
    for seed in range(6):
        image = _scene(100 + seed)
        variants = phash_dihedral(image)
        upright = imagehash.phash(image).hash.flatten()
        assert variants[0] == np.uint64(int.from_bytes(np.packbits(upright).tobytes(), "big")) == phash_bits(image)
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
    signatures = [query_signature(image) for image in images]
    embeddings = _embed([_ref(image, f"q{i}") for i, image in enumerate(images)])

    result = find_near_copies(index, signatures, embeddings, workers=2)

    found = {m.query: m for m in result.matches}
    assert sorted(found) == list(range(len(distinct), len(images)))
    assert [found[len(distinct) + i].reference_id for i in range(len(sources))] == [f"ref-{j}" for j in sources]
    assert all(m.reason == "geometry" for m in found.values())
    stages = result.stages
    # With 40 references every one is a candidate (the embedding proposes 50); all but a few of
    # the distinct pairs stop at the prefilter.
    assert N_REFS <= leakage.EMBEDDING_CANDIDATES and stages["candidates"] == len(images) * N_REFS
    assert stages["prefilter16"] <= stages["candidates"] // 5
    assert len(sources) <= stages["verified"] == stages["prefilter32"] <= stages["candidates"] // 50


def test_prefilter_only_drops_candidates(index, monkeypatch):
    # With the prefilter open, every candidate is verified and the decisions are the same.
    images = [_scene(2000 + i) for i in range(6)] + [_near_copy(_scene(5), 2)]
    signatures = [query_signature(image) for image in images]
    embeddings = _embed([_ref(image, f"q{i}") for i, image in enumerate(images)])
    cascaded = find_near_copies(index, signatures, embeddings)
    monkeypatch.setattr(leakage, "PREFILTER_STAGES", tuple((size, -1.0) for size, _ in leakage.PREFILTER_STAGES))
    unfiltered = find_near_copies(index, signatures, embeddings)
    assert unfiltered.stages["verified"] == unfiltered.stages["candidates"] > cascaded.stages["verified"]
    assert [(m.query, m.reference_id) for m in cascaded.matches] == [(m.query, m.reference_id) for m in unfiltered.matches]
    assert [m.query for m in cascaded.matches] == [6]


def test_batched_prefilter_scores_as_per_query(index):
    # Non-square queries too: their crop-scale plans differ from the square ones'.
    images = [_scene(3000 + i) for i in range(3)] + [_scene(3100).crop((0, 0, 96, 70)), _near_copy(_scene(8), 5)]
    signatures = [query_signature(image) for image in images]
    tensors = leakage._ReferenceTensors(index)
    rng = np.random.default_rng(0)
    candidates = [np.sort(rng.choice(N_REFS, size=n, replace=False)) for n in (5, 12, 1, 9, 20)]
    (first, _), (second, _) = leakage.PREFILTER_STAGES[:2]
    batched, batched_k = leakage._batched_prefilter(tensors, signatures, candidates, first)
    # The next stage searches only the orientation each pair was found in (here: a given one).
    given = [rng.integers(0, 8, size=len(c)) for c in candidates]
    restricted, restricted_k = leakage._batched_prefilter(tensors, signatures, candidates, second, given)
    for i, (sig, cand) in enumerate(zip(signatures, candidates)):
        single, single_k = leakage._prefilter_scores(leakage._prefilter_templates(sig.thumb, first), first, tensors, cand, sig.aspect)
        np.testing.assert_allclose(batched[i], single, atol=1e-4)
        assert (batched_k[i] == single_k).all()
        single, single_k = leakage._prefilter_scores(
            leakage._prefilter_templates(sig.thumb, second), second, tensors, cand, sig.aspect, given[i]
        )
        np.testing.assert_allclose(restricted[i], single, atol=1e-4)
        assert (restricted_k[i] == given[i]).all() and (single_k == given[i]).all()
