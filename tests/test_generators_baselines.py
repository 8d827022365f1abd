"""Baseline generators and the demo editor: valid submissions, the right counts and labels,
deterministic per seed, and genuinely what they claim to be."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.errors import SynthbenchError
from benchmark.generators.baselines import BASELINES, generate_baseline
from benchmark.generators.demo_editor import generate_demo_editor
from benchmark.submissions import load_submission, validate_submission
from benchmark.tasks import load_task
from benchmark.tasks.demo import build_demo_task, edit_image


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    # 25 real images per class: multiplier 4 gives the 100 per class a valid submission needs.
    return load_task(build_demo_task(tmp_path_factory.mktemp("task") / "demo", train_per_class=25, test_per_class=2, image_size=32))


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_is_a_valid_deterministic_open_track_submission(name, task, tmp_path):
    out = generate_baseline(name, task, tmp_path / f"baseline__{name}", multiplier=4, seed=0)
    report = validate_submission(out, task, check_leakage=False)
    assert report.problems == [], report.problems
    # 100 images per class on a task of 25 real per class: every ratio up to 1:4 (4 x 25)
    assert report.counts == dict.fromkeys(task.classes, 100) and report.supported_ratios == [1, 2, 3, 4]
    sub = load_submission(out)
    assert (sub.track, sub.baseline, sub.id) == ("open", name, f"baseline__{name}")
    assert sub.meta["task"] == {"name": task.name, "revision": "local"}

    again = generate_baseline(name, task, tmp_path / "again" / f"baseline__{name}", multiplier=4, seed=0)
    assert folder_digest(again) == folder_digest(out)
    if name != "duplicate":  # copies involve no randomness
        other = generate_baseline(name, task, tmp_path / "other-seed" / f"baseline__{name}", multiplier=4, seed=1)
        assert folder_digest(other) != folder_digest(out)


def test_classic_images_are_augmentations_of_their_source(task, tmp_path):
    sub = load_submission(generate_baseline("classic", task, tmp_path / "baseline__classic", multiplier=2, seed=0))
    real = {ref.name: ref for ref in task.image_refs("train_real")}
    train_ids = set(real)
    assert {e.source_id for e in sub.entries} == train_ids
    class_of = dict(zip(task.image_ids("train_real"), (task.classes[i] for i in task.labels("train_real"))))
    assert all(e.label == {class_of[e.source_id]: 1.0} for e in sub.entries)
    diffs = []
    for entry in sub.entries[:40]:
        out = np.asarray(Image.open(entry.path).convert("RGB"), dtype=np.int16)
        source = np.asarray(real[entry.source_id].open(), dtype=np.int16)
        assert out.shape == source.shape
        diffs.append(np.abs(out - source).mean())
    assert min(diffs) > 0  # every output was changed
    assert len({e.sha256 for e in sub.entries}) == len(sub.entries)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixing_baselines_have_genuinely_soft_labels(name, task, tmp_path):
    sub = load_submission(generate_baseline(name, task, tmp_path / f"baseline__{name}", multiplier=1, seed=0))
    rows = [json.loads(line) for line in (sub.path / "metadata.jsonl").read_text().splitlines()]
    real = {ref.name: np.asarray(ref.open(), dtype=np.float64) for ref in task.image_refs("train_real")}
    class_of = dict(zip(task.image_ids("train_real"), (task.classes[i] for i in task.labels("train_real"))))
    for row, entry in zip(rows, sub.entries):
        a_id, b_id = row["sources"]
        lam = row["lambda"]
        assert 0.5 < lam < 1.0
        assert entry.label == {class_of[a_id]: lam, class_of[b_id]: 1.0 - lam}
        assert class_of[a_id] != class_of[b_id]
        assert entry.hard_label == class_of[a_id] == entry.path.parent.name
        out = np.asarray(Image.open(entry.path).convert("RGB"), dtype=np.float64)
        a, b = real[a_id], real[b_id]
        if name == "mixup":
            np.testing.assert_allclose(out, lam * a + (1 - lam) * b, atol=0.5 + 1e-9)
        else:  # the pixels taken from B are exactly the (1 - lambda) share
            from_b = np.all(out == b, axis=2) & ~np.all(out == a, axis=2)
            from_a = np.all(out == a, axis=2)
            assert np.all(from_a | np.all(out == b, axis=2))
            assert abs(from_b.mean() - (1 - lam)) <= np.mean(np.all(a == b, axis=2)) + 1e-9
    counts = sub.counts(task.classes)
    assert counts == dict.fromkeys(task.classes, 25)


def test_duplicate_repeats_real_bytes(task, tmp_path):
    sub = load_submission(generate_baseline("duplicate", task, tmp_path / "baseline__duplicate", multiplier=3, seed=0))
    real = {ref.name: ref.sha256 for ref in task.image_refs("train_real")}
    assert len(sub.entries) == 3 * len(real)
    assert len({e.file_name for e in sub.entries}) == len(real)  # each file stored once
    assert all(e.sha256 == real[e.source_id] for e in sub.entries)


def test_demo_editor_edits_generation_inputs(task, tmp_path):
    out = generate_demo_editor(task, tmp_path / "demo__procedural-editor", multiplier=4, seed=0)
    report = validate_submission(out, task, check_leakage=False)
    assert report.problems == [] and report.counts == dict.fromkeys(task.classes, 100)
    sub = load_submission(out)
    assert sub.track == "generated" and sub.baseline is None
    inputs = dict(zip(task.image_ids("generation_inputs"), task.image_refs("generation_inputs")))
    entry = sub.entries[5]
    assert entry.source_id in inputs and entry.prompt
    variants = [e for e in sub.entries if e.source_id == entry.source_id]
    assert len(variants) == 4 and len({e.sha256 for e in variants}) == 4
    # It is the demo's editor, applied to the input: re-running it on the input reproduces the image.
    from benchmark.generators.common import derived_seed

    variant = int(entry.file_name.rsplit("__", 1)[1].split(".")[0])
    expected = edit_image(inputs[entry.source_id].open(), entry.hard_label, derived_seed(0, "demo-editor", entry.source_id, variant))
    assert np.array_equal(np.asarray(Image.open(entry.path).convert("RGB")), np.asarray(expected))


def test_generate_refuses_to_clobber_and_unknown_names(task, tmp_path, capsys):
    out = tmp_path / "baseline__classic"
    assert main(["generate", "classic", "--task", str(task.path), "--out", str(out), "--multiplier", "1"]) == 0
    assert main(["generate", "classic", "--task", str(task.path), "--out", str(out), "--multiplier", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["generate", "classic", "--task", str(task.path), "--out", str(out), "--multiplier", "1", "--overwrite"]) == 0
    with pytest.raises(SynthbenchError, match="unknown baseline 'smote'; use one of: classic, mixup, cutmix, duplicate"):
        generate_baseline("smote", task, tmp_path / "x")


def test_the_id_is_the_folder_name_everywhere(task, tmp_path, capsys):
    """generate takes team and method from --out; validate and the leaderboard refuse a mismatch
    with one message (the documented flow used to end in the board refusing the entry)."""
    from benchmark.submissions.format import folder_id_problem
    from leaderboard.tree import validate_tree

    out = tmp_path / "submissions" / "uxteam__demo-editor"
    assert main(["generate", "demo-editor", "--task", str(task.path), "--out", str(out), "--multiplier", "1"]) == 0
    sub = load_submission(out)
    assert (sub.id, sub.meta["team"], sub.meta["method"]) == ("uxteam__demo-editor", "uxteam", "demo-editor")
    assert f"--task {task.path}" in capsys.readouterr().out

    assert main(["generate", "classic", "--task", str(task.path), "--out", str(tmp_path / "classic")]) == 2
    assert "must be named <team>__<method>" in capsys.readouterr().err
    assert not (tmp_path / "classic").exists()

    renamed = out.rename(out.with_name("someone__else"))
    expected = folder_id_problem("uxteam__demo-editor", "someone__else")
    report = validate_submission(renamed, task, check_leakage=False)
    assert f"submission.yaml: {expected}" in report.problems and not report.ok
    tree = validate_tree(tmp_path / "submissions")
    assert [p.reason for p in tree.problems] == [expected]


def test_inputs_export_round_trips(task, tmp_path):
    from benchmark.generators.common import exported_generation_inputs, task_generation_inputs

    out = tmp_path / "inputs"
    assert main(["inputs", "export", "--task", str(task.path), "--out", str(out)]) == 0
    inputs, record = exported_generation_inputs(out)
    original = task_generation_inputs(task)
    assert [(i.image_id, i.class_name, i.prompt, i.png) for i in inputs] == [(i.image_id, i.class_name, i.prompt, i.png) for i in original]
    prompts = json.loads((out / "prompts.json").read_text())
    assert prompts["templates"] == task.info["prompt_templates"] and set(prompts["class_phrases"]) == set(task.classes)
    assert record["name"] == task.name
    # A file changed after export is caught.
    victim = out / json.loads((out / "inputs.jsonl").read_text().splitlines()[0])["file_name"]
    victim.write_bytes(victim.read_bytes() + b"\0")
    from benchmark.generators.common import GeneratorError

    with pytest.raises(GeneratorError, match="SHA-256 differs"):
        exported_generation_inputs(out)
