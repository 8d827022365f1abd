"""One encoding per image per run: `synthbench run` (its leakage gate, the grid and the diagnostics)
runs every image it touches through the backbone once, whatever `--image-size` it scores at.

The gate embeds the submission and its reference images with the default backbone through the
same feature cache as the grid; at the grid's backbone, input size and device those are the grid's
features, so the grid and the diagnostics find them cached. The test counts every image that goes
into `FeatureCache._encode` (the one place features are computed) during one CLI run.
"""

from __future__ import annotations

from collections import Counter

import pytest

from benchmark.cli import main
from benchmark.features import FeatureCache


@pytest.fixture(scope="module")
def small_task_and_submission(tmp_path_factory):
    from benchmark.generators.demo_editor import generate_demo_editor
    from benchmark.tasks import build_demo_task, load_task

    base = tmp_path_factory.mktemp("encodes-once")
    # the builder's own deduplication encodes through another cache: the run below starts cold
    task = load_task(build_demo_task(base / "task", train_per_class=6, test_per_class=3))
    submission = generate_demo_editor(task, base / "tester__editor", multiplier=1, seed=0)
    return task, submission


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.parametrize("device, image_size", [
    ("cpu", None),
    ("cpu", 64),
    # on a GPU the gate's features are the grid's bf16 ones (validate and the grid share --device)
    pytest.param("cuda", 64, marks=pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")),
])
def test_run_encodes_each_image_once(small_task_and_submission, tmp_path, monkeypatch, capsys, device, image_size):
    from benchmark.submissions import load_submission

    task, submission_dir = small_task_and_submission
    encoded: list[tuple[str, str]] = []  # (cache folder, image SHA-256) of every image encoded
    original = FeatureCache._encode

    def counting_encode(self, directory, backbone, refs, *args, **kwargs):
        encoded.extend((str(directory), ref.sha256) for ref in refs)
        return original(self, directory, backbone, refs, *args, **kwargs)

    monkeypatch.setattr(FeatureCache, "_encode", counting_encode)
    args = ["run", "--task", str(task.path), "--submission", str(submission_dir), "--cache-dir", str(tmp_path),
            "--seeds", "1", "--settings", "real,synthetic@1,mixed@1", "--device", device, "--no-progress",
            "--out", str(tmp_path / "record.json")]
    if image_size is not None:
        args += ["--image-size", str(image_size)]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "(leakage gate included)" in printed and "run: wall time" in printed  # the long stages say how long

    folders = {folder for folder, _ in encoded}
    assert len(folders) == 1, f"images were encoded at more than one backbone/input size: {sorted(folders)}"
    twice = {sha: n for sha, n in Counter(sha for _, sha in encoded).items() if n > 1}
    assert not twice, f"{len(twice)} image(s) encoded more than once in one run"
    # and every image the run reads was encoded in it: test, train_real, the submission, the inputs
    touched = {ref.sha256 for split in ("test", "train_real", "generation_inputs") for ref in task.image_refs(split)}
    touched |= {ref.sha256 for ref in load_submission(submission_dir).image_refs()}
    assert {sha for _, sha in encoded} == touched
