"""Build-time deduplication (benchmark.tasks.dedup) on real aerial images: a cross-split near-copy
is removed from the training side, recorded in the manifest and the card, replaced from the pool,
and `synthbench task verify` re-checks it."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from benchmark import cli
from benchmark.nearcopy import default_embedder
from benchmark.tasks import SPLITS, TaskImage, load_task, save_task
from benchmark.tasks.imagefolder import IMAGE_SUFFIXES, build_imagefolder_task

CLASSES = ("Beach", "Forest", "Port")
PER_CLASS = 6  # images per class: in Beach, five real ones and a near-copy of one of them
EMBED_SIZE = 96  # a small backbone input keeps the test quick; the detector's pixel stages do not depend on it


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def embedder(cache_dir):
    return default_embedder(cache_dir, image_size=EMBED_SIZE)


def _near_copy(source: Path) -> bytes:
    """The source flipped, cropped to 85 % of its side and re-encoded as JPEG quality 70."""
    image = ImageOps.mirror(Image.open(source).convert("RGB"))
    side = image.width
    margin = int(side * 0.075)
    image = image.crop((margin, margin, side - margin, side - margin))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def folder(aid6_root, tmp_path_factory) -> Path:
    """Six aid6 images per class; in Beach five and a near-copy of one of them (`beach_zz_copy.jpg`)."""
    root = tmp_path_factory.mktemp("scenes") / "scenes"
    for class_name in CLASSES:
        (root / class_name).mkdir(parents=True)
        for path in sorted((aid6_root / class_name).glob("*.jpg"))[: PER_CLASS - (class_name == "Beach")]:
            shutil.copy(path, root / class_name / path.name)
    source = sorted((root / "Beach").glob("*.jpg"))[0]
    (root / "Beach" / "beach_zz_copy.jpg").write_bytes(_near_copy(source))
    return root


def _draw_order(folder: Path, class_name: str, seed: int) -> list[str]:
    """The builder's documented draw order of a class (sorted, then shuffled by the seed)."""
    names = sorted(p.name for p in (folder / class_name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    random.Random(f"{seed}:{class_name}").shuffle(names)
    return names


def _crossing_seed(folder: Path, train: int, test: int) -> tuple[int, str, str]:
    """A seed whose draw puts the copy and its source on the two sides of the split, and the
    names of (the training one, the test one)."""
    pair = {sorted(p.name for p in (folder / "Beach").glob("beach_*.jpg") if "copy" not in p.name)[0], "beach_zz_copy.jpg"}
    for seed in range(200):
        order = _draw_order(folder, "Beach", seed)
        in_train, in_test = pair & set(order[:train]), pair & set(order[train : train + test])
        if in_train and in_test:
            return seed, in_train.pop(), in_test.pop()
    raise AssertionError("no seed splits the pair")


@pytest.fixture(scope="module")
def built(folder, embedder, tmp_path_factory):
    seed, train_name, test_name = _crossing_seed(folder, train=2, test=2)
    out = build_imagefolder_task(
        folder, tmp_path_factory.mktemp("built") / "task", train_per_class=2, test_per_class=2, seed=seed,
        embedder=embedder, progress=False,
    )
    return load_task(out), seed, train_name, test_name


def test_the_removed_pair_is_listed_in_the_manifest_and_the_card(built):
    task, _, train_name, test_name = built
    record = task.near_duplicates
    assert record["queries"] == ["generation_inputs", "train_real", "train_real_extra"] and record["references"] == ["test"]
    assert record["image_size"] == EMBED_SIZE and record["embedder"].startswith("efficientnet-lite0/")
    removed = {(p["split"], p["source_file"], p["test_source_file"]) for p in record["removed"]}
    # The training image goes, with the generation input made from it; the test image stays.
    assert removed == {
        ("train_real", f"Beach/{train_name}", f"Beach/{test_name}"),
        ("generation_inputs", f"Beach/{train_name}", f"Beach/{test_name}"),
    }
    for pair in record["removed"]:
        assert pair["match_score"] >= 0.52 or pair["phash_distance"] <= 4
        assert -1 <= pair["cosine"] <= 1
    card = (task.path / "README.md").read_text()
    assert "## Deduplication" in card and f"`Beach/{train_name}`" in card and f"`Beach/{test_name}`" in card
    assert any(note.startswith("deduplicated against the test split: 1 training draw(s) removed") for note in task.info["notes"])


def test_classes_stay_balanced_and_the_removed_image_is_gone(built, folder):
    task, seed, train_name, _ = built
    assert task.class_counts("train_real") == {c: 2 for c in CLASSES}
    assert task.class_counts("test") == {c: 2 for c in CLASSES}
    train_sources = task.column("train_real", "source_file")
    assert f"Beach/{train_name}" not in train_sources
    assert f"Beach/{train_name}" not in task.column("generation_inputs", "source_file")
    # The replacement is the class's next image in the draw order after both splits.
    order = _draw_order(folder, "Beach", seed)
    kept = [name for name in order[:2] if name != train_name]
    assert sorted(s.split("/")[1] for s in train_sources if s.startswith("Beach/")) == sorted(kept + [order[4]])


def test_same_inputs_give_a_bit_identical_task(built, folder, embedder, tmp_path):
    task, seed, _, _ = built
    again = load_task(build_imagefolder_task(
        folder, tmp_path / "again", train_per_class=2, test_per_class=2, seed=seed, embedder=embedder, progress=False
    ))
    assert again.manifest == task.manifest


def test_a_class_whose_pool_runs_out_is_left_short_and_says_so(folder, embedder, tmp_path):
    # All six Beach images are drawn (2 train + 4 test): no spare to replace the removed one.
    seed, train_name, _ = _crossing_seed(folder, train=2, test=4)
    task = load_task(build_imagefolder_task(
        folder, tmp_path / "short", train_per_class=2, test_per_class=4, seed=seed, embedder=embedder, progress=False
    ))
    assert task.class_counts("train_real") == {"Beach": 1, "Forest": 2, "Port": 2}
    assert "short training class after deduplication: Beach has 1 of 2 training images" in " ".join(task.info["notes"])
    assert f"Beach/{train_name}" not in task.column("train_real", "source_file")


def test_the_build_command_prints_the_removed_pairs_and_a_short_class(folder, cache_dir, tmp_path, monkeypatch, capsys):
    seed, train_name, test_name = _crossing_seed(folder, train=2, test=4)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchmark.tasks.cli",))
    argv = ["task", "build", "imagefolder", str(folder), "--out", str(tmp_path / "t"), "--train-per-class", "2",
            "--test-per-class", "4", "--seed", str(seed), "--cache-dir", str(cache_dir), "--device", "cpu", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "near-duplicates of test images removed from training: 2" in out
    assert f"train_real Beach__{Path(train_name).stem} (Beach/{train_name}) ~ test Beach__{Path(test_name).stem}" in out
    assert "warning: short training class after deduplication: Beach has 1 of 2" in out


def _verify(path: Path, cache_dir: Path, monkeypatch) -> int:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchmark.tasks.cli",))
    return cli.main(["task", "verify", str(path), "--cache-dir", str(cache_dir), "--device", "cpu", "--no-progress"])


def test_verify_passes_on_the_deduplicated_task(built, cache_dir, monkeypatch, capsys):
    assert _verify(built[0].path, cache_dir, monkeypatch) == 0
    assert "no image of train_real, generation_inputs, train_real_extra is a near-copy of a test image" in capsys.readouterr().out


def _rows(task) -> dict[str, list[TaskImage]]:
    rows = {}
    for split in SPLITS:
        columns = [task.column(split, name) for name in ("event", "source_file", "prompt", "pair_id")]
        labels = [task.classes[i] for i in task.labels(split)]
        rows[split] = [
            TaskImage(ref.source, label, ref.name, *values)
            for ref, label, *values in zip(task.image_refs(split), labels, *columns)
        ]
    return rows


def test_verify_fails_on_a_task_with_the_pair_put_back(built, folder, cache_dir, tmp_path, monkeypatch, capsys):
    """A task whose manifest is self-consistent but holds the pair again: only the detector finds it."""
    task, _, train_name, test_name = built
    rows = _rows(task)
    png = io.BytesIO()
    Image.open(folder / "Beach" / train_name).convert("RGB").save(png, "PNG")
    image_id = f"Beach__{Path(train_name).stem}"
    rows["train_real"].append(TaskImage(png.getvalue(), "Beach", image_id, "Beach", f"Beach/{train_name}", "", image_id))
    tampered = save_task(
        tmp_path / "tampered", rows, name=task.name, builder=task.info["builder"], builder_version=task.info["builder_version"],
        seed=task.info["seed"], classes=task.classes, prompt_templates=task.info["prompt_templates"], licence="other",
        near_duplicates=task.near_duplicates,
    )
    capsys.readouterr()
    assert _verify(tampered, cache_dir, monkeypatch) == 2
    error = capsys.readouterr().err
    assert "1 training image(s) are near-copies of test images" in error
    assert f"train_real {image_id} (Beach/{train_name}) ~ test Beach__{Path(test_name).stem}" in error


def test_a_version_1_task_still_loads(built, tmp_path):
    """Tasks written before deduplication (schema_version 1, no near_duplicates) keep loading."""
    old = Path(shutil.copytree(built[0].path, tmp_path / "v1"))
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["schema_version"] = 1
    del manifest["near_duplicates"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert load_task(old).near_duplicates is None


@pytest.mark.parametrize("copy_side", ["training", "test"])
def test_a_pair_is_found_whichever_side_holds_the_crop(folder, embedder, copy_side):
    """The detector finds a query inside a reference; deduplication asks both ways, so a training
    image of which a test image is a crop is removed too."""
    from benchmark.tasks.dedup import find_pairs

    def row(path: Path, image_id: str) -> TaskImage:
        png = io.BytesIO()
        Image.open(path).convert("RGB").save(png, "PNG")
        return TaskImage(png.getvalue(), "Beach", image_id, "Beach", path.name)

    source = row(sorted((folder / "Beach").glob("beach_*.jpg"))[0], "source")
    copy = row(folder / "Beach" / "beach_zz_copy.jpg", "copy")
    others = [row(p, p.stem) for p in sorted((folder / "Port").glob("*.jpg"))[:3]]
    train, test = (copy, source) if copy_side == "training" else (source, copy)
    (pair,) = find_pairs([("train_real", train)] + [("train_real", r) for r in others], [test], embedder)
    assert (pair.image_id, pair.test_image_id) == (train.image_id, test.image_id)


def _captures(source: Path, shift: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """Two 'captures' of one site: the top-left 80 % of a 150-px scene, and the same window shifted
    by `shift` pixels (neither holds the other whole)."""
    scene = Image.open(source).convert("RGB")
    side = round(scene.width * 0.8)
    dx, dy = shift
    return scene.crop((0, 0, side, side)), scene.crop((dx, dy, dx + side, dy + side))


def _task_image(image: Image.Image, image_id: str, label: str = "Port") -> TaskImage:
    png = io.BytesIO()
    image.save(png, "PNG")
    return TaskImage(png.getvalue(), label, image_id, label, f"{image_id}.png")


def test_a_partial_overlap_is_removed_because_a_crop_of_it_would_be_flagged(aid6_root, embedder):
    """A training image that shares 75 % x 79 % of its side with a test image (shifted captures):
    the gate flags a crop of it as a near-copy of the test image, and deduplication removes it
    (through its corner windows; the whole image is not inside the test image)."""
    from benchmark.nearcopy import corner_windows, find_near_copies, find_near_duplicate_pairs, query_signature
    from benchmark.nearcopy import ReferenceGroup, reference_index
    from benchmark.tasks.dedup import find_pairs

    port = sorted((aid6_root / "Port").glob("*.jpg"))
    train_image, test_image = _captures(port[0], (30, 25))
    others = [_task_image(Image.open(p).convert("RGB"), p.stem) for p in port[1:4]]
    train, test = _task_image(train_image, "train-capture"), _task_image(test_image, "test-capture")

    # What the gate would see: the overlap cropped out of the training image (a classic crop).
    crop = corner_windows(train_image)[3].resize((120, 120), Image.Resampling.BILINEAR)
    refs = [_image_ref(test), *(_image_ref(r) for r in others)]
    index = reference_index([ReferenceGroup("test", refs, [""] * len(refs))], embedder, embedder_id=embedder.id, cache_dir=None)
    crop_ref = _image_ref(_task_image(crop, "crop"))
    gated = find_near_copies(index, [query_signature(crop)], embedder([crop_ref], False))
    assert [m.reference_id for m in gated.matches] == ["test-capture"]

    # The whole training image is no near-copy of the test image; its windows find the overlap.
    queries = [_image_ref(train)] + [_image_ref(r) for r in others]
    assert find_near_duplicate_pairs(queries, [_image_ref(test)], embedder=embedder) == []
    (pair,) = find_pairs([("train_real", train)] + [("train_real", r) for r in others], [test], embedder)
    assert (pair.image_id, pair.test_image_id) == ("train-capture", "test-capture")
    assert pair.match_score >= 0.5


def test_captures_that_barely_overlap_are_kept(aid6_root, embedder):
    """Shifted by 45 % of the side, two captures share too little for any crop to be a near-copy."""
    from benchmark.tasks.dedup import find_pairs

    train_image, test_image = _captures(sorted((aid6_root / "Port").glob("*.jpg"))[0], (54, 54))
    assert find_pairs([("train_real", _task_image(train_image, "train"))], [_task_image(test_image, "test")], embedder) == []


def _image_ref(row: TaskImage):
    from benchmark.images import ImageRef
    from benchmark.io import sha256_bytes

    return ImageRef(sha256_bytes(row.png), row.png, name=row.image_id)
