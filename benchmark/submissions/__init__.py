"""Submissions: the folder format, loading, validation and the leakage gate.

    from benchmark.submissions import load_submission, validate_submission
    report = validate_submission("submissions/team__method", task)   # every problem at once
    report.raise_if_failed()
    sub = load_submission("submissions/team__method")
    refs, targets = sub.image_refs(), sub.targets(task.classes)

See docs/SUBMITTING.md (the participants' guide) and docs/RECORDS.md section 2.
"""

import lazy_loader

# Members load on first use, so that `import benchmark.submissions` (and the `validate` command's
# parser) imports neither the image decoders nor the leakage gate.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "format": ["KINDS", "SUBMISSION_FIELDS", "SUBMISSION_SCHEMA_VERSION", "TRACKS", "Submission",
                   "SubmissionImage", "load_submission", "parse_submission"],
        "validate": ["ValidationReport", "validate_submission"],
    },
)
