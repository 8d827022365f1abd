"""One board = one comparability identity (leaderboard.identity): records scored at another input size
(or preprocessing, weights, protocol parameters) never share a table or a Δ with the main board's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leaderboard.identity import split_by_identity
from leaderboard.site import BOARDS_DIR, build_site
from tests.boards import EXAMPLE_PLANS, make_example_tree
from leaderboard.tree import validate_tree


def _set_input_size(folder: Path, size: int) -> None:
    for path in (folder / "results").glob("*.json"):
        record = json.loads(path.read_text())
        record["backbone"]["input_size"] = size
        path.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def mixed_tree(tmp_path_factory) -> Path:
    root = make_example_tree(tmp_path_factory.mktemp("mixed") / "submissions", EXAMPLE_PLANS, seeds=(0,), per_class=10)
    _set_input_size(root / "team-b__noisy", 96)  # the others stay at 224 px
    return root


def test_records_at_224_and_96_px_form_two_boards(mixed_tree):
    boards = split_by_identity(validate_tree(mixed_tree))
    assert len(boards) == 2
    main, other = boards
    assert main.is_main and not other.is_main
    assert other.differs == ["input size 96 px (main board: 224 px)"]
    assert "team-b__noisy" not in {s.id for s in main.tree.submissions}
    assert [s.id for s in other.tree.submissions] == ["team-b__noisy"]
    sizes = {r.input_size for r in other.tree.records()}
    assert sizes == {96} and {r.input_size for r in main.tree.records()} == {224}


def test_each_board_is_published_with_its_own_real_only_row_and_a_link_between_them(mixed_tree, tmp_path):
    site = build_site(mixed_tree, tmp_path / "site")
    main = json.loads((site / "leaderboard.json").read_text())
    boards = list((site / BOARDS_DIR).iterdir())
    assert [b.name for b in boards] == ["input-size-96-px"]
    other = json.loads((boards[0] / "leaderboard.json").read_text())
    assert main["board"] == {"main": True, "differs": []}
    assert main["other_boards"] == [{"title": "input size 96 px (main board: 224 px)",
                                     "differs": ["input size 96 px (main board: 224 px)"], "path": "boards/input-size-96-px/"}]
    assert other["board"]["main"] is False and other["other_boards"][0]["path"] == ""

    def names(board):
        view = next(v for v in board["views"] if v["board"] == "augment" and v["headline"])
        return [e["name"] for e in view["entries"]]

    assert "team-b__noisy" not in names(main) and "real-only" in names(main)
    assert names(other)[0] == "real-only" or "real-only" in names(other)
    assert "team-b__noisy" in names(other) and "team-a__editor" not in names(other)
    index = (site / "index.html").read_text()
    assert f'href="{BOARDS_DIR}/input-size-96-px/index.html"' in index
    other_index = (boards[0] / "index.html").read_text()
    assert "input size 96 px (main board: 224 px)" in other_index and 'href="../../index.html"' in other_index


def test_one_identity_is_one_board(tmp_path):
    root = make_example_tree(tmp_path / "submissions", EXAMPLE_PLANS[:2], seeds=(0,), per_class=10)
    assert len(split_by_identity(validate_tree(root))) == 1


def _set_field(folder: Path, key: str, value) -> None:
    for path in (folder / "results").glob("*.json"):
        record = json.loads(path.read_text())
        record[key] = value
        path.write_text(json.dumps(record))


def test_records_of_another_scoring_version_form_their_own_board(tmp_path):
    root = make_example_tree(tmp_path / "submissions", EXAMPLE_PLANS, seeds=(0,), per_class=10)
    _set_field(root / "team-a__editor", "scoring_version", 1)  # scored by an older metric/bootstrap code
    _set_field(root / "team-b__noisy", "scoring_version", 2)  # the field as written today: same as no field (schema 3)
    boards = split_by_identity(validate_tree(root))
    assert [b.differs for b in boards] == [[], ["scoring version 1 (main board: 2)"]]
    assert boards[1].slug == "scoring-version-1"
    assert [s.id for s in boards[1].tree.submissions] == ["team-a__editor"]
    assert "team-b__noisy" in {s.id for s in boards[0].tree.submissions}
    assert "team-a__editor" not in {s.id for s in boards[0].tree.submissions}


def test_a_record_of_another_test_split_of_the_same_task_is_refused_naming_the_field(tmp_path):
    from leaderboard.tree import load_task_truths

    root = make_example_tree(tmp_path / "a" / "submissions", EXAMPLE_PLANS[1:], seeds=(0,), per_class=10)
    other = make_example_tree(tmp_path / "b" / "submissions", EXAMPLE_PLANS[:1], seeds=(0,), per_class=12)
    import shutil

    shutil.copytree(other / "team-a__editor", root / "team-a__editor")  # same task name, 12 test images per class
    tree = validate_tree(root, tasks=load_task_truths([tmp_path / "a" / "task", tmp_path / "b" / "task"]))
    refused = [p for p in tree.problems if "team-a__editor" in p.path]
    assert len(refused) == 1 and "test_manifest_hash" in refused[0].reason and "same test split" in refused[0].reason
    assert all(not s.records for s in tree.submissions if s.id == "team-a__editor")
    assert len(split_by_identity(tree)) == 1


def _set_precision(folder: Path, precision: str) -> None:
    for path in (folder / "results").glob("*.json"):
        record = json.loads(path.read_text())
        record["backbone"]["precision"] = precision
        path.write_text(json.dumps(record))


def test_records_of_bf16_features_form_their_own_board(tmp_path):
    root = make_example_tree(tmp_path / "submissions", EXAMPLE_PLANS, seeds=(0,), per_class=10)
    for folder in root.iterdir():
        if (folder / "results").is_dir():
            _set_precision(folder, "fp32")
    _set_precision(root / "team-a__editor", "bf16")  # scored on a GPU
    boards = split_by_identity(validate_tree(root))
    assert [b.differs for b in boards] == [[], ["feature precision bf16 (main board: fp32)"]]
    assert [s.id for s in boards[1].tree.submissions] == ["team-a__editor"]
