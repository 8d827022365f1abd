"""The GPU fast path agrees with the CPU (issue #6: "falls back to CPU with identical results up to
floating-point tolerance"). Every test needs a CUDA device and is skipped without one.

CUDA runs bf16 autocast (features differ from the CPU's float32 by more than rounding), trains the
seeds of a linear-probe setting together and fine-tunes with fused AdamW; these tests bound how
far that may move the results.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo task (6 classes, 10 real train and 10 test images per class) and a baseline
    submission of 100 synthetic images per class."""
    from benchmark.generators.baselines import generate_baseline
    from benchmark.tasks import build_demo_task, load_task

    root = tmp_path_factory.mktemp("gpu-demo")
    task = load_task(build_demo_task(root / "task", train_per_class=10, test_per_class=10, image_size=96))
    submission = generate_baseline("classic", task, root / "submission", multiplier=10, seed=0)
    return task, submission


def test_encoding_on_cuda_matches_the_cpu(demo, tmp_path):
    """efficientnet-lite0 (its real weights) through the feature cache on both devices: bf16
    autocast, channels-last and workers on CUDA against float32 on the CPU."""
    from benchmark.backbones import load_backbone
    from benchmark.features import FeatureCache

    task, _ = demo
    refs = task.image_refs("test")[:24]
    features = {}
    for device in ("cpu", "cuda"):
        backbone = load_backbone("efficientnet-lite0", device=device)
        cache = FeatureCache(tmp_path / device)
        features[device] = cache.features(backbone, refs, progress=False)
        assert cache.n_encoded == len(refs)
    cpu, cuda = (torch.from_numpy(features[d]).double() for d in ("cpu", "cuda"))
    assert cpu.shape == cuda.shape == (len(refs), backbone.feature_dim)
    assert torch.isfinite(cuda).all()
    assert not torch.equal(cpu, cuda)  # really another precision, not the CPU's features again
    cosine = torch.nn.functional.cosine_similarity(cpu, cuda, dim=1)
    assert cosine.min().item() >= 0.99, f"lowest per-image cosine similarity {cosine.min().item():.4f}"


def test_linear_probe_grid_on_cuda_matches_the_cpu(demo, tmp_path):
    """The whole grid on both devices: CUDA trains the seeds of a setting together, the CPU one
    run at a time; the same runs, and at least 95% of all test predictions equal."""
    from benchmark.grid import run_grid
    from benchmark.protocols import get_runner

    assert get_runner("linear-probe", device="cuda").trains_seeds_together
    assert not get_runner("linear-probe", device="cpu").trains_seeds_together
    task, submission = demo
    records = {
        device: run_grid(
            task, submission, backbone="efficientnet-lite0", protocol="linear-probe", seeds=(0, 1),
            device=device, cache_dir=tmp_path / "cache", out_path=tmp_path / f"{device}.json",
            validated=True, progress=False,
        )
        for device in ("cpu", "cuda")
    }
    cpu, cuda = records["cpu"], records["cuda"]
    assert cuda["backbone"]["precision"] == "bf16-autocast" and cpu["backbone"]["precision"] == "fp32"
    assert cuda["provenance"]["images_encoded"] > 0  # its own features, not the CPU's
    runs = [(r["setting"], r["seed"], r["n_train"]) for r in cpu["runs"]]
    assert [(r["setting"], r["seed"], r["n_train"]) for r in cuda["runs"]] == runs and len(runs) == 18
    cpu_predictions = np.concatenate([r["predictions"] for r in cpu["runs"]])
    cuda_predictions = np.concatenate([r["predictions"] for r in cuda["runs"]])
    agreement = float((cpu_predictions == cuda_predictions).mean())
    assert agreement >= 0.95, f"CUDA and CPU predictions agree on {agreement:.1%}"


def test_fine_tuning_on_cuda_uses_fused_adamw_and_keeps_a_finite_loss(demo, monkeypatch):
    from benchmark.backbones import load_backbone
    from benchmark.protocols.data import DecodedImages, TrainData
    from benchmark.protocols.fine_tune import train_classifier

    task, _ = demo
    created = []

    class RecordingAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    train = TrainData.from_labels(task.image_refs("train_real"), task.labels("train_real"), len(task.classes))
    backbone = load_backbone("efficientnet-lite0", device="cuda")
    encoder, head, params = train_classifier(
        backbone, train, n_classes=len(task.classes), seed=0,
        recipe={"images_seen": 128, "batch_size": 32}, progress=False, image_cache=DecodedImages(0),
    )
    assert len(created) == 1 and created[0].defaults["fused"] is True
    assert params["steps"] == 4
    assert np.isfinite(params["loss_first"]) and np.isfinite(params["loss_last"])
    assert next(encoder.parameters()).device.type == "cuda" and head.weight.device.type == "cuda"
    assert all(torch.isfinite(p).all() for p in head.parameters())
