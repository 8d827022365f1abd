"""The zero-shot protocol: CLIP-family text prompts, no training (a reference row).

Each class is represented by the mean of its L2-normalised prompt embeddings (one prompt per
template in PROTOCOLS["zero-shot"]["templates"], `{name}` filled with the class name), normalised
again (CLIP's prompt ensembling); each test image goes to the class of highest cosine similarity.
Image features come from the feature cache, so they are shared with the linear probe.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..backbones import Backbone
from ..errors import HarnessError
from ..features import FeatureCache
from ..protocol import ZERO_SHOT_TEMPLATES
from .data import TestData


def class_prompts(classes: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """The prompts of each class: every template with `{name}` set to the readable class name."""
    if not templates:
        raise HarnessError("zero-shot needs at least one prompt template")
    bad = [t for t in templates if "{name}" not in t]
    if bad:
        raise HarnessError(f"zero-shot template {bad[0]!r} has no {{name}} placeholder")
    return [[t.format(name=str(c).replace("_", " ")) for t in templates] for c in classes]


def class_embeddings(backbone: Backbone, classes: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """(C, D) unit-norm class embeddings: per class, the renormalised mean of unit prompt embeddings."""
    prompts = class_prompts(classes, templates)
    flat = [p for per_class in prompts for p in per_class]
    text = torch.nn.functional.normalize(backbone.encode_text(flat).float(), dim=-1)
    text = text.view(len(classes), len(templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(text, dim=-1)


def zero_shot_predict(
    backbone: Backbone,
    cache: FeatureCache,
    test: TestData,
    classes: Sequence[str],
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Predict each test image's class from prompt similarity: (predictions, params)."""
    if not backbone.supports_text:
        raise HarnessError(
            f"zero-shot needs a backbone with a text encoder; {backbone.name!r} has none "
            f"(use a CLIP-family backbone: clip-vit-b16, clip-vit-b32, siglip2-vit-b16, remoteclip-vit-b32, git-rsclip)"
        )
    if len(classes) < 2:
        raise HarnessError("zero-shot needs at least two classes")
    weights = class_embeddings(backbone, classes, templates)
    features = cache.features(backbone, test.refs, batch_size=batch_size, num_workers=num_workers, progress=progress)
    images = torch.nn.functional.normalize(torch.from_numpy(features), dim=-1)
    similarity = images @ weights.T
    predictions = similarity.argmax(dim=1).numpy().astype(np.int64)
    params = {
        "templates": list(templates),
        "n_templates": len(templates),
        "classes": [str(c) for c in classes],
        "weights_id": backbone.weights_id,
        "preprocessing": backbone.preprocessing_id,
    }
    return predictions, params


__all__ = ["class_embeddings", "class_prompts", "zero_shot_predict"]
