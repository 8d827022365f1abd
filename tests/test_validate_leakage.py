"""The leakage gate, through `validate_submission` with the real EfficientNet-Lite0 backbone.

Fast tests use the procedural demo task and the backbone at a small input size (the gate's
decision rests on pHash and geometric verification, the embedding a second signal). The slow test
measures the gate on a deduplicated image-folder task of real aerial images (the aid6 sample the
tests share) with the default configuration and asserts the targets: no harness baseline flagged,
false flags on genuine held-out images <= 0.1 %, recall >= 99.5 % per transformation.
"""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from benchmark.backbones import DEFAULT_BACKBONE, load_backbone
from benchmark.features import FeatureCache
from benchmark.generators.demo_editor import generate_demo_editor
from benchmark.images import ImageRef
from benchmark.submissions import load_submission, validate_submission
from benchmark.submissions.leakage import BackboneEmbedder, dihedral
from benchmark.tasks import load_task
from benchmark.tasks.demo import build_demo_task

from .malformed import read_rows, write_rows, write_valid_submission
from .test_validate_malformed import tree_state


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    folder = build_demo_task(tmp_path_factory.mktemp("task") / "demo", train_per_class=10, test_per_class=4, image_size=64)
    return load_task(folder)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(DEFAULT_BACKBONE, image_size=64)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture
def embedder(backbone, cache_root):
    return BackboneEmbedder(FeatureCache(cache_root), backbone)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_roundtrip(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=40)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _noisy(image: Image.Image) -> Image.Image:
    array = np.asarray(image, dtype=np.float32) + np.random.default_rng(0).normal(0, 6, (image.height, image.width, 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


NEAR_COPIES = {
    "flip": lambda im: dihedral(im, 4),
    "rot90": lambda im: dihedral(im, 1),
    "crop70": lambda im: im.crop((10, 5, 10 + 45, 5 + 45)),
    "resize": lambda im: im.resize((120, 120), Image.Resampling.BICUBIC),
    "jpeg": _jpeg_roundtrip,
    "jitter": lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.25)).enhance(0.8),
    "noise": _noisy,
}


def _count_problem(problem: str) -> bool:
    return re.search(r" has \d+ images; at least 10 are needed", problem) is not None


def test_near_copies_of_test_images_are_rejected(task, embedder, tmp_path):
    # A small submission (the gate's cost is per image); its only other problems are the counts.
    folder = write_valid_submission(tmp_path / "tester__noise", task.classes, task.name, per_class=5)
    rows = read_rows(folder)
    tests = task.image_refs("test")
    planted = {}
    for row, (kind, make) in zip(rows[::4], NEAR_COPIES.items()):
        source = tests[len(planted) * 3]
        (folder / row["file_name"]).write_bytes(_png(make(source.open())))
        planted[row["file_name"]] = source.name
    before = tree_state(folder)

    report = validate_submission(folder, task, cache=embedder)

    assert report.leakage_checked
    found = {hit["file_name"]: hit for hit in report.leakage}
    assert set(found) == set(planted), report.leakage
    for file_name, source_id in planted.items():
        assert found[file_name]["reference_id"] == source_id and found[file_name]["split"] == "test"
    leakage_problems = [p for p in report.problems if p.startswith("leakage gate: ")]
    assert len(leakage_problems) == len(planted)
    assert all(_count_problem(p) for p in report.problems if not p.startswith("leakage gate: "))
    assert all("near-copy of test image" in p for p in leakage_problems)
    assert tree_state(folder) == before, "validation changed the submission folder"


