"""`synthbench pack`: any folder of generated images -> a submission folder.

The images come either as class sub-folders (`<source>/<class>/<image>`) or from a listing, a
CSV or JSONL file with the columns `file` (relative to the listing's folder), `label` (a class
name), and optionally `source_id` (the generation input's image_id) and `prompt`. Every image is
decoded before it is copied; the submission is built aside and moved into place only when complete
(SubmissionWriter, common.generate_into_submission's rule), so a refusal leaves nothing behind.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_directory
from ..registry import PACK_LINKS, PACK_QUESTIONS  # what pack asks for: plain data (its parser shows it)
from ..submissions.format import IMAGE_EXTENSIONS, file_name_problem, id_from_folder, placeholder_problem, resolve_inside
from .common import GenerationRefused, GeneratorError, SubmissionWriter, decode_generated, submission_meta



@dataclass(frozen=True)
class PackedImage:
    path: Path
    label: str
    source_id: str | None
    prompt: str


def _listing_rows(listing: Path) -> list[dict]:
    text = listing.read_text(encoding="utf-8")
    if listing.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if listing.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise GeneratorError(f"{listing} line {number}: not JSON ({exc.msg})") from None
        return rows
    raise GeneratorError(f"{listing}: a listing must be .csv or .jsonl (columns file, label, source_id, prompt)")


def images_from_listing(listing: str | Path) -> list[PackedImage]:
    """The images a CSV/JSONL listing names, each path checked to stay inside the listing's folder."""
    listing = Path(listing)
    if not listing.is_file():
        raise GeneratorError(f"{listing}: listing not found")
    images = []
    for number, row in enumerate(_listing_rows(listing), start=1):
        if not isinstance(row, dict) or not row.get("file") or not row.get("label"):
            raise GeneratorError(f"{listing} row {number}: needs the columns file and label")
        problem = file_name_problem(str(row["file"]))
        path, problem = (None, problem) if problem else resolve_inside(listing.parent, str(row["file"]))
        if problem:
            raise GeneratorError(f"{listing} row {number}: {problem}")
        images.append(PackedImage(path, str(row["label"]), row.get("source_id") or None, str(row.get("prompt") or "")))
    return images


def images_from_class_folders(source: str | Path) -> list[PackedImage]:
    """`<source>/<class>/<image>` for every image extension, in name order."""
    source = Path(source)
    if not source.is_dir():
        raise GeneratorError(f"{source}: not a folder (give class sub-folders, or --listing FILE.csv|.jsonl)")
    images = [
        PackedImage(path, folder.name, None, "")
        for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.is_symlink())
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not path.is_symlink()
    ]
    if not images:
        raise GeneratorError(f"{source}: no images found in class sub-folders ({', '.join(IMAGE_EXTENSIONS)})")
    return images


def source_id_from_name(stem: str, input_ids: set[str]) -> str | None:
    """The generation input an image is named after: its whole stem, or the longest prefix of it
    that ends before a '-', '_' or '.' and is an input's image_id (`<image_id>-2.png`)."""
    if stem in input_ids:
        return stem
    cuts = [i for i, char in enumerate(stem) if char in "-_."]
    return next((stem[:i] for i in reversed(cuts) if stem[:i] in input_ids), None)


def pack_answers_problems(answers: dict[str, str | None]) -> list[str]:
    """One message per missing or placeholder answer (PACK_QUESTIONS)."""
    problems = []
    for key, question in PACK_QUESTIONS.items():
        value = answers.get(key)
        if not value or not str(value).strip():
            problems.append(f"--{key.replace('_', '-')}: missing ({question})")
        elif placeholder_problem(key, value):
            problems.append(f"--{key.replace('_', '-')}: {placeholder_problem(key, value)}")
    return problems


def pack_submission(
    images: list[PackedImage],
    out_dir: str | Path,
    *,
    task_record: dict,
    classes: list[str],
    answers: dict[str, str | None],
    input_ids: set[str] = frozenset(),
    track: str = "generated",
    overwrite: bool = False,
) -> Path:
    """Write `images` as the submission `out_dir` (id: the folder's name) for the task of `task_record`.

    An image without a source_id gets the generation input it is named after (`input_ids`), so
    that the leakage gate and cross-validation know which scene it was made from."""
    out_dir = Path(out_dir)
    team, method = id_from_folder(out_dir)
    problems = pack_answers_problems(answers)
    unknown = sorted({image.label for image in images} - set(classes))
    if unknown:
        problems.append(f"labels that are not classes of task {task_record['name']}: {', '.join(unknown)} "
                        f"(classes: {', '.join(classes)})")
    if problems:
        raise GeneratorError("cannot pack:\n  " + "\n  ".join(problems))
    meta = submission_meta(
        team=team, method=method, track=track, task=task_record, contact=answers["contact"], licence=answers["licence"],
        generator={"name": answers["generator_name"], "version": answers["generator_version"],
                   "link": answers["generator_link"]},
    )
    meta.update({key: answers[key] for key in PACK_LINKS if answers.get(key)})
    with atomic_directory(out_dir, overwrite=overwrite, replaces=("submission.yaml", "a submission folder")) as tmp:
        writer = SubmissionWriter(tmp, meta, resume=False)
        for number, image in enumerate(images):
            try:
                data, ext = decode_generated(image.path.read_bytes(), str(image.path))
            except GenerationRefused as exc:
                raise GeneratorError(str(exc)) from None
            stem = re.sub(r"[^A-Za-z0-9._-]+", "-", image.path.stem)[:80]
            source_id = image.source_id or source_id_from_name(image.path.stem, input_ids)
            writer.add(f"images/{image.label}/{number:06d}-{stem}{ext}", data,
                       label=image.label, source_id=source_id, prompt=image.prompt)
    return out_dir
