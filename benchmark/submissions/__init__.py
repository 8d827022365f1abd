"""Submissions: the folder format, loading, validation and the leakage gate.

    from benchmark.submissions import load_submission, validate_submission
    report = validate_submission("submissions/team__method", task)   # every problem at once
    report.raise_if_failed()
    sub = load_submission("submissions/team__method")
    refs, targets = sub.image_refs(), sub.targets(task.classes)

See docs/SUBMITTING.md (the participants' guide) and docs/RECORDS.md section 2.
"""

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


def __getattr__(name: str):
    # Loaded on first use, so that `import benchmark.submissions` (and the `validate` command's
    # parser) imports neither the image decoders nor the leakage gate.
    if name in ("ValidationReport", "validate_submission"):
        from . import validate as module
    elif name in __all__:
        from . import format as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
