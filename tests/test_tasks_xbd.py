"""The xBD builder, on fixture trees in the exact xBD layout and schema (and the real sample tiles)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark import cli
from benchmark.errors import TaskError
from benchmark.io import sha256_file
from benchmark.protocol import XBD_CLASSES, XBD_EVENT_TO_CLASS
from benchmark.tasks import load_task
from benchmark.protocol import XBD_METADATA_TYPE_TO_CLASS
from benchmark.tasks.xbd import build_xbd_task, same_location, scan_folder


@pytest.fixture(scope="module", autouse=True)
def _own_feature_cache(tmp_path_factory):
    """Builds embed images for their deduplication: into a cache of this module's, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHBENCH_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
        yield


#: disaster_type as xBD's own label JSONs give it per event.
XBD_DISASTER_TYPES = {
    "mexico-earthquake": "earthquake",
    "portugal-wildfire": "fire",
    "santa-rosa-wildfire": "fire",
    "socal-fire": "fire",
    "woolsey-fire": "fire",
    "pinery-bushfire": "fire",
    "lower-puna-volcano": "volcano",
    "guatemala-volcano": "volcano",
    "joplin-tornado": "wind",
    "moore-tornado": "wind",
    "tuscaloosa-tornado": "wind",
    "hurricane-matthew": "wind",
    "hurricane-florence": "flooding",
    "nepal-flooding": "flooding",
    "hurricane-harvey": "flooding",
    "hurricane-michael": "wind",
    "midwest-flooding": "flooding",
    "palu-tsunami": "tsunami",
    "sunda-tsunami": "tsunami",
}
#: Post tiles per event in each split folder of the fixture tree.
TILES_PER_FOLDER = {"train": 3, "tier3": 1, "test": 2, "hold": 1}


def _polygon(x0: float, y0: float, width: float, height: float) -> str:
    return f"POLYGON (({x0} {y0}, {x0 + width} {y0}, {x0 + width} {y0 + height}, {x0} {y0 + height}, {x0} {y0}))"


def _label(event: str, image_name: str, rng: np.random.Generator) -> dict:
    """A label JSON shaped like xBD's: metadata + features.xy / lng_lat building polygons (each
    tile's buildings at their own place on the ground, about 500 m apart)."""
    x, y = (float(v) for v in rng.uniform(0, 900, 2))
    number = int(image_name.split("_")[1])
    props = {"feature_type": "building", "subtype": "no-damage", "uid": f"uid-{image_name}"}
    return {
        "features": {
            "lng_lat": [{"properties": props, "wkt": _polygon(-94.5 + 0.005 * number, 37.0, 0.0002, 0.0002)}],
            "xy": [{"properties": props, "wkt": _polygon(x, y, 20, 15)}],
        },
        "metadata": {
            "sensor": "WORLDVIEW02",
            "provider_asset_type": "WORLDVIEW02",
            "gsd": 2.35,
            "capture_date": "2018-01-01T00:00:00.000Z",
            "off_nadir_angle": 20.0,
            "disaster": event,
            "disaster_type": XBD_DISASTER_TYPES[event],
            "catalog_id": "1030010000000000",
            "original_width": 1024,
            "original_height": 1024,
            "width": 1024,
            "height": 1024,
            "id": f"id-{image_name}",
            "img_name": image_name,
        },
    }


def make_xbd_tree(root: Path, *, size: int = 24, events=XBD_DISASTER_TYPES, tiles=TILES_PER_FOLDER) -> Path:
    """All 19 events in train/tier3/test/hold with images/ and labels/, tiny random PNG tiles."""
    rng = np.random.default_rng(7)
    number = 100
    for folder, per_event in tiles.items():
        (root / folder / "images").mkdir(parents=True)
        (root / folder / "labels").mkdir(parents=True)
        (root / folder / "targets").mkdir(parents=True)  # present in some releases, unused
        for event in events:
            for _ in range(per_event):
                for phase in ("pre", "post"):
                    stem = f"{event}_{number:08d}_{phase}_disaster"
                    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(root / folder / "images" / f"{stem}.png")
                    label = _label(event, f"{stem}.png", rng)
                    (root / folder / "labels" / f"{stem}.json").write_text(json.dumps(label))
                number += 1
    return root


