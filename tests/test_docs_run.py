"""Documentation that runs: every shell and Python block of README.md and docs/*.md runs, in order,
against a small demo task, so a documented command that stops working fails CI.

The docs name the task by one variable, `SYNTHBENCH_TASK` (docs/SUBMITTING.md, section 0): here it
points at a demo task folder this test builds (10 train_real and 4 test images per class). Each doc
runs in one bash session in its own empty folder, as a reader pastes its blocks into one terminal
(exports and `cd` carry over; a Python block runs in that session's folder and environment). The
folder holds `my-images/` (the participant's own generator output that the docs package with
`synthbench pack`, made by the demo task's procedural editor from the generation inputs) and
`my-scenes/` (a folder of class sub-folders, for `task build imagefolder`).

Only the commands in NOT_RUN are left out, each for a reason that holds on a CPU machine with no
network (a GPU, a Slurm cluster, the Hub, the xBD download); SMALLER lists the commands run with
smaller sizes than written. Both lists are checked against the docs (an entry that no longer
matches a command fails), and every `synthbench` command a doc names, run or not, is checked
against the command line's own parser (its subcommands and flags exist).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Every page of the documentation, README first.
DOCS = ("README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")))
TASK_VARIABLE = "SYNTHBENCH_TASK"
#: Placeholders a command that runs may not hold (the task is named by $SYNTHBENCH_TASK).
PLACEHOLDERS = ("ORG/", "<task>", "path/to/")

#: (doc, a piece of the command, why it cannot run here). Everything else runs.
NOT_RUN: tuple[tuple[str, str, str], ...] = (
    # the whole environment and the whole suite: CI runs both itself (and this test is part of the suite)
    ("README.md", "scripts/demo.sh", "installs the environment, then the main job at full size (tests/test_pipeline.py runs it small)"),
    ("README.md", "scripts/test.sh", "installs the environment and runs the whole suite, this test included"),
    ("README.md", "pytest benchmarks/", "the speed suites take tens of minutes"),
    # the xBD download (tens of GB) is not here; the commands that read what it builds go with it
    ("README.md", "task build xbd", "needs the xBD download"),
    ("README.md", "task verify tasks/xbd-disaster6", "needs the xBD task built from the download"),
    ("docs/SUBMITTING.md", "task build xbd", "needs the xBD download"),
    ("docs/SUBMITTING.md", "export SYNTHBENCH_TASK=tasks/xbd-disaster6", "names the xBD task built from the download"),
    ("docs/TASKS.md", "task build xbd", "needs the xBD download"),
    ("docs/TASKS.md", "task verify tasks/xbd-disaster6", "needs the xBD task built from the download"),
    ("docs/TASKS.md", "task info tasks/xbd-disaster6", "needs the xBD task built from the download"),
    # the Hub: publishing needs the maintainers' token; the published task does not exist yet
    ("README.md", "task publish", "uploads to the Hub (the maintainers' token)"),
    ("docs/TASKS.md", "task publish", "uploads to the Hub (the maintainers' token)"),
    ("docs/TASKS.md", "--from-manifest ORG/", "the published release on the Hub, and the xBD download"),
    ("docs/SUBMITTING.md", "export SYNTHBENCH_TASK=ORG/", "the published task's Hub id (not published yet; offline here)"),
    # paid APIs and GPUs
    ("docs/SUBMITTING.md", "export OPENAI_API_KEY", "an API key"),
    ("docs/SUBMITTING.md", "generate openai", "calls the OpenAI API (key, network; tested against a mock server)"),
    ("docs/SUBMITTING.md", "export GEMINI_API_KEY", "an API key"),
    ("docs/SUBMITTING.md", "generate gemini", "calls the Gemini API (key, network; tested against a mock server)"),
    ("docs/SUBMITTING.md", "generate instructpix2pix", "needs a GPU and the pipeline's weights from the Hub"),
    ("docs/SCALE.md", "--device cuda", "needs a GPU and the CLIP weights from the Hub"),
    ("docs/SCALE.md", "pytest benchmarks/test_gpu_bench.py", "needs a GPU"),
    ("docs/SCALE.md", "benchmarks/report.py gpu-bench.json", "reads the GPU suite's output"),
    # Slurm: a cluster (tests/test_slurm.py runs the executor on a one-node test cluster)
    ("docs/SCALE.md", "--executor slurm", "needs a Slurm cluster"),
    ("docs/SCALE.md", "scripts/slurm-up.sh", "installs and starts a Slurm test cluster (root)"),
    ("docs/SCALE.md", "pytest -m slurm", "needs the Slurm test cluster"),
    ("docs/SCALE.md", "scripts/slurm-down.sh", "stops the Slurm test cluster"),
    # a server runs until it is stopped (tests/test_leaderboard_site.py serves and fetches the site)
    ("README.md", "leaderboard serve", "serves until stopped"),
)
#: (doc, a command as written, the same command smaller): the same code on fewer images.
SMALLER: tuple[tuple[str, str, str], ...] = (
    ("docs/SUBMITTING.md", "synthbench task build demo --out tasks/demo",
     "synthbench task build demo --train-per-class 10 --test-per-class 4 --out tasks/demo"),
    ("docs/TASKS.md", "synthbench task build demo --out tasks/demo-disaster6",
     "synthbench task build demo --train-per-class 10 --test-per-class 4 --out tasks/demo-disaster6"),
    ("docs/TASKS.md", "synthbench task build imagefolder my-scenes/",
     "synthbench task build imagefolder --train-per-class 10 --test-per-class 4 --extra-per-class 0 my-scenes/"),
)
#: What a doc's flow ends in: (entry id, the board it builds) for the docs that build a board.
BOARDS = {"README.md": ("myteam__mymethod", "leaderboard/site"), "docs/SUBMITTING.md": ("myteam__edit-xl", "site")}

_FENCE = re.compile(r"^```(?P<lang>[A-Za-z]*)[^\n]*\n(?P<body>.*?)^```", re.S | re.M)
_SHELL = {"bash", "sh", "shell", "console"}


@dataclass
class Block:
    kind: str  # "shell", "python", or "other" (a layout, a record, a command synopsis)
    line: int  # where the block starts in its doc
    code: str

    def commands(self) -> list[str]:
        """The shell block's commands: lines joined at trailing backslashes, comment lines dropped."""
        commands, current = [], ""
        for line in self.code.splitlines():
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            current += line[:-1] + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                commands.append(current)
                current = ""
        return commands + ([current] if current else [])


