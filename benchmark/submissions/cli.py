"""`synthbench validate PATH --task T`: check a submission and report every problem at once."""

from __future__ import annotations

import argparse
import json
import sys

#: Exit statuses: 0 fit to be scored; 1 problems found; 3 no problem found but the leakage gate
#: was skipped (--no-leakage), so the submission is not known to be fit.
EXIT_PROBLEMS = 1
EXIT_LEAKAGE_SKIPPED = 3


def _handle(args: argparse.Namespace) -> int:
    import time

    from ..tasks import load_task
    from .validate import validate_submission

    started = time.perf_counter()
    task = load_task(args.task, revision=args.revision)
    report = validate_submission(
        args.path, task, check_leakage=not args.no_leakage, cache=args.cache_dir,
        device=args.device, image_size=args.image_size, progress=not args.json and sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format())
    print(f"validate: wall time {time.perf_counter() - started:.0f} s", file=sys.stderr)  # stdout stays the report
    if not report.ok:
        return EXIT_PROBLEMS
    # Skipping the leakage gate never yields a pass: such a submission cannot be accepted as it is.
    return EXIT_LEAKAGE_SKIPPED if args.no_leakage else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a submission folder (schema, images, counts, leakage gate) against a task",
        description=(
            "Check a submission folder against a task and report every problem at once: "
            "submission.yaml schema, metadata rows, class names, counts per class and supported ratios, "
            "image decoding, duplicates, safe file names, source ids, and the leakage gate (no near-copy of "
            "a test image). Exit status 0 only when the submission is fit to be scored."
        ),
    )
    parser.add_argument("path", help="the submission folder")
    parser.add_argument("--task", required=True, help="task folder or Hugging Face dataset repo id")
    parser.add_argument("--revision", help="Hub revision (commit) of the task, for a repo id")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--no-leakage", action="store_true",
        help="skip the leakage gate (quick local checks; exit status 3 instead of 0 when nothing else is wrong)",
    )
    parser.add_argument("--cache-dir", help="feature cache for the leakage gate (default: $SYNTHBENCH_CACHE or ~/.cache/synthbench/features)")
    parser.add_argument("--device", default="cpu", help="device for the leakage gate's embeddings (cpu, cuda, auto)")
    parser.add_argument(
        "--image-size", type=int,
        help="input size of the gate's backbone (default: its native size); use the grid's to share features",
    )
    parser.set_defaults(func=_handle)
