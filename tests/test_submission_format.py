"""Reading submissions: the loaded object, soft labels, the content hash, hub and checkpoint kinds."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from benchmark.errors import SubmissionError
from benchmark.submissions import SUBMISSION_FIELDS, load_submission, validate_submission
from benchmark.submissions.format import file_name_problem, parse_label
from benchmark.tasks import load_task
from benchmark.tasks.demo import build_demo_task

from .malformed import base_meta, noise_png, read_rows, write_rows, write_valid_submission, write_yaml

CLASSES = ["earthquake", "wildfire", "volcano", "storm", "flooding", "tsunami"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return load_task(build_demo_task(tmp_path_factory.mktemp("task") / "demo", train_per_class=3, test_per_class=2, image_size=32))


@pytest.fixture
def submission_dir(tmp_path):
    return write_valid_submission(tmp_path / "tester__noise", CLASSES, "demo-disaster6", per_class=3)


def test_load_submission_exposes_rows_refs_and_targets(submission_dir):
    rows = read_rows(submission_dir)
    rows[0]["label"] = {"earthquake": 0.75, "flooding": 0.25}
    rows[1]["source_id"] = "demo-train-real-earthquake-0000_pre"
    write_rows(submission_dir, rows)
    sub = load_submission(submission_dir)

    assert (sub.id, sub.kind, sub.track, sub.task_name) == ("tester__noise", "images", "open", "demo-disaster6")
    assert len(sub.entries) == 18
    assert sub.entries[1].source_id == "demo-train-real-earthquake-0000_pre"
    refs = sub.image_refs()
    assert [r.sha256 for r in refs] == [e.sha256 for e in sub.entries]
    assert refs[0].read_bytes() == (submission_dir / rows[0]["file_name"]).read_bytes()
    targets = sub.targets(CLASSES)
    assert targets.shape == (18, 6) and targets.dtype == np.float32
    np.testing.assert_allclose(targets[0], [0.75, 0, 0, 0, 0.25, 0])
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)
    assert sub.hard_labels(CLASSES).tolist() == [i // 3 for i in range(18)]
    assert sub.counts(CLASSES) == dict.fromkeys(CLASSES, 3)
    with pytest.raises(SubmissionError, match="line 1: unknown class 'flooding'"):
        sub.targets(["earthquake", "wildfire"])


def test_load_submission_refuses_with_every_problem(submission_dir):
    rows = read_rows(submission_dir)
    rows[0]["file_name"] = "../x.png"
    rows[1]["label"] = {"storm": 0.2}
    write_rows(submission_dir, rows)
    with pytest.raises(SubmissionError) as raised:
        load_submission(submission_dir)
    message = str(raised.value)
    assert "2 problem(s)" in message and "contains '..'" in message and "sum to 0.2" in message


def test_content_hash_tracks_bytes_labels_and_yaml(submission_dir, tmp_path):
    original = load_submission(submission_dir).content_hash
    copy = tmp_path / "elsewhere" / "tester__noise"
    shutil.copytree(submission_dir, copy)
    assert load_submission(copy).content_hash == original  # location-independent

    rows = read_rows(copy)
    write_rows(copy, list(reversed(rows)))
    assert load_submission(copy).content_hash == original  # row order does not matter

    rows[0]["label"] = {rows[0]["label"]: 1.0}
    write_rows(copy, rows)
    assert load_submission(copy).content_hash == original  # "c" and {"c": 1.0} are the same label

    rows[0]["label"] = "storm"
    write_rows(copy, rows)
    relabelled = load_submission(copy).content_hash
    assert relabelled != original
    (copy / rows[1]["file_name"]).write_bytes(noise_png(np.random.default_rng(123)))
    assert load_submission(copy).content_hash != relabelled  # image bytes count
    meta = yaml.safe_load((copy / "submission.yaml").read_text())
    meta["notes"] = "changed"
    write_yaml(copy, meta)
    assert load_submission(copy).content_hash not in (original, relabelled)


def test_duplicate_baseline_may_repeat_files(submission_dir):
    rows = read_rows(submission_dir)
    rows.append(dict(rows[0]))
    write_rows(submission_dir, rows)
    with pytest.raises(SubmissionError, match="duplicate file_name"):
        load_submission(submission_dir)
    write_yaml(submission_dir, base_meta("demo-disaster6", baseline="duplicate", id="tester__noise"))
    sub = load_submission(submission_dir)
    assert len(sub.entries) == 19 and sub.entries[-1].sha256 == sub.entries[0].sha256


def test_hub_kind_reads_a_local_dataset_directory_inside_the_folder(submission_dir, task):
    dataset = submission_dir / "dataset"
    dataset.mkdir()
    shutil.move(str(submission_dir / "images"), dataset / "images")
    shutil.move(str(submission_dir / "metadata.jsonl"), dataset / "metadata.jsonl")
    write_yaml(submission_dir, base_meta("demo-disaster6", kind="hub", hub={"repo_id": "dataset", "revision": "local"}))
    sub = load_submission(submission_dir)
    assert sub.kind == "hub" and sub.image_root == submission_dir / "dataset" and len(sub.entries) == 18
    assert sub.entries[0].path == dataset / sub.entries[0].file_name
    report = validate_submission(submission_dir, task, check_leakage=False)
    assert any("local directory" in w for w in report.warnings)


@pytest.mark.parametrize("where", ["absolute", "relative", "home"])
def test_hub_kind_refuses_a_local_directory_outside_the_folder(submission_dir, tmp_path, where):
    """A local repo_id outside the folder could make the harness read anything on the machine."""
    dataset = tmp_path / "dataset"
    shutil.move(str(submission_dir / "images"), dataset / "images")
    shutil.move(str(submission_dir / "metadata.jsonl"), dataset / "metadata.jsonl")
    repo_id = {"absolute": str(dataset), "relative": "../dataset", "home": "~"}[where]
    write_yaml(submission_dir, base_meta("demo-disaster6", kind="hub", hub={"repo_id": repo_id, "revision": "local"}))
    with pytest.raises(SubmissionError, match="is a local path outside the submission folder; use a Hub dataset id"):
        load_submission(submission_dir)


@pytest.mark.parametrize("repo_id", ["not a repo id", "a/b/c", "owner/na--me", "x" * 200])
def test_hub_kind_refuses_what_is_not_a_hub_id(submission_dir, repo_id):
    write_yaml(submission_dir, base_meta("demo-disaster6", kind="hub", hub={"repo_id": repo_id, "revision": "0" * 40}))
    with pytest.raises(SubmissionError, match="is not a Hub dataset id"):
        load_submission(submission_dir)


def test_hub_kind_fetches_a_pinned_repo_through_huggingface_hub(submission_dir, tmp_path, monkeypatch):
    """A Hub reference goes through snapshot_download at the pinned commit (here served from a
    local folder standing in for the Hub cache)."""
    import huggingface_hub

    snapshot = tmp_path / "hub-cache" / "snapshot"
    snapshot.mkdir(parents=True)
    shutil.move(str(submission_dir / "images"), snapshot / "images")
    shutil.move(str(submission_dir / "metadata.jsonl"), snapshot / "metadata.jsonl")
    commit = "0123456789abcdef0123456789abcdef01234567"
    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    write_yaml(submission_dir, base_meta("demo-disaster6", kind="hub", hub={"repo_id": "team/synthetic-xbd", "revision": commit}))
    sub = load_submission(submission_dir)
    assert calls == [{"repo_id": "team/synthetic-xbd", "repo_type": "dataset", "revision": commit}]
    assert len(sub.entries) == 18


def test_valid_checkpoint_submission(tmp_path, task):
    from torch import nn

    from benchmark.backbones import load_backbone
    from benchmark.protocols.checkpoint import save_checkpoint

    folder = tmp_path / "tester__model"
    folder.mkdir()
    backbone = load_backbone("efficientnet-lite0", image_size=32)
    save_checkpoint(folder, backbone, nn.Linear(backbone.feature_dim, len(task.classes)), task.classes)
    write_yaml(folder, base_meta(task.name, kind="checkpoint", id="tester__model", method="model"))
    sub = load_submission(folder)
    assert sub.kind == "checkpoint" and sub.checkpoint == folder / "model.safetensors" and sub.entries == []
    report = validate_submission(folder, task)
    assert report.ok, report.problems
    # The same checkpoint for another class order is refused with the harness's own message.
    config = yaml.safe_load((folder / "model.yaml").read_text())
    config["classes"] = list(reversed(config["classes"]))
    (folder / "model.yaml").write_text(yaml.safe_dump(config))
    report = validate_submission(folder, task)
    assert any("differ from the task's classes" in p for p in report.problems)


@pytest.mark.parametrize("name, problem", [
    ("images/a.png", None),
    ("images/sub/dir/a.JPEG", None),
    ("a.webp", None),
    ("images/../a.png", "contains '..'"),
    ("/abs.png", "absolute path"),
    ("C:/x.png", "absolute path"),
    ("images\\a.png", "backslash"),
    ("images//a.png", "empty or '.' path component"),
    ("./a.png", "empty or '.' path component"),
    ("images/a.tiff", "extension not allowed"),
    ("metadata.jsonl", "names a metadata file"),
    ("", "non-empty string"),
    (3, "non-empty string"),
])
def test_file_name_rules(name, problem):
    found = file_name_problem(name)
    assert (found is None) if problem is None else (problem in found)


def test_soft_label_rules():
    assert parse_label("storm") == ({"storm": 1.0}, None)
    assert parse_label({"storm": 0.3, "flooding": 0.7}) == ({"storm": 0.3, "flooding": 0.7}, None)
    assert parse_label({"storm": 0.3, "flooding": 0.7 + 5e-7})[1] is None  # within 1e-6
    assert "sum to" in parse_label({"storm": 0.3, "flooding": 0.7 + 5e-6})[1]
    assert "must be a number" in parse_label({"storm": True})[1]
    assert "must be a number" in parse_label({"storm": "1"})[1]
    assert "is empty" in parse_label({})[1]
    assert "class name or" in parse_label(["storm"])[1]


def test_guide_shows_the_schema_the_code_checks():
    from pathlib import Path

    from benchmark.submissions.format import describe_fields

    guide = (Path(__file__).resolve().parents[1] / "docs" / "SUBMITTING.md").read_text()
    assert describe_fields() in guide  # regenerate the table from SUBMISSION_FIELDS when it changes
    assert all(f"| `{name}` |" in guide for name in SUBMISSION_FIELDS)


def test_guide_states_the_limits_the_code_enforces():
    from pathlib import Path

    from benchmark.images import MAX_ASPECT_RATIO, MAX_FILE_BYTES, MAX_PIXELS
    from benchmark.submissions import format as fmt
    from benchmark.submissions.checkpoints import MAX_IMAGE_TOKENS

    guide = (Path(__file__).resolve().parents[1] / "docs" / "SUBMITTING.md").read_text()
    limits = guide[guide.index("### Limits"):guide.index("## 4.")]
    expected = [
        f"| `submission.yaml`, `model.yaml` | {fmt.MAX_YAML_BYTES // 1024} KiB;",
        f"nesting at most {fmt.MAX_NESTING} levels; numbers at most {fmt.MAX_NUMBER_CHARS} characters",
        f"| `metadata.jsonl` | {fmt.MAX_METADATA_BYTES // 2**20} MiB; a line at most {fmt.MAX_LINE_BYTES // 1024} KiB",
        f"| an image file | {MAX_FILE_BYTES // 2**20} MiB;",
        f"at most 4096 x 4096 = {MAX_PIXELS:,} pixels".replace(",", " "),
        f"long side at most {MAX_ASPECT_RATIO} x the short one",
        f"| `model.safetensors` | {fmt.MAX_CHECKPOINT_BYTES // 2**30} GiB;",
        f"at most {MAX_IMAGE_TOKENS} image tokens",
        f"at most {fmt.MAX_FOLDER_ENTRIES:,} files and folders".replace(",", " "),
        f"the first {fmt.MAX_LISTED} of a kind",
    ]
    assert [line for line in expected if line not in limits] == []
