"""The records as pydantic models: stored records load and are rewritten byte for byte, the JSON
Schema is printed by `synthbench schema`, and docs/RECORDS.md's field tables are the models'.

tests/records/ holds records written by the harness before the records became models: result
records of versions 1, 2 and 3 (one signed, with tests/records/signing-key.pub), and the
task.json, manifest.json and card of a small demo task.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import ResultsError, TaskError
from benchmark.io import atomic_write_json
from benchmark.results import ResultRecord, load_result, migrate_result, validate_result_record, write_result
from benchmark.schema import RECORDS, field_table, json_schema, record_model, update_field_tables
from benchmark.signing import load_public_key, key_id, verify_record
from benchmark.submissions.format import MetadataRow, SubmissionYaml, submission_yaml_problems
from benchmark.tasks.record import TaskInfo, TaskManifest, check_record, render_card

STORED = Path(__file__).parent / "records"
ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted(STORED.glob("result-*.json"))


def test_the_stored_records_are_there():
    assert [p.name for p in RESULTS] == ["result-v1.json", "result-v2.json", "result-v3-signed.json", "result-v3.json"]


@pytest.mark.parametrize("stored", RESULTS, ids=[p.stem for p in RESULTS])
def test_a_stored_result_loads_and_is_rewritten_byte_for_byte(stored, tmp_path):
    record = load_result(stored)
    ResultRecord.model_validate(record)
    written = write_result(tmp_path / "results" / stored.name, record)
    assert written.read_bytes() == stored.read_bytes()
    assert load_result(written) == record


def test_the_signature_over_the_canonical_record_still_verifies():
    record = load_result(STORED / "result-v3-signed.json")
    public = load_public_key(STORED / "signing-key.pub")
    assert verify_record(record, {key_id(public): public}) is None
    changed = copy.deepcopy(record)
    changed["runs"][0]["seconds"] = 99.0
    assert verify_record(changed, {key_id(public): public}) is not None


def test_migration_brings_old_versions_to_the_current_shape_without_touching_the_record():
    v1 = load_result(STORED / "result-v1.json")
    before = copy.deepcopy(v1)
    migrated = migrate_result(v1)
    assert v1 == before  # the caller's record (what is written back) is untouched
    assert migrated["leakage_checked"] is False and migrated["backbone"]["input_size"] is None
    assert all(entry["ci_method"] for entry in migrated["summary"].values())
    current = load_result(STORED / "result-v3.json")
    assert migrate_result(current) == current


def test_the_model_is_strict_and_names_the_field():
    record = load_result(STORED / "result-v3.json")
    for field, value, problem in (
        ("official", 1, "expected bool, got int"),
        ("harness_version", 3, "expected str, got int"),
        ("leakage_checked", "true", "expected bool, got str"),
    ):
        broken = dict(record, **{field: value})
        with pytest.raises(ResultsError, match=f"^r.json: field {field}: {problem}$"):
            validate_result_record(broken, "r.json")
    broken = copy.deepcopy(record)
    broken["runs"][1]["seed"] = True  # a boolean is not a seed
    with pytest.raises(ResultsError, match=r"^r\.json: field runs\[1\]\.seed: expected an integer, got True$"):
        validate_result_record(broken, "r.json")
    broken = copy.deepcopy(record)
    broken["summary"]["real"]["accuracy_ci"] = [0.1]
    with pytest.raises(ResultsError, match=r"field summary\['real'\]\.accuracy_ci: expected \[lo, hi\], got \[0\.1\]"):
        validate_result_record(broken, "r.json")
    broken = copy.deepcopy(record)
    broken["diagnostics"]["per_class"]["storm"]["kid"]["ci"] = [9.0, 10.0]
    with pytest.raises(ResultsError, match=r"field diagnostics\.per_class\.storm\.kid\.ci: CI \[9\.0, 10\.0\] does not"):
        validate_result_record(broken, "r.json")


def test_the_stored_task_records_load_and_are_rewritten_byte_for_byte(tmp_path):
    for name, model in (("task.json", TaskInfo), ("manifest.json", TaskManifest)):
        stored = STORED / f"task-{name}"
        record = json.loads(stored.read_text())
        check_record(model, record, stored)
        atomic_write_json(tmp_path / name, record)
        assert (tmp_path / name).read_bytes() == stored.read_bytes()


def test_a_version_1_manifest_migrates_and_version_2_needs_near_duplicates():
    manifest = json.loads((STORED / "task-manifest.json").read_text())
    old = {k: v for k, v in manifest.items() if k != "near_duplicates"}
    check_record(TaskManifest, dict(old, schema_version=1), "manifest.json")
    with pytest.raises(TaskError, match=r"^manifest\.json: missing field 'near_duplicates'$"):
        check_record(TaskManifest, old, "manifest.json")
    with pytest.raises(TaskError, match=r"^manifest\.json: near_duplicates must be null or an object with a 'removed'"):
        check_record(TaskManifest, dict(manifest, near_duplicates={"removed": 3}), "manifest.json")
    with pytest.raises(TaskError, match=r"^manifest\.json: unknown split\(s\) validation$"):
        check_record(TaskManifest, dict(manifest, images={**manifest["images"], "validation": {}}), "manifest.json")
    info = json.loads((STORED / "task-task.json").read_text())
    with pytest.raises(TaskError, match=r"^task\.json: field is_demo: expected bool, got str$"):
        check_record(TaskInfo, dict(info, is_demo="yes"), "task.json")


def test_the_card_is_rendered_byte_for_byte_from_the_stored_records():
    card = (STORED / "task-README.md").read_text()
    info = json.loads((STORED / "task-task.json").read_text())
    manifest = json.loads((STORED / "task-manifest.json").read_text())
    description = next(line for line in card.splitlines() if line.startswith("Six procedurally"))
    assert render_card(info, description, manifest["near_duplicates"]) == card


def test_submission_models_match_the_shipped_entries():
    import yaml

    entries = sorted((ROOT / "submissions").glob("*/submission.yaml"))
    assert entries
    for path in entries:
        meta = yaml.safe_load(path.read_text())
        assert submission_yaml_problems(meta) == [], path
        SubmissionYaml.model_validate(meta)
    meta = yaml.safe_load(entries[0].read_text())
    problems = submission_yaml_problems(dict(meta, colour="blue", track="best", team=None))
    assert problems[0].startswith("unknown field(s) colour; allowed: schema_version, id,")
    assert "missing required field 'team'" in problems and "field 'track' must be one of generated, open (got 'best')" in problems
    MetadataRow.model_validate({"file_name": "images/a.png", "label": {"storm": 0.5, "flooding": 0.5}, "extra": 1})


@pytest.mark.parametrize("name", list(RECORDS))
def test_synthbench_schema_prints_each_records_json_schema(name, capsys):
    assert main(["schema", name]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(json_schema(name)))
    assert schema["type"] == "object" and set(schema["properties"]) == set(record_model(name).model_fields)
    assert main(["schema", name, "--fields"]) == 0
    assert capsys.readouterr().out == field_table(name)


def test_the_result_schema_says_what_is_required_and_forbidden(capsys):
    main(["schema", "result"])
    result = json.loads(capsys.readouterr().out)
    assert {"schema_version", "runs", "summary", "provenance"} <= set(result["required"])
    assert "signature" not in result["required"] and "diagnostics" not in result["required"]
    submission = json_schema("submission")
    assert submission["additionalProperties"] is False and {"id", "task", "generator"} <= set(submission["required"])


def test_records_md_field_tables_are_the_models():
    text = (ROOT / "docs" / "RECORDS.md").read_text(encoding="utf-8")
    for name in RECORDS:
        assert f"<!-- fields: {name} -->" in text, f"docs/RECORDS.md has no field table for {name}"
    assert update_field_tables(text) == text, "regenerate them: python -m benchmark.schema docs/RECORDS.md"
