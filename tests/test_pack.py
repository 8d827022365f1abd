"""`synthbench pack`: a folder of images from any generator -> a valid submission, or a clear refusal
that leaves nothing behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from benchmark.cli import main
from benchmark.generators.common import task_generation_inputs
from benchmark.submissions import load_submission, validate_submission
from benchmark.tasks import load_task
from benchmark.tasks.demo import build_demo_task

ANSWERS = ["--contact", "me@example.org", "--licence", "CC-BY-4.0", "--generator-name", "acme/edit-xl",
           "--generator-version", "3f2a9c1", "--generator-link", "https://example.org/acme/edit-xl", "--no-input"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    # 25 generation inputs per class x 4 variants = the 100 images per class validation needs.
    return load_task(build_demo_task(tmp_path_factory.mktemp("task") / "demo", train_per_class=25, test_per_class=2,
                                     image_size=32))


def _edits(task):
    """(input, variant, image): 4 'generated' images per input (inverted, a variant-coloured pixel)."""
    for item in task_generation_inputs(task):
        for variant in range(4):
            image = ImageOps.invert(item.image())
            image.putpixel((0, 0), (variant * 60, 0, 0))
            yield item, variant, image


@pytest.fixture(scope="module")
def class_folders(task, tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    for item, variant, image in _edits(task):
        (root / item.class_name).mkdir(exist_ok=True)
        image.save(root / item.class_name / f"{item.image_id} v{variant}.jpg" if variant == 3 else
                   root / item.class_name / f"{item.image_id}-{variant}.png")
    return root


def test_class_folders_pack_into_a_valid_submission(task, class_folders, tmp_path, capsys):
    out = tmp_path / "acme__edit-xl"
    assert main(["pack", str(class_folders), "--out", str(out), "--task", str(task.path), *ANSWERS]) == 0
    assert f"next: synthbench validate {out} --task {task.path}" in capsys.readouterr().out
    report = validate_submission(out, task, check_leakage=False)
    assert report.problems == [] and report.counts == dict.fromkeys(task.classes, 100)
    submission = load_submission(out)
    assert submission.id == "acme__edit-xl" and submission.meta["generator"] == {
        "name": "acme/edit-xl", "version": "3f2a9c1", "link": "https://example.org/acme/edit-xl"}
    assert {e.path.suffix for e in submission.entries} == {".png", ".jpg"}  # bytes copied as they were
    # `<image_id>-<n>.png` names its generation input (the source_id); "<image_id> v3.jpg" does not
    inputs = set(task.image_ids("generation_inputs"))
    assert all(e.source_id in inputs and e.file_name.split("-", 1)[1].startswith(e.source_id)
               for e in submission.entries if e.path.suffix == ".png")
    assert all(e.source_id is None for e in submission.entries if e.path.suffix == ".jpg")


def test_a_listing_keeps_source_ids_and_prompts(task, class_folders, tmp_path):
    inputs = {item.image_id: item for item in task_generation_inputs(task)}
    listing = class_folders / "listing.jsonl"
    rows = [{"file": f"{p.parent.name}/{p.name}", "label": p.parent.name, "source_id": p.stem.rsplit("-", 1)[0],
             "prompt": inputs[p.stem.rsplit("-", 1)[0]].prompt}
            for p in sorted(class_folders.glob("*/*.png"))]
    listing.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    out = tmp_path / "acme__edit-xl"
    assert main(["pack", "--listing", str(listing), "--out", str(out), "--task", str(task.path), *ANSWERS,
                 "--paper", "https://example.org/paper"]) == 0
    submission = load_submission(out)
    assert len(submission.entries) == len(rows) and submission.meta["paper"] == "https://example.org/paper"
    by_source = {e.source_id: e for e in submission.entries}
    assert set(by_source) <= set(inputs) and all(e.prompt == inputs[s].prompt for s, e in by_source.items())
    first = submission.entries[0]
    assert np.array_equal(np.asarray(Image.open(first.path)), np.asarray(Image.open(class_folders / rows[0]["file"])))


@pytest.mark.parametrize(
    "change, message",
    [
        (["--licence", "unknown"], "placeholder 'unknown'"),
        (["--licence", "see the generator's terms of use"], "placeholder"),
        (["--generator-version", "TBD"], "placeholder 'TBD'"),
        (["--contact", ""], "--contact: missing"),
    ],
)
def test_placeholders_and_missing_answers_are_refused(task, class_folders, tmp_path, capsys, change, message):
    out = tmp_path / "acme__edit-xl"
    assert main(["pack", str(class_folders), "--out", str(out), "--task", str(task.path), *ANSWERS, *change]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written beside it either


def test_bad_sources_are_named(task, class_folders, tmp_path, capsys):
    wrong = tmp_path / "wrong"
    (wrong / "meteor_strike").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(wrong / "meteor_strike" / "a.png")
    argv = ["--out", str(tmp_path / "acme__x"), "--task", str(task.path), *ANSWERS]
    assert main(["pack", str(wrong), *argv]) == 2
    assert "labels that are not classes of task demo-disaster6: meteor_strike" in capsys.readouterr().err

    escaping = tmp_path / "listing.csv"
    escaping.write_text("file,label\n../../etc/passwd,flood\n")
    assert main(["pack", "--listing", str(escaping), *argv]) == 2
    assert "contains '..'" in capsys.readouterr().err

    (wrong / "meteor_strike" / "a.png").write_bytes(b"not an image")
    (wrong / "meteor_strike").rename(wrong / "flooding")
    assert main(["pack", str(wrong), *argv]) == 2
    assert "a.png" in capsys.readouterr().err
    assert not (tmp_path / "acme__x").exists()

    assert main(["pack", str(class_folders), *argv[:1], str(tmp_path / "generated-images"), *argv[2:]]) == 2
    assert "must be named <team>__<method>" in capsys.readouterr().err
