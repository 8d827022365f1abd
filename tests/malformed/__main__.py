"""`python -m tests.malformed`: run the whole corpus through `synthbench validate` and print how
each case was treated: refused precisely / refused vaguely / accepted wrongly / crashed / hung.

Exit status 0 only when the last three are 0. Builds its own demo task and base submission in a
temporary folder (about a minute on 2 cores).
"""

from __future__ import annotations

import collections
import os
import shutil
import sys
import tempfile
from pathlib import Path

from . import MALFORMED, write_valid_submission
from .hostile import HOSTILE, classify, run_validate

LABELS = {
    "precise": "refused precisely", "vague": "refused vaguely", "accepted": "accepted wrongly",
    "crashed": "crashed", "hung": "hung",
}


def main() -> int:
    from benchmark.tasks import load_task
    from benchmark.tasks.demo import build_demo_task

    corpus = MALFORMED + HOSTILE
    counts: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["SYNTHBENCH_CACHE"] = str(root / "cache")
        os.environ["HF_HUB_OFFLINE"] = "1"
        task = load_task(build_demo_task(root / "task", train_per_class=100, test_per_class=2, image_size=32))
        base = write_valid_submission(root / "base" / "tester__noise", task.classes, task.name)
        for case in corpus:
            work = root / "work" / case.name
            folder = work / "tester__noise"
            shutil.copytree(base, folder, symlinks=True)
            case.mutate(folder, task)
            code, report, detail = run_validate(folder, task.path)
            verdict = classify(code, report, case.expected)
            counts[verdict] += 1
            if verdict != "precise":
                shown = report["problems"][:3] if report else detail[-300:]
                print(f"{LABELS[verdict]}: {case.name}: {shown}", file=sys.stderr)
            shutil.rmtree(work)
    print(f"hostile corpus: {len(corpus)} submissions")
    for verdict, label in LABELS.items():
        print(f"  {label:<18} {counts[verdict]}")
    return 0 if counts["accepted"] == counts["crashed"] == counts["hung"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
