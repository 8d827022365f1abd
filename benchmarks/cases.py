"""The submissions the run and solver benchmarks measure, built once into a set-up folder.

* `demo_case`: the demo task as `synthbench task build demo` makes it (embedded at 96 px) and the
  demo editor's submission at multiplier 4 (2 400 generated-track images).
* `aid6_case`: an image-folder task of six AID scene classes (100 train_real and 100 test images
  per class, deduplicated as the task builders do) and the classic baseline at multiplier 4.
"""

from __future__ import annotations

from pathlib import Path

#: The run benchmarks' two cases: the demo task at its 96 px, the AID task at the backbone's 224 px.
DEMO_SIZE, AID6_SIZE = 96, 224
MULTIPLIER = 4


def demo_case(setup_dir: Path):
    """The demo task (built at 96 px) and the demo editor's submission at multiplier 4, built once in setup_dir."""
    from benchmark.generators.demo_editor import generate_demo_editor
    from benchmark.tasks import build_demo_task, load_task
    from benchmark.tasks.dedup import resolve_embedder

    task_dir, submission = setup_dir / "demo-task", setup_dir / "bench__demo-editor"
    if not (task_dir / "manifest.json").exists():
        embedder = resolve_embedder(None, cache_dir=setup_dir / "setup-cache", device="cpu", image_size=DEMO_SIZE)
        build_demo_task(task_dir, embedder=embedder, overwrite=True)
    task = load_task(task_dir)
    if not (submission / "submission.yaml").exists():
        generate_demo_editor(task, submission, multiplier=MULTIPLIER, seed=0)
    return task, submission


def aid6_case(setup_dir: Path, aid6_root: Path):
    """A deduplicated AID image-folder task (100 train / 100 test per class) and the classic baseline x4, built once."""
    from benchmark.generators.baselines import generate_baseline
    from benchmark.nearcopy import default_embedder
    from benchmark.submissions.leakage_eval import deduplicated_imagefolder_task
    from benchmark.tasks import load_task

    task_dir, submission = setup_dir / "aid6-task", setup_dir / "baseline__classic"
    if not (task_dir / "manifest.json").exists():
        embedder = default_embedder(setup_dir / "setup-cache")
        deduplicated_imagefolder_task(aid6_root, task_dir, embedder, train_per_class=100, test_per_class=100)
    task = load_task(task_dir)
    if not (submission / "submission.yaml").exists():
        generate_baseline("classic", task, submission, multiplier=MULTIPLIER, seed=0)
    return task, submission
