"""Tampered results trees: the board verifies what it shows and one bad entry never takes it down.

Each case below is generated from a good constructed tree (tests/boards.py) by a hostile or
careless edit. For every case: `leaderboard build` still publishes the rest and lists the file
under "Not shown" with the reason (exit 0); `leaderboard validate --strict` and `build --strict`
exit 1 naming the file and why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmark.cli import main
from benchmark.results import MAX_RECORD_BYTES
from benchmark.signing import key_id, sign_record
from tests.boards import EXAMPLE_PLANS, Plan, copy_tree, files_content_hash, make_example_tree, make_record
from leaderboard.tree import NOT_SHOWN, SELF_REPORTED, UNCHECKED, validate_tree

GOOD, OTHER, BASELINE = "team-a__editor", "team-b__noisy", "baseline__classic"
RECORD = "efficientnet-lite0__linear-probe.json"
#: A real task's name (not "demo..."): unchecked entries are never ranked on its board.
TASK_NAME = "constructed-disaster6"


@pytest.fixture(scope="module")
def maintainers(tmp_path_factory):
    """The tests' own maintainers' keypair: (private key, folder holding its .pub)."""
    key = Ed25519PrivateKey.generate()
    folder = tmp_path_factory.mktemp("keys")
    (folder / "maintainers.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, folder


@pytest.fixture(scope="module")
def good_tree(tmp_path_factory, maintainers) -> Path:
    plans = tuple(p for p in EXAMPLE_PLANS if p.submission_id in (GOOD, OTHER, BASELINE))
    plans = tuple(Plan(**{**p.__dict__, "official": True}) if p.baseline else p for p in plans)
    return make_example_tree(tmp_path_factory.mktemp("good") / "submissions", plans, seeds=(0,), per_class=10,
                             signing_key=maintainers[0], task_name=TASK_NAME)


@pytest.fixture()
def tree(good_tree, tmp_path) -> Path:
    return copy_tree(good_tree, tmp_path / "submissions")


def _path(root: Path, submission_id: str = GOOD) -> Path:
    return root / submission_id / "results" / RECORD


def _edit(root: Path, edit, submission_id: str = GOOD) -> Path:
    path = _path(root, submission_id)
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    return path


def _rebuilt(root: Path, submission_id: str = GOOD, *, labels=None, predictions=None, **kwargs) -> dict:
    """The submission's record rebuilt from its own runs (self-consistent metrics and summaries)."""
    record = json.loads(_path(root, submission_id).read_text())
    truth = np.asarray(record["test"]["labels"])
    runs = {(r["setting"], r["seed"]): np.asarray(r["predictions"]) for r in record["runs"]}
    if predictions is not None:
        runs = {key: predictions(truth) for key in runs}
    options = dict(submission_id=submission_id, labels=truth if labels is None else labels, runs=runs,
                   task=record["task"], content_hash=record["submission"]["content_hash"], track=record["submission"]["track"])
    return make_record(**{**options, **kwargs})


# ------------------------------------------------------------------------------------------------
# The tampered trees: each returns (the file named, what the reason says, how it is shown)
# ------------------------------------------------------------------------------------------------


def forged_labels(root, keys):
    forged = (np.asarray(json.loads(_path(root).read_text())["test"]["labels"]) + 1) % 6
    record = _rebuilt(root, labels=forged, predictions=lambda truth: forged)  # perfect on its own labels
    _path(root).write_text(json.dumps(record))
    return _path(root), "test.labels differ from the task's own test labels", NOT_SHOWN


def predictions_copied_from_labels_claiming_official(root, keys):
    """The issue's forgery: predictions = test labels, official: true, no signature."""
    record = _rebuilt(root, predictions=lambda truth: truth.copy(), official=True)
    _path(root).write_text(json.dumps(record))
    return _path(root), "says official: true but not signed", SELF_REPORTED


