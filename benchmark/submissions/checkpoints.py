"""Checking a checkpoint submission (model.safetensors + model.yaml) before anything runs it.

`check_checkpoint` is the one check that both `synthbench validate` and the checkpoint protocol
(`benchmark.protocols.checkpoint.load_checkpoint`, which `synthbench run` uses) call, so validate
accepts exactly the checkpoints run accepts. It refuses, naming the file and the problem:

* weights that are not safetensors (a pickle or torch zip archive is recognised by its first bytes
  and never opened), above MAX_CHECKPOINT_BYTES, or not a regular file;
* a model.yaml above MAX_YAML_BYTES, with aliases or deep nesting, missing or ill-typed keys, an
  unknown backbone, classes that differ from the task's, bad preprocessing;
* a `backbone_config` with keys the backbone's architecture does not take (the keys of its
  `TINY_CONFIGS` entry) or sizes outside `CONFIG_LIMITS` (checked before anything is built, so
  the architecture built from it is bounded);
* tensors whose names, shapes or dtypes differ from the architecture's (compared on the
  safetensors header: nothing is loaded), and non-finite values (read one tensor at a time).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import HarnessError, SynthbenchError
from ..io import clip, read_bounded, regular_file_problem, shorten
from .format import MAX_CHECKPOINT_BYTES, MAX_YAML_BYTES, load_yaml

CHECKPOINT_SCHEMA_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.yaml"
#: Weight formats that can carry code (pickle) or that the harness does not read.
REFUSED_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".joblib", ".npz", ".h5", ".onnx")
#: Largest safetensors JSON header accepted (real headers are a few hundred KB at most).
MAX_HEADER_BYTES = 64 * 1024 * 1024
#: Bounds on each `backbone_config` value, by key (at most a ViT-L's sizes): (lowest, highest).
CONFIG_LIMITS: dict[str, tuple[float, float]] = {
    "width_coefficient": (0.1, 2.0), "depth_coefficient": (0.1, 2.0),
    "embed_dim": (1, 1024), "image_size": (16, 1024), "patch_size": (2, 64), "layers": (1, 24),
    "width": (8, 1024), "head_width": (8, 128), "heads": (1, 16), "context_length": (1, 77),
    "vocab_size": (1, 65536), "hidden_size": (8, 1024), "intermediate_size": (8, 4096),
    "num_hidden_layers": (1, 24), "num_attention_heads": (1, 16), "max_position_embeddings": (1, 512),
    "pad_token_id": (0, 65535), "bos_token_id": (0, 65535), "eos_token_id": (0, 65535),
}
#: Image tokens a vision transformer built from a backbone_config may have ((size / patch)^2).
MAX_IMAGE_TOKENS = 1024
#: safetensors dtypes accepted for a floating-point tensor (converted to the model's dtype).
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})


def _refuse(path: Path, problem: str) -> HarnessError:
    return HarnessError(f"{path}: {problem}")


def check_safetensors_file(path: Path) -> None:
    """Refuse anything but a bounded, well-formed safetensors file, by extension, stat and first bytes."""
    if path.suffix != ".safetensors":
        raise _refuse(path, "weights must be a .safetensors file")
    if os.path.islink(path):
        raise _refuse(path, "must be a regular file, not a symlink")
    problem = regular_file_problem(path, MAX_CHECKPOINT_BYTES)
    if problem is not None:
        raise _refuse(path, problem)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        header_len = int.from_bytes(head, "little")
        plausible = len(head) == 8 and 1 < header_len <= min(MAX_HEADER_BYTES, size - 8)
        header = handle.read(header_len) if plausible else b""
    # A safetensors header length can begin with the bytes a pickle begins with (0x80 0x02 is 640):
    # a file is called a pickle or a zip only when it does not read as safetensors.
    if not header.startswith(b"{"):
        if head[:4] == b"PK\x03\x04":
            raise _refuse(path, "is a zip archive (a torch.save file), not safetensors; it is never unpickled. "
                          "Convert it with safetensors.torch.save_file(state_dict, 'model.safetensors')")
        if head[:1] == b"\x80":
            raise _refuse(path, "is a Python pickle, not safetensors; it is never unpickled. "
                          "Convert it with safetensors.torch.save_file(state_dict, 'model.safetensors')")
        if len(head) < 8:
            raise _refuse(path, f"is {size} bytes: too short to be a safetensors file")
        if not plausible:
            raise _refuse(path, f"not a safetensors file (header length {header_len} for a {size}-byte file)")
    try:
        parsed = json.loads(header)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _refuse(path, "not a safetensors file (its header is not JSON)") from None
    if not isinstance(parsed, dict):
        raise _refuse(path, "not a safetensors file (its header is not a JSON object)")


def _read_config(path: Path) -> dict[str, Any]:
    if os.path.islink(path):
        raise _refuse(path, "must be a regular file, not a symlink")
    problem = regular_file_problem(path, MAX_YAML_BYTES)
    if problem == "file not found":
        raise _refuse(path, "missing (a checkpoint needs model.yaml beside model.safetensors)")
    if problem is not None:
        raise _refuse(path, problem)
    try:
        config = load_yaml(read_bounded(path, MAX_YAML_BYTES).decode("utf-8"))
    except (SynthbenchError, OSError):
        raise
    except Exception as exc:  # yaml.YAMLError, UnicodeDecodeError, ValueError: all say what is wrong
        raise _refuse(path, f"not valid YAML ({clip(str(exc), 200)})") from None
    if not isinstance(config, dict):
        raise _refuse(path, "must be a YAML mapping")
    return config


def _require(config: dict, key: str, kind: type | tuple[type, ...], path: Path, where: str = "") -> Any:
    label = f"{where}.{key}" if where else key
    if key not in config:
        raise _refuse(path, f"missing key {label!r}")
    value = config[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass in Python: `n_classes: true` must not pass as 1
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise _refuse(path, f"{label!r} must be a {names}, found {type(value).__name__}")
    return value


def _triple(value: Any, path: Path, label: str, positive: bool) -> tuple[float, float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )
    if not ok or (positive and min(value) <= 0):
        need = "three positive numbers" if positive else "three numbers"
        raise _refuse(path, f"{label!r} must be {need}, found {shorten(value)}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _config_problems(config: Any, allowed: Any, where: str) -> list[str]:
    """Keys of `config` not in `allowed` (the tiny config's structure) and values out of bounds."""
    if isinstance(allowed, dict):
        if not isinstance(config, dict):
            return [f"{where} must be a mapping (got {shorten(config)})"]
        problems = []
        for key, value in config.items():
            label = f"{where}.{key}" if isinstance(key, str) else f"{where}.{shorten(key)}"
            if key not in allowed:
                problems.append(f"{label} is not a setting of this architecture (allowed: {', '.join(allowed)})")
            else:
                problems += _config_problems(value, allowed[key], label)
        return problems
    low, high = CONFIG_LIMITS.get(where.rsplit(".", 1)[-1], (1, 1024))
    number = isinstance(config, (int, float)) and not isinstance(config, bool)
    if not number or not (low <= config <= high) or (isinstance(allowed, int) and not isinstance(config, int)):
        kind = "an integer" if isinstance(allowed, int) else "a number"
        return [f"{where} must be {kind} in {low}..{high} (got {shorten(config)})"]
    return []


def check_backbone_config(path: Path, name: str, config: Any, image_size: int) -> None:
    """Refuse a `backbone_config` the architecture does not take, or too large to build."""
    from ..backbones import TINY_CONFIGS

    if config is None:
        return
    problems = _config_problems(config, TINY_CONFIGS[name], "backbone_config")
    if problems:
        raise _refuse(path, "; ".join(problems[:5]) + (f" and {len(problems) - 5} more" if len(problems) > 5 else ""))
    for tower in ("vision_cfg", "vision_config"):
        patch = (config.get(tower) or {}).get("patch_size")
        if patch is not None:
            size = max(image_size, (config.get(tower) or {}).get("image_size", 0))
            if (size // patch) ** 2 > MAX_IMAGE_TOKENS:
                raise _refuse(
                    path, f"backbone_config.{tower}: {size} px in patches of {patch} is {(size // patch) ** 2} "
                    f"image tokens, above the limit of {MAX_IMAGE_TOKENS}"
                )


def check_checkpoint_config(path: str | os.PathLike, task_classes: Sequence[str]) -> dict[str, Any]:
    """Check a checkpoint's model.yaml against the task (no model is built); HarnessError if wrong.

    Returns the parsed fields: backbone, backbone_config, n_classes, classes, transform, raw.
    """
    from ..backbones import BACKBONES, ImageTransform, get_spec

    path = Path(path)
    config = _read_config(path)
    version = config.get("schema_version", CHECKPOINT_SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise _refuse(path, f"schema_version must be an integer, {CHECKPOINT_SCHEMA_VERSION} (got {shorten(version)})")
    if version != CHECKPOINT_SCHEMA_VERSION:
        raise _refuse(path, f"schema_version {version} is not supported (this harness reads {CHECKPOINT_SCHEMA_VERSION})")
    name = _require(config, "backbone", str, path)
    if name not in BACKBONES:
        raise _refuse(path, f"unknown backbone {shorten(name)}; use one of: {', '.join(BACKBONES)}")
    backbone_config = config.get("backbone_config")
    if backbone_config is not None and not isinstance(backbone_config, dict):
        raise _refuse(path, "'backbone_config' must be a mapping or null")
    head = _require(config, "head", dict, path)
    head_type = _require(head, "type", str, path, "head")
    if head_type != "linear":
        raise _refuse(path, f"head.type {shorten(head_type)} is not supported (use 'linear')")
    n_classes = _require(head, "n_classes", int, path, "head")
    classes = _require(config, "classes", list, path)
    task_classes = list(task_classes)
    if n_classes != len(task_classes):
        raise _refuse(path, f"head.n_classes is {n_classes} but the task has {len(task_classes)} classes ({', '.join(task_classes)})")
    if not all(isinstance(c, str) for c in classes) or classes != task_classes:
        raise _refuse(
            path,
            f"classes {shorten(classes, 300)} differ from the task's classes {task_classes} "
            f"(names and order must match: output i is class i)",
        )
    pre = _require(config, "preprocessing", dict, path)
    image_size = _require(pre, "image_size", int, path, "preprocessing")
    if not 16 <= image_size <= 1024:
        raise _refuse(path, f"preprocessing.image_size {image_size} is outside 16..1024")
    mean = _triple(_require(pre, "mean", list, path, "preprocessing"), path, "preprocessing.mean", positive=False)
    std = _triple(_require(pre, "std", list, path, "preprocessing"), path, "preprocessing.std", positive=True)
    check_backbone_config(path, name, backbone_config, image_size)
    spec = get_spec(name)
    try:
        transform = ImageTransform(
            image_size, mean, std,
            str(pre.get("interpolation", spec.interpolation)), str(pre.get("resize_mode", spec.resize_mode)),
        )
    except HarnessError as exc:
        raise _refuse(path, f"preprocessing: {clip(str(exc), 200)}") from None
    return {
        "backbone": name,
        "backbone_config": backbone_config,
        "n_classes": n_classes,
        "classes": task_classes,
        "transform": transform,
        "raw": config,
    }


def _dtype_problem(found: str, expected) -> str | None:
    if expected.is_floating_point:
        return None if found in FLOAT_DTYPES else f"dtype {found} (expected a floating-point dtype)"
    expected_name = str(expected).replace("torch.", "")
    prefix = {"int": "I", "uint": "U", "bool": "BOOL"}
    kind = next((p for name, p in prefix.items() if expected_name.startswith(name)), None)
    return None if kind and found.startswith(kind) else f"dtype {found} (expected {expected_name})"


def _listed(items: list[str]) -> str:
    return ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")


def check_tensors(weights_path: Path, expected: dict, description: str) -> None:
    """Names, shapes and dtypes from the safetensors header against `expected` (a state_dict), then
    finiteness one tensor at a time; HarnessError naming the file and the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            names = set(handle.keys())
            missing = sorted(set(expected) - names)
            unexpected = sorted(names - set(expected))
            wrong_shape, wrong_dtype = [], []
            for key in sorted(names & set(expected)):
                piece = handle.get_slice(key)
                shape = tuple(piece.get_shape())
                if shape != tuple(expected[key].shape):
                    wrong_shape.append(f"{key} {shape} (expected {tuple(expected[key].shape)})")
                dtype = _dtype_problem(piece.get_dtype(), expected[key].dtype)
                if dtype is not None:
                    wrong_dtype.append(f"{key} {dtype}")
            problems = []
            if missing:
                problems.append(f"{len(missing)} missing tensor(s): {_listed(missing)}")
            if unexpected:
                problems.append(f"{len(unexpected)} unexpected tensor(s): {_listed([clip(k, 80) for k in unexpected])}")
            if wrong_shape:
                problems.append(f"shape mismatch: {'; '.join(wrong_shape[:5])}{' ...' if len(wrong_shape) > 5 else ''}")
            if wrong_dtype:
                problems.append(f"wrong dtype: {'; '.join(wrong_dtype[:5])}{' ...' if len(wrong_dtype) > 5 else ''}")
            if problems:
                raise _refuse(weights_path, f"does not match {description}: " + "; ".join(problems))
            non_finite = [k for k in sorted(names) if expected[k].is_floating_point() and not handle.get_tensor(k).isfinite().all()]
    except HarnessError:
        raise
    except Exception as exc:  # safetensors' own errors for a header whose offsets do not add up
        raise _refuse(weights_path, f"unreadable safetensors file ({type(exc).__name__}: {clip(str(exc), 200)})") from None
    if non_finite:
        raise _refuse(weights_path, f"non-finite values in {_listed(non_finite)}")


@dataclass
class CheckedCheckpoint:
    """A checkpoint that passed `check_checkpoint`: its parsed model.yaml and the architecture
    (random weights) its tensors were checked against."""

    directory: Path
    weights_path: Path
    config: dict[str, Any]  # check_checkpoint_config's fields
    backbone: Any  # benchmark.backbones.Backbone, architecture only
    model: CheckpointModel  # random weights


class CheckpointModel(nn.Module):
    """Image encoder + linear head: normalised images -> class logits."""

    def __init__(self, encoder: nn.Module, head: nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images).float())


def check_checkpoint(
    directory: str | os.PathLike,
    task_classes: Sequence[str],
    *,
    device: Any = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> CheckedCheckpoint:
    """Everything `run` requires of a checkpoint folder, checked without loading its weights
    (see the module docstring); HarnessError naming the file and the problem otherwise."""
    from ..backbones import load_backbone

    directory = Path(directory)
    if not directory.is_dir():
        raise HarnessError(f"{directory}: checkpoint folder not found")
    weights_path = directory / WEIGHTS_FILE
    if not os.path.lexists(weights_path):
        others = sorted(p.name for p in directory.iterdir() if p.suffix in REFUSED_WEIGHT_SUFFIXES)
        hint = (
            f"; found {', '.join(others)}: only safetensors is accepted (participant files are never unpickled)"
            if others else ""
        )
        raise _refuse(weights_path, f"missing{hint}")
    check_safetensors_file(weights_path)
    parsed = check_checkpoint_config(directory / CONFIG_FILE, task_classes)
    transform = parsed["transform"]
    # The architecture only (random weights): every tensor comes from the checkpoint.
    backbone = load_backbone(
        parsed["backbone"], device=device, image_size=transform.size, random_init_config=parsed["backbone_config"],
        architecture_only=True, cache_dir=cache_dir,
    )
    model = CheckpointModel(backbone.trainable_encoder(), nn.Linear(backbone.feature_dim, parsed["n_classes"]))
    description = (
        f"backbone {parsed['backbone']!r} + linear head ({parsed['n_classes']} classes) at {transform.size} px"
    )
    check_tensors(weights_path, model.state_dict(), description)
    return CheckedCheckpoint(directory, weights_path, parsed, backbone, model)


__all__ = [
    "CHECKPOINT_SCHEMA_VERSION",
    "CONFIG_FILE",
    "CONFIG_LIMITS",
    "WEIGHTS_FILE",
    "CheckedCheckpoint",
    "CheckpointModel",
    "check_backbone_config",
    "check_checkpoint",
    "check_checkpoint_config",
    "check_safetensors_file",
    "check_tensors",
]