@pytest.fixture(scope="module")
def xbd_tree(tmp_path_factory) -> Path:
    return make_xbd_tree(tmp_path_factory.mktemp("xbd") / "xbd")


@pytest.fixture
def tree_copy(xbd_tree, tmp_path) -> Path:
    return Path(shutil.copytree(xbd_tree, tmp_path / "xbd"))


def build(root, out, **kwargs):
    kwargs.setdefault("train_per_class", 4)
    kwargs.setdefault("test_per_class", 3)
    return build_xbd_task(root, out, progress=False, **kwargs)


@pytest.fixture(scope="module")
def built(xbd_tree, tmp_path_factory):
    return load_task(build(xbd_tree, tmp_path_factory.mktemp("out") / "task"))


def test_build_is_balanced_over_classes_and_events(built):
    assert built.name == "xbd-disaster6"
    assert built.classes == list(XBD_CLASSES)
    assert built.class_counts("train_real") == {c: 4 for c in XBD_CLASSES}
    assert built.class_counts("test") == {c: 3 for c in XBD_CLASSES}
    events = built.column("train_real", "event")
    labels = built.labels("train_real")
    for index, class_name in enumerate(XBD_CLASSES):
        class_events = [XBD_EVENT_TO_CLASS[e] for e in np.asarray(events)[labels == index]]
        assert set(class_events) == {class_name}
        per_event = Counter(np.asarray(events)[labels == index])
        n_events = sum(1 for c in XBD_EVENT_TO_CLASS.values() if c == class_name)
        # Round robin: the events of a class differ by at most one tile.
        assert len(per_event) == min(4, n_events)
        assert max(per_event.values()) - min(per_event.values()) <= 1


def test_splits_come_from_the_right_folders_and_pairs(built, xbd_tree):
    train_sources = built.column("train_real", "source_file")
    test_sources = built.column("test", "source_file")
    assert all(s.split("/")[0] in ("train", "tier3") and s.endswith("_post_disaster.png") for s in train_sources)
    assert all(s.split("/")[0] in ("test", "hold") for s in test_sources)
    inputs = dict(zip(built.column("generation_inputs", "pair_id"), built.column("generation_inputs", "source_file")))
    for pair, source in zip(built.column("train_real", "pair_id"), train_sources):
        assert inputs[pair] == source.replace("_post_disaster", "_pre_disaster")
    # No resize: rows hold the raw files' bytes, so their hashes are the files' hashes.
    for ref, source in zip(built.image_refs("generation_inputs"), built.column("generation_inputs", "source_file")):
        assert ref.sha256 == sha256_file(xbd_tree / source)
    prompts = dict(zip(built.labels("generation_inputs"), built.column("generation_inputs", "prompt")))
    assert prompts[XBD_CLASSES.index("flooding")] == "make it suffer from flooding"


def test_label_disagreements_are_reported(built):
    notes = [n for n in built.info["notes"] if n.startswith("label disagreement")]
    assert len(notes) == 2
    assert any("hurricane-florence" in n and "'storm'" in n and "'flooding'" in n for n in notes)
    assert any("hurricane-michael" in n and "'flooding'" in n and "'wind'" in n for n in notes)
    assert built.info["label_source"] == "table"