def test_generated_track_accepts_edits_and_rejects_real_train_images(task, embedder, tmp_path):
    folder = tmp_path / "demo__procedural-editor"
    generate_demo_editor(task, folder, multiplier=1, seed=0)
    report = validate_submission(folder, task, cache=embedder)
    # Edits of the generation inputs are aligned with their own tile's post image: not copies.
    assert report.leakage == [] and report.leakage_checked
    assert report.counts == dict.fromkeys(task.classes, 10) and all(_count_problem(p) for p in report.problems)

    rows = read_rows(folder)
    train = {ref.name: ref for ref in task.image_refs("train_real")}
    pairs = dict(zip(task.image_ids("generation_inputs"), task.column("generation_inputs", "pair_id")))
    post_of_pair = {pair: image_id for image_id, pair in zip(task.image_ids("train_real"), task.column("train_real", "pair_id"))}
    # 1. the real post image of the row's own tile, passed off as its edit: an exact copy.
    own = rows[0]
    own_post = post_of_pair[pairs[own["source_id"]]]
    (folder / own["file_name"]).write_bytes(train[own_post].read_bytes())
    # 2. a rotated real train image of another tile.
    other = rows[30]
    other_id = next(i for i in train if i != post_of_pair[pairs[other["source_id"]]])
    (folder / other["file_name"]).write_bytes(_png(dihedral(train[other_id].open(), 3)))
    for row in (own, other):  # as a participant would: the rows describe the new files
        row["sha256"] = hashlib.sha256((folder / row["file_name"]).read_bytes()).hexdigest()
    write_rows(folder, rows)

    report = validate_submission(folder, task, cache=embedder)
    found = {hit["file_name"]: hit for hit in report.leakage}
    assert set(found) == {own["file_name"], other["file_name"]}
    assert found[own["file_name"]]["reference_id"] == own_post and found[own["file_name"]]["reason"] == "exact"
    assert found[other["file_name"]]["reference_id"] == other_id and found[other["file_name"]]["split"] == "train_real"
    assert all("near-copy of train_real image" in p for p in report.problems if p.startswith("leakage gate"))

    # The open track may use real train images (augmentations, copies): the same images pass there.
    meta = (folder / "submission.yaml").read_text().replace("track: generated", "track: open")
    (folder / "submission.yaml").write_text(meta)
    report = validate_submission(folder, task, cache=embedder)
    assert report.leakage == [] and all(_count_problem(p) for p in report.problems), report.problems


def test_reference_index_and_features_are_cached(task, backbone, cache_root, tmp_path):
    folder = write_valid_submission(tmp_path / "tester__noise", task.classes, task.name, per_class=2, seed=5)
    first = FeatureCache(cache_root)
    validate_submission(folder, task, cache=BackboneEmbedder(first, backbone))
    assert first.n_encoded >= 12  # at least the submission's images were new
    assert list((cache_root / "leakage").glob("reference-*.npz"))
    second = FeatureCache(cache_root)
    report = validate_submission(folder, task, cache=BackboneEmbedder(second, backbone))
    assert report.leakage_checked and report.leakage == []
    assert second.n_encoded == 0  # references (index file) and submission images all reused


def test_gate_encodes_only_what_the_grid_encodes_anyway(task, tmp_path):
    # The demo's call: a cache directory and the grid's image size. Every embedding the gate needs
    # is then a grid feature (same backbone, preprocessing, precision and key), and the grid's own
    # request (test + train_real + the submission) finds them all cached.
    folder = tmp_path / "demo__procedural-editor"
    generate_demo_editor(task, folder, multiplier=1, seed=0)
    cache_dir = tmp_path / "cache"
    report = validate_submission(folder, task, cache=cache_dir, image_size=64)
    assert report.leakage_checked and report.leakage == []
    grid_cache = FeatureCache(cache_dir)
    grid_backbone = load_backbone(DEFAULT_BACKBONE, device="cpu", image_size=64)
    sub_refs = [ImageRef(e.sha256, e.path) for e in load_submission(folder).entries]
    needed = task.image_refs("test") + task.image_refs("train_real") + sub_refs
    grid_cache.features(grid_backbone, needed, progress=False)
    assert grid_cache.n_encoded == 0
    # ... and nothing else was encoded: the feature cache holds exactly those images.
    directory = grid_cache.directory(grid_backbone)
    held = {key for shard in json.loads((directory / "index.json").read_text())["shards"] for key in shard["images"]}
    assert held == {ref.sha256 for ref in needed}
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([DEFAULT_BACKBONE, "leakage"])


