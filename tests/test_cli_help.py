"""`synthbench --help` and the participant's commands' --help import no heavy library: the parser
registers only the chosen command's module (benchmark.cli.COMMANDS)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmark.cli import COMMANDS, build_parser, main

HEAVY = ("torch", "sklearn", "pandas", "datasets", "scipy", "open_clip", "transformers", "openai", "google.genai")
#: Commands whose modules import nothing heavy to build their parser (run, task, leaderboard and
#: diagnose live in modules that import torch, datasets or scikit-learn at the top).
LIGHT_COMMANDS = ("inputs", "generate", "pack", "validate", "run-all", "demo")


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
