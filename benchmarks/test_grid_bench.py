"""Speed and memory of the linear-probe grid of one submission, against encoding its images once.

The issue's target: everything except encoding (9 settings x 5 seeds, C selection by 5-fold CV
included, metrics, bootstrap CIs and the record) should take <= 25% of the time it takes to encode
the submission's images once with the default backbone.

The grid runs through `run_grid` itself on precomputed features of the realistic shape (600 real
train + 2400 synthetic + 600 test, 1280-d, non-negative like EfficientNet-Lite0's pooled features)
served in place of the feature cache; encoding is `FeatureCache.features` with the default backbone
(native 224 px input) on PNG images of 1024 x 1024, the size of xBD tiles and of typical generator
outputs. The two are timed alternately in one run (encoding in each round's untimed
setup), so both see the same machine load. Encoding a sample of the 3600 images and scaling
linearly keeps a round short; SYNTHBENCH_BENCH_ENCODE_IMAGES=3600 encodes them all.

    pytest benchmarks/test_grid_bench.py -s      (prints the ratio and the peak memory)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.backbones import DEFAULT_BACKBONE, load_backbone
from benchmark.device import resolve_device
from benchmark.features import FeatureCache
from benchmark.grid import run_grid
from benchmark.images import ImageRef, encode_png
from benchmark.io import sha256_bytes

CLASSES = ["earthquake", "wildfire", "volcano", "storm", "flooding", "tsunami"]
REAL_PER_CLASS, SYNTHETIC_PER_CLASS, TEST_PER_CLASS, DIM = 100, 400, 100, 1280
N_IMAGES = len(CLASSES) * (REAL_PER_CLASS + SYNTHETIC_PER_CLASS + TEST_PER_CLASS)  # 3600
ENCODE_IMAGES = int(os.environ.get("SYNTHBENCH_BENCH_ENCODE_IMAGES", "240"))
ROUNDS = int(os.environ.get("SYNTHBENCH_BENCH_ROUNDS", "2"))
DEVICE = os.environ.get("SYNTHBENCH_BENCH_DEVICE", "auto")
IMAGE_SIDE = 1024


def realistic_features(seed: int = 0):
    """Real, synthetic (with a domain shift) and test features: a low-rank signal through a ReLU.

    Separation is set so a real-only linear probe reaches roughly 80% accuracy, as on real tasks.
    """
    rng = np.random.default_rng(seed)
    latent = 96
    mixing = rng.normal(0, 1, (latent, DIM)) / np.sqrt(latent)
    centres = rng.normal(0, 1, (len(CLASSES), latent))
    shift = rng.normal(0, 0.3, latent)

    def draw(per_class: int, offset, noise: float):
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        z = 0.25 * centres[labels] + offset + rng.normal(0, noise, (labels.size, latent))
        features = np.maximum(z @ mixing + 0.3 * rng.normal(0, 1, (labels.size, DIM)), 0)
        return features.astype(np.float32), labels

    return draw(REAL_PER_CLASS, 0.0, 1.0), draw(SYNTHETIC_PER_CLASS, shift, 1.1), draw(TEST_PER_CLASS, 0.0, 1.0)


def _refs(prefix: str, n: int) -> list[ImageRef]:
    return [ImageRef(sha256_bytes(f"{prefix}-{i}".encode()), b"", name=f"{prefix}-{i}") for i in range(n)]


@dataclass
class _Entry:
    file_name: str


class BenchTask:
    """The parts of benchmark.tasks.Task the grid reads, over feature-only images."""

    name, revision, test_manifest_hash = "bench-disaster6", "local", "0" * 64
    classes = CLASSES

    def __init__(self, real_labels, test_labels):
        self._labels = {"train_real": real_labels, "test": test_labels}
        self._refs = {"train_real": _refs("real", real_labels.size), "test": _refs("test", test_labels.size)}

    def image_refs(self, split):
        return self._refs[split]

    def labels(self, split):
        return self._labels[split]


class BenchSubmission:
    """The parts of benchmark.submissions.Submission the grid reads."""

    id, kind, track = "bench__pool", "images", "generated"

    def __init__(self, folder: Path, labels):
        self.path = folder
        self.content_hash = "1" * 64
        self._labels = labels
        self._refs = _refs("synthetic", labels.size)
        self.entries = [_Entry(f"images/{i:05d}.png") for i in range(labels.size)]

    def image_refs(self):
        return self._refs

    def targets(self, classes):
        return np.eye(len(classes), dtype=np.float32)[self._labels]


def _png_images(n: int, seed: int) -> list[ImageRef]:
    rng = np.random.default_rng(seed)
    refs = []
    for i in range(n):
        low = (rng.random((IMAGE_SIDE // 16, IMAGE_SIDE // 16, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(low).resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BICUBIC)
        noisy = np.clip(np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (IMAGE_SIDE, IMAGE_SIDE, 3)), 0, 255)
        data = encode_png(Image.fromarray(noisy.astype(np.uint8)))
        refs.append(ImageRef(sha256_bytes(data), data, name=f"bench-{seed}-{i}"))
    return refs


def bench_inputs(folder: Path):
    """(task, submission, a FeatureCache.features replacement serving the precomputed features)."""
    (real_x, real_y), (syn_x, syn_y), (test_x, test_y) = realistic_features()
    task = BenchTask(real_y, test_y)
    submission = BenchSubmission(folder / "bench__pool", syn_y)
    features = {}
    for refs, matrix in ((task.image_refs("train_real"), real_x), (task.image_refs("test"), test_x),
                         (submission.image_refs(), syn_x)):
        features.update({ref.sha256: row for ref, row in zip(refs, matrix)})

    def cached(self, backbone, refs, **kwargs):  # the feature cache, already warm
        return np.stack([features[ref.sha256] for ref in refs])

    return task, submission, cached


@pytest.mark.slow
def test_linear_probe_grid_vs_encoding(benchmark, monkeypatch, tmp_path):
    device = resolve_device(DEVICE)
    task, submission, cached = bench_inputs(tmp_path)

    backbone = load_backbone(DEFAULT_BACKBONE, device=device)
    encode_seconds: list[float] = []
    grid_seconds: list[float] = []
    records = []

    def encode_once():
        images = _png_images(ENCODE_IMAGES, seed=len(encode_seconds))  # fresh images: nothing cached
        with tempfile.TemporaryDirectory() as cache_dir:
            cache = FeatureCache(cache_dir)
            start = time.perf_counter()
            cache.features(backbone, images, progress=False)
            encode_seconds.append(time.perf_counter() - start)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def grid_once():
        out = tmp_path / f"record-{len(records)}.json"  # a fresh record: no resume
        with monkeypatch.context() as patch:
            patch.setattr(FeatureCache, "features", cached)
            start = time.perf_counter()
            record = run_grid(task, submission, cache_dir=tmp_path / "unused", device=str(device),
                              validated=True, out_path=out, progress=False)
            grid_seconds.append(time.perf_counter() - start - record["provenance"]["seconds_loading"])
        records.append(record)

    benchmark.pedantic(grid_once, setup=encode_once, rounds=ROUNDS, iterations=1)

    record = records[-1]
    assert len(record["runs"]) == 45 and not record["skipped"]
    encode_all = float(np.median(encode_seconds)) * N_IMAGES / ENCODE_IMAGES
    grid = float(np.median(grid_seconds))
    ratio = grid / encode_all
    real = record["summary"]["real"]
    info = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "grid_seconds": [round(s, 2) for s in grid_seconds],
        "encode_seconds_measured": [round(s, 2) for s in encode_seconds],
        "encode_images_measured": ENCODE_IMAGES,
        "encode_seconds_all_images": round(encode_all, 1),
        "grid_over_encoding": round(ratio, 3),
        "real_accuracy_mean": round(real["accuracy_mean"], 3),
        "seconds_per_run": round(grid / 45, 3),
    }
    benchmark.extra_info.update(info)
    print(
        f"\nlinear-probe grid (45 runs, CV included): {grid:.1f}s median; encoding the {N_IMAGES} images once: "
        f"{encode_all:.1f}s ({ENCODE_IMAGES} encoded per round, scaled); grid / encoding = {ratio:.1%} "
        f"(target <= 25%); {info}"
    )


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _peak_memory_child(folder: str, device_name: str) -> None:
    """In a fresh process: RSS before the grid and the peak RSS (VmHWM) it reaches, as JSON."""
    device = resolve_device(device_name)
    task, submission, cached = bench_inputs(Path(folder))
    FeatureCache.features = cached
    load_backbone(DEFAULT_BACKBONE, device=device)  # imported and warmed: not the grid's memory
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current RSS
    record = run_grid(task, submission, cache_dir=Path(folder) / "unused", device=str(device), validated=True,
                      out_path=Path(folder) / "record.json", progress=False)
    out = {"rss_before_mb": before / 1024, "peak_rss_mb": _status_kib("VmHWM") / 1024, "runs": len(record["runs"])}
    if device.type == "cuda":
        out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(out))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS accounting")
def test_linear_probe_grid_peak_memory(benchmark, tmp_path):
    """Peak resident memory the grid adds, measured in a fresh process (one run: memory, not time)."""

    def measure():
        done = subprocess.run(
            [sys.executable, __file__, "--peak-memory", str(tmp_path), DEVICE],
            capture_output=True, text=True, check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    result = benchmark.pedantic(measure, rounds=1, iterations=1)
    assert result["runs"] == 45
    increase = result["peak_rss_mb"] - result["rss_before_mb"]
    benchmark.extra_info.update({k: round(v, 1) for k, v in result.items()}, grid_peak_rss_increase_mb=round(increase, 1))
    print(f"\nlinear-probe grid peak RSS: +{increase:.1f} MB over {result['rss_before_mb']:.0f} MB before it ({result})")


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--peak-memory":
    _peak_memory_child(sys.argv[2], sys.argv[3])


def test_bootstrap_cis_of_a_record(benchmark):
    """The bootstrap part alone: every CI, delta and summary of a 45-run record (`finalise`)."""
    from benchmark.grid import finalise, run_metrics
    from benchmark.protocol import SETTINGS

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASSES)), TEST_PER_CLASS)
    runs = []
    for setting in SETTINGS:
        for seed in range(5):
            predictions = np.where(rng.random(labels.size) < 0.8, labels, rng.integers(0, len(CLASSES), labels.size))
            runs.append({"setting": setting, "seed": seed, "predictions": predictions.tolist(),
                         "metrics": run_metrics(labels, predictions, CLASSES)})
    record = {"classes": CLASSES, "test": {"labels": labels.tolist()}, "runs": runs}
    benchmark(finalise, record)
    assert len(record["summary"]) == len(SETTINGS)
