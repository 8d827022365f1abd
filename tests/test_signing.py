"""Signed records: Ed25519 over the canonical record, keys by path or environment, and a real tiny
official run whose record the leaderboard shows as official and the audit reproduces."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmark.cli import main
from benchmark.signing import (
    PRIVATE_KEY_ENV,
    SigningError,
    canonical_bytes,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_keys,
    sign_record,
    verify_record,
)

RECORD = {"schema_version": 3, "official": True, "runs": [{"predictions": [0, 1, 2]}], "note": "café"}


@pytest.fixture()
def keypair(tmp_path):
    private, public = tmp_path / "private" / "signing.pem", tmp_path / "keys" / "maintainers.pub"
    generate_keypair(private, public)
    return private, public


def test_sign_and_verify_round_trip_and_any_edit_breaks_it(keypair):
    private_path, public_path = keypair
    key = load_private_key(private_path)
    keys = load_public_keys([public_path.parent])
    assert list(keys) == [key_id(key.public_key())]
    record = sign_record(json.loads(json.dumps(RECORD)), key)
    assert verify_record(record, keys) is None
    reread = json.loads(json.dumps(record, indent=2))  # the file layout does not matter: canonical bytes do
    assert verify_record(reread, keys) is None
    assert canonical_bytes(record) == canonical_bytes(RECORD)  # the signature is not signed
    for edit in (lambda r: r.update(official=False), lambda r: r["runs"][0]["predictions"].__setitem__(0, 2),
                 lambda r: r.update(extra=1)):
        tampered = json.loads(json.dumps(record))
        edit(tampered)
        assert "changed after it was signed" in verify_record(tampered, keys)
    assert verify_record(dict(RECORD), keys) == "not signed"
    stranger = sign_record(json.loads(json.dumps(RECORD)), Ed25519PrivateKey.generate())
    assert "not one of the maintainers' public keys" in verify_record(stranger, keys)
    assert "base64" in verify_record({**record, "signature": {**record["signature"], "value": "**"}}, keys)


def test_keys_come_by_path_or_environment_and_are_never_overwritten(keypair, monkeypatch, tmp_path):
    private_path, public_path = keypair
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    expected = key_id(load_private_key(private_path).public_key())
    monkeypatch.setenv(PRIVATE_KEY_ENV, str(private_path))
    assert key_id(load_private_key().public_key()) == expected
    monkeypatch.setenv(PRIVATE_KEY_ENV, private_path.read_text())  # the PEM text itself, as a CI secret
    assert key_id(load_private_key().public_key()) == expected
    monkeypatch.delenv(PRIVATE_KEY_ENV)
    with pytest.raises(SigningError, match="--signing-key PATH or set SYNTHBENCH_SIGNING_KEY"):
        load_private_key()
    with pytest.raises(SigningError, match="not an unencrypted PEM private key"):
        load_private_key(public_path)
    with pytest.raises(SigningError, match="already exists"):
        generate_keypair(private_path, tmp_path / "other.pub")
    (tmp_path / "big.pem").write_bytes(b"x" * 20_000)
    with pytest.raises(SigningError, match="too large"):
        load_private_key(tmp_path / "big.pem")


# ------------------------------------------------------------------------------------------------
# A real (tiny) official run
# ------------------------------------------------------------------------------------------------


def _tiny_submission(root: Path, task) -> Path:
    """A participant-like submission: the demo editor applied to the task's generation inputs."""
    from benchmark.images import encode_png
    from benchmark.tasks import edit_image

    folder = root / "tests__signed"
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, row in enumerate(task.splits["generation_inputs"]):
        name = task.classes[row["label"]]
        file_name = f"images/{name}_{i:03d}.png"
        (folder / file_name).write_bytes(encode_png(edit_image(row["image"].convert("RGB"), name, seed=i)))
        rows.append({"file_name": file_name, "label": name, "source_id": row["image_id"], "prompt": row["prompt"]})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = {
        "id": folder.name, "team": "tests", "method": "signed", "contact": "tests@example.org", "licence": "CC-BY-4.0",
        "track": "generated", "kind": "images", "generator": {"name": "demo-editor", "version": "1", "link": "https://example.org/demo-editor"},
        "fine_tuned": {"used": False}, "task": {"name": task.name, "revision": task.revision},
    }
    (folder / "submission.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def official_run(tmp_path_factory):
    """An official `synthbench run` (real backbone, 32 px, two settings, one seed), signed."""
    from benchmark.tasks import build_demo_task, load_task

    root = tmp_path_factory.mktemp("official")
    build_demo_task(root / "task", train_per_class=6, test_per_class=6, image_size=32)
    task = load_task(root / "task")
    submission = _tiny_submission(root / "submissions", task)
    private, public = root / "secret" / "signing.pem", root / "keys" / "maintainers.pub"
    generate_keypair(private, public)
    common = ["--task", str(root / "task"), "--submission", str(submission), "--image-size", "32",
              "--seed-list", "0", "--settings", "real,mixed@1", "--device", "cpu", "--no-progress",
              "--cache-dir", str(root / "cache")]
    assert main(["run", *common, "--official", "--signing-key", str(private)]) == 0
    unchecked = root / "unchecked.json"
    assert main(["run", *common, "--no-leakage", "--out", str(unchecked)]) == 0
    return {"root": root, "submission": submission, "public": public, "private": private, "common": common,
            "record": submission / "results" / "efficientnet-lite0__linear-probe.json", "unchecked": unchecked}


@pytest.mark.slow
def test_an_official_run_signs_its_record_and_the_board_shows_it_official(official_run, tmp_path, capsys):
    record = json.loads(official_run["record"].read_text())
    keys = load_public_keys([official_run["public"]])
    assert record["official"] is True and verify_record(record, keys) is None
    assert record["schema_version"] == 3 and record["leakage_checked"] is True
    assert record["backbone"]["input_size"] == 32
    unchecked = json.loads(official_run["unchecked"].read_text())
    assert unchecked["leakage_checked"] is False and "signature" not in unchecked and unchecked["official"] is False

    submissions = official_run["root"] / "submissions"
    site = tmp_path / "site"
    capsys.readouterr()
    assert main(["leaderboard", "build", "--submissions", str(submissions), "--out", str(site),
                 "--keys", str(official_run["public"])]) == 0
    data = json.loads((site / "leaderboard.json").read_text())
    assert data["not_shown"] == []
    assert [(s["id"], s["status"], s["leakage_checked"]) for s in data["submissions"]] == [("tests__signed", "official", True)]
    page = (site / "submissions" / "tests__signed" / "index.html").read_text()
    assert "status-official" in page
    # Against the placeholder maintainers' key in the repository (not this test's), it is self-reported.
    assert main(["leaderboard", "validate", "--strict", "--submissions", str(submissions)]) == 1
    assert "signed by a key that is not one of the maintainers' public keys" in capsys.readouterr().out


@pytest.mark.slow
def test_official_needs_a_key_and_the_gate_before_any_compute(official_run, monkeypatch, capsys):
    monkeypatch.delenv(PRIVATE_KEY_ENV, raising=False)
    before = official_run["record"].read_bytes()
    common = official_run["common"]
    assert main(["run", *common, "--official", "--out", str(official_run["root"] / "x.json")]) == 2
    assert "--signing-key PATH or set SYNTHBENCH_SIGNING_KEY" in capsys.readouterr().err
    assert main(["run", *common, "--official", "--no-leakage", "--signing-key", str(official_run["private"]),
                 "--out", str(official_run["root"] / "x.json")]) == 2
    assert "official records need the leakage gate" in capsys.readouterr().err
    assert not (official_run["root"] / "x.json").exists() and official_run["record"].read_bytes() == before


@pytest.mark.slow
def test_the_audit_reruns_one_seed_per_setting_and_reproduces_the_predictions(official_run, capsys):
    from leaderboard.audit import audit_sample

    record = json.loads(official_run["record"].read_text())
    assert audit_sample(record) == {0: ["real", "mixed@1"]}
    capsys.readouterr()
    code = main(["leaderboard", "audit", str(official_run["record"]), "--task", str(official_run["root"] / "task"),
                 "--device", "cpu", "--cache-dir", str(official_run["root"] / "cache"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "real         seed 0: 36/36 predictions agree" in out and "every re-run prediction is identical" in out
    # A record whose predictions were edited is caught (same device kind: exact agreement required).
    edited = json.loads(official_run["record"].read_text())
    run = next(r for r in edited["runs"] if r["setting"] == "real")
    run["predictions"][0] = (run["predictions"][0] + 1) % len(edited["classes"])
    from benchmark.grid import finalise, run_metrics

    import numpy as np

    run["metrics"] = run_metrics(np.asarray(edited["test"]["labels"]), np.asarray(run["predictions"]), edited["classes"])
    edited.pop("signature")
    forged = official_run["submission"] / "results" / "efficientnet-lite0__fine-tune.json"
    forged.write_text(json.dumps(finalise(edited)))  # any name: the audit reads the record's own fields
    try:
        code = main(["leaderboard", "audit", str(forged), "--task", str(official_run["root"] / "task"),
                     "--device", "cpu", "--cache-dir", str(official_run["root"] / "cache"), "--no-progress"])
        out = capsys.readouterr().out
        assert code == 1 and "35/36 predictions agree" in out and "MISMATCH" in out
    finally:
        forged.unlink()


@pytest.mark.slow
def test_a_version_2_record_resumes_without_recomputing(official_run, capsys):
    """Schema 3 adds fields outside the resume identity: a stored version 2 record's runs are reused."""
    record = json.loads(official_run["unchecked"].read_text())
    old = official_run["root"] / "old.json"
    record["schema_version"] = 2
    del record["leakage_checked"], record["backbone"]["input_size"]
    old.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["run", *official_run["common"], "--no-leakage", "--out", str(old)]) == 0
    assert "0 run(s) computed, 2 reused" in capsys.readouterr().out
    rewritten = json.loads(old.read_text())
    assert rewritten["schema_version"] == 3 and rewritten["leakage_checked"] is False
    assert rewritten["runs"] == record["runs"]
