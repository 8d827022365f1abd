"""Manifest-only releases (benchmark.tasks.release): `task publish --dry-run` writes one without
images; `task build xbd --from-manifest` rebuilds the task bit for bit from the real xBD sample
tiles and refuses, by name, a tampered or missing tile."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark import cli
from benchmark.errors import TaskError
from benchmark.protocol import XBD_EVENT_TO_CLASS
from benchmark.tasks import load_task
from benchmark.tasks.record import EXTRA_SPLIT, MANIFEST_ONLY_FILE
from benchmark.tasks.release import TASK_FOLDER, rebuild_from_release
from tests.test_tasks_xbd import XBD_DISASTER_TYPES, build, make_xbd_tree


@pytest.fixture(scope="module", autouse=True)
def _own_feature_cache_and_commands(tmp_path_factory):
    """Builds embed into a cache of this module's; the CLI loads only the task commands."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHBENCH_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
        patch.setattr(cli, "COMMAND_MODULES", ("benchmark.tasks.cli",))
        yield


@pytest.fixture(scope="module")
def xbd_root(xbd_sample_root, tmp_path_factory) -> Path:
    """An xBD tree whose storm class trains on the three real joplin sample tiles (tier3)."""
    root = tmp_path_factory.mktemp("xbd") / "xbd"
    storm = {e for e, c in XBD_EVENT_TO_CLASS.items() if c == "storm"}
    make_xbd_tree(root, events={e: t for e, t in XBD_DISASTER_TYPES.items() if e not in storm})
    storm_test = make_xbd_tree(root.parent / "storm-test", events={e: XBD_DISASTER_TYPES[e] for e in storm},
                               tiles={"test": 1, "hold": 1})
    for folder in ("test", "hold"):
        for sub in ("images", "labels"):
            for file in (storm_test / folder / sub).iterdir():
                shutil.copy(file, root / folder / sub / file.name)
    for sub in ("images", "labels"):
        for file in (xbd_sample_root / "tier3" / sub).iterdir():
            shutil.copy(file, root / "tier3" / sub / file.name)
    return root


@pytest.fixture(scope="module")
def task_dir(xbd_root, tmp_path_factory) -> Path:
    return build(xbd_root, tmp_path_factory.mktemp("task") / "xbd-task", train_per_class=1, test_per_class=1)


@pytest.fixture(scope="module")
def release(task_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "release"
    assert cli.main(["task", "publish", str(task_dir), "--dry-run", "--out", str(out), "--repo-id", "org/xbd"]) == 0
    return out


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_dry_run_release_lists_every_image_without_any(release, task_dir):
    task = load_task(task_dir)
    assert _files(release) == ["README.md", MANIFEST_ONLY_FILE, f"{TASK_FOLDER}/README.md",
                               f"{TASK_FOLDER}/manifest.json", f"{TASK_FOLDER}/task.json"]
    data = json.loads((release / MANIFEST_ONLY_FILE).read_text())
    assert set(data["splits"]) == set(task.splits) and EXTRA_SPLIT in data["splits"]
    for split in task.splits:
        rows = data["splits"][split]
        assert [r["image_id"] for r in rows] == task.image_ids(split)
        assert [r["sha256"] for r in rows] == [ref.sha256 for ref in task.image_refs(split)]
        assert [r["source_file"] for r in rows] == task.column(split, "source_file")
        assert [r["prompt"] for r in rows] == task.column(split, "prompt")
    assert data["builder_params"]["builder"] == "xbd" and data["builder_params"]["seed"] == 0
    card = (release / "README.md").read_text()
    assert "xBD" in card and "CC BY-NC-SA 4.0" in card and "1911.09296" in card
    assert "--from-manifest org/xbd" in card
    assert (release / TASK_FOLDER / "manifest.json").read_bytes() == (task_dir / "manifest.json").read_bytes()
    # the release is no task: loading it says to rebuild it first
    with pytest.raises(TaskError, match="manifest-only task release .* rebuild it"):
        load_task(release)


def test_from_manifest_rebuilds_the_task_bit_for_bit(release, task_dir, xbd_root, tmp_path):
    out = tmp_path / "rebuilt"
    argv = ["task", "build", "xbd", "--from-manifest", str(release), "--xbd-root", str(xbd_root), "--out", str(out),
            "--no-progress"]
    assert cli.main(argv) == 0
    assert _files(out) == _files(task_dir)
    for name in _files(task_dir):
        assert filecmp.cmp(task_dir / name, out / name, shallow=False), name
    storm = load_task(out).column("train_real", "source_file") + load_task(out).column(EXTRA_SPLIT, "source_file")
    assert sum("joplin-tornado" in s for s in storm) == 3  # the three real sample tiles, train + extra


def test_tampered_and_missing_tiles_are_refused_by_name(release, xbd_root, tmp_path):
    root = Path(shutil.copytree(xbd_root, tmp_path / "xbd"))
    joplin = sorted((root / "tier3" / "images").glob("joplin-tornado_*_post_disaster.png"))
    pixels = np.asarray(Image.open(joplin[0]).convert("RGB")).copy()
    pixels[0, 0] = 255 - pixels[0, 0]  # one pixel changed
    Image.fromarray(pixels).save(joplin[0])
    joplin[1].unlink()
    with pytest.raises(TaskError) as error:
        rebuild_from_release(release, root, tmp_path / "out", builder="xbd")
    message = str(error.value)
    assert f"differs: tier3/images/{joplin[0].name}" in message
    assert f"missing: tier3/images/{joplin[1].name}" in message
    assert "2 source file(s)" in message
    assert not (tmp_path / "out").exists()


def test_release_paths_and_builder_are_not_trusted(release, xbd_root, tmp_path):
    hostile = Path(shutil.copytree(release, tmp_path / "hostile"))
    data = json.loads((hostile / MANIFEST_ONLY_FILE).read_text())
    data["splits"]["test"][0]["source_file"] = "../../etc/passwd"
    (hostile / MANIFEST_ONLY_FILE).write_text(json.dumps(data))
    with pytest.raises(TaskError, match=r"\.\./\.\./etc/passwd .*not a relative path inside"):
        rebuild_from_release(hostile, xbd_root, tmp_path / "out")
    with pytest.raises(TaskError, match="release of a 'xbd' task, not of a 'imagefolder' task"):
        rebuild_from_release(release, xbd_root, tmp_path / "out", builder="imagefolder")
    with pytest.raises(TaskError, match="not a manifest-only task release"):
        rebuild_from_release(xbd_root, xbd_root, tmp_path / "out")


def test_publish_include_images_warns(task_dir, capsys):
    assert cli.main(["task", "publish", str(task_dir), "--include-images", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "re-hosts the source data" in captured.err and "private or gated" in captured.err
    assert "images included" in captured.out
