"""The results-tree validation a maintainer's CI runs: each broken record gets its own message naming its file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from leaderboard import LeaderboardError, validate_tree
from tests.boards import copy_tree, EXAMPLE_PLANS, make_example_tree, make_record

GOOD_ID = "team-a__editor"
OTHER_ID = "baseline__classic"
RECORD = "efficientnet-lite0__linear-probe.json"


@pytest.fixture(scope="module")
def good_tree(tmp_path_factory) -> Path:
    plans = tuple(p for p in EXAMPLE_PLANS if p.submission_id in (GOOD_ID, OTHER_ID))
    return make_example_tree(tmp_path_factory.mktemp("good") / "submissions", plans, seeds=(0, 1), per_class=10)


@pytest.fixture()
def tree(good_tree, tmp_path) -> Path:
    target = tmp_path / "submissions"
    copy_tree(good_tree, target)
    return target


def _record_path(root: Path, submission_id: str = GOOD_ID, name: str = RECORD) -> Path:
    return root / submission_id / "results" / name


def _edit_record(root: Path, edit, submission_id: str = GOOD_ID) -> Path:
    path = _record_path(root, submission_id)
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    return path


def test_the_constructed_tree_is_valid(good_tree):
    tree = validate_tree(good_tree)
    assert tree.problems == []
    assert [s.id for s in tree.submissions] == [OTHER_ID, GOOD_ID]
    assert tree.task["name"] == "demo-constructed" and tree.is_demo
    assert len(list(tree.records())) == 2


def test_the_constructed_summary_is_the_harness_summary(good_tree):
    """tests.boards builds summaries as benchmark.grid.finalise does (ddof 1, two-level CIs)."""
    import copy

    from benchmark.grid import finalise

    record = json.loads(_record_path(good_tree).read_text())
    harness = finalise(copy.deepcopy(record))["summary"]
    for setting, entry in record["summary"].items():
        for key, value in entry.items():
            assert harness[setting][key] == pytest.approx(value, abs=1e-12), (setting, key)
    mixed = [r["metrics"]["macro_f1"] for r in record["runs"] if r["setting"] == "mixed@1"]
    assert np.std(mixed) > 0 and record["summary"]["mixed@1"]["macro_f1_std"] == pytest.approx(np.std(mixed, ddof=1))


def _missing_yaml(root):
    (root / GOOD_ID / "submission.yaml").unlink()
    return root / GOOD_ID / "submission.yaml", "missing"


def _yaml_id_differs(root):
    path = root / GOOD_ID / "submission.yaml"
    meta = yaml.safe_load(path.read_text())
    meta["id"] = "someone-else"
    path.write_text(yaml.safe_dump(meta))
    return path, "does not match its folder name"


def _record_id_differs(root):
    return _edit_record(root, lambda r: r["submission"].update(id=OTHER_ID)), "submission.id 'baseline__classic' does not match its folder"


def _bad_file_name(root):
    path = _record_path(root)
    target = path.with_name("efficientnet-lite0-linear-probe.json")
    path.rename(target)
    return target, "file name must be <backbone>__<protocol>.json"


def _backbone_differs(root):
    path = _record_path(root)
    target = path.with_name("clip-vit-b16__linear-probe.json")
    path.rename(target)
    return target, "backbone.name 'efficientnet-lite0' does not match the file name's 'clip-vit-b16'"


def _protocol_differs(root):
    path = _record_path(root)
    target = path.with_name("efficientnet-lite0__fine-tune.json")
    path.rename(target)
    return target, "protocol.name 'linear-probe' does not match the file name's 'fine-tune'"


def _unknown_schema(root):
    return _edit_record(root, lambda r: r.update(schema_version=99)), "schema_version: unknown version 99"


def _not_json(root):
    path = _record_path(root)
    path.write_text("{ not json")
    return path, "not valid JSON"


def _duplicate_run(root):
    return _edit_record(root, lambda r: r["runs"].append(dict(r["runs"][0]))), "duplicate run"


def _tampered_metric(root):
    def edit(record):
        run = next(run for run in record["runs"] if run["setting"] == "mixed@2")
        run["metrics"]["macro_f1"] = 0.99

    return _edit_record(root, edit), "metrics.macro_f1: is 0.99 but the predictions give"


def _other_revision(root):
    return _edit_record(root, lambda r: r["task"].update(revision="abc123")), "all results of one board must be on the same task revision"


def _other_test_split(root):
    return _edit_record(root, lambda r: r["task"].update(test_manifest_hash="f" * 64)), "test_manifest_hash ffffffffffff"


def _short_predictions(root):
    def edit(record):
        record["runs"][1]["predictions"] = record["runs"][1]["predictions"][:-1]

    return _edit_record(root, edit), "has 59 predictions for test.n = 60"


def _unexpected_file(root):
    path = root / GOOD_ID / "results" / "notes.txt"
    path.write_text("hello")
    return path, "unexpected file inside results/"


def _content_hash_of_another_submission(root):
    content_hash = json.loads(_record_path(root, OTHER_ID).read_text())["submission"]["content_hash"]
    path = _edit_record(root, lambda r: r["submission"].update(content_hash=content_hash))
    return path, "does not match the submission's files"


def _unpaired_run(root):
    # A complete, schema-valid record (summary included) whose real run of seed 1 is missing.
    path = _record_path(root)
    record = json.loads(path.read_text())
    runs = {(r["setting"], r["seed"]): np.asarray(r["predictions"]) for r in record["runs"] if (r["setting"], r["seed"]) != ("real", 1)}
    rewritten = make_record(submission_id=GOOD_ID, labels=np.asarray(record["test"]["labels"]), runs=runs,
                            content_hash=record["submission"]["content_hash"])
    path.write_text(json.dumps(rewritten))
    return path, "no real run with seed 1 to pair the difference of synthetic@1, synthetic@2"


def _bad_folder_name(root):
    (root / GOOD_ID).rename(root / "team a")
    return root / "team a", "not a valid submission id"


def _track_differs(root):
    return _edit_record(root, lambda r: r["submission"].update(track="open")), "submission.track 'open' differs"


BREAKERS = [
    _missing_yaml, _yaml_id_differs, _record_id_differs, _bad_file_name, _backbone_differs, _protocol_differs,
    _unknown_schema, _not_json, _duplicate_run, _tampered_metric, _other_revision, _other_test_split,
    _short_predictions, _unexpected_file, _content_hash_of_another_submission, _unpaired_run, _bad_folder_name, _track_differs,
]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__.strip("_"))
def test_each_broken_record_is_named_with_its_problem(tree, breaker):
    path, message = breaker(tree)
    problems = validate_tree(tree).problems
    assert len(problems) == 1, problems
    assert str(path) in str(problems[0])
    assert message in str(problems[0])


def test_every_problem_is_reported_at_once_and_nothing_is_published(tree, tmp_path):
    from leaderboard.site import build_site

    expected = [breaker(tree) for breaker in (_missing_yaml, _tampered_metric, _unexpected_file)]
    duplicated = _edit_record(tree, lambda r: r["runs"].append(dict(r["runs"][0])), submission_id=OTHER_ID)
    expected.append((duplicated, "duplicate run"))
    problems = validate_tree(tree).problems
    assert len(problems) == 4
    with pytest.raises(LeaderboardError) as raised:
        build_site(tree, tmp_path / "site", strict=True)
    for path, message in expected:
        assert str(path) in str(raised.value) and message in str(raised.value)
    assert not (tmp_path / "site").exists()


def test_a_missing_submissions_folder_is_an_error(tmp_path):
    with pytest.raises(LeaderboardError, match="submissions folder not found"):
        validate_tree(tmp_path / "nowhere")


def test_submissions_without_results_are_valid_and_pending(tree):
    shutil.rmtree(tree / GOOD_ID / "results")
    checked = validate_tree(tree)
    assert checked.problems == []
    assert checked.submission(GOOD_ID).records == {}
