"""The task folder record: round trip, manifest verification, determinism, Hub-style loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmark import cli
from benchmark.errors import TaskError
from benchmark.images import encode_png, open_rgb
from benchmark.io import sha256_bytes, sha256_file
from benchmark.tasks import SPLITS, TaskImage, compute_test_manifest_hash, load_task, save_task
from benchmark.tasks.demo import build_demo_task


@pytest.fixture(scope="module", autouse=True)
def _own_feature_cache(tmp_path_factory):
    """Builds embed images for their deduplication: into a cache of this module's, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHBENCH_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
        yield


SMALL = dict(train_per_class=3, test_per_class=2, image_size=32)


@pytest.fixture(scope="module")
def demo_task_dir(tmp_path_factory) -> Path:
    return build_demo_task(tmp_path_factory.mktemp("record") / "demo", seed=0, **SMALL)


@pytest.fixture
def task_copy(demo_task_dir, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(demo_task_dir, target)
    return target


def run_task_cli(argv, monkeypatch) -> int:
    """benchmark.cli.main with only this module's commands (other stages are built in parallel)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchmark.tasks.cli",))
    return cli.main(argv)


def test_round_trip(demo_task_dir):
    task = load_task(demo_task_dir)
    assert task.name == "demo-disaster6"
    assert task.revision == "local"
    assert task.info["is_demo"] is True
    assert list(task.splits) == list(SPLITS)
    assert task.splits["train_real"].num_rows == 18
    assert task.splits["test"].num_rows == 12
    assert task.splits["generation_inputs"].num_rows == 18
    assert task.class_counts("test") == {c: 2 for c in task.classes}
    assert task.splits["test"].features["label"].names == task.classes

    refs = task.image_refs("test")
    ids = task.image_ids("test")
    labels = task.labels("test")
    assert [r.name for r in refs] == ids
    assert labels.dtype == np.int64 and labels.shape == (12,)
    for ref, label, row in zip(refs, labels, task.splits["test"]):
        assert ref.sha256 == sha256_bytes(ref.read_bytes()) == row["sha256"]
        assert ref.open().size == (32, 32)
        assert row["label"] == label
        assert task.manifest["images"]["test"][ref.name] == ref.sha256
    # The datasets Image column decodes to the same pixels as our safe decoder.
    first = task.splits["test"][0]["image"]
    assert np.array_equal(np.asarray(first.convert("RGB")), np.asarray(refs[0].open()))
    assert task.test_manifest_hash == compute_test_manifest_hash(dict(zip(ids, [r.sha256 for r in refs])))


def test_generation_inputs_are_pre_twins_of_train(demo_task_dir):
    task = load_task(demo_task_dir)
    train_pairs = set(task.column("train_real", "pair_id"))
    inputs_pairs = task.column("generation_inputs", "pair_id")
    assert set(inputs_pairs) == train_pairs
    assert not set(inputs_pairs) & set(task.column("test", "pair_id"))
    assert all(p.startswith("make it suffer from") for p in task.column("generation_inputs", "prompt"))
    assert set(task.column("train_real", "prompt")) == {""}


def test_card_front_matter_maps_splits_to_parquet(demo_task_dir):
    import yaml

    text = (demo_task_dir / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    files = {entry["split"]: entry["path"] for entry in front["configs"][0]["data_files"]}
    assert files == {split: f"data/{split}.parquet" for split in SPLITS}
    assert front["license"] == "apache-2.0"
    assert "image-classification" in front["task_categories"]
    assert "PIPELINE DEMO, NOT A SCIENTIFIC RESULT" in text


def test_folder_loads_with_datasets_load_dataset(demo_task_dir, tmp_path):
    """What the Hub does with the folder: the card's configs give the three splits."""
    import datasets

    loaded = datasets.load_dataset(str(demo_task_dir), cache_dir=str(tmp_path / "hf-cache"))
    assert set(loaded) == set(SPLITS)
    assert loaded["test"].num_rows == 12
    assert loaded["test"].features["label"].names == load_task(demo_task_dir).classes


def test_same_seed_same_bytes_different_seed_different(demo_task_dir, tmp_path):
    again = build_demo_task(tmp_path / "again", seed=0, **SMALL)
    other = build_demo_task(tmp_path / "other", seed=1, **SMALL)
    for path in ["manifest.json", "task.json", "README.md"] + [f"data/{s}.parquet" for s in SPLITS]:
        assert sha256_file(again / path) == sha256_file(demo_task_dir / path), path
    ours = json.loads((demo_task_dir / "manifest.json").read_text())
    theirs = json.loads((other / "manifest.json").read_text())
    assert ours["test_manifest_hash"] != theirs["test_manifest_hash"]
    assert ours["files"]["data/train_real.parquet"] != theirs["files"]["data/train_real.parquet"]


def test_altered_parquet_file_is_named(task_copy):
    path = task_copy / "data" / "test.parquet"
    table = pq.read_table(path)
    pq.write_table(table, path, compression="gzip")  # same rows, different bytes
    with pytest.raises(TaskError) as error:
        load_task(task_copy)
    assert "data/test.parquet: SHA-256 differs from manifest.json" in str(error.value)
    load_task(task_copy, verify=False)  # the rows themselves are intact


def test_altered_row_is_named_with_split_and_image_id(task_copy):
    path = task_copy / "data" / "test.parquet"
    rows = pq.read_table(path).to_pylist()
    victim = rows[3]["image_id"]
    image = open_rgb(rows[3]["image"]["bytes"])
    image.putpixel((0, 0), (255, 0, 255))
    rows[3]["image"]["bytes"] = encode_png(image)
    pq.write_table(pq.read_table(path).from_pylist(rows, schema=pq.read_schema(path)), path)
    with pytest.raises(TaskError) as error:
        load_task(task_copy)
    message = str(error.value)
    assert f"split test: image bytes do not match their sha256 column for {victim}" in message
    assert "data/test.parquet: SHA-256 differs" in message


def test_row_with_consistent_new_hash_still_differs_from_manifest(task_copy):
    path = task_copy / "data" / "train_real.parquet"
    rows = pq.read_table(path).to_pylist()
    victim = rows[0]["image_id"]
    rows[0]["image"]["bytes"] = rows[1]["image"]["bytes"]
    rows[0]["sha256"] = rows[1]["sha256"]
    pq.write_table(pq.read_table(path).from_pylist(rows, schema=pq.read_schema(path)), path)
    with pytest.raises(TaskError, match=f"split train_real: image\\(s\\) whose SHA-256 differs from manifest.json: {victim}"):
        load_task(task_copy)


def test_dropped_row_gives_ids_and_counts(task_copy):
    path = task_copy / "data" / "test.parquet"
    table = pq.read_table(path)
    dropped = table.column("image_id")[5].as_py()
    pq.write_table(_without_row(table, 5), path)
    with pytest.raises(TaskError) as error:
        load_task(task_copy)
    message = str(error.value)
    assert f"are missing from data/test.parquet: {dropped}" in message
    assert "manifest.json lists 12 images, data/test.parquet has 11" in message


def _without_row(table, index):
    import pyarrow as pa

    return pa.concat_tables([table.slice(0, index), table.slice(index + 1)])


def test_missing_file_is_named(task_copy):
    (task_copy / "data" / "generation_inputs.parquet").unlink()
    with pytest.raises(TaskError, match="missing file data/generation_inputs.parquet"):
        load_task(task_copy)
    (task_copy / "README.md").unlink()
    with pytest.raises(TaskError, match="missing file README.md"):
        load_task(task_copy)


def test_unlisted_data_file_and_missing_manifest(task_copy):
    shutil.copy(task_copy / "data" / "test.parquet", task_copy / "data" / "extra.parquet")
    with pytest.raises(TaskError, match="data/extra.parquet: file not listed in manifest.json"):
        load_task(task_copy)
    (task_copy / "manifest.json").unlink()
    with pytest.raises(TaskError, match="missing manifest.json"):
        load_task(task_copy)


def test_unknown_schema_version_is_refused(task_copy):
    info = json.loads((task_copy / "task.json").read_text())
    info["schema_version"] = 99
    (task_copy / "task.json").write_text(json.dumps(info))
    with pytest.raises(TaskError, match="task.json: schema_version 99 is not supported"):
        load_task(task_copy, verify=False)


def test_edited_manifest_test_hash_is_caught(task_copy):
    manifest = json.loads((task_copy / "manifest.json").read_text())
    manifest["test_manifest_hash"] = "0" * 64
    (task_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TaskError, match="test_manifest_hash does not match its own test image list"):
        load_task(task_copy)


def _row(image_id: str, label: str, colour: int) -> TaskImage:
    from PIL import Image

    png = encode_png(Image.new("RGB", (8, 8), (colour, 0, 0)))
    return TaskImage(png, label, image_id, "event")


def _splits(**overrides):
    splits = {
        "train_real": [_row("a_post", "x", 1), _row("b_post", "y", 2)],
        "test": [_row("c_post", "x", 3), _row("d_post", "y", 4)],
        "generation_inputs": [_row("a_pre", "x", 5), _row("b_pre", "y", 6)],
    }
    splits.update(overrides)
    return splits


SAVE_ARGS = dict(
    name="toy", builder="demo", builder_version=1, seed=0, classes=["x", "y"], prompt_templates=["{phrase}"], licence="other"
)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"test": [_row("a_post", "x", 3)]}, "image id a_post appears in split train_real and in test"),
        ({"test": [_row("c_post", "x", 1)]}, r"test images identical to train_real images: c_post \(= a_post\)"),
        ({"test": [_row("c_post", "z", 3)]}, "label 'z' is not one of"),
        ({"test": [_row("c/post", "x", 3)]}, "must use only letters"),
        ({"test": []}, "split test is empty"),
    ],
)
def test_save_refuses_bad_rows_and_writes_nothing(tmp_path, overrides, message):
    with pytest.raises(TaskError, match=message):
        save_task(tmp_path / "toy", _splits(**overrides), **SAVE_ARGS)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_existing_folder_unless_overwrite(tmp_path):
    first = save_task(tmp_path / "toy", _splits(), **SAVE_ARGS)
    with pytest.raises(TaskError, match="already exists"):
        save_task(first, _splits(), **SAVE_ARGS)
    save_task(first, _splits(), **SAVE_ARGS, overwrite=True)
    assert load_task(first).splits["test"].num_rows == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


