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


def non_negative_int(text: str) -> int:
    """argparse type of the count flags where 0 means "none"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


__all__ = ["non_negative_int", "positive_int"]
