"""`synthbench inputs export`: the generation kit for participants.

Writes a task's generation inputs as plain files, for any generator, in any language:

    <out>/images/<image_id>.png     the pre-disaster images, byte-identical to the task's
    <out>/inputs.jsonl              {image_id, class, prompt, file_name, sha256, pair_id} per input
    <out>/prompts.json              the task's prompt templates and the phrase for each class
    <out>/task.json                 {task: {name, revision, test_manifest_hash}, classes, n_inputs}
    <out>/README.md                 what to do with them (and how to package the outputs)

An output made from an input should be listed with `source_id: <image_id>` in the submission's
metadata.jsonl. `benchmark.generators.common.exported_generation_inputs` reads this folder back
(the API adapters accept it with --inputs).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes
from ..protocol import CLASS_PROMPT_PHRASES, RANKING_IMAGES_PER_CLASS, TRAIN_PER_CLASS
from .common import INPUTS_FILE, task_generation_inputs

_README = """# Generation inputs of task {name} (revision {revision})

{n} pre-disaster images (`images/`), each listed in `inputs.jsonl` with its target disaster class and
a prompt made from the task's templates (`prompts.json`). Edit each image into a post-disaster image
of its class with your generator, any number of variants per input.

Package the outputs as a submission folder (see docs/SUBMITTING.md):

    submissions/<team>__<method>/
      submission.yaml
      metadata.jsonl      {{"file_name": "images/<class>/<image_id>__0.png", "label": "<class>",
                            "source_id": "<image_id>", "prompt": "..."}}
      images/<class>/...

{per_class} images per class let a submission be scored at ratio 1:1; {ranking} per class (1:4) are
needed to be ranked. Check it with `synthbench validate <folder> --task <task>`. Test images are never
part of the inputs; images that are near-copies of test (or, in the generated track, real train) images
are rejected by the leakage gate.
"""


def export_inputs(task, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write `task`'s generation inputs into `out_dir` (built aside, moved in when complete)."""
    inputs = task_generation_inputs(task)
    phrases = {name: CLASS_PROMPT_PHRASES.get(name, name.replace("_", " ")) for name in task.classes}
    replaces = ("inputs.jsonl", "a generation-inputs folder")
    with atomic_directory(Path(out_dir), overwrite=overwrite, replaces=replaces) as tmp:
        lines = []
        for item in inputs:
            file_name = f"images/{item.image_id}.png"
            atomic_write_bytes(tmp / file_name, item.png)
            lines.append(json.dumps({
                "image_id": item.image_id, "class": item.class_name, "prompt": item.prompt,
                "file_name": file_name, "sha256": sha256_bytes(item.png),
                "pair_id": item.pair_id,
            }))
        atomic_write_text(tmp / INPUTS_FILE, "\n".join(lines) + "\n")
        atomic_write_json(tmp / "prompts.json", {
            "templates": list(task.info.get("prompt_templates") or []),
            "class_phrases": phrases,
            "usage": "template.format(phrase=class_phrases[class])",
        })
        atomic_write_json(tmp / "task.json", {
            "task": {"name": task.name, "revision": task.revision, "test_manifest_hash": task.test_manifest_hash},
            "classes": task.classes,
            "n_inputs": len(inputs),
        })
        atomic_write_text(tmp / "README.md", _README.format(
            name=task.name, revision=task.revision, n=len(inputs),
            per_class=TRAIN_PER_CLASS, ranking=RANKING_IMAGES_PER_CLASS,
        ))
    return Path(out_dir)
