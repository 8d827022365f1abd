"""The image-folder builder: fixture folders, bad input, and the real AID six-class folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark import cli
from benchmark.errors import TaskError
from benchmark.tasks import load_task
from benchmark.tasks.imagefolder import build_imagefolder_task


@pytest.fixture(scope="module", autouse=True)
def _own_feature_cache(tmp_path_factory):
    """Builds embed images for their deduplication: into a cache of this module's, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHBENCH_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
        yield


def make_folder(root: Path, counts: dict[str, int], size: int = 20) -> Path:
    rng = np.random.default_rng(1)
    for class_name, n in counts.items():
        (root / class_name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            suffix = ".jpg" if i % 2 else ".png"
            Image.fromarray(pixels).save(root / class_name / f"{class_name.lower()}_{i}{suffix}")
        (root / class_name / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("folder") / "scenes", {"Beach": 9, "Forest": 7, "Port": 8})


def test_build_splits_disjoint_balanced_and_inputs_are_train_images(folder, tmp_path):
    task = load_task(build_imagefolder_task(folder, tmp_path / "t", train_per_class=4, progress=False))
    assert task.name == "scenes"
    assert task.classes == ["Beach", "Forest", "Port"]
    assert task.class_counts("train_real") == {"Beach": 4, "Forest": 4, "Port": 4}
    # Default test size: what every class can give (Forest: 7 - 4 = 3).
    assert task.class_counts("test") == {"Beach": 3, "Forest": 3, "Port": 3}
    train_sources = set(task.column("train_real", "source_file"))
    assert not train_sources & set(task.column("test", "source_file"))
    assert all(not s.endswith(".txt") for s in train_sources)
    train = {r.name: r.sha256 for r in task.image_refs("train_real")}
    for ref, pair, prompt in zip(
        task.image_refs("generation_inputs"), task.column("generation_inputs", "pair_id"), task.column("generation_inputs", "prompt")
    ):
        assert ref.name == f"{pair}_input" and ref.sha256 == train[pair]
        assert prompt.startswith("a satellite image of ")
    assert {ref.open().size for ref in task.image_refs("test")} == {(20, 20)}


def test_seed_changes_choice_and_same_seed_same_bytes(folder, tmp_path):
    a = load_task(build_imagefolder_task(folder, tmp_path / "a", train_per_class=4, progress=False))
    b = load_task(build_imagefolder_task(folder, tmp_path / "b", train_per_class=4, progress=False))
    c = load_task(build_imagefolder_task(folder, tmp_path / "c", train_per_class=4, seed=5, progress=False))
    assert a.manifest == b.manifest
    assert a.image_ids("train_real") != c.image_ids("train_real")


def test_too_few_images_names_the_class(folder, tmp_path):
    with pytest.raises(TaskError, match="Forest has 7") as error:
        build_imagefolder_task(folder, tmp_path / "t", train_per_class=4, test_per_class=4, progress=False)
    assert "Beach" not in str(error.value)
    assert not (tmp_path / "t").exists()


def test_undecodable_image_is_named(tmp_path):
    root = make_folder(tmp_path / "scenes", {"A": 3, "B": 4})
    (root / "A" / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(TaskError, match="a_broken.png: not a decodable image"):
        build_imagefolder_task(root, tmp_path / "t", train_per_class=3, test_per_class=1, progress=False)
    assert not (tmp_path / "t").exists()


def test_cli_imagefolder(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchmark.tasks.cli",))
    out = tmp_path / "t"
    argv = ["task", "build", "imagefolder", str(folder), "--out", str(out), "--train-per-class", "3",
            "--test-per-class", "2", "--resize", "16", "--name", "toy-scenes", "--prompt-template", "an aerial photo of {name}"]
    assert cli.main(argv) == 0
    task = load_task(out)
    assert task.name == "toy-scenes" and task.info["resize"] == 16
    assert task.column("generation_inputs", "prompt")[0] == "an aerial photo of Beach"
    assert cli.main(["task", "build", "imagefolder", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "image folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_real_aid6_folder(aid6_root, tmp_path):
    """The real six-class AID folder: 100 train per class, balanced disjoint test (Forest limits it to 150)."""
    task = load_task(build_imagefolder_task(aid6_root, tmp_path / "aid6", progress=False))
    assert task.classes == ["Beach", "Farmland", "Forest", "Industrial", "Port", "River"]
    assert task.class_counts("train_real") == {c: 100 for c in task.classes}
    assert task.class_counts("test") == {c: 150 for c in task.classes}
    assert len(set(task.column("test", "source_file"))) == 900
    assert task.image_refs("test")[0].open().size == (150, 150)