def doc_blocks(doc: str) -> list[Block]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        lang = match["lang"].lower()
        kind = "shell" if lang in _SHELL else "python" if lang == "python" else "other"
        blocks.append(Block(kind, text.count("\n", 0, match.start()) + 1, match["body"]))
    return blocks


def _not_run_reason(doc: str, command: str) -> str | None:
    return next((why for d, piece, why in NOT_RUN if d == doc and piece in command), None)


def _smaller(doc: str, command: str) -> str:
    for d, written, smaller in SMALLER:
        if d == doc and written in command:
            command = command.replace(written, smaller)
    return command


def session_script(doc: str) -> tuple[str, int]:
    """The bash script that runs `doc`'s blocks in order, and how many commands it runs."""
    parts, ran = [], 0
    for block in doc_blocks(doc):
        if block.kind == "other":
            continue
        parts.append(f"echo '@@ {doc} line {block.line}' >&2")
        if block.kind == "python":
            parts.append(f'"$SYNTHBENCH_DOC_PYTHON" - <<\'SYNTHBENCH_DOC_PY\'\n{block.code}SYNTHBENCH_DOC_PY')
            ran += 1
            continue
        for command in block.commands():
            reason = _not_run_reason(doc, command)
            if reason is None:
                parts.append(_smaller(doc, command))
                ran += 1
            else:
                parts.append(f": not run: {shlex.quote(reason)}")
    return "\n".join(parts) + "\n", ran


def named_synthbench_commands(doc: str) -> list[str]:
    """Every `synthbench ...` command line of a doc's shell blocks and command synopses."""
    named = []
    for block in doc_blocks(doc):
        if block.kind == "python":
            continue
        lines = block.commands() if block.kind == "shell" else block.code.splitlines()
        named += [line for line in lines if re.match(r"\s*(\S*/)?synthbench\s", line)]
    return named


