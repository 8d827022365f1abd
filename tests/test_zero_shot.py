"""The zero-shot protocol on a tiny CLIP, checked against open_clip's own zero-shot recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.backbones import TINY_CONFIGS, load_backbone
from benchmark.errors import HarnessError
from benchmark.features import FeatureCache
from benchmark.protocol import PROTOCOLS, ZERO_SHOT_TEMPLATES
from benchmark.protocols.data import TestData
from benchmark.images import ImageRef, encode_png
from benchmark.io import sha256_bytes
from benchmark.protocols.zero_shot import class_prompts, zero_shot_predict

CLASSES = ["earthquake", "wildfire", "volcano", "storm", "flooding", "tsunami"]


def make_refs(n: int) -> list[ImageRef]:
    refs = []
    for i in range(n):
        rng = np.random.default_rng(i)
        pixels = rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)
        data = encode_png(Image.fromarray(pixels))
        refs.append(ImageRef(sha256_bytes(data), data, name=f"test_{i}"))
    return refs


@pytest.fixture(scope="module")
def clip():
    return load_backbone("clip-vit-b32", random_init_config=TINY_CONFIGS["clip-vit-b32"])


@pytest.fixture(scope="module")
def test_split():
    refs = make_refs(30)
    return TestData(refs, np.arange(30) % len(CLASSES))


def reference_similarity(clip, refs, classes, templates) -> np.ndarray:
    """open_clip's documented recipe, written independently: encode_image / tokenizer / encode_text."""
    import open_clip

    model = clip.model
    tokenizer = open_clip.get_tokenizer(clip.spec.architecture, context_length=model.context_length)
    with torch.no_grad():
        images = model.encode_image(torch.stack([clip.preprocess(r.open()) for r in refs]))
        images = images / images.norm(dim=-1, keepdim=True)
        weights = []
        for name in classes:
            text = model.encode_text(tokenizer([t.format(name=name) for t in templates]))
            text = text / text.norm(dim=-1, keepdim=True)
            mean = text.mean(dim=0)
            weights.append(mean / mean.norm())
        return (images @ torch.stack(weights).T).numpy()


def test_zero_shot_matches_open_clips_recipe(clip, test_split, tmp_path):
    predictions, params = zero_shot_predict(clip, FeatureCache(tmp_path), test_split, CLASSES, progress=False)
    assert predictions.dtype == np.int64 and predictions.shape == (30,)
    similarity = reference_similarity(clip, test_split.refs, CLASSES, ZERO_SHOT_TEMPLATES)
    top2 = np.sort(similarity, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 5e-3  # the cache stores float16: near-ties may flip
    assert clear.sum() >= 10
    assert np.array_equal(predictions[clear], similarity.argmax(axis=1)[clear])
    assert params["templates"] == list(ZERO_SHOT_TEMPLATES) == PROTOCOLS["zero-shot"]["templates"]


def test_permuting_the_classes_permutes_the_predictions(clip, test_split, tmp_path):
    cache = FeatureCache(tmp_path)
    predictions, _ = zero_shot_predict(clip, cache, test_split, CLASSES, progress=False)
    order = [3, 0, 5, 1, 4, 2]
    permuted, _ = zero_shot_predict(clip, cache, test_split, [CLASSES[i] for i in order], progress=False)
    assert np.array_equal(np.array(order)[permuted], predictions)


def test_image_features_come_from_the_cache(clip, test_split, tmp_path):
    cache = FeatureCache(tmp_path)
    zero_shot_predict(clip, cache, test_split, CLASSES, progress=False)
    assert cache.n_encoded == 30
    zero_shot_predict(clip, cache, test_split, CLASSES, templates=["a photo of {name}."], progress=False)
    assert cache.n_encoded == 30


def test_backbones_without_text_are_refused_clearly(test_split, tmp_path):
    lite = load_backbone("efficientnet-lite0", random_init_config=TINY_CONFIGS["efficientnet-lite0"], image_size=32)
    with pytest.raises(HarnessError, match="text encoder; 'efficientnet-lite0' has none"):
        zero_shot_predict(lite, FeatureCache(tmp_path), test_split, CLASSES, progress=False)


def test_templates_must_name_the_class():
    assert class_prompts(["storm_surge"], ["a {name}"]) == [["a storm surge"]]
    with pytest.raises(HarnessError, match="placeholder"):
        class_prompts(CLASSES, ["a satellite image"])