def official_with_a_bad_signature(root, keys):
    def edit(record):
        record["official"] = True
        record["signature"] = {"algorithm": "ed25519", "key_id": key_id(keys[0].public_key()), "value": "AAAA"}

    return _edit(root, edit), "signature does not verify", SELF_REPORTED


def signed_by_an_unknown_key(root, keys):
    def edit(record):
        record["official"] = True
        sign_record(record, Ed25519PrivateKey.generate())

    return _edit(root, edit), "not one of the maintainers' public keys", SELF_REPORTED


def edited_after_signing(root, keys):
    def edit(record):  # the signed baseline's host, and one of its real predictions "improved"
        record["provenance"]["host"] = "elsewhere"

    return _edit(root, edit, BASELINE), "the record was changed after it was signed", SELF_REPORTED


def wrong_test_manifest_hash(root, keys):
    return _edit(root, lambda r: r["task"].update(test_manifest_hash="f" * 64)), "test_manifest_hash ffffffffffff", NOT_SHOWN


def record_of_an_unknown_task(root, keys):
    def edit(record):
        record["task"] = {"name": "someone-elses-task", "revision": "local", "test_manifest_hash": "e" * 64}

    _name_task_in_yaml(root, "someone-elses-task")
    return _edit(root, edit), "its task someone-elses-task@local", NOT_SHOWN


def task_name_spoofed(root, keys):
    _name_task_in_yaml(root, "xbd-disaster6")
    return _edit(root, lambda r: r["task"].update(name="xbd-disaster6")), "is not the name of the task", NOT_SHOWN


def _name_task_in_yaml(root, name):
    """submission.yaml names the record's task (consistent with it) and the record's content hash follows."""
    meta_path = root / GOOD / "submission.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta_path.write_text(yaml.safe_dump({**meta, "task": {"name": name, "revision": "local"}}))
    _edit(root, lambda r: r["submission"].update(content_hash=files_content_hash(root / GOOD)))


def content_hash_mismatch(root, keys):
    path = _edit(root, lambda r: r["submission"].update(content_hash="ab" * 32))
    return path, "does not match the submission's files", NOT_SHOWN


def same_images_under_two_ids(root, keys):
    copy = root / "team-c__copy"
    shutil.copytree(root / GOOD, copy)
    meta = yaml.safe_load((copy / "submission.yaml").read_text())
    (copy / "submission.yaml").write_text(yaml.safe_dump({**meta, "id": copy.name, "team": "Team C"}))
    content_hash = files_content_hash(copy)  # a self-consistent record for the copy
    record = json.loads((copy / "results" / RECORD).read_text())
    record["submission"].update(id=copy.name, content_hash=content_hash)
    (copy / "results" / RECORD).write_text(json.dumps(record))
    return copy, f"already on the board as '{GOOD}'", NOT_SHOWN


def bad_types(root, keys):
    return _edit(root, lambda r: r["runs"][0].update(seed="zero")), "runs[0].seed: expected an integer", NOT_SHOWN


def deep_nesting(root, keys):
    _path(root).write_text("[" * 100_000 + "]" * 100_000)
    return _path(root), "nested too deeply", NOT_SHOWN


def yaml_bomb_in_submission_yaml(root, keys):
    path = root / OTHER / "submission.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    path.write_text(yaml.safe_dump(yaml.safe_load((root / OTHER / "submission.yaml").read_text())) + "\n".join(lines) + "\n")
    return path, "YAML aliases (*a0) are not accepted", NOT_SHOWN


def deep_nesting_in_submission_yaml(root, keys):
    path = root / OTHER / "submission.yaml"
    path.write_text("id: team-b__noisy\nx: " + "[" * 20_000 + "]" * 20_000 + "\n")
    return path, "nested deeper than", NOT_SHOWN


def submission_yaml_is_a_folder(root, keys):
    path = root / OTHER / "submission.yaml"
    path.unlink()
    path.mkdir()
    return path, "not a regular file", NOT_SHOWN


