"""The repository's own entries: the shipped baselines as harness-made recipes (kind recipe), and the
board built from submissions/ before the official run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from benchmark.errors import SynthbenchError
from benchmark.generators.baselines import BASELINES
from benchmark.submissions.format import parse_submission
from benchmark.generators.recipe import regenerate, task_key
from leaderboard.site import build_site
from tests.boards import write_constructed_task

REPO_SUBMISSIONS = Path(__file__).resolve().parents[1] / "submissions"


def test_every_shipped_baseline_is_a_valid_recipe_entry():
    folders = sorted(p for p in REPO_SUBMISSIONS.iterdir() if p.is_dir())
    assert [p.name for p in folders] == sorted(f"baseline__{name}" for name in BASELINES)
    for folder in folders:
        submission, problems = parse_submission(folder)
        assert problems.errors == [], folder
        assert submission.kind == "recipe" and submission.baseline == folder.name.split("__")[1]
        assert sorted(p.name for p in folder.iterdir()) == ["submission.yaml"]  # no images committed


def test_the_repository_board_lists_every_entry_as_awaiting_the_official_run(tmp_path):
    site = build_site(REPO_SUBMISSIONS, tmp_path / "site", tasks=[])
    index = (site / "index.html").read_text()
    assert 'id="baselines-missing"' in index
    for name in BASELINES:
        assert f'href="submissions/baseline__{name}/index.html"' in index
        page = (site / "submissions" / f"baseline__{name}" / "index.html").read_text()
        assert "awaits the official run" in page and "multiplier 4, seed 0" in page


def _recipe(tmp_path: Path, name: str, pins: dict) -> Path:
    folder = tmp_path / f"baseline__{name}"
    folder.mkdir(parents=True)
    meta = yaml.safe_load((REPO_SUBMISSIONS / f"baseline__{name}" / "submission.yaml").read_text())
    meta["recipe"] = {"multiplier": 1, "seed": 0, "content_hashes": pins}
    (folder / "submission.yaml").write_text(yaml.safe_dump(meta))
    return folder


def test_a_recipe_regenerates_the_same_images_and_refuses_a_regeneration_that_differs(tmp_path):
    from benchmark.tasks import load_task

    write_constructed_task(tmp_path / "task", 2)
    task = load_task(tmp_path / "task")
    first = regenerate(_recipe(tmp_path / "a", "mixup", {}), task, tmp_path / "made-a")
    pinned = _recipe(tmp_path / "b", "mixup", {task_key(task): first.content_hash})
    assert regenerate(pinned, task, tmp_path / "made-b").content_hash == first.content_hash  # deterministic
    wrong = _recipe(tmp_path / "c", "mixup", {task_key(task): "0" * 64})
    with pytest.raises(SynthbenchError, match="regeneration differs"):
        regenerate(wrong, task, tmp_path / "made-c")


@pytest.mark.parametrize("change, message", [
    ({"recipe": {"multiplier": 0, "seed": 0}}, "recipe.multiplier"),
    ({"recipe": None}, "needs a field 'recipe'"),
    ({"recipe": {"multiplier": 4, "seed": 0, "content_hashes": {"task@1": "abc"}}}, "recipe.content_hashes"),
    ({"kind": "images"}, "only allowed with kind recipe"),
    ({"paper": "javascript:alert(1)"}, "field 'paper' must be an https:// link"),
    ({"citation": "not bibtex"}, "BibTeX"),
])
def test_bad_recipe_and_follow_up_fields_are_refused_by_name(tmp_path, change, message):
    folder = tmp_path / "baseline__classic"
    shutil.copytree(REPO_SUBMISSIONS / "baseline__classic", folder)
    meta = yaml.safe_load((folder / "submission.yaml").read_text())
    meta.update(change)
    (folder / "submission.yaml").write_text(yaml.safe_dump(meta))
    _, problems = parse_submission(folder)
    assert any(message in error for error in problems.errors), problems.errors


@pytest.mark.parametrize("pin_matches", [True, False])
def test_the_board_shows_a_recipe_record_only_when_its_hash_is_the_pinned_one(tmp_path, pin_matches):
    import json

    from tests.boards import EXAMPLE_PLANS, make_example_tree
    from leaderboard.tree import validate_tree

    root = make_example_tree(tmp_path / "submissions", EXAMPLE_PLANS, seeds=(0,), per_class=5)
    folder = root / "baseline__classic"
    record_path = next((folder / "results").glob("*.json"))
    record = json.loads(record_path.read_text())
    record["submission"]["track"] = "open"  # a baseline's track (the constructed plan says generated)
    record_path.write_text(json.dumps(record))
    for path in folder.iterdir():  # a recipe folder: submission.yaml and the official run's results only
        if path.name != "results":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    meta = yaml.safe_load((REPO_SUBMISSIONS / "baseline__classic" / "submission.yaml").read_text())
    key = f"{record['task']['name']}@{record['task']['revision']}"
    meta["task"] = {"name": record["task"]["name"], "revision": record["task"]["revision"]}
    meta["recipe"]["content_hashes"] = {key: record["submission"]["content_hash"] if pin_matches else "f" * 64}
    (folder / "submission.yaml").write_text(yaml.safe_dump(meta))
    tree = validate_tree(root)
    shown = {s.id for s in tree.submissions if s.records}
    assert ("baseline__classic" in shown) == pin_matches
    reasons = [p.reason for p in tree.problems if "baseline__classic" in p.path]
    assert (reasons == []) == pin_matches
    if not pin_matches:
        assert "not the one its recipe pins" in reasons[0]


def test_run_scores_a_recipe_entry_from_images_it_regenerates(tmp_path, monkeypatch):
    """`synthbench run` on a shipped baseline: the images are made from the task into the cache (never
    into the entry, which keeps only its submission.yaml) and the record lands in the entry's results/."""
    from benchmark.cli import main
    from benchmark.results import load_result
    from benchmark.tasks import build_demo_task, load_task

    cache = tmp_path / "cache"
    monkeypatch.setenv("SYNTHBENCH_CACHE", str(cache))  # the demo's deduplication encodes into it
    task = load_task(build_demo_task(tmp_path / "task", train_per_class=4, test_per_class=2, image_size=32))
    entry = _recipe(tmp_path / "entries", "duplicate", {})
    meta = yaml.safe_load((entry / "submission.yaml").read_text())
    meta["task"]["name"] = task.name  # a recipe names the task it is an entry of
    (entry / "submission.yaml").write_text(yaml.safe_dump(meta))
    code = main(["run", "--task", str(task.path), "--submission", str(entry), "--seed-list", "0",
                 "--settings", "real,mixed@1", "--cache-dir", str(cache), "--device", "cpu",
                 "--image-size", "32", "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in entry.iterdir()) == ["results", "submission.yaml"]
    [written] = list((entry / "results").glob("*.json"))
    record = load_result(written)
    made = regenerate(entry, task, tmp_path / "again")
    assert record["submission"]["id"] == entry.name
    assert record["submission"]["content_hash"] == made.content_hash  # the regenerated images were scored
    assert (cache / "recipes" / task_key(task) / entry.name / "metadata.jsonl").is_file()
    assert {r["setting"] for r in record["runs"]} == {"real", "mixed@1"}
