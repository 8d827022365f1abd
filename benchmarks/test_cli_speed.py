"""How long `synthbench --help` and each command's --help take in a fresh interpreter (what a user
waits for). Building a parser imports only light modules (tests/test_cli_help.py checks that no
heavy library loads); this suite measures the wall time, the interpreter's start included.

Run: .venv/bin/python -m pytest benchmarks/test_cli_speed.py --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmark.cli import COMMANDS


def _help(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "benchmark.cli", *argv, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: synthbench"), result.stderr


def test_python_start_alone(benchmark):
    """The floor: a fresh interpreter that imports nothing of ours."""
    benchmark.pedantic(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), rounds=5, iterations=1)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(benchmark, command):
    argv = [command] if command else []
    benchmark.pedantic(_help, args=(argv,), rounds=5, iterations=1, warmup_rounds=1)
