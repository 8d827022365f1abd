"""The `synthbench` console script.

Each stage module owns its subcommands through a `register(subparsers)` function that adds its
parsers and sets `func` (a callable taking the parsed args and returning an exit code). This file
only assembles them and turns user errors (SynthbenchError) into one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .cliargs import positive_int  # noqa: F401 - kept importable from here for existing callers
from .errors import SynthbenchError

#: Every subcommand, in the order of the flow: name -> (the module whose `register` adds it, its
#: one-line help). Only the chosen command's module is imported, so `synthbench --help` and each
#: command's --help stay quick: torch, scikit-learn and datasets load only for commands that use
#: them. tests/test_cli_help.py checks these lines against the modules' own.
COMMANDS: dict[str, tuple[str, str]] = {
    "task": ("benchmark.tasks.cli", "build, verify, inspect and publish task datasets"),
    "inputs": ("benchmark.generators.cli", "the generation kit: export a task's generation inputs"),
    "generate": ("benchmark.generators.cli", "make a submission with a baseline or a generator adapter"),
    "pack": ("benchmark.generators.cli",
             "package a folder of generated images (class sub-folders or a CSV/JSONL listing) as a submission"),
    "validate": ("benchmark.submissions.cli",
                 "check a submission folder (schema, images, counts, leakage gate) against a task"),
    "diagnose": ("benchmark.diagnostics",
                 "fidelity, diversity and copying of a submission's images against train_real (KID, PRDC, Vendi, ...)"),
    "run": ("benchmark.executors.cli", "score a submission: train and evaluate every setting x ratio x seed"),
    "run-all": ("benchmark.executors.cli", "run the grid for every submission in a folder (locally or on Slurm), resuming"),
    "leaderboard": ("leaderboard.cli", "validate the results tree and build or preview the static leaderboard site"),
    "demo": ("benchmark.pipeline", "the main job: the whole flow on the procedural demo task, offline"),
    "schema": ("benchmark.schema", "print a record's JSON Schema (submission, metadata, task, manifest, result)"),
}


#: The modules that contribute subcommands, in the order of the flow.
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def command_in(argv: list[str]) -> str | None:
    """The subcommand `argv` names (its first word that is not an option), if it is one."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(command: str | None = None, *, every_command: bool = False) -> argparse.ArgumentParser:
    """The parser with `command`'s module registered (all of them with `every_command`); every
    other command is a one-line placeholder, enough for `synthbench --help` and for argparse to
    list the choices."""
    parser = argparse.ArgumentParser(
        prog="synthbench",
        description="Do AI-generated images help a classifier recognise real images? "
        "Build tasks, validate and score submissions, publish the leaderboard.",
    )
    parser.add_argument("--version", action="version", version=f"synthbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    chosen = COMMANDS[command][0] if command in COMMANDS else None
    registered: set[str] = set()
    for name, (module_name, help_text) in COMMANDS.items():
        if every_command or module_name == chosen:
            if module_name not in registered:
                importlib.import_module(module_name).register(subparsers)
                registered.add(module_name)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_in(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except SynthbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`synthbench ... | head`): stop quietly, as other command-line tools do;
        # stdout goes to /dev/null so that the interpreter's final flush does not fail again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass  # not a real file descriptor (tests, embedding)
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose pipe closed


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
