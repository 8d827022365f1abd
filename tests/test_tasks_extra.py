"""The optional train_real_extra split (benchmark.tasks.extra): drawn after train_real from the
images left, disjoint from every other split, deduplicated against test, availability reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.nearcopy import default_embedder
from benchmark.tasks import load_task
from benchmark.tasks.imagefolder import build_imagefolder_task
from benchmark.tasks.record import EXTRA_SPLIT
from tests.test_tasks_dedup import _draw_order, _near_copy
from tests.test_tasks_imagefolder import make_folder


@pytest.fixture(scope="module", autouse=True)
def _own_feature_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHBENCH_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("folder") / "scenes", {"Beach": 9, "Forest": 7, "Port": 8})


def test_extra_images_are_the_rest_of_each_class_and_disjoint(folder, tmp_path):
    task = load_task(build_imagefolder_task(folder, tmp_path / "t", train_per_class=3, test_per_class=2, progress=False))
    assert task.class_counts(EXTRA_SPLIT) == {"Beach": 4, "Forest": 2, "Port": 3}  # 9/7/8 - 3 train - 2 test
    sources = {split: set(task.column(split, "source_file")) for split in task.splits}
    assert not sources[EXTRA_SPLIT] & (sources["train_real"] | sources["test"] | sources["generation_inputs"])
    hashes = {split: {r.sha256 for r in task.image_refs(split)} for split in task.splits}
    assert not hashes[EXTRA_SPLIT] & (hashes["train_real"] | hashes["test"] | hashes["generation_inputs"])
    (note,) = [n for n in task.info["notes"] if n.startswith(EXTRA_SPLIT)]
    assert "Beach 4, Forest 2, Port 3" in note and "no more-real@k" in note
    # the card's Hub metadata lists the extra split beside the others (the viewer shows every split)
    import yaml

    front = yaml.safe_load((Path(task.path) / "README.md").read_text().split("---")[1])
    assert [f["split"] for f in front["configs"][0]["data_files"]] == ["train_real", "test", "generation_inputs", EXTRA_SPLIT]
    assert EXTRA_SPLIT in task.near_duplicates["queries"]
    assert task.info["split_sizes"][EXTRA_SPLIT] == {"Beach": 4, "Forest": 2, "Port": 3}
    assert f"`{EXTRA_SPLIT}`" in (task.path / "README.md").read_text()


def test_extra_per_class_caps_it_and_zero_leaves_the_task_without_it(folder, tmp_path):
    capped = load_task(build_imagefolder_task(folder, tmp_path / "a", train_per_class=2, test_per_class=2,
                                              extra_per_class=3, progress=False))
    assert capped.class_counts(EXTRA_SPLIT) == {"Beach": 3, "Forest": 3, "Port": 3}
    (note,) = [n for n in capped.info["notes"] if n.startswith(EXTRA_SPLIT)]
    assert "every class can fill more-real@1 " in note
    none = load_task(build_imagefolder_task(folder, tmp_path / "b", train_per_class=2, test_per_class=2,
                                            extra_per_class=0, progress=False))
    assert EXTRA_SPLIT not in none.splits and EXTRA_SPLIT not in none.manifest["images"]
    assert not (none.path / "data" / f"{EXTRA_SPLIT}.parquet").exists()
    # the draws before it do not change
    assert capped.manifest["images"]["train_real"] == none.manifest["images"]["train_real"]
    assert capped.test_manifest_hash == none.test_manifest_hash


def test_cli_flag_and_report(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchmark.tasks.cli",))
    out = tmp_path / "t"
    argv = ["task", "build", "imagefolder", str(folder), "--out", str(out), "--train-per-class", "2",
            "--test-per-class", "2", "--extra-per-class", "2", "--no-progress"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{EXTRA_SPLIT}: 6 (Beach 2, Forest 2, Port 2)" in printed
    assert "every class can fill more-real@1" in printed
    with pytest.raises(SystemExit):
        cli.main(argv[:-2] + ["-1", "--overwrite"])
    assert "-1 is negative" in capsys.readouterr().err


def test_a_near_copy_of_a_test_image_never_enters_the_extra_split(aid6_root, tmp_path):
    """aid6 Beach images plus a flipped, cropped JPEG copy of one; a seed puts the source in test
    and the copy among the images left for the extra split: the copy is removed and recorded."""
    root = tmp_path / "scenes"
    for class_name in ("Beach", "Forest"):
        (root / class_name).mkdir(parents=True)
        for path in sorted((aid6_root / class_name).glob("*.jpg"))[:6]:
            shutil.copy(path, root / class_name / path.name)
    source = sorted((root / "Beach").glob("*.jpg"))[0]
    (root / "Beach" / "beach_zz_copy.jpg").write_bytes(_near_copy(source))
    train, test = 2, 2
    seed = next(s for s in range(500) if source.name in _draw_order(root, "Beach", s)[train : train + test]
                and "beach_zz_copy.jpg" in _draw_order(root, "Beach", s)[train + test :])
    embedder = default_embedder(tmp_path / "features", image_size=96)
    task = load_task(build_imagefolder_task(root, tmp_path / "t", train_per_class=train, test_per_class=test,
                                            seed=seed, embedder=embedder, progress=False))
    assert "beach_zz_copy.jpg" not in " ".join(task.column(EXTRA_SPLIT, "source_file"))
    assert task.class_counts(EXTRA_SPLIT) == {"Beach": 2, "Forest": 2}  # 7 - 2 - 2 - the copy; 6 - 2 - 2
    removed = [p for p in task.near_duplicates["removed"] if p["split"] == EXTRA_SPLIT]
    assert [(p["source_file"], p["test_source_file"]) for p in removed] == [
        ("Beach/beach_zz_copy.jpg", f"Beach/{source.name}")
    ]


def test_xbd_extra_tiles_are_the_remaining_training_tiles(tmp_path):
    """The xBD builder's extra tiles: post tiles of train/ and tier3/ that are not train_real, whose
    pre twins are not generation inputs, balanced like train_real; availability in the notes."""
    from benchmark.protocol import XBD_CLASSES
    from benchmark.tasks.xbd import build_xbd_task
    from tests.test_tasks_xbd import make_xbd_tree

    root = make_xbd_tree(tmp_path / "xbd")
    task = load_task(build_xbd_task(root, tmp_path / "t", train_per_class=2, test_per_class=1, progress=False))
    extra = task.column(EXTRA_SPLIT, "source_file")
    assert all(s.split("/")[0] in ("train", "tier3") and s.endswith("_post_disaster.png") for s in extra)
    assert not set(extra) & set(task.column("train_real", "source_file"))
    pairs = set(task.column(EXTRA_SPLIT, "pair_id"))
    assert not pairs & set(task.column("generation_inputs", "pair_id")) and not pairs & set(task.column("test", "pair_id"))
    # the fixture has 4 training tiles per event: 8 per class (earthquake, one event: 4) asked for up to 8
    counts = task.class_counts(EXTRA_SPLIT)
    assert counts["earthquake"] == 4 - 2 and all(counts[c] == 8 for c in XBD_CLASSES if c not in ("earthquake", "volcano", "tsunami"))
    (note,) = [n for n in task.info["notes"] if n.startswith(EXTRA_SPLIT)]
    assert "earthquake 2" in note and "every class can fill more-real@1 " in note
