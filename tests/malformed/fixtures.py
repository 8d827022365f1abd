"""The task and valid base submission both corpus test modules mutate (imported as fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.tasks import load_task
from benchmark.tasks.demo import build_demo_task

from . import write_valid_submission


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    # 100 real images per class, as xBD: the corpus's count messages are about 100 and 400.
    folder = build_demo_task(tmp_path_factory.mktemp("task") / "demo", train_per_class=100, test_per_class=2, image_size=32)
    return load_task(folder)


@pytest.fixture(scope="module")
def valid_base(task, tmp_path_factory) -> Path:
    return write_valid_submission(tmp_path_factory.mktemp("base") / "tester__noise", task.classes, task.name)
