"""Checkpoint submissions: a faithful round trip, and a clear refusal for every unsafe or wrong file."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from benchmark.backbones import TINY_CONFIGS, load_backbone
from benchmark.errors import HarnessError
from benchmark.images import ImageRef, encode_png
from benchmark.io import sha256_bytes
from benchmark.protocols.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    save_checkpoint,
    score_checkpoint,
)
from benchmark.protocols.data import TestData

CLASSES = ["earthquake", "wildfire", "volcano"]


def make_test(n: int = 12) -> TestData:
    refs = []
    for i in range(n):
        rng = np.random.default_rng(50 + i)
        pixels = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
        data = encode_png(Image.fromarray(pixels))
        refs.append(ImageRef(sha256_bytes(data), data, name=f"test_{i}"))
    return TestData(refs, np.arange(n) % len(CLASSES))


def build(name: str, size: int = 32):
    """A tiny backbone and a head whose class prototypes are three (centred) test images' features,
    so that predictions vary across images (a constant prediction would prove little)."""
    backbone = load_backbone(name, random_init_config=TINY_CONFIGS[name], image_size=size)
    batch = torch.stack([backbone.preprocess(r.open()) for r in make_test().refs])
    with torch.no_grad():
        features = backbone.trainable_encoder()(backbone.prepare_input(batch))
    head = nn.Linear(backbone.feature_dim, len(CLASSES))
    with torch.no_grad():
        centre = features.mean(dim=0)
        head.weight.copy_(features[: len(CLASSES)] - centre)
        head.bias.copy_(-head.weight @ centre)  # logits = (f - centre) . (prototype - centre)
    return backbone, head


def expected_predictions(backbone, head, test: TestData) -> np.ndarray:
    batch = torch.stack([backbone.preprocess(r.open()) for r in test.refs])
    with torch.no_grad():
        logits = head(backbone.trainable_encoder()(backbone.prepare_input(batch)))
    return logits.argmax(dim=1).numpy()


@pytest.fixture()
def valid(tmp_path):
    backbone, head = build("clip-vit-b32")
    directory = save_checkpoint(tmp_path / "ckpt", backbone, head, CLASSES)
    return directory, backbone, head


@pytest.mark.parametrize("name", ["clip-vit-b32", "efficientnet-lite0", "siglip2-vit-b16"])
def test_round_trip_scores_exactly_like_the_saved_model(name, tmp_path):
    backbone, head = build(name)
    directory = save_checkpoint(tmp_path / name, backbone, head, CLASSES)
    assert sorted(p.name for p in directory.iterdir()) == [WEIGHTS_FILE, CONFIG_FILE]
    test = make_test()
    predictions, params = score_checkpoint(directory, CLASSES, test, progress=False)
    expected = expected_predictions(backbone, head, test)
    assert np.array_equal(predictions, expected)
    assert len(set(expected.tolist())) > 1  # a head that always says the same class proves little
    assert params["backbone"] == name
    assert re.fullmatch(r"[0-9a-f]{64}", params["checkpoint_sha256"])


def test_load_checkpoint_applies_the_checkpoints_own_preprocessing(valid):
    directory, backbone, _ = valid
    config = yaml.safe_load((directory / CONFIG_FILE).read_text())
    config["preprocessing"]["mean"] = [0.1, 0.2, 0.3]
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(config))
    loaded = load_checkpoint(directory, CLASSES)
    assert loaded.transform.mean == (0.1, 0.2, 0.3)
    assert loaded.transform.size == backbone.image_size



def test_the_test_split_is_decoded_once_and_predicted_alike_from_memory(valid, monkeypatch):
    """Warm cache, no cache, and a cache too small for the split (images pushed out mid-pass and
    decoded again) give the same predictions; a warm pass decodes nothing."""
    from benchmark.features import ImageDataset
    from benchmark.protocols.checkpoint import predict_images
    from benchmark.protocols.data import DecodedImages

    directory, _, _ = valid
    loaded = load_checkpoint(directory, CLASSES)
    test = make_test(20)
    decoded = []
    original = ImageDataset.__getitem__
    monkeypatch.setattr(ImageDataset, "__getitem__", lambda self, i: decoded.append(i) or original(self, i))

    def predict(cache):
        decoded.clear()
        return predict_images(loaded.model, loaded.backbone, loaded.transform, test.refs, batch_size=6,
                              image_cache=cache)

    off = predict(DecodedImages(0))
    assert len(decoded) == len(test) and len(set(off.tolist())) > 1
    warm = DecodedImages(2**30)
    assert np.array_equal(predict(warm), off) and len(decoded) == len(test)
    assert np.array_equal(predict(warm), off) and decoded == []  # from memory
    assert (warm.hits, warm.misses) == (len(test), len(test))
    per_image = 3 * loaded.transform.size ** 2
    small = DecodedImages(5 * per_image)  # a quarter of the split
    predict(small)
    assert np.array_equal(predict(small), off) and len(decoded) == len(test) and len(small) == 5
    # the checkpoint's own preprocessing is part of the key: another transform decodes afresh
    other = load_backbone("clip-vit-b32", random_init_config=TINY_CONFIGS["clip-vit-b32"], image_size=48)
    assert other.transform.id != loaded.transform.id
    decoded.clear()
    list(warm.batches(test.refs, other.transform, batch_size=6))
    assert len(decoded) == len(test)


# -- refusals: each names the file and the problem -----------------------------------------------


def refused(directory, match: str, classes=CLASSES):
    with pytest.raises(HarnessError, match=match) as info:
        load_checkpoint(directory, classes)
    return str(info.value)


@pytest.fixture()
def no_torch_load(monkeypatch):
    """Participant files must never reach torch.load (or pickle)."""
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load called on a participant file")
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)


def test_a_pickled_torch_file_renamed_to_safetensors_is_refused_unopened(valid, no_torch_load):
    directory, backbone, head = valid
    weights = directory / WEIGHTS_FILE
    torch.save({"head.weight": head.weight.detach()}, weights)  # zip archive with a pickle inside
    message = refused(directory, "zip archive")
    assert str(weights) in message and "never unpickled" in message


def test_a_raw_pickle_is_refused_unopened(valid, no_torch_load):
    directory, _, _ = valid
    (directory / WEIGHTS_FILE).write_bytes(pickle.dumps({"a": 1}, protocol=2))
    refused(directory, r"model.safetensors: is a Python pickle")


def test_garbage_bytes_are_not_a_safetensors_file(valid):
    directory, _, _ = valid
    (directory / WEIGHTS_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\x00" * 64)
    refused(directory, "not a safetensors file")


def test_only_safetensors_weights_are_accepted(valid, no_torch_load):
    directory, _, head = valid
    (directory / WEIGHTS_FILE).rename(directory / "model.pt")
    message = refused(directory, "model.safetensors: missing")
    assert "model.pt" in message and "only safetensors" in message


def test_missing_yaml_is_named(valid):
    directory, _, _ = valid
    (directory / CONFIG_FILE).unlink()
    refused(directory, re.escape(str(directory / CONFIG_FILE)) + ": missing")


@pytest.mark.parametrize("key", ["backbone", "head", "classes", "preprocessing", "head.n_classes",
                                 "head.type", "preprocessing.image_size", "preprocessing.mean", "preprocessing.std"])
def test_missing_yaml_keys_are_named(valid, key):
    directory, _, _ = valid
    config = yaml.safe_load((directory / CONFIG_FILE).read_text())
    parent, _, child = key.rpartition(".")
    del (config[parent] if parent else config)[child]
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(config))
    message = refused(directory, f"missing key '{key}'")
    assert str(directory / CONFIG_FILE) in message


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda c: c.update(backbone="resnet-9000"), "unknown backbone 'resnet-9000'; use one of: efficientnet-lite0"),
        (lambda c: c["head"].update(n_classes=4), "n_classes is 4 but the task has 3 classes"),
        (lambda c: c["head"].update(n_classes=True), "'head.n_classes' must be a int"),
        (lambda c: c["head"].update(type="mlp"), "head.type 'mlp' is not supported"),
        (lambda c: c.update(classes=["earthquake", "fire", "volcano"]), "differ from the task's classes"),
        (lambda c: c.update(classes=["wildfire", "earthquake", "volcano"]), "names and order must match"),
        (lambda c: c["preprocessing"].update(std=[0.5, 0.0, 0.5]), "three positive numbers"),
        (lambda c: c["preprocessing"].update(mean=[0.5, 0.5]), "three numbers"),
        (lambda c: c.update(schema_version=2), "schema_version 2 is not supported"),
    ],
)
def test_inconsistent_yaml_is_refused(valid, edit, match):
    directory, _, _ = valid
    config = yaml.safe_load((directory / CONFIG_FILE).read_text())
    edit(config)
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(config))
    message = refused(directory, re.escape(match))
    assert message.startswith(str(directory / CONFIG_FILE))


def _rewrite(directory, change):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(directory / WEIGHTS_FILE))
    change(tensors)
    save_file(tensors, str(directory / WEIGHTS_FILE))


def test_tensor_shape_mismatches_are_named(valid):
    directory, _, _ = valid
    _rewrite(directory, lambda t: t.update({"head.weight": torch.zeros(3, 7)}))
    message = refused(directory, r"shape mismatch: head.weight \(3, 7\) \(expected \(3, 32\)\)")
    assert str(directory / WEIGHTS_FILE) in message


def test_missing_and_unexpected_tensors_are_named(valid):
    directory, _, _ = valid
    def change(tensors):
        del tensors["head.bias"]
        tensors["encoder.extra_layer.weight"] = torch.zeros(2)
    _rewrite(directory, change)
    refused(directory, r"1 missing tensor\(s\): head.bias; 1 unexpected tensor\(s\): encoder.extra_layer.weight")


def test_an_image_size_the_architecture_cannot_take_is_a_shape_mismatch(valid):
    directory, _, _ = valid
    config = yaml.safe_load((directory / CONFIG_FILE).read_text())
    config["preprocessing"]["image_size"] = 48  # ViT position embeddings were saved for 32 px
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(config))
    refused(directory, "shape mismatch: encoder.positional_embedding")


def test_non_finite_weights_are_refused(valid):
    directory, _, _ = valid
    _rewrite(directory, lambda t: t["head.weight"].fill_(float("nan")))
    refused(directory, "non-finite values in head.weight")


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(HarnessError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "nope", CLASSES)


def _edit_config(directory, edit):
    config = yaml.safe_load((directory / CONFIG_FILE).read_text())
    edit(config)
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(config))


def test_wrong_dtypes_are_refused_before_loading(valid):
    directory, _, _ = valid
    _rewrite(directory, lambda t: t.update({"head.bias": t["head.bias"].to(torch.int64)}))
    refused(directory, r"wrong dtype: head.bias dtype I64 \(expected a floating-point dtype\)")


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["backbone_config"].update({"dropout": 0.1}), r"backbone_config\.dropout is not a setting of this architecture"),
    (lambda c: c["backbone_config"]["vision_cfg"].update({"layers": 10**6}), r"backbone_config\.vision_cfg\.layers must be an integer in 1\.\.24 \(got 1000000\)"),
    (lambda c: c["backbone_config"]["vision_cfg"].update({"width": 64.5}), r"backbone_config\.vision_cfg\.width must be an integer in 8\.\.1024"),
    (lambda c: c["backbone_config"]["vision_cfg"].update({"patch_size": 2}), r"32 px in patches of 2 is 256 image tokens|1024 image tokens"),
    (lambda c: c["preprocessing"].update({"image_size": 1024}), r"1024 px in patches of 8 is 16384 image tokens, above the limit of 1024"),
    (lambda c: c.update({"backbone_config": "big"}), r"'backbone_config' must be a mapping or null"),
])
def test_a_backbone_config_is_bounded_before_anything_is_built(valid, edit, match, monkeypatch):
    """Unknown keys and sizes out of bounds are refused from model.yaml alone: no model is built."""
    import benchmark.backbones

    directory, _, _ = valid
    _edit_config(directory, edit)
    built = []
    monkeypatch.setattr(benchmark.backbones, "load_backbone", lambda *a, **k: built.append(a) or pytest.fail("built"))
    if "patches of 2" in match:  # 256 tokens are allowed: this one is built (and its weights do not fit)
        monkeypatch.undo()
        refused(directory, "shape mismatch")
        return
    refused(directory, match)
    assert built == []


def test_validate_and_run_refuse_a_checkpoint_with_the_same_message(valid, tmp_path):
    """One check for both: the message validate reports is the one load_checkpoint raises."""
    from benchmark.submissions.checkpoints import check_checkpoint

    directory, _, _ = valid
    _rewrite(directory, lambda t: t["head.weight"].fill_(float("inf")))
    with pytest.raises(HarnessError) as checked:
        check_checkpoint(directory, CLASSES)
    assert refused(directory, "non-finite values in head.weight") == str(checked.value)


def test_a_safetensors_header_length_that_starts_like_a_pickle_is_not_refused(tmp_path):
    """A header of 640 bytes is stored as 80 02 00 ..., the first bytes of a protocol-2 pickle."""
    from safetensors.torch import save

    from benchmark.submissions.checkpoints import check_safetensors_file
    from benchmark.submissions.format import Problems, _parse_checkpoint

    tensors = {"head.weight": torch.zeros(2, 2)}
    data = next(d for d in (save(tensors, metadata={"pad": "x" * n}) for n in range(700)) if d[:2] == b"\x80\x02")
    assert int.from_bytes(data[:8], "little") == 640
    (tmp_path / WEIGHTS_FILE).write_bytes(data)
    check_safetensors_file(tmp_path / WEIGHTS_FILE)  # no error
    problems = Problems()
    weights, _, _ = _parse_checkpoint(tmp_path, problems)
    assert weights == tmp_path / WEIGHTS_FILE and not [p for p in problems.errors if WEIGHTS_FILE in p]