def test_label_source_metadata_moves_events(xbd_tree, tmp_path):
    task = load_task(build(xbd_tree, tmp_path / "meta", label_source="metadata"))
    events_of = {}
    for event, label in zip(task.column("train_real", "event") + task.column("test", "event"),
                            list(task.labels("train_real")) + list(task.labels("test"))):
        events_of.setdefault(task.classes[label], set()).add(event)
    flooding_pool = {e for e, t in XBD_DISASTER_TYPES.items() if XBD_METADATA_TYPE_TO_CLASS[t] == "flooding"}
    assert events_of["flooding"] <= flooding_pool
    assert "hurricane-michael" not in events_of["flooding"]
    assert task.info["label_source"] == "metadata"


def test_same_seed_same_files_other_seed_other_choice(built, xbd_tree, tmp_path):
    again = load_task(build(xbd_tree, tmp_path / "again"))
    assert again.manifest == built.manifest
    for rel, digest in built.manifest["files"].items():
        assert sha256_file(again.path / rel) == digest
    other = load_task(build(xbd_tree, tmp_path / "other", seed=1))
    assert other.image_ids("train_real") != built.image_ids("train_real")


def test_resize(xbd_tree, tmp_path):
    task = load_task(build(xbd_tree, tmp_path / "small", train_per_class=1, test_per_class=1, resize=16))
    assert {ref.open().size for ref in task.image_refs("train_real")} == {(16, 16)}
    assert task.info["resize"] == 16


def test_short_test_class_is_noted_and_printed(xbd_tree, tmp_path, capsys):
    task = load_task(build(xbd_tree, tmp_path / "short", test_per_class=4))
    # earthquake has one event: 2 test + 1 hold tiles.
    assert task.class_counts("test")["earthquake"] == 3
    assert task.class_counts("test")["storm"] == 4
    assert any("short test class: earthquake has 3" in n for n in task.info["notes"])
    assert "short test class: earthquake has 3" in capsys.readouterr().out


def _assert_nothing_left(out: Path):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def _first_chosen_train_tile(root: Path) -> Path:
    # earthquake has exactly 4 training tiles: all are chosen with train_per_class=4.
    return sorted((root / "train" / "images").glob("mexico-earthquake_*_post_disaster.png"))[0]


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: shutil.rmtree(r), "xBD root folder not found"),
        (lambda r: shutil.rmtree(r / "hold"), "missing xBD split folder(s) hold"),
        (lambda r: shutil.rmtree(r / "tier3" / "labels"), "tier3/labels: missing folder"),
        (
            lambda r: (r / "train" / "labels" / "moore-tornado_00000127_post_disaster.json").unlink(),
            "moore-tornado_00000127_post_disaster.json: missing label JSON",
        ),
        (
            lambda r: (r / "test" / "labels" / "palu-tsunami_00000210_post_disaster.json").write_text("{\"metadata\": "),
            "palu-tsunami_00000210_post_disaster.json: malformed label JSON",
        ),
        (
            lambda r: (r / "train" / "labels" / "socal-fire_00000109_post_disaster.json").write_text('{"features": {}}'),
            "socal-fire_00000109_post_disaster.json: malformed label JSON (expected objects 'metadata' and 'features')",
        ),
        (
            lambda r: _first_chosen_train_tile(r).write_bytes(b"\x89PNG\r\n\x1a\n broken"),
            "mexico-earthquake_00000100_post_disaster.png: not a decodable image",
        ),
        (
            lambda r: (r / "train" / "images" / "nepal-flooding_00000139_pre_disaster.png").unlink(),
            "nepal-flooding_00000139_pre_disaster.png: missing pre-disaster twin",
        ),
    ],
)
def test_bad_input_gives_one_clear_error_and_leaves_nothing(tree_copy, tmp_path, breakage, message):
    breakage(tree_copy)
    out = tmp_path / "out" / "task"
    out.parent.mkdir()
    with pytest.raises(TaskError) as error:
        build(tree_copy, out)
    assert message in str(error.value)
    _assert_nothing_left(out)


def test_class_with_too_few_training_tiles(xbd_tree, tmp_path):
    out = tmp_path / "task"
    with pytest.raises(TaskError) as error:
        build(xbd_tree, out, train_per_class=5)
    message = str(error.value)
    assert "class(es) earthquake need 5 training tiles from train/tier3" in message
    assert "earthquake: 4 (too few) (mexico-earthquake: 4)" in message
    _assert_nothing_left(out)