def test_cli_json_report_names_the_leak(task, backbone, cache_root, tmp_path, capsys, monkeypatch):
    from benchmark.cli import main

    folder = write_valid_submission(tmp_path / "tester__noise", task.classes, task.name, per_class=2, seed=6)
    row = read_rows(folder)[0]
    source = task.image_refs("test")[1]
    (folder / row["file_name"]).write_bytes(_png(dihedral(source.open(), 6)))
    # The CLI's default embedder at the demo's test resolution, on this test's cache.
    import benchmark.submissions.leakage as leakage

    monkeypatch.setattr(leakage, "default_embedder", lambda root, device="cpu", image_size=None: BackboneEmbedder(FeatureCache(root), backbone))
    code = main(["validate", str(folder), "--task", str(task.path), "--json", "--cache-dir", str(cache_root)])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["leakage_checked"]
    assert [hit["reference_id"] for hit in report["leakage"]] == [source.name]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_gate_on_real_aerial_images(aid6_root, tmp_path):
    """On a deduplicated aid6 image-folder task (20 train / 20 test per class): none of the four
    harness baselines is flagged; of 300 genuine held-out images at most 0.1 % (none) are; near-
    copies of 60 test images are found, >= 99.5 % (all) under each promised transformation,
    cutout and padding included. (`benchmarks/test_gate_bench.py` measures the full-size task.)"""
    from benchmark.generators.baselines import BASELINES, generate_baseline
    from benchmark.io import sha256_file
    from benchmark.submissions.leakage import default_embedder
    from benchmark.submissions.leakage_eval import PROMISED, deduplicated_imagefolder_task, measure_gate, pixel_copies

    embedder = default_embedder(tmp_path / "cache")
    task, _ = deduplicated_imagefolder_task(aid6_root, tmp_path / "task", embedder, train_per_class=20, test_per_class=20)
    for name in BASELINES:
        folder = generate_baseline(name, task, tmp_path / f"baseline__{name}", multiplier=1)
        report = validate_submission(folder, task, cache=embedder)
        assert report.leakage_checked and report.leakage == [], (name, report.leakage)

    in_task = {ref.name.split("__", 1)[1] for split in ("train_real", "test") for ref in task.image_refs(split)}
    held_out = [
        ImageRef(sha256_file(path), path, name=f"{path.parent.name}/{path.name}")
        for folder in sorted(p for p in aid6_root.iterdir() if p.is_dir())
        for path in [p for p in sorted(folder.glob("*.jpg")) if p.stem not in in_task][:50]
    ]
    copies = pixel_copies(held_out, task.image_refs("test"))
    genuine = [ref for i, ref in enumerate(held_out) if i not in copies]
    tests = task.image_refs("test")
    result = measure_gate(tests, genuine, embedder, kinds=PROMISED, cache_dir=tmp_path / "cache", sources=tests[::2])
    print("\n" + result.summary())
    for line in result.false_rejections + result.misses:
        print("  ", line)
    assert result.false_rejection_rate <= 0.001
    assert min(result.recall.values()) >= 0.995, result.recall
    assert min(result.correct_reference.values()) >= 0.995, result.correct_reference


def test_run_gates_at_the_grids_image_size_in_its_cache(task, tmp_path):
    # `synthbench run --image-size N`: the executors' one validation per submission encodes at N
    # into the run's cache, so the grid that follows finds every submission feature cached.
    from benchmark.executors import GridOptions, Unit, _Context

    folder = write_valid_submission(tmp_path / "tester__noise", task.classes, task.name, per_class=2, seed=7)
    cache_dir = tmp_path / "cache"
    unit = Unit(str(task.path), str(folder), DEFAULT_BACKBONE, "linear-probe",
                GridOptions(cache_dir=str(cache_dir), image_size=64, device="cpu"))
    problem = _Context([unit]).validation_problem(unit, "full")
    assert problem is not None and "leakage" not in problem  # only the small counts are refused
    grid_cache = FeatureCache(cache_dir)
    grid_backbone = load_backbone(DEFAULT_BACKBONE, device="cpu", image_size=64)
    sub_refs = [ImageRef(e.sha256, e.path) for e in load_submission(folder).entries]
    grid_cache.features(grid_backbone, sub_refs + task.image_refs("test"), progress=False)
    assert grid_cache.n_encoded == 0
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([DEFAULT_BACKBONE, "leakage"])
