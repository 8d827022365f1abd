"""Submissions: the folder format, loading, validation and the leakage gate.

    from benchmark.submissions import load_submission, validate_submission
    report = validate_submission("submissions/team__method", task)   # every problem at once
    report.raise_if_failed()
    sub = load_submission("submissions/team__method")
    refs, targets = sub.image_refs(), sub.targets(task.classes)

See docs/SUBMITTING.md (the participants' guide) and docs/RECORDS.md section 2.
"""

from .format import (
    KINDS,
    SUBMISSION_FIELDS,
    SUBMISSION_SCHEMA_VERSION,
    TRACKS,
    Submission,
    SubmissionImage,
    load_submission,
    parse_submission,
)
from .validate import ValidationReport, validate_submission

__all__ = [
    "KINDS",
    "SUBMISSION_FIELDS",
    "SUBMISSION_SCHEMA_VERSION",
    "TRACKS",
    "Submission",
    "SubmissionImage",
    "ValidationReport",
    "load_submission",
    "parse_submission",
    "validate_submission",
]