def test_hub_repo_id_loads_from_local_hub_cache(demo_task_dir, tmp_path):
    """A repo id goes through snapshot_download; offline, a snapshot in the Hub cache serves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "datasets--someone--demo-task"
    shutil.copytree(demo_task_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    task = load_task("someone/demo-task", cache_dir=tmp_path, local_files_only=True)
    assert task.revision == commit
    assert task.test_manifest_hash == load_task(demo_task_dir).test_manifest_hash
    pinned = load_task("someone/demo-task", revision=commit, cache_dir=tmp_path, local_files_only=True)
    assert pinned.revision == commit


def test_unavailable_repo_says_to_pass_a_local_folder(tmp_path):
    with pytest.raises(TaskError, match="Offline, pass a local task folder instead"):
        load_task("someone/absent-task", cache_dir=tmp_path, local_files_only=True)


def test_not_a_folder_nor_repo_id(tmp_path):
    with pytest.raises(TaskError, match="no such task folder"):
        load_task(tmp_path / "nowhere" / "deeper")
    with pytest.raises(TaskError, match="revision applies only to a Hub repo id"):
        load_task(tmp_path, revision="abc")


def test_cli_verify_and_info(demo_task_dir, task_copy, monkeypatch, capsys):
    assert run_task_cli(["task", "verify", str(demo_task_dir), "--device", "cpu"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "every file and image matches manifest.json" in out
    assert "ok: no image of train_real, generation_inputs is a near-copy of a test image" in out
    assert run_task_cli(["task", "info", str(demo_task_dir)], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "PIPELINE DEMO" in out and "test: 12" in out
    assert "deduplication: 0 training image(s) removed as near-copies of test images" in out
    assert run_task_cli(["task", "info", "--json", str(demo_task_dir)], monkeypatch) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "demo-disaster6"

    (task_copy / "data" / "test.parquet").write_bytes(b"not parquet")
    assert run_task_cli(["task", "verify", str(task_copy)], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "data/test.parquet" in err


def test_cli_publish_verifies_then_uploads_and_prints_revision(demo_task_dir, task_copy, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    class FakeApi:  # the Hub is unreachable here: record what would be sent
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs["repo_type"]))

        def upload_folder(self, **kwargs):
            files = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
            calls.append(("upload_folder", kwargs["repo_id"], kwargs["repo_type"], files))
            return type("Commit", (), {"oid": "f" * 40})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    # the default: a manifest-only release (benchmark.tasks.release), no images
    assert run_task_cli(["task", "publish", str(demo_task_dir), "--repo-id", "org/demo"], monkeypatch) == 0
    assert ("upload_folder", "org/demo", "dataset", ["README.md", "release.json", "task"]) in calls
    assert f"revision to pin: {'f' * 40}" in capsys.readouterr().out
    # --include-images: the task folder as it is
    assert run_task_cli(["task", "publish", str(demo_task_dir), "--repo-id", "org/demo", "--include-images"], monkeypatch) == 0
    assert ("upload_folder", "org/demo", "dataset", sorted(p.name for p in demo_task_dir.iterdir())) in calls
    assert "re-hosts the source data" in capsys.readouterr().err

    calls.clear()
    (task_copy / "task.json").write_text((task_copy / "task.json").read_text().replace("demo-disaster6", "other"))
    assert run_task_cli(["task", "publish", str(task_copy), "--repo-id", "org/demo"], monkeypatch) == 2
    assert calls == []  # a folder failing its manifest is never uploaded
    assert "task.json: SHA-256 differs" in capsys.readouterr().err
