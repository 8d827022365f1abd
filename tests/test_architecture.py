"""The architecture holds: imports run one way through the flow (the import-linter contract in
pyproject.toml, docs/ARCHITECTURE.md), and no function in the product packages is too long to read."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "leaderboard")
MAX_FUNCTION_LINES = 120
#: Functions allowed past MAX_FUNCTION_LINES, each with the reason; remove an entry when it is split.
#: (None today: "path/to/module.py::Class.function": "why it cannot be split".)
LONG_FUNCTION_ALLOWED: dict[str, str] = {}


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the packages and pyproject.toml under `root` (its folder first on sys.path)."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)


def test_the_import_contract_holds():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_every_module_of_the_harness_has_a_place_in_the_layers():
    """A new module must be placed in the contract (pyproject.toml), or it would escape it."""
    layers = _layers()
    placed = {name.strip().strip("()") for layer in layers for name in layer.split("|")}  # (optional)
    modules = {f"benchmark.{p.stem if p.is_file() else p.name}" for p in (ROOT / "benchmark").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert modules - placed == set(), "place these modules in [tool.importlinter] layers"


def _layers() -> list[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the backport import-linter itself uses
        import tomli as tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["id"] == "flow")["layers"]


def test_the_architecture_page_shows_the_contract_s_layers():
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = page[page.index("## The import contract"):]
    drawn = section.split("```")[1].strip().splitlines()
    assert drawn == [layer.replace("(", "").replace(")", "") for layer in _layers()]


def _copy_project(dest: Path) -> Path:
    """The packages' Python files and pyproject.toml, copied to `dest` (nothing else is needed to lint)."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "site", "static",
                                                                                       "templates", "keys"))
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _add_import(module: Path, line: str) -> int:
    """Append `line` to `module`; return its line number."""
    text = module.read_text(encoding="utf-8").rstrip("\n") + "\n"
    module.write_text(text + line + "\n", encoding="utf-8")
    return text.count("\n") + 1


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        # a foundation reaching up to the grid (the kind of cycle the contract exists to stop)
        ("benchmark/paths.py", "from .grid import run_grid  # noqa", "benchmark.paths -> benchmark.grid"),
        # a stage below the grid reaching up to it, from inside a function
        ("benchmark/submissions/validate.py", "def _late():\n    from ..grid import run_grid",
         "benchmark.submissions.validate -> benchmark.grid"),
        # the leaderboard reaching into the protocols
        ("leaderboard/ranking.py", "from benchmark.protocols import get_runner  # noqa",
         "leaderboard.ranking -> benchmark.protocols"),
    ],
)
def test_a_backwards_import_fails_and_names_the_offending_line(tmp_path, module, line, expected):
    project = _copy_project(tmp_path)
    line_number = _add_import(project / module, line) + line.count("\n")
    result = _lint_imports(project)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert f"{expected} (l.{line_number})" in result.stdout, result.stdout


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function, methods and nested functions included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _function_lengths() -> dict[str, int]:
    lengths = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for name, node in _functions(tree):
                lengths[f"{path.relative_to(ROOT).as_posix()}::{name}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_function_is_longer_than_the_limit():
    lengths = _function_lengths()
    too_long = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES and name not in LONG_FUNCTION_ALLOWED}
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): {too_long}"


def test_the_long_function_allow_list_names_only_long_functions():
    lengths = _function_lengths()
    stale = [name for name in LONG_FUNCTION_ALLOWED if lengths.get(name, 0) <= MAX_FUNCTION_LINES]
    assert not stale, f"no longer long (or gone): remove from LONG_FUNCTION_ALLOWED: {stale}"


def test_the_length_check_sees_methods_and_nested_functions():
    tree = ast.parse("class A:\n    def f(self):\n        def g():\n            pass\n        return g\n")
    assert {name: node.end_lineno - node.lineno + 1 for name, node in _functions(tree)} == {"A.f": 4, "A.f.g": 2}
