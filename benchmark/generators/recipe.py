"""Recipe entries (`kind: recipe`): the shipped baselines, regenerated from the task by the harness.

A recipe folder holds only its submission.yaml: `baseline` names the harness generator
(benchmark.generators.baselines, beside this module) and `recipe: {multiplier, seed}` its arguments, so the images are
a deterministic function of the task's train_real split. `recipe.content_hashes` pins, per
`<task>@<revision>`, the content hash the regenerated folder must have: a regeneration that differs
(another harness version, changed train images) is refused instead of being scored as the baseline.
A task with no pin yet is regenerated and its hash reported, to be pinned after the official run.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SynthbenchError
from ..submissions.format import Submission, load_submission, parse_submission
from .baselines import generate_baseline


def task_key(task) -> str:
    """The key of a task in `recipe.content_hashes`: `<name>@<revision>`."""
    return f"{task.name}@{task.revision}"


def regenerate(recipe_folder: str | os.PathLike, task, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Submission:
    """Make the images of the recipe entry at `recipe_folder` for `task` into `out_dir/<id>` and check its pin.

    Returns the regenerated (kind images) submission, whose content hash is the one pinned for the
    task when there is a pin; raises SynthbenchError naming both hashes when it differs.
    """
    recipe_sub, problems = parse_submission(recipe_folder)
    if recipe_sub is None or problems.errors or recipe_sub.kind != "recipe":
        reasons = "; ".join(problems.errors[:5]) if problems.errors else f"kind is {recipe_sub.kind if recipe_sub else None}, not recipe"
        raise SynthbenchError(f"{recipe_folder}: not a usable recipe entry ({reasons})")
    recipe = recipe_sub.meta["recipe"]
    target = Path(out_dir) / recipe_sub.id  # a submission's folder is named by its id
    generate_baseline(
        recipe_sub.meta["baseline"], task, target, multiplier=recipe["multiplier"], seed=recipe["seed"], overwrite=overwrite
    )
    made = load_submission(target)
    pinned = (recipe.get("content_hashes") or {}).get(task_key(task))
    if pinned is not None and pinned != made.content_hash:
        raise SynthbenchError(
            f"{recipe_folder}: the regenerated images' content hash {made.content_hash[:12]} is not the one pinned for "
            f"{task_key(task)} ({pinned[:12]}): the regeneration differs (harness version or task changed); not scored"
        )
    return made
