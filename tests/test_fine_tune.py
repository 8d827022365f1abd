"""The fine-tune protocol on a tiny CLIP, on CPU: it learns, it is deterministic, compute is fixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.backbones import TINY_CONFIGS, load_backbone
from benchmark.errors import HarnessError
from benchmark.images import ImageRef, encode_png
from benchmark.io import sha256_bytes
from benchmark.protocol import PROTOCOLS
from benchmark.protocols.data import TestData, TrainData
from benchmark.protocols.fine_tune import (
    RandomRot90,
    build_augmentation,
    fine_tune_predict,
    resolve_recipe,
    train_classifier,
)

TINY = TINY_CONFIGS["clip-vit-b32"]
#: Small but real: ~20 steps, learning rates for a randomly initialised tower.
FAST = {"images_seen": 320, "batch_size": 16, "lr_backbone": 1e-3, "lr_head": 1e-2}
COLOURS = ([200, 60, 40], [40, 80, 200], [60, 170, 60])


def colour_refs(n: int, n_classes: int, offset: int) -> tuple[list[ImageRef], np.ndarray]:
    """A separable toy problem: class c is noisy texture around colour c."""
    refs, labels = [], []
    for i in range(n):
        label = i % n_classes
        rng = np.random.default_rng(offset + i)
        pixels = np.clip(np.array(COLOURS[label]) + rng.normal(0, 35, (40, 40, 3)), 0, 255).astype(np.uint8)
        data = encode_png(Image.fromarray(pixels))
        refs.append(ImageRef(sha256_bytes(data), data, name=f"toy_{offset + i}"))
        labels.append(label)
    return refs, np.array(labels)


@pytest.fixture(scope="module")
def toy():
    train_refs, train_labels = colour_refs(24, 2, 0)
    test_refs, test_labels = colour_refs(20, 2, 1000)
    return TrainData.from_labels(train_refs, train_labels, 2), TestData(test_refs, test_labels)


def run(toy, seed=0, **kwargs):
    train, test = toy
    return fine_tune_predict(
        "clip-vit-b32", train, test, n_classes=2, seed=seed, recipe=FAST,
        random_init_config=TINY, progress=False, **kwargs,
    )


def test_fine_tuning_learns_a_separable_problem(toy):
    predictions, params = run(toy)
    _, test = toy
    assert predictions.dtype == np.int64 and predictions.shape == (len(test),)
    assert (predictions == test.labels).mean() >= 0.9
    assert params["loss_last"] < 0.5 * params["loss_first"]
    assert params["images_seen"] == 320 and params["steps"] == 20


def test_fine_tuning_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone(toy):
    before = torch.get_rng_state()
    first = run(toy, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    second = run(toy, seed=3)
    assert np.array_equal(first[0], second[0])
    assert first[1]["loss_first"] == second[1]["loss_first"]
    assert first[1]["loss_last"] == second[1]["loss_last"]
    other_seed = run(toy, seed=4)
    assert other_seed[1]["loss_last"] != first[1]["loss_last"]


@pytest.mark.parametrize("n_train", [6, 30])
def test_the_number_of_images_seen_is_fixed_whatever_the_training_set_size(n_train):
    refs, labels = colour_refs(n_train, 3, 0)
    train = TrainData.from_labels(refs, labels, 3)
    backbone = load_backbone("clip-vit-b32", random_init_config=TINY)
    seen = []
    backbone.trainable_encoder().register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    recipe = dict(FAST, images_seen=100, batch_size=8)
    _, _, params = train_classifier(backbone, train, n_classes=3, seed=0, recipe=recipe, progress=False)
    assert sum(seen) == params["images_seen"] == 104  # ceil(100 / 8) = 13 full batches
    assert params["steps"] == 13 and params["n_train"] == n_train


def test_soft_labels_are_trained_on(toy):
    train, test = toy
    soft = train.targets * 0.8 + 0.1  # rows still sum to 1
    soft_train = TrainData(train.refs, soft, train.is_synthetic)
    predictions, params = fine_tune_predict(
        "clip-vit-b32", soft_train, test, n_classes=2, seed=0, recipe=FAST,
        random_init_config=TINY, progress=False,
    )
    # with 0.9/0.1 targets the loss cannot fall below their entropy (~0.325 nats)
    assert params["loss_last"] > 0.3
    assert (predictions == test.labels).mean() >= 0.9


def test_wrong_class_count_is_refused(toy):
    train, test = toy
    with pytest.raises(HarnessError, match="2 classes, the task has 3"):
        fine_tune_predict("clip-vit-b32", train, test, n_classes=3, seed=0, recipe=FAST,
                          random_init_config=TINY, progress=False)


def test_recipe_defaults_come_from_the_protocol_registry():
    recipe = resolve_recipe({"images_seen": 64})
    assert recipe["images_seen"] == 64
    for key in ("batch_size", "lr_backbone", "lr_head", "weight_decay", "warmup_fraction"):
        assert recipe[key] == PROTOCOLS["fine-tune"][key]
    with pytest.raises(HarnessError, match="warmup_fraction"):
        resolve_recipe({"warmup_fraction": 1.5})


def test_augmentation_keeps_size_and_dtype_and_rot90_is_exact():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    augment = build_augmentation(32, resolve_recipe()["augmentation"])
    out = augment(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    rotations = {RandomRot90()(image).numpy().tobytes() for _ in range(64)}
    expected = {torch.rot90(image, k, dims=(-2, -1)).numpy().tobytes() for k in range(4)}
    assert rotations == expected


def test_a_fine_tuned_model_can_be_exported_and_rescored_as_a_checkpoint(toy, tmp_path):
    from benchmark.protocols.checkpoint import score_checkpoint

    _, test = toy
    predictions, _ = run(toy, checkpoint_dir=tmp_path / "ckpt", classes=["red", "blue"])
    rescored, params = score_checkpoint(tmp_path / "ckpt", ["red", "blue"], test, progress=False)
    assert np.array_equal(rescored, predictions)
    assert params["backbone"] == "clip-vit-b32"


# ----------------------------------------------------------------------------------------------
# Decoding once per grid: the shared in-memory cache of decoded training images
# ----------------------------------------------------------------------------------------------


def test_runs_sharing_images_decode_them_once_with_identical_results(toy):
    from benchmark.protocols.data import DecodedImages

    train, test = toy
    shared = DecodedImages(2**30)
    first = run(toy, seed=1, image_cache=shared)
    n_images = len(train) + len(test)  # the test split is kept too
    assert (shared.misses, shared.hits, len(shared)) == (n_images, 0, n_images)
    # another setting of the same grid: half the images again, plus duplicates of them
    subset = TrainData(train.refs[:12] + train.refs[:4], np.concatenate([train.targets[:12], train.targets[:4]]),
                       np.zeros(16, dtype=bool))
    fine_tune_predict("clip-vit-b32", subset, test, n_classes=2, seed=1, recipe=FAST, random_init_config=TINY,
                      progress=False, image_cache=shared)
    # nothing decoded: each unique training image and each test image looked up once
    assert shared.misses == n_images and shared.hits == 12 + len(test)
    # a later run from memory equals a run that decodes everything afresh
    again = run(toy, seed=1, image_cache=shared)
    fresh = run(toy, seed=1, image_cache=DecodedImages(0))
    assert np.array_equal(again[0], first[0]) and np.array_equal(fresh[0], first[0])
    assert again[1]["loss_last"] == fresh[1]["loss_last"] == first[1]["loss_last"]


def test_decoded_images_are_keyed_by_preprocessing_and_bounded(toy):
    from benchmark.protocols.data import DecodedImages
    from benchmark.protocols.fine_tune import _decode_all

    train, _ = toy
    cache = DecodedImages(2**30)
    small = load_backbone("clip-vit-b32", random_init_config=TINY)
    large = load_backbone("clip-vit-b32", random_init_config=TINY, image_size=48)
    a = _decode_all(small, train.refs[:3], 0, cache)
    b = _decode_all(large, train.refs[:3], 0, cache)
    assert a.shape[-1] == small.image_size and b.shape[-1] == 48 and len(cache) == 6 and cache.hits == 0
    # the same values as a plain decode, and not aliasing the cache's own tensors
    expected = torch.stack([small.transform.to_uint8(ref.open()) for ref in train.refs[:3]])
    assert torch.equal(_decode_all(small, train.refs[:3], 0, cache), expected) and cache.hits == 3
    per_image = expected[0].numel()
    bounded = DecodedImages(2 * per_image)  # room for two images
    _decode_all(small, train.refs[:3], 0, bounded)
    assert len(bounded) == 2 and bounded.nbytes == 2 * per_image
    assert bounded.get(small.transform.id, train.refs[0].sha256) is None  # the least recently used went
    assert bounded.get(small.transform.id, train.refs[2].sha256) is not None
    nothing = DecodedImages(per_image - 1)  # smaller than one image: keeps nothing, still decodes
    assert torch.equal(_decode_all(small, train.refs[:3], 0, nothing), expected) and len(nothing) == 0


def test_decoded_cache_budget_comes_from_the_environment(monkeypatch):
    from benchmark.protocols.data import DEFAULT_DECODED_CACHE_MB, DecodedImages

    monkeypatch.delenv("SYNTHBENCH_DECODED_CACHE_MB", raising=False)
    assert DecodedImages.from_env().max_bytes == DEFAULT_DECODED_CACHE_MB * 2**20
    monkeypatch.setenv("SYNTHBENCH_DECODED_CACHE_MB", "0.5")
    assert DecodedImages.from_env().max_bytes == 2**19
    monkeypatch.setenv("SYNTHBENCH_DECODED_CACHE_MB", "lots")
    with pytest.raises(HarnessError, match="SYNTHBENCH_DECODED_CACHE_MB='lots' is not a number"):
        DecodedImages.from_env()


def test_a_non_finite_loss_names_its_step():
    from benchmark.protocols.fine_tune import _check_losses

    _check_losses(torch.tensor([0.5, 0.4]), 10, "tiny")
    with pytest.raises(HarnessError, match=r"fine-tuning tiny: loss became nan at step 12"):
        _check_losses(torch.tensor([0.5, 0.4, float("nan"), float("inf")]), 10, "tiny")


def test_workers_default_to_none_on_cpu_and_none_means_auto(toy, monkeypatch):
    from benchmark.protocols import fine_tune
    from benchmark.protocols.data import DecodedImages

    seen = []
    original = fine_tune._decode_all

    def recording(backbone, refs, workers, cache):
        seen.append(workers)
        return original(backbone, refs, workers, cache)

    monkeypatch.setattr(fine_tune, "_decode_all", recording)
    train, _ = toy
    backbone = load_backbone("clip-vit-b32", random_init_config=TINY)
    fine_tune.train_classifier(backbone, train, n_classes=2, seed=0, recipe=dict(FAST, images_seen=16),
                               num_workers=None, progress=False, image_cache=DecodedImages(0))
    assert seen == [0]  # CPU: decoding and augmentation stay in this process


def test_a_second_fine_tune_grid_decodes_no_image(tmp_path, monkeypatch):
    """The test split (like the training sets) is decoded once per process, whatever the runs."""
    import collections

    from benchmark.backbones import TINY_CONFIGS
    from benchmark.features import ImageDataset
    from benchmark.grid import run_grid
    from benchmark.protocols import data
    from benchmark.protocols.data import DecodedImages
    from benchmark.tasks import build_demo_task, load_task
    from tests.test_grid import make_submission

    task = load_task(build_demo_task(tmp_path / "demo", train_per_class=4, test_per_class=3, image_size=32))
    submission = make_submission(tmp_path / "subs", task, method="edit", per_input=1, seed=0)
    test_shas = {ref.sha256 for ref in task.image_refs("test")}
    decoded: collections.Counter = collections.Counter()
    original = ImageDataset.__getitem__

    def counting(self, index):
        decoded[self.refs[index].sha256] += 1
        return original(self, index)

    monkeypatch.setattr(ImageDataset, "__getitem__", counting)

    def grid(name: str) -> dict:
        decoded.clear()
        return run_grid(
            task, submission, protocol="fine-tune", backbone="efficientnet-lite0", settings=["real", "mixed@1"],
            seeds=(0,), random_init_config=TINY_CONFIGS["efficientnet-lite0"], image_size=32,
            cache_dir=tmp_path / "cache", validated=True, progress=False, out_path=tmp_path / f"{name}.json",
            protocol_overrides={"images_seen": 16, "batch_size": 8},
        )

    monkeypatch.setattr(data, "_shared_images", DecodedImages(2**30))
    first = grid("first")
    assert len(first["runs"]) == 2
    assert {sha: decoded[sha] for sha in test_shas} == dict.fromkeys(test_shas, 1)  # once for both runs
    assert set(decoded.values()) == {1}  # training images too
    second = grid("second")
    assert second["provenance"]["runs_computed"] == 2 and sum(decoded.values()) == 0
    monkeypatch.setattr(data, "_shared_images", DecodedImages(0))  # no cache: every run decodes afresh
    off = grid("off")
    assert {sha: decoded[sha] for sha in test_shas} == dict.fromkeys(test_shas, 2)
    for record in (second, off):
        assert [r["predictions"] for r in record["runs"]] == [r["predictions"] for r in first["runs"]]
