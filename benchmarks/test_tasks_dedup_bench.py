"""What build-time deduplication adds to the demo job: the default demo task (600 train_real +
600 generation_inputs + 300 test at 96 px), EfficientNet-Lite0 at 96 px on the CPU, cold caches.

Before deduplication the job rendered and saved the task, then encoded test + train_real once for
the grid. Now the build embeds every image through the same feature cache at the same size
(`benchmark.tasks.dedup`) and runs the detector, and the encode stage finds test + train_real
already cached. Printed: both totals, the added seconds and their parts.

Run: .venv/bin/python -m pytest benchmarks/test_tasks_dedup_bench.py --benchmark-only -s -p no:cacheprovider
"""

from __future__ import annotations

import time

import pytest

from benchmark.backbones import DEFAULT_BACKBONE, load_backbone
from benchmark.features import FeatureCache
from benchmark.tasks import load_task, save_task
from benchmark.tasks.dedup import resolve_embedder
from benchmark.tasks.demo import DEMO_CLASSES, build_demo_task, demo_rows

IMAGE_SIZE = 96


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(DEFAULT_BACKBONE, device="cpu", image_size=IMAGE_SIZE)


def _encode_stage(task_dir, cache_dir, backbone) -> float:
    """The demo job's encode stage: test + train_real through the feature cache."""
    task = load_task(task_dir)
    start = time.perf_counter()
    FeatureCache(cache_dir).features(backbone, task.image_refs("test") + task.image_refs("train_real"))
    return time.perf_counter() - start


def test_demo_build_with_deduplication(benchmark, backbone, tmp_path):
    start = time.perf_counter()
    save_task(tmp_path / "plain", demo_rows(image_size=IMAGE_SIZE), name="demo-disaster6", builder="demo",
              builder_version=1, seed=0, classes=DEMO_CLASSES, prompt_templates=[], licence="apache-2.0", is_demo=True)
    plain_build = time.perf_counter() - start
    plain_encode = _encode_stage(tmp_path / "plain", tmp_path / "cache-plain", backbone)

    def build():
        embedder = resolve_embedder(None, cache_dir=tmp_path / "cache", image_size=IMAGE_SIZE)
        return build_demo_task(tmp_path / "task", image_size=IMAGE_SIZE, embedder=embedder, overwrite=True)

    start = time.perf_counter()
    benchmark.pedantic(build, rounds=1, iterations=1)
    dedup_build = time.perf_counter() - start
    dedup_encode = _encode_stage(tmp_path / "task", tmp_path / "cache", backbone)

    added = dedup_build + dedup_encode - plain_build - plain_encode
    benchmark.extra_info.update(
        plain_build_s=round(plain_build, 1), plain_encode_s=round(plain_encode, 1),
        dedup_build_s=round(dedup_build, 1), dedup_encode_s=round(dedup_encode, 1), added_s=round(added, 1),
        removed_pairs=len(load_task(tmp_path / "task").near_duplicates["removed"]),
    )
    print(
        f"\nbefore: build {plain_build:.1f} s + encode stage {plain_encode:.1f} s = {plain_build + plain_encode:.1f} s"
        f"\nnow:    build {dedup_build:.1f} s (deduplication included) + encode stage {dedup_encode:.1f} s "
        f"= {dedup_build + dedup_encode:.1f} s\nadded:  {added:+.1f} s"
    )
