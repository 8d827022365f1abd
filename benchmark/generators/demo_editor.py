"""The demo task's procedural editor as a generated-track submission.

`benchmark.tasks.demo.edit_image(pre, class_name, seed)` stands in for a generative image editor
in the main job: it turns each pre-disaster generation input into `multiplier` post-disaster
images of the input's class (a different seed per variant), exactly the way a participant runs a
real editor over the generation inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import SynthbenchError
from ..io import atomic_directory
from .common import (
    SubmissionWriter,
    derived_seed,
    harness_generator,
    iter_jobs,
    one_at_a_time,
    run_jobs,
    submission_meta,
    task_generation_inputs,
    team_and_method,
)

log = logging.getLogger(__name__)

DEMO_EDITOR_TEAM = "demo"
DEMO_EDITOR_METHOD = "procedural-editor"


def generate_demo_editor(
    task,
    out_dir: str | Path,
    *,
    multiplier: int = 4,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Run the demo editor over `task`'s generation inputs into a new submission at `out_dir`
    (its id is the folder's name, e.g. demo__procedural-editor)."""
    from ..images import encode_png
    from ..tasks.demo import DEMO_BUILDER_VERSION, edit_image

    if not 1 <= int(multiplier) <= 16:
        raise SynthbenchError(f"multiplier must be between 1 and 16 (got {multiplier})")
    if not task.is_demo:
        log.warning("task %s is not the demo task: the procedural editor only imitates the demo's classes", task.name)
    team, method = team_and_method(out_dir, DEMO_EDITOR_TEAM, DEMO_EDITOR_METHOD)
    meta = submission_meta(
        team=team,
        method=method,
        track="generated",
        generator={
            **harness_generator("demo-editor", "benchmark.tasks.demo.edit_image, the demo's procedural editor"),
            "version": f"demo builder v{DEMO_BUILDER_VERSION}",
        },
        task={"name": task.name, "revision": task.revision},
        licence=str(task.info.get("licence") or "apache-2.0"),
        notes=f"pipeline demo, not a generative model; multiplier {multiplier}, seed {seed}",
    )
    inputs = task_generation_inputs(task)

    def edit(item, variant):
        out = edit_image(item.image(), item.class_name, derived_seed(seed, "demo-editor", item.image_id, variant))
        return encode_png(out), ".png"

    with atomic_directory(Path(out_dir), overwrite=overwrite, replaces=("submission.yaml", "a submission folder")) as tmp:
        writer = SubmissionWriter(tmp, meta, resume=False)
        counts = run_jobs(
            writer, iter_jobs(inputs, int(multiplier)), one_at_a_time(edit), progress=progress, desc="demo editor"
        )
        log.info("%s: %d images written", out_dir, counts["written"])
    return Path(out_dir)