# ----------------------------------------------------------------------------------------------
# Quick checks of the docs themselves
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS)
def test_commands_that_run_name_the_task_by_the_variable(doc):
    for block in doc_blocks(doc):
        runs = [c for c in block.commands() if _not_run_reason(doc, c) is None] if block.kind == "shell" else (
            [block.code] if block.kind == "python" else [])
        for code in runs:
            assert not any(p in code for p in PLACEHOLDERS), (
                f"{doc} line {block.line}: a command that runs holds a placeholder (name the task by "
                f"${TASK_VARIABLE}, or list the command in NOT_RUN with why it cannot run):\n{code}"
            )


@pytest.mark.parametrize("doc, piece, why", NOT_RUN + tuple((d, w, "smaller") for d, w, _ in SMALLER))
def test_every_skip_list_entry_still_matches_a_command(doc, piece, why):
    commands = [c for b in doc_blocks(doc) if b.kind == "shell" for c in b.commands()]
    assert any(piece in c for c in commands), f"{doc} has no command with {piece!r} any more: update the list"


def _parser_of(words: list[str]):
    """The argparse parser of the subcommand `words` name (e.g. ["task", "build", "demo"]), and the
    words that were not subcommands."""
    import argparse

    from benchmark.cli import build_parser

    parser = build_parser(words[0] if words else None)
    rest = list(words)
    while rest:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or rest[0] not in actions[0].choices:
            break
        parser = actions[0].choices[rest.pop(0)]
    return parser, rest


@pytest.mark.parametrize("doc", DOCS)
def test_named_commands_and_flags_exist(doc):
    for line in named_synthbench_commands(doc):
        words = shlex.split(line.split(" #")[0], comments=False)
        words = words[next(i for i, w in enumerate(words) if w.endswith("synthbench")) + 1:]
        positional = [w for w in words if not w.startswith(("-", "[", "<", "$", '"'))]
        parser, _ = _parser_of(positional[:3])
        known = set(parser._option_string_actions)
        flags = {w.strip("[]").split("=")[0] for w in words if w.strip("[").startswith("--")}
        unknown = sorted(flags - known)
        assert not unknown, f"{doc}: `{line.strip()}` names flags its command does not have: {unknown}"


# ----------------------------------------------------------------------------------------------
# Running them
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory):
    """(the demo task folder, the shared feature cache, a folder holding my-images/ and my-scenes/)."""
    from benchmark.cli import main
    from benchmark.generators.common import derived_seed, task_generation_inputs
    from benchmark.tasks import load_task
    from benchmark.tasks.demo import edit_image

    base = tmp_path_factory.mktemp("docs")
    # the same command, sizes and seed as the docs' (smaller) demo build: the same task
    assert main(["task", "build", "demo", "--train-per-class", "10", "--test-per-class", "4",
                 "--out", str(base / "task"), "--cache-dir", str(base / "cache"), "--no-progress"]) == 0
    task = load_task(base / "task")
    for item in task_generation_inputs(task):
        folder = base / "inputs" / "my-images" / item.class_name
        folder.mkdir(parents=True, exist_ok=True)
        edit_image(item.image(), item.class_name, derived_seed(0, "docs", item.image_id)).save(folder / f"{item.image_id}.png")
    for split in ("train_real", "test"):
        for ref, label in zip(task.image_refs(split), task.labels(split)):
            folder = base / "inputs" / "my-scenes" / task.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{ref.name}.png").write_bytes(ref.read_bytes())
    return task.path, base / "cache", base / "inputs"


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_run(doc, demo_workspace, tmp_path):
    import shutil

    script, ran = session_script(doc)
    if not ran:
        pytest.skip(f"{doc} has no command that can run here")
    task_dir, cache, inputs = demo_workspace
    shutil.copytree(inputs, tmp_path, dirs_exist_ok=True)
    env = {
        **os.environ,
        TASK_VARIABLE: str(task_dir),
        "SYNTHBENCH_CACHE": str(cache),
        "SYNTHBENCH_DOC_PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    where = ([line for line in result.stderr.splitlines() if line.startswith("@@ ")] or ["@@ (no block)"])[-1][3:]
    assert result.returncode == 0, (
        f"{where}: a documented command failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    if doc in BOARDS:
        entry, site = BOARDS[doc]
        board = (tmp_path / site / "index.html").read_text(encoding="utf-8")
        assert entry in board, f"{doc}: the board built by the documented commands does not show {entry}"
