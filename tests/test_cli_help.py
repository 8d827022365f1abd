"""`synthbench --help` and every subcommand's --help print their usage and import no heavy library:
the parser registers only the chosen command's module (benchmark.cli.COMMANDS), and those modules
import torch, scikit-learn, pandas and datasets inside the commands, never to build a parser.
(How long --help takes is measured in benchmarks/test_cli_speed.py.)"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from benchmark.cli import COMMANDS, build_parser, main

HEAVY = ("torch", "sklearn", "pandas", "datasets", "scipy", "open_clip", "transformers", "openai", "google.genai")
#: Commands whose modules import nothing heavy to build their parser: all of them.
LIGHT_COMMANDS = tuple(COMMANDS)


def _heavy_modules_after(code: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has loaded after running `code`."""
    probe = f"""
import contextlib, io, json, sys
with contextlib.redirect_stdout(io.StringIO()):
    try:
        {code}
    except SystemExit:
        pass
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_top_level_help_imports_no_heavy_library():
    assert _heavy_modules_after("import benchmark.cli; benchmark.cli.build_parser()") == []
    assert _heavy_modules_after("import benchmark.cli; benchmark.cli.main(['--help'])") == []


@pytest.mark.parametrize("command", LIGHT_COMMANDS)
def test_participant_commands_help_imports_no_heavy_library(command):
    assert _heavy_modules_after(f"import benchmark.cli; benchmark.cli.main([{command!r}, '--help'])") == []


def test_generator_help_imports_no_heavy_library():
    for generator in ("classic", "openai", "gemini", "instructpix2pix"):
        code = f"import benchmark.cli; benchmark.cli.main(['generate', {generator!r}, '--help'])"
        assert _heavy_modules_after(code) == [], generator


def test_the_command_table_matches_the_modules(capsys):
    full = build_parser(every_command=True)
    subcommands = next(a for a in full._actions if a.__class__.__name__ == "_SubParsersAction")
    registered = {action.dest: action.help for action in subcommands._choices_actions}
    assert registered == {name: help_text for name, (_, help_text) in COMMANDS.items()}
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in COMMANDS)


def test_options_before_the_command_still_find_it(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["-v", "pack", "--help"])
    assert exc.value.code == 0 and "--listing" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2 and "invalid choice: 'no-such-command'" in capsys.readouterr().err


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every (sub)command path of `parser`: ("task",), ("task", "build"), ("task", "build", "xbd"), ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _command_paths(sub, prefix + (name,))


def _help_in_fresh_interpreter(paths: list[tuple[str, ...]]) -> dict:
    """Run `synthbench PATH --help` for each path in one fresh interpreter: each one's exit status
    and usage line, and the HEAVY modules loaded at the end."""
    probe = f"""
import contextlib, io, json, sys
import benchmark.cli
shown = {{}}
for path in {paths!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            benchmark.cli.main(list(path) + ["--help"])
            code = None
        except SystemExit as exc:
            code = exc.code
    shown[" ".join(path)] = [code, out.getvalue().splitlines()[0] if out.getvalue() else ""]
print(json.dumps({{"shown": shown, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_help_prints_its_usage_and_imports_no_heavy_library(command):
    paths = [path for path in _command_paths(build_parser(every_command=True)) if path[0] == command]
    assert paths and paths[0] == (command,)
    found = _help_in_fresh_interpreter(paths)
    for path in paths:
        code, usage = found["shown"][" ".join(path)]
        assert code == 0 and usage.startswith(f"usage: synthbench {' '.join(path)}"), (path, code, usage)
    assert found["heavy"] == [], f"{command}: building its parsers imported {found['heavy']}"


def test_the_command_paths_include_the_nested_subcommands():
    paths = set(_command_paths(build_parser(every_command=True)))
    assert {("task", "build", "demo"), ("leaderboard", "audit"), ("generate", "classic"), ("run",)} <= paths
