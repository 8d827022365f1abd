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
from .errors import SynthbenchError

#: The modules that contribute subcommands, in the order of the flow.
COMMAND_MODULES = (
    "benchmark.tasks.cli",  # synthbench task build|verify|info|publish
    "benchmark.generators.cli",  # synthbench inputs export, synthbench generate ...
    "benchmark.submissions.cli",  # synthbench validate
    "benchmark.diagnostics",  # synthbench diagnose
    "benchmark.grid",  # synthbench run
    "benchmark.executors",  # synthbench run-all (local or Slurm)
    "leaderboard.cli",  # synthbench leaderboard build|serve|validate
    "benchmark.pipeline",  # synthbench demo (the main job)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthbench",
        description="Do AI-generated images help a classifier recognise real images? "
        "Build tasks, validate and score submissions, publish the leaderboard.",
    )
    parser.add_argument("--version", action="version", version=f"synthbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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


def positive_int(text: str) -> int:
    """argparse type of the count flags: a clear message for "abc" and for 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