def test_too_few_training_tiles_names_every_class_with_its_counts(xbd_tree, tmp_path):
    with pytest.raises(TaskError) as error:
        build(xbd_tree, tmp_path / "task", train_per_class=9)
    message = str(error.value)
    # earthquake (1 event), volcano and tsunami (2 events each) have 4 tiles per event.
    assert "class(es) earthquake, volcano, tsunami need 9 training tiles" in message
    assert "volcano: 8 (too few) (guatemala-volcano: 4, lower-puna-volcano: 4)" in message
    assert "tsunami: 8 (too few) (palu-tsunami: 4, sunda-tsunami: 4)" in message
    # The classes that have enough are listed too, with their counts.
    assert "wildfire: 20 (pinery-bushfire: 4," in message and "storm: 20 (" in message
    assert "wildfire: 20 (too few)" not in message


def test_download_without_tier3_builds_from_train_and_says_so(tree_copy, tmp_path, capsys):
    shutil.rmtree(tree_copy / "tier3")
    task = load_task(build(tree_copy, tmp_path / "task", train_per_class=3))
    assert {s.split("/")[0] for s in task.column("train_real", "source_file")} == {"train"}
    note = "no tier3/ folder in the download: train_real is drawn from train only"
    assert note in task.info["notes"]
    assert f"warning: {note}" in capsys.readouterr().out
    with pytest.raises(TaskError, match="class\\(es\\) earthquake need 4 training tiles from train;"):
        build(tree_copy, tmp_path / "task4", train_per_class=4)


def _label_file(root: Path, folder: str, stem: str) -> Path:
    return root / folder / "labels" / f"{stem}_post_disaster.json"


def test_a_location_stays_on_one_side_of_the_split(tree_copy, tmp_path):
    """A training tile with a test tile's id, or whose buildings overlap a test tile's, is left out."""
    quake = "mexico-earthquake"
    # All three earthquake test tiles are chosen (test_per_class=3): two in test/, one in hold/.
    test_stems = sorted(p.name[: -len("_post_disaster.json")] for f in ("test", "hold")
                        for p in (tree_copy / f / "labels").glob(f"{quake}_*_post_disaster.json"))
    train_stems = sorted(p.name[: -len("_post_disaster.json")] for p in (tree_copy / "train" / "labels").glob(f"{quake}_*_post*"))
    # 1. a training tile whose building footprint overlaps test tile 0's by half
    overlapping = json.loads(_label_file(tree_copy, "train", train_stems[0]).read_text())
    test_label = json.loads(_label_file(tree_copy, "test", test_stems[0]).read_text())
    wkt = test_label["features"]["lng_lat"][0]["wkt"]
    x0, y0 = (float(v) for v in wkt.split("((")[1].split(",")[0].split())
    overlapping["features"]["lng_lat"][0]["wkt"] = _polygon(x0 + 0.0001, y0, 0.0002, 0.0002)
    _label_file(tree_copy, "train", train_stems[0]).write_text(json.dumps(overlapping))
    # 2. a tier3 tile with the id of test tile 1 (the same tile, shipped in two split folders)
    same = test_stems[1]
    for phase in ("pre", "post"):
        shutil.copy(tree_copy / "test" / "images" / f"{same}_{phase}_disaster.png", tree_copy / "tier3" / "images")
        shutil.copy(tree_copy / "test" / "labels" / f"{same}_{phase}_disaster.json", tree_copy / "tier3" / "labels")

    task = load_task(build(tree_copy, tmp_path / "task", train_per_class=3, test_per_class=3))
    train_sources = task.column("train_real", "source_file")
    assert f"train/images/{train_stems[0]}_post_disaster.png" not in train_sources
    assert f"tier3/images/{same}_post_disaster.png" not in train_sources
    assert task.class_counts("train_real")["earthquake"] == 3
    assert task.near_duplicates["same_location"] == [
        {"tile": train_stems[0], "source_file": f"train/images/{train_stems[0]}_post_disaster.png",
         "test_tile": test_stems[0], "reason": "overlapping building footprints"},
        {"tile": f"tier3-{same}", "source_file": f"tier3/images/{same}_post_disaster.png",
         "test_tile": f"test-{same}", "reason": "same tile id"},
    ]
    assert any("2 training tile(s) left out" in note for note in task.info["notes"])
    assert "2 training tile(s) were left out" in (task.path / "README.md").read_text()


