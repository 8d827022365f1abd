"""The feature cache: encode once, reuse everywhere, never trust a broken shard."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.backbones import TINY_CONFIGS, load_backbone
from benchmark.errors import HarnessError
from benchmark import features as features_module
from benchmark.features import CACHE_SCHEMA_VERSION, FeatureCache, device_features
from benchmark.images import ImageRef, encode_png
from benchmark.io import sha256_bytes


def make_refs(n: int, start: int = 0, tmp_path=None) -> list[ImageRef]:
    """n distinct procedurally drawn PNGs (bytes refs, or files when tmp_path is given)."""
    refs = []
    for i in range(start, start + n):
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[0:40, 0:48]
        pattern = np.stack([np.sin(xx / (2 + i % 5)), np.cos(yy / (3 + i % 4)), np.sin((xx + yy) / 7)], -1)
        pixels = np.clip(127 + 100 * pattern + rng.normal(0, 10, pattern.shape), 0, 255).astype(np.uint8)
        data = encode_png(Image.fromarray(pixels))
        if tmp_path is not None:
            path = tmp_path / f"img_{i}.png"
            path.write_bytes(data)
            refs.append(ImageRef(sha256_bytes(data), path))
        else:
            refs.append(ImageRef(sha256_bytes(data), data, name=f"img_{i}"))
    return refs


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("clip-vit-b32", random_init_config=TINY_CONFIGS["clip-vit-b32"])


def direct_features(backbone, refs) -> np.ndarray:
    batch = torch.stack([backbone.preprocess(ref.open()) for ref in refs])
    return backbone.encode(batch).numpy()


def shard_files(cache, backbone):
    index = json.loads((cache.directory(backbone) / "index.json").read_text())
    return [cache.directory(backbone) / entry["file"] for entry in index["shards"]], index


def test_cold_run_encodes_each_image_once_and_matches_the_model(backbone, tmp_path):
    refs = make_refs(10, tmp_path=tmp_path)
    cache = FeatureCache(tmp_path / "cache")
    features = cache.features(backbone, refs, batch_size=4, progress=False)
    assert cache.n_encoded == 10
    assert features.shape == (10, backbone.feature_dim) and features.dtype == np.float32
    # stored as float16: the returned values are the float16 rounding of the model's features
    np.testing.assert_allclose(features, direct_features(backbone, refs), rtol=2e-3, atol=2e-3)
    assert np.array_equal(features, features.astype(np.float16).astype(np.float32))
    directory = cache.directory(backbone)
    assert directory.parts[-4:] == (backbone.name, backbone.weights_id, backbone.preprocessing_id, "fp32")
    index = json.loads((directory / "index.json").read_text())
    assert index["precision"] == "fp32" and index["schema_version"] == CACHE_SCHEMA_VERSION


def test_warm_rerun_encodes_nothing_and_returns_identical_features(backbone, tmp_path):
    refs = make_refs(9)
    cold = FeatureCache(tmp_path).features(backbone, refs, batch_size=4, progress=False)
    warm_cache = FeatureCache(tmp_path)  # a new run: nothing in memory, everything on disk
    warm = warm_cache.features(backbone, refs, batch_size=4, progress=False)
    assert warm_cache.n_encoded == 0
    assert np.array_equal(warm, cold)
    # same object, second setting/seed asking for a subset in another order: still nothing to encode
    subset = warm_cache.features(backbone, refs[::-2], progress=False)
    assert warm_cache.n_encoded == 0
    assert np.array_equal(subset, cold[::-2])


def test_a_second_submission_encodes_only_its_new_images(backbone, tmp_path):
    real = make_refs(8)
    first = FeatureCache(tmp_path)
    real_features = first.features(backbone, real, progress=False)
    synthetic = make_refs(5, start=100)
    second = FeatureCache(tmp_path)
    mixed = second.features(backbone, real + synthetic, batch_size=3, progress=False)
    assert second.n_encoded == 5
    assert np.array_equal(mixed[:8], real_features)
    np.testing.assert_allclose(mixed[8:], direct_features(backbone, synthetic), rtol=2e-3, atol=2e-3)


def test_duplicate_images_in_one_call_are_encoded_once(backbone, tmp_path):
    a, b = make_refs(2)
    copy_of_a = ImageRef(a.sha256, a.source, name="same bytes, other name")
    cache = FeatureCache(tmp_path)
    features = cache.features(backbone, [a, b, copy_of_a, a], progress=False)
    assert cache.n_encoded == 2
    assert np.array_equal(features[0], features[2]) and np.array_equal(features[0], features[3])
    assert not np.array_equal(features[0], features[1])


def test_other_preprocessing_or_weights_never_share_features(backbone, tmp_path):
    refs = make_refs(4)
    cache = FeatureCache(tmp_path)
    cache.features(backbone, refs, progress=False)
    bigger = load_backbone("clip-vit-b32", random_init_config=TINY_CONFIGS["clip-vit-b32"], image_size=48)
    cache.features(bigger, refs, progress=False)
    other_config = dict(TINY_CONFIGS["clip-vit-b32"], embed_dim=16)
    other_weights = load_backbone("clip-vit-b32", random_init_config=other_config)
    assert cache.features(other_weights, refs, progress=False).shape == (4, 16)
    assert cache.n_encoded == 12
    assert len({cache.directory(b) for b in (backbone, bigger, other_weights)}) == 3


def test_workers_give_the_same_features_as_the_main_process(backbone, tmp_path):
    refs = make_refs(12, tmp_path=tmp_path)
    in_process = FeatureCache(tmp_path / "a").features(backbone, refs, batch_size=4, num_workers=0, progress=False)
    in_workers = FeatureCache(tmp_path / "b").features(backbone, refs, batch_size=4, num_workers=2, progress=False)
    assert np.array_equal(in_process, in_workers)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the feature payload: still parses, but the hash no longer matches
    path.write_bytes(bytes(data))


def _wrong_shape(path):
    """A well-formed shard, listed with a matching hash, whose features have the wrong width."""
    from safetensors.numpy import load_file, save

    from benchmark.io import sha256_bytes as digest

    tensors = load_file(str(path))
    tensors["features"] = np.ascontiguousarray(tensors["features"][:, :-1])
    data = save(tensors)
    path.write_bytes(data)
    index_path = path.parent / "index.json"
    index = json.loads(index_path.read_text())
    for entry in index["shards"]:
        if entry["file"] == path.name:
            entry["sha256"] = digest(data)
    index_path.write_text(json.dumps(index))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _wrong_shape, lambda p: p.unlink()],
                         ids=["truncated", "hash-mismatch", "wrong-shape", "missing"])
def test_a_corrupt_shard_is_detected_logged_and_recomputed(backbone, tmp_path, caplog, damage):
    refs = make_refs(8)
    cache = FeatureCache(tmp_path, shard_size=4)  # two shards of four images
    good = cache.features(backbone, refs, batch_size=4, progress=False)
    shards, _ = shard_files(cache, backbone)
    assert len(shards) == 2
    damage(shards[0])
    fresh = FeatureCache(tmp_path, shard_size=4)
    with caplog.at_level(logging.WARNING, logger="benchmark.features"):
        again = fresh.features(backbone, refs, batch_size=4, progress=False)
    assert fresh.n_encoded == 4  # only the damaged shard's images
    np.testing.assert_array_equal(again, good)
    assert any("corrupt shard" in record.message and shards[0].name in record.message for record in caplog.records)
    listed, _ = shard_files(fresh, backbone)
    assert shards[0] not in listed and len(listed) == 2
    # and the repaired cache is complete again
    third = FeatureCache(tmp_path)
    third.features(backbone, refs, progress=False)
    assert third.n_encoded == 0


def test_an_interrupted_run_keeps_only_complete_shards(backbone, tmp_path):
    refs = make_refs(10)
    cache = FeatureCache(tmp_path, shard_size=4)
    calls = {"n": 0}
    real_encode = backbone.encode

    def crashing_encode(batch):
        calls["n"] += 1
        if calls["n"] == 3:  # dies after two batches of two: one full shard written
            raise KeyboardInterrupt("simulated interruption")
        return real_encode(batch)

    cache_backbone = load_backbone("clip-vit-b32", random_init_config=TINY_CONFIGS["clip-vit-b32"])
    cache_backbone.encode = crashing_encode
    with pytest.raises(KeyboardInterrupt):
        cache.features(cache_backbone, refs, batch_size=2, progress=False)
    shards, index = shard_files(cache, backbone)
    assert [entry["n"] for entry in index["shards"]] == [4]
    # a shard file that was being written when the process died is on disk but never listed
    (shards[0].parent / "shard-partial.safetensors").write_bytes(shards[0].read_bytes()[:100])
    rerun = FeatureCache(tmp_path, shard_size=4)
    features = rerun.features(backbone, refs, batch_size=2, progress=False)
    assert rerun.n_encoded == 6
    np.testing.assert_allclose(features, direct_features(backbone, refs), rtol=2e-3, atol=2e-3)


def test_an_unreadable_index_starts_a_new_cache(backbone, tmp_path, caplog):
    refs = make_refs(3)
    cache = FeatureCache(tmp_path)
    first = cache.features(backbone, refs, progress=False)
    (cache.directory(backbone) / "index.json").write_text("{not json")
    fresh = FeatureCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="benchmark.features"):
        again = fresh.features(backbone, refs, progress=False)
    assert fresh.n_encoded == 3
    assert np.array_equal(first, again)
    assert any("unusable index" in record.message for record in caplog.records)


def test_image_bytes_that_do_not_match_their_sha256_are_refused(backbone, tmp_path):
    good, other = make_refs(2)
    lying = ImageRef(good.sha256, other.source, name="swapped.png")
    with pytest.raises(HarnessError, match="swapped.png: SHA-256"):
        FeatureCache(tmp_path).features(backbone, [lying], progress=False)


def test_gpu_features_are_cached_apart_from_cpu_features(backbone, tmp_path, monkeypatch, caplog):
    # bf16-autocast features differ from fp32 ones beyond float16 rounding: they must never mix.
    refs = make_refs(4)
    cache = FeatureCache(tmp_path)
    cpu = cache.features(backbone, refs, progress=False)
    cpu_directory = cache.directory(backbone)
    monkeypatch.setattr(features_module, "compute_precision", lambda device: "bf16-autocast")
    gpu_directory = cache.directory(backbone)
    assert gpu_directory.parent == cpu_directory.parent and gpu_directory.name == "bf16-autocast"
    assert np.array_equal(cache.features(backbone, refs, progress=False), cpu)  # same model, here on CPU
    assert cache.n_encoded == 8  # nothing was read from the fp32 folder
    assert json.loads((gpu_directory / "index.json").read_text())["precision"] == "bf16-autocast"
    # An index claiming another precision than its folder's is not trusted.
    index_path = cpu_directory / "index.json"
    index = json.loads(index_path.read_text())
    index_path.write_text(json.dumps(dict(index, precision="bf16-autocast")))
    monkeypatch.undo()
    fresh = FeatureCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="benchmark.features"):
        fresh.features(backbone, refs, progress=False)
    assert fresh.n_encoded == 4
    assert any("precision 'bf16-autocast', this run computes 'fp32'" in r.message for r in caplog.records)


def test_device_features_equal_encode(backbone):
    # The CUDA encode loop uses device_features (no host copy); on the CPU both must agree exactly.
    refs = make_refs(5)
    uint8 = torch.stack([backbone.transform.to_uint8(ref.open()) for ref in refs])
    on_device = device_features(backbone, uint8)
    assert on_device.dtype == torch.float32 and not on_device.requires_grad
    assert torch.equal(on_device, backbone.encode(uint8))
    lite0 = load_backbone("efficientnet-lite0", image_size=32)  # channels-last input path
    small = torch.stack([lite0.transform.to_uint8(ref.open()) for ref in refs])
    assert torch.equal(device_features(lite0, small), lite0.encode(small))


def test_host_copies_come_back_in_order_after_the_lag():
    copies = features_module._HostCopies("cpu", lag=2)
    returned = [[tag for _, tag in copies.put(torch.full((2, 3), float(i)), i)] for i in range(5)]
    assert returned == [[], [], [0], [1], [2]]
    drained = copies.drain()
    assert [tag for _, tag in drained] == [3, 4]
    assert all(array.dtype == np.float32 and (array == tag).all() for array, tag in drained)
    assert copies.drain() == []
    assert features_module._HostCopies("cpu").lag == 0  # the CPU path hands each batch back at once


def test_lagged_collection_stores_the_same_shards(backbone, tmp_path, monkeypatch):
    # The CUDA loop collects each batch one or more batches late: rows must still land on their keys.
    refs = make_refs(11)
    at_once = FeatureCache(tmp_path / "a", shard_size=4).features(backbone, refs, batch_size=3, progress=False)
    original = features_module._HostCopies
    monkeypatch.setattr(features_module, "_HostCopies", lambda device: original(device, lag=2))
    lagged_cache = FeatureCache(tmp_path / "b", shard_size=4)
    lagged = lagged_cache.features(backbone, refs, batch_size=3, progress=False)
    assert np.array_equal(lagged, at_once) and lagged_cache.n_encoded == 11
    monkeypatch.undo()
    reread = FeatureCache(tmp_path / "b")
    assert np.array_equal(reread.features(backbone, refs[::-1], progress=False), at_once[::-1])
    assert reread.n_encoded == 0
    _, index = shard_files(reread, backbone)
    assert [entry["n"] for entry in index["shards"]] == [6, 5]  # flushed after 2 batches, then the rest
