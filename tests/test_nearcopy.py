"""`benchmark.nearcopy.find_near_duplicate_pairs`, the task builders' entry point: pairs by row,
with finite evidence, whichever signal decided."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance

from benchmark.nearcopy import NearDuplicatePair, dihedral, find_near_duplicate_pairs

from .scenes import image_ref as _ref, scene as _scene, stand_in_embed as _embed


def test_pairs_name_rows_and_carry_finite_scores():
    # Two references share a name (pairs are by row); the copies' features agree with their source's.
    references = [_ref(_scene(i), "dup-name" if i in (10, 11) else f"scene-{i}") for i in range(12)]
    crop = _scene(7).crop((10, 6, 80, 76)).resize((96, 96), Image.Resampling.BILINEAR)
    queries = [
        _ref(_scene(500), "distinct"),
        _ref(ImageEnhance.Brightness(dihedral(crop, 3)).enhance(1.15), "scene-7#turned crop"),
        _ref(_scene(501), "distinct too"),
        _ref(_scene(4), "scene-4#exact copy"),
        _ref(dihedral(_scene(11), 5), "dup-name#mirrored"),
    ]
    pairs = find_near_duplicate_pairs(queries, references, embedder=_embed)
    assert [(p.query, p.reference) for p in pairs] == [(1, 7), (3, 4), (4, 11)]
    assert all(isinstance(p, NearDuplicatePair) and math.isfinite(p.match_score) for p in pairs)
    exact = pairs[1]
    assert exact.phash_distance == 0 and exact.match_score > 0.8 and exact.cosine > 0.9


def test_no_pairs_for_empty_sides():
    refs = [_ref(_scene(1), "a")]
    assert find_near_duplicate_pairs([], refs, embedder=_embed) == []
    assert find_near_duplicate_pairs(refs, [], embedder=_embed) == []


def test_a_corrupted_stored_index_is_named_discarded_and_rebuilt(tmp_path, caplog):
    from benchmark.nearcopy import ReferenceGroup, reference_index

    refs = [_ref(_scene(i), f"ref-{i}") for i in range(4)]
    groups = [ReferenceGroup("test", refs, [""] * len(refs))]
    first = reference_index(groups, _embed, embedder_id="stand-in", cache_dir=tmp_path)
    (stored,) = (tmp_path / "leakage").glob("reference-*.npz")
    intact = stored.read_bytes()
    for damaged in (intact[: len(intact) // 2], b"not a zip at all", b""):
        stored.write_bytes(damaged)
        caplog.clear()
        with caplog.at_level("WARNING", logger="benchmark.nearcopy"):
            again = reference_index(groups, _embed, embedder_id="stand-in", cache_dir=tmp_path)
        assert str(stored) in caplog.text and "discarding and rebuilding" in caplog.text
        assert again.ids == first.ids and np.array_equal(again.thumbs, first.thumbs)
        assert np.array_equal(again.embeddings, first.embeddings)
        assert stored.read_bytes() == intact  # rewritten whole: the next run reads it back
