"""Encoding throughput: the full feature-cache pipeline against the model's forward pass alone.

The pipeline is what a run pays for every new image: read the file, check its SHA-256, decode,
resize + centre-crop (in DataLoader workers), normalise, forward, store float16 shards. The
reference is the forward pass alone on batches already decoded and normalised in memory. The two
are timed alternately in one run (ABBA order over rounds, so drift and other load on the machine
hit both alike) and the ratio of their throughputs is reported: the pipeline's target is >= 80% of
the model-only throughput, i.e. decoding must hide behind the forward pass.

    .venv/bin/python -m pytest benchmarks/test_encoding_bench.py -s

Results (images/s, ratio, peak memory) are printed and stored in the benchmark's extra_info
(--benchmark-json FILE keeps them). Sizes are environment-tunable for bigger machines:
SYNTHBENCH_BENCH_IMAGES (192), SYNTHBENCH_BENCH_ROUNDS (4), SYNTHBENCH_BENCH_WORKERS (2).
"""

from __future__ import annotations

import itertools
import os
import resource
import statistics
import time

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.backbones import DEFAULT_BACKBONE, load_backbone
from benchmark.features import FeatureCache
from benchmark.images import ImageRef, encode_png
from benchmark.io import sha256_bytes

N_IMAGES = int(os.environ.get("SYNTHBENCH_BENCH_IMAGES", 192))
ROUNDS = int(os.environ.get("SYNTHBENCH_BENCH_ROUNDS", 4))
WORKERS = int(os.environ.get("SYNTHBENCH_BENCH_WORKERS", 2))
SOURCE_SIZE = 192  # PNG side on disk
IMAGE_SIZE = 128  # a small CPU-friendly input resolution for efficientnet-lite0 (the demo uses 96)
BATCH_SIZE = 64
TARGET_RATIO = 0.8


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[ImageRef]:
    """Procedural textured PNGs (smooth patterns + noise: realistic PNG sizes, all distinct)."""
    folder = tmp_path_factory.mktemp("bench-images")
    yy, xx = np.mgrid[0:SOURCE_SIZE, 0:SOURCE_SIZE]
    refs = []
    for i in range(N_IMAGES):
        rng = np.random.default_rng(i)
        waves = np.stack([np.sin(xx / (3 + i % 7)), np.cos(yy / (4 + i % 5)), np.sin((xx + yy) / (5 + i % 3))], -1)
        pixels = np.clip(128 + 90 * waves + rng.normal(0, 12, waves.shape), 0, 255).astype(np.uint8)
        data = encode_png(Image.fromarray(pixels))
        path = folder / f"synthetic_{i:04d}.png"
        path.write_bytes(data)
        refs.append(ImageRef(sha256_bytes(data), path))
    return refs


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(DEFAULT_BACKBONE, image_size=IMAGE_SIZE, device="auto")


def _peak_rss_mb() -> dict[str, float]:
    # ru_maxrss is in KiB on Linux: the high-water mark of this process and of its largest child
    return {
        "peak_rss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def test_encoding_pipeline_vs_model_forward(benchmark, backbone, image_files, tmp_path):
    preloaded = [
        torch.stack([backbone.preprocess(ref.open()) for ref in image_files[i : i + BATCH_SIZE]])
        for i in range(0, len(image_files), BATCH_SIZE)
    ]
    cache_dirs = (tmp_path / f"cache-{i}" for i in itertools.count())

    def model_only() -> None:
        for batch in preloaded:
            backbone.encode(batch)
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()

    def pipeline() -> None:
        cache = FeatureCache(next(cache_dirs))  # fresh: every image is read, decoded and encoded
        cache.features(backbone, image_files, batch_size=BATCH_SIZE, num_workers=WORKERS, progress=False)
        assert cache.n_encoded == len(image_files)

    # warm-up outside the timings (allocator, kernels, worker start-up code paths)
    backbone.encode(preloaded[0][:8])
    FeatureCache(tmp_path / "warm-up").features(backbone, image_files[:16], batch_size=8, num_workers=WORKERS, progress=False)
    if backbone.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    timings: dict[str, list[float]] = {"model": [], "pipeline": []}
    runs = {"model": model_only, "pipeline": pipeline}
    round_index = itertools.count()

    def one_round() -> None:
        order = ("model", "pipeline") if next(round_index) % 2 == 0 else ("pipeline", "model")
        for name in order:
            start = time.perf_counter()
            runs[name]()
            timings[name].append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)

    n = len(image_files)
    model_rate = n / statistics.median(timings["model"])
    pipeline_rate = n / statistics.median(timings["pipeline"])
    per_round = [m / p for m, p in zip(timings["model"], timings["pipeline"])]
    info = {
        "images": n,
        "image_size": IMAGE_SIZE,
        "source_png_size": SOURCE_SIZE,
        "batch_size": BATCH_SIZE,
        "num_workers": WORKERS,
        "device": str(backbone.device),
        "torch_threads": torch.get_num_threads(),
        "model_only_images_per_s": round(model_rate, 1),
        "pipeline_images_per_s": round(pipeline_rate, 1),
        "ratio_median_of_rounds": round(statistics.median(per_round), 3),
        "ratio_per_round": [round(r, 3) for r in per_round],
        "target_ratio": TARGET_RATIO,
        **_peak_rss_mb(),
    }
    if backbone.device.type == "cuda":
        info["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    benchmark.extra_info.update(info)
    print(
        f"\n{backbone.name} @ {IMAGE_SIZE}px on {backbone.device}, {n} images, {WORKERS} workers: "
        f"model-only {model_rate:.1f} img/s, pipeline {pipeline_rate:.1f} img/s, "
        f"ratio {info['ratio_median_of_rounds']:.2f} (per round {info['ratio_per_round']}; target >= {TARGET_RATIO}); "
        f"peak RSS main {info['peak_rss_main_mb']} MB, worker {info['peak_rss_worker_mb']} MB"
    )


def test_warm_cache_read(benchmark, backbone, image_files, tmp_path):
    """A rerun (another setting, seed or submission sharing the images): nothing is encoded."""
    FeatureCache(tmp_path).features(backbone, image_files, batch_size=BATCH_SIZE, num_workers=WORKERS, progress=False)

    def warm() -> int:
        cache = FeatureCache(tmp_path)  # new object: shards are read from disk and verified
        cache.features(backbone, image_files, progress=False)
        return cache.n_encoded

    assert benchmark(warm) == 0
    benchmark.extra_info["images"] = len(image_files)
    benchmark.extra_info["images_per_s"] = round(len(image_files) / benchmark.stats.stats.median, 1)