def test_neighbouring_tiles_are_not_one_location(xbd_sample_root):
    """The real joplin tiles 0-1-2 are neighbours: a building cut by the shared edge shows in both,
    which is no overlap."""
    tiles = scan_folder(xbd_sample_root, "tier3", need_pre=True, progress=False)
    assert all(t.footprint is not None for t in tiles)
    assert same_location(tiles[:1], tiles[1:]) == {}
    assert same_location(tiles[1:2], tiles[1:2]) == {tiles[1]: (tiles[1], "same tile id")}


def test_cli_build_and_failure_exit_codes(xbd_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchmark.tasks.cli",))
    out = tmp_path / "cli-task"
    argv = ["task", "build", "xbd", "--xbd-root", str(xbd_tree), "--out", str(out),
            "--train-per-class", "2", "--test-per-class", "2", "--seed", "3"]
    assert cli.main(argv) == 0
    assert "built task xbd-disaster6" in capsys.readouterr().out
    assert load_task(out).info["seed"] == 3
    assert cli.main(argv) == 2  # exists already
    assert "already exists" in capsys.readouterr().err
    assert cli.main(argv + ["--overwrite"]) == 0
    assert cli.main(["task", "build", "xbd", "--xbd-root", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "xBD root folder not found" in capsys.readouterr().err


def test_real_sample_tiles_parse_and_build(xbd_sample_root, tmp_path):
    """The three real joplin tiles (tier3) inside a fixture tree where joplin is storm's only training event."""
    real = scan_folder(xbd_sample_root, "tier3", need_pre=True, progress=False)
    assert [t.stem for t in real] == [f"joplin-tornado_0000000{i}" for i in range(3)]
    assert {t.disaster_type for t in real} == {"wind"}

    storm_events = {e for e, c in XBD_EVENT_TO_CLASS.items() if c == "storm"}
    root = tmp_path / "xbd"
    others = {e: t for e, t in XBD_DISASTER_TYPES.items() if e not in storm_events}
    make_xbd_tree(root, events=others)
    make_xbd_tree(tmp_path / "storm-test", events={e: XBD_DISASTER_TYPES[e] for e in storm_events},
                  tiles={"test": 1, "hold": 1})
    for folder in ("test", "hold"):
        for sub in ("images", "labels"):
            for file in (tmp_path / "storm-test" / folder / sub).iterdir():
                shutil.copy(file, root / folder / sub / file.name)
    for sub in ("images", "labels"):
        for file in (xbd_sample_root / "tier3" / sub).iterdir():
            shutil.copy(file, root / "tier3" / sub / file.name)

    task = load_task(build(root, tmp_path / "task", train_per_class=1, test_per_class=1))
    storm = task.labels("train_real") == XBD_CLASSES.index("storm")
    (source,) = np.asarray(task.column("train_real", "source_file"))[storm]
    assert source.startswith("tier3/images/joplin-tornado_0000000")
    ref = np.asarray(task.image_refs("train_real"), dtype=object)[storm][0]
    assert ref.sha256 == sha256_file(root / source)
    assert ref.open().size == (1024, 1024)
    pre_sources = task.column("generation_inputs", "source_file")
    assert source.replace("_post_", "_pre_") in pre_sources