def submission_folder_is_a_link(root, keys):
    outside = root.parent / "elsewhere"
    shutil.copytree(root / GOOD, outside / "team-l__link")
    link = root / "team-l__link"
    link.symlink_to(outside / "team-l__link", target_is_directory=True)
    return link, "is a symbolic link", NOT_SHOWN


def huge_record_file(root, keys):
    path = _path(root)
    with path.open("r+b") as handle:  # sparse: the size is what must be checked, before any read
        handle.truncate(MAX_RECORD_BYTES + 1)
    return path, "larger than a result record may be", NOT_SHOWN


def duplicate_setting_and_seed(root, keys):
    return _edit(root, lambda r: r["runs"].append(dict(r["runs"][0]))), "duplicate run (setting 'real', seed 0)", NOT_SHOWN


def metrics_disagree_with_predictions(root, keys):
    def edit(record):
        next(run for run in record["runs"] if run["setting"] == "mixed@2")["metrics"]["macro_f1"] = 0.99

    return _edit(root, edit), "is 0.99 but the predictions give", NOT_SHOWN


def scored_without_the_leakage_gate(root, keys):
    return _edit(root, lambda r: r.update(leakage_checked=False)), "scored without the leakage gate", UNCHECKED


def record_before_schema_3(root, keys):
    def edit(record):
        record["schema_version"] = 2
        del record["leakage_checked"], record["backbone"]["input_size"]

    return _edit(root, edit), "predates schema 3", UNCHECKED


TAMPERED = [
    forged_labels, predictions_copied_from_labels_claiming_official, official_with_a_bad_signature,
    signed_by_an_unknown_key, edited_after_signing, wrong_test_manifest_hash, record_of_an_unknown_task,
    task_name_spoofed, content_hash_mismatch, same_images_under_two_ids, bad_types, deep_nesting,
    yaml_bomb_in_submission_yaml, deep_nesting_in_submission_yaml, submission_yaml_is_a_folder, submission_folder_is_a_link, huge_record_file,
    duplicate_setting_and_seed, metrics_disagree_with_predictions, scored_without_the_leakage_gate,
    record_before_schema_3,
]


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_good_tree_verifies_and_its_signed_baseline_is_official(good_tree, maintainers, tmp_path, capsys):
    code, out = _run(capsys, "leaderboard", "validate", "--strict", "--submissions", str(good_tree),
                     "--keys", str(maintainers[1]))
    assert code == 0, out
    site = tmp_path / "site"
    assert _run(capsys, "leaderboard", "build", "--submissions", str(good_tree), "--out", str(site),
                "--keys", str(maintainers[1]))[0] == 0
    data = json.loads((site / "leaderboard.json").read_text())
    status = {s["id"]: s["status"] for s in data["submissions"]}
    assert status == {BASELINE: "official", GOOD: SELF_REPORTED, OTHER: SELF_REPORTED}
    assert data["not_shown"] == []
    # Without the maintainers' key the same signed record is only self-reported.
    tree = validate_tree(good_tree, public_keys={})
    assert not tree.submission(BASELINE).records[("efficientnet-lite0", "linear-probe")].official
    page = (site / "submissions" / BASELINE / "index.html").read_text()
    assert "status-official" in page and "224 px" in page


