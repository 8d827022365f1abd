"""argparse helpers shared by every stage's subcommands (plain Python: building a parser imports
nothing heavy)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type of the count flags: a clear message for "abc" and for 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


__all__ = ["positive_int"]
