"""Speed of the task stage: building the demo task, loading + verifying it, reading image refs.

Run: .venv/bin/python -m pytest benchmarks/test_tasks_speed.py --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

import pytest

from benchmark.tasks import load_task
from benchmark.tasks.demo import build_demo_task


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return build_demo_task(tmp_path_factory.mktemp("bench") / "demo")


def test_build_demo_task_default_size(benchmark, tmp_path):
    """The full default demo (600 train + 300 test + 600 inputs at 96 px)."""
    counter = iter(range(1000))
    benchmark.pedantic(lambda: build_demo_task(tmp_path / f"demo{next(counter)}"), rounds=3, iterations=1)


def test_load_and_verify_demo_task(benchmark, demo_dir):
    task = benchmark(load_task, demo_dir)
    assert task.splits["train_real"].num_rows == 600


def test_load_without_verification(benchmark, demo_dir):
    benchmark(load_task, demo_dir, verify=False)


def test_image_refs_of_train_split(benchmark, demo_dir):
    task = load_task(demo_dir, verify=False)

    def refs():
        task._refs.clear()  # measure the Arrow read, not the cache
        return task.image_refs("train_real")

    assert len(benchmark(refs)) == 600
