"""The procedural demo task and its editor."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmark import cli
from benchmark.errors import TaskError
from benchmark.tasks import load_task
from benchmark.tasks.demo import DEMO_CLASSES, build_demo_task, edit_image, render_scene


@pytest.fixture(scope="module", autouse=True)
def _own_feature_cache(tmp_path_factory):
    """Builds embed images for their deduplication: into a cache of this module's, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHBENCH_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
        yield


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    return render_scene(np.random.default_rng(3), 64)


def test_edit_image_is_deterministic_and_keeps_size(scene):
    for class_name in DEMO_CLASSES:
        a, b = edit_image(scene, class_name, 11), edit_image(scene, class_name, 11)
        assert a.mode == "RGB" and a.size == (64, 64)
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert not np.array_equal(np.asarray(a), np.asarray(edit_image(scene, class_name, 12)))
        assert not np.array_equal(np.asarray(a), np.asarray(scene))


def test_edit_image_accepts_any_rgb_image():
    photo = Image.new("RGBA", (50, 30), (120, 140, 90, 255))
    assert edit_image(photo, "flooding", 0).size == (50, 30)


def test_edit_image_unknown_class(scene):
    with pytest.raises(TaskError, match="unknown demo class 'hail'"):
        edit_image(scene, "hail", 0)


def _colour_features(task, split):
    rows = []
    for ref in task.image_refs(split):
        pixels = np.asarray(ref.open(), dtype=np.float32) / 255
        grey = pixels.mean(axis=-1)
        rows.append(np.concatenate([pixels.mean((0, 1)), pixels.std((0, 1)), [(grey < 0.2).mean(), (grey > 0.6).mean()]]))
    features = np.asarray(rows)
    return features


def test_demo_task_is_a_labelled_learnable_task(tmp_path):
    task = load_task(build_demo_task(tmp_path / "demo", train_per_class=12, test_per_class=8, image_size=48))
    assert task.info["is_demo"] is True and task.name == "demo-disaster6"
    assert "PIPELINE DEMO" in (task.path / "README.md").read_text()
    assert any("Pipeline demo, not a scientific result" in note for note in task.info["notes"])
    assert task.classes == list(DEMO_CLASSES)
    assert set(task.column("generation_inputs", "pair_id")) == set(task.column("train_real", "pair_id"))
    # Deduplicated at the demo's own size (fresh procedural scenes: nothing to remove).
    assert task.near_duplicates["image_size"] == 48 and task.near_duplicates["removed"] == []
    assert "## Deduplication" in (task.path / "README.md").read_text()
    # Even crude colour statistics and a nearest-centroid rule beat chance (1/6) clearly.
    train, test = _colour_features(task, "train_real"), _colour_features(task, "test")
    mean, scale = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / scale, (test - mean) / scale
    y_train, y_test = task.labels("train_real"), task.labels("test")
    centroids = np.stack([train[y_train == k].mean(0) for k in range(len(DEMO_CLASSES))])
    predicted = np.argmin(((test[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == y_test).mean() > 2 / 6


def test_demo_bad_arguments(tmp_path):
    with pytest.raises(TaskError, match="image size 8 is outside"):
        build_demo_task(tmp_path / "d", image_size=8)
    assert not (tmp_path / "d").exists()


def test_cli_build_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchmark.tasks.cli",))
    out = tmp_path / "demo"
    argv = ["task", "build", "demo", "--out", str(out), "--train-per-class", "2", "--test-per-class", "1", "--image-size", "32"]
    assert cli.main(argv) == 0
    assert "built task demo-disaster6" in capsys.readouterr().out
    assert load_task(out).class_counts("test") == {c: 1 for c in DEMO_CLASSES}
    assert cli.main(argv) == 2
