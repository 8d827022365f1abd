"""Documentation that runs: every shell and Python block of README.md and docs/SUBMITTING.md runs,
in order, against a small demo task, so a documented command that stops working fails CI.

The docs name the task by one variable, `SYNTHBENCH_TASK` (docs/SUBMITTING.md, section 0); here it
points at a demo task folder. A block preceded by `<!-- not run: reason -->` is skipped (it needs a
GPU, a key, the network or the xBD download); every other block must exit 0. `my-images/`, the
participant's own generator output the docs package with `synthbench pack`, is made here by the
demo task's procedural editor (one edit per generation input).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The docs whose blocks run (in this order, each in its own working folder).
RUN_DOCS = ("README.md", "docs/SUBMITTING.md")
TASK_VARIABLE = "SYNTHBENCH_TASK"
_BLOCK = re.compile(r"(?:<!--\s*not run:\s*(?P<reason>[^>]*?)\s*-->\s*\n)?```(?P<lang>[A-Za-z]*)\n(?P<body>.*?)```", re.S)
_RUNNABLE = {"bash": "shell", "sh": "shell", "shell": "shell", "python": "python"}


def doc_blocks(doc: str) -> list[tuple[str, str, str | None]]:
    """(kind, code, not-run reason or None) of every shell/Python block of `doc`, in order."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    return [
        (_RUNNABLE[m["lang"]], m["body"], m["reason"])
        for m in _BLOCK.finditer(text)
        if m["lang"] in _RUNNABLE
    ]


@pytest.mark.parametrize("doc", RUN_DOCS)
def test_every_block_runs_or_says_why_not(doc):
    blocks = doc_blocks(doc)
    assert blocks, f"{doc}: no shell block found"
    for kind, code, reason in blocks:
        if reason is None:
            # a block that runs names the task only through the variable, never a placeholder id
            assert "ORG/" not in code and "<task>" not in code, f"{doc}: runs a placeholder:\n{code}"
        else:
            assert len(reason) > 10, f"{doc}: a block marked not run needs a reason:\n{code}"


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory):
    """(the demo task folder, the shared feature cache, a my-images/ folder to copy into each workspace)."""
    from benchmark.generators.common import derived_seed, task_generation_inputs
    from benchmark.tasks import build_demo_task, load_task
    from benchmark.tasks.demo import edit_image

    base = tmp_path_factory.mktemp("docs")
    task = load_task(build_demo_task(base / "task", train_per_class=10, test_per_class=4))
    images = base / "my-images"
    for item in task_generation_inputs(task):
        (images / item.class_name).mkdir(parents=True, exist_ok=True)
        edit_image(item.image(), item.class_name, derived_seed(0, "docs", item.image_id)).save(
            images / item.class_name / f"{item.image_id}.png")
    return task.path, base / "cache", images


def _run_block(kind: str, code: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    command = ["bash", "-euo", "pipefail", "-c", code] if kind == "shell" else [sys.executable, "-c", code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("doc, entry, site", [
    ("README.md", "myteam__mymethod", "leaderboard/site"),
    ("docs/SUBMITTING.md", "myteam__edit-xl", "site"),
])
def test_documented_flow_runs_and_ends_in_a_board_with_the_entry(doc, entry, site, demo_workspace, tmp_path):
    import shutil

    task_dir, cache, images = demo_workspace
    shutil.copytree(images, tmp_path / "my-images")
    env = {
        **os.environ,
        TASK_VARIABLE: str(task_dir),
        "SYNTHBENCH_CACHE": str(cache),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }
    ran = 0
    for kind, code, reason in doc_blocks(doc):
        if reason is not None:
            continue
        result = _run_block(kind, code, tmp_path, env)
        assert result.returncode == 0, f"{doc}: this block failed ({result.returncode}):\n{code}\n{result.stdout}\n{result.stderr}"
        ran += 1
    assert ran >= 2
    board = (tmp_path / site / "index.html").read_text(encoding="utf-8")
    assert entry in board, f"{doc}: the board built by the documented commands does not show {entry}"
