"""The malformed-submission corpus: each case gets its own precise message and a non-zero exit
through the real CLI, and validation leaves the folder exactly as it was."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.submissions import validate_submission
from benchmark.tasks import load_task
from benchmark.tasks.demo import build_demo_task

from .malformed.fixtures import task, valid_base  # noqa: F401 (fixtures)
from .malformed import MALFORMED, read_rows, write_rows, write_valid_submission


def tree_state(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder` (not following symlinks) with its type, size, mtime and bytes."""
    state = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(dirpath, name)
            info = path.lstat()
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else os.readlink(path) if path.is_symlink() else None
            state[path.relative_to(folder).as_posix()] = (info.st_mode, info.st_size, info.st_mtime_ns, content)
    return state


def test_base_submission_is_valid(task, valid_base, capsys):
    # The corpus mutates this base: each case must fail only because of its mutation.
    report = validate_submission(valid_base, task, check_leakage=False)
    assert report.problems == []
    assert report.counts == dict.fromkeys(task.classes, 100)
    assert report.supported_ratios == [1]
    assert any("400 images per class are needed to be ranked" in w for w in report.warnings)
    assert main(["validate", str(valid_base), "--task", str(task.path), "--no-leakage"]) == 3
    assert "=> OK" in capsys.readouterr().out


def test_corpus_is_large_and_names_are_unique():
    assert len(MALFORMED) >= 25
    assert len({case.name for case in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize("case", MALFORMED, ids=[case.name for case in MALFORMED])
def test_malformed_submission(case, task, valid_base, tmp_path, capsys):
    folder = tmp_path / "tester__noise"
    shutil.copytree(valid_base, folder, symlinks=True)
    case.mutate(folder, task)
    before = tree_state(folder)

    code = main(["validate", str(folder), "--task", str(task.path), "--no-leakage", "--json"])
    report = json.loads(capsys.readouterr().out)

    assert code == 1, report
    assert not report["ok"]
    matching = [p for p in report["problems"] if re.search(case.expected, p)]
    assert matching, f"no problem matches {case.expected!r}: {report['problems']}"
    assert tree_state(folder) == before, "validation changed the submission folder"


def test_human_readable_report_lists_every_problem(task, valid_base, tmp_path, capsys):
    folder = tmp_path / "tester__noise"
    shutil.copytree(valid_base, folder)
    by_name = {case.name: case for case in MALFORMED}
    # Five problems on five different rows / files, plus the count they cause (row 1's class is
    # unknown, so the first class is one image short).
    chosen = ("bad-track", "unknown-class", "zero-byte-file", "text-named-png", "truncated-png")
    for name in chosen:
        by_name[name].mutate(folder, task)
    code = main(["validate", str(folder), "--task", str(task.path), "--no-leakage"])
    out = capsys.readouterr().out
    assert code == 1
    for name in chosen:
        assert re.search(by_name[name].expected, out), name
    assert f"problem: class '{task.classes[0]}' has 99 images; at least 100 are needed" in out
    assert out.count("  problem: ") == 6
    assert "=> FAILED (6 problem(s))" in out


def test_counts_follow_the_tasks_own_real_images_per_class(tmp_path_factory, tmp_path):
    # The grid's rule: ratio 1:k draws k x the task's train_real count of each class.
    small = load_task(build_demo_task(tmp_path_factory.mktemp("small") / "demo", train_per_class=4, test_per_class=1, image_size=32))
    assert set(small.class_counts("train_real").values()) == {4}
    folder = write_valid_submission(tmp_path / "tester__noise", small.classes, small.name, per_class=12)
    report = validate_submission(folder, small, check_leakage=False)
    assert report.problems == [] and report.supported_ratios == [1, 2, 3] and not report.rankable
    assert any(w.startswith("16 images per class are needed to be ranked (ratio 1:4") for w in report.warnings), report.warnings

    rows = read_rows(folder)
    first = small.classes[0]
    write_rows(folder, [r for r in rows if r["label"] != first] + [r for r in rows if r["label"] == first][:3])
    report = validate_submission(folder, small, check_leakage=False)
    assert report.supported_ratios == []
    assert report.problems == [f"class '{first}' has 3 images; at least 4 are needed (ratio 1:1: as many as the task's train_real images of the class)"]

    rankable = write_valid_submission(tmp_path / "tester__more", small.classes, small.name, per_class=16, seed=1)
    report = validate_submission(rankable, small, check_leakage=False)
    assert report.problems == [] and report.supported_ratios == [1, 2, 3, 4] and report.rankable
    assert not any("ranked" in w for w in report.warnings)
