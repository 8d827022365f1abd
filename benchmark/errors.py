"""One exception family for every error a user can cause.

The CLI prints `error: <message>` for these and exits non-zero; anything else is a bug and keeps
its traceback. Messages name the file (or class, or setting) and the problem.
"""


class SynthbenchError(Exception):
    """A user-facing error: bad input, missing file, inconsistent record."""

    exit_code = 2


class TaskError(SynthbenchError):
    """A task folder or a raw dataset that cannot be built, loaded or verified."""


class SubmissionError(SynthbenchError):
    """A submission that is malformed or fails validation."""


class HarnessError(SynthbenchError):
    """A run that cannot be carried out (unknown backbone, missing weights, bad checkpoint...)."""


class ResultsError(SynthbenchError):
    """A result record that is malformed or inconsistent with its board."""