@pytest.mark.slow  # ~5 s a case on 2 cores (a site build each)
@pytest.mark.parametrize("tamper", TAMPERED, ids=lambda f: f.__name__)
def test_a_tampered_tree_still_builds_lists_the_entry_and_fails_strict(tamper, tree, maintainers, tmp_path, capsys):
    keys = ["--keys", str(maintainers[1])]
    path, reason, shown_as = tamper(tree, maintainers)
    shown = str(path.relative_to(tree))

    site = tmp_path / "site"
    code, out = _run(capsys, "leaderboard", "build", "--submissions", str(tree), "--out", str(site), *keys)
    assert code == 0, out
    assert str(path) in out and reason in out
    data = json.loads((site / "leaderboard.json").read_text())
    listed = [p for p in data["not_shown"] if p["path"] == shown]
    assert listed and reason in listed[0]["reason"] and listed[0]["shown_as"] == shown_as, data["not_shown"]
    index = (site / "index.html").read_text()
    assert "Not shown (" in index and shown in index
    # The rest of the board is there: the untouched entries, ranked, and the real-only row.
    headline = next(v for v in data["views"] if v["board"] == "augment" and v["headline"])
    names = {e["name"]: e for e in headline["entries"]}
    assert "real-only" in names and names["real-only"]["rank_label"] == "reference"  # the zero line, not ranked
    untouched = {GOOD, OTHER, BASELINE} - {Path(shown).parts[0]}
    assert untouched <= set(names), (untouched, list(names))
    affected = Path(shown).parts[0]
    if shown_as == NOT_SHOWN:
        assert affected not in names
    elif shown_as == SELF_REPORTED:
        assert names[affected]["status"] == SELF_REPORTED and names[affected]["rank"] is not None
    else:  # unchecked: shown, labelled, never ranked on a real task's board
        assert names[affected]["leakage_checked"] is False and names[affected]["rank"] is None
        assert names[affected]["held_back"]

    for command in (["validate", "--strict"], ["build", "--strict", "--out", str(tmp_path / "strict-site")]):
        code, out = _run(capsys, "leaderboard", *command, "--submissions", str(tree), *keys)
        assert code == 1, out
        assert str(path) in out and reason in out
    assert not (tmp_path / "strict-site").exists()


def test_the_issue_forgery_is_self_reported_and_cannot_rank_above_what_its_predictions_earn(tree, maintainers, capsys):
    """Predictions copied from the labels with official: true: shown as self-reported, and its
    numbers are what its predictions give against the task's own labels (not the record's claims)."""
    predictions_copied_from_labels_claiming_official(tree, maintainers)
    checked = validate_tree(tree, public_keys={key_id(maintainers[0].public_key()): maintainers[0].public_key()})
    record = checked.submission(GOOD).records[("efficientnet-lite0", "linear-probe")]
    assert not record.official and record.claims_official
    assert np.array_equal(checked.test_labels, np.asarray(record.data["test"]["labels"]))
    code, out = _run(capsys, "leaderboard", "validate", "--strict", "--submissions", str(tree),
                     "--keys", str(maintainers[1]))
    assert code == 1 and "says official: true but not signed: shown as self-reported" in out


def test_a_record_of_a_task_not_given_is_unverified_and_named(tree, maintainers, tmp_path, capsys):
    """Without the task (no --task and no task/ beside the tree) nothing is verified, nothing is ranked."""
    alone = tmp_path / "alone" / "submissions"
    shutil.copytree(tree, alone)
    checked = validate_tree(alone)
    assert checked.submissions == [] or all(not s.records for s in checked.submissions)
    assert all("pass it with --task" in p.reason for p in checked.problems)
    code, out = _run(capsys, "leaderboard", "validate", "--submissions", str(alone), "--task", str(tree.parent / "task"),
                     "--keys", str(maintainers[1]))
    assert code == 0, out


def test_the_tree_yaml_reader_gives_a_value_or_one_clean_error_for_any_text(tmp_path):
    """Property: whatever bytes a submission.yaml holds, the tree's bounded reader returns a value
    or raises ValueError with a short message; never another exception, never an expansion."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from leaderboard.tree import read_bounded_yaml

    path = tmp_path / "submission.yaml"
    pieces = st.sampled_from(["a: &x [1, 2]", "b: *x", "- ", "[", "]", "{", "}", ": ", "!!python/object:os.system",
                              "\n", "  ", "'", '"', "id: x", "&a", "*a", "? ", "%YAML 1.1", "---", "\t", "\x00", "é"])
    texts = st.lists(pieces, max_size=40).map("".join) | st.binary(max_size=200)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(texts)
    def any_text(text):
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            read_bounded_yaml(path)
        except ValueError as exc:
            assert len(str(exc)) < 500

    any_text()
