"""The result record: a valid record passes; each broken field fails, naming the file and the field."""

from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest

from benchmark.errors import ResultsError
from benchmark.grid import finalise, run_metrics
from benchmark.metrics import CI_METHOD, bootstrap_cis
from benchmark.protocol import PROTOCOLS, SETTINGS
from benchmark.results import (
    READABLE_SCHEMA_VERSIONS,
    RESULT_SCHEMA_VERSION,
    leakage_checked,
    load_result,
    parse_record_text,
    result_path,
    validate_result_record,
    write_result,
)

CLASSES = ["earthquake", "wildfire", "volcano", "storm", "flooding", "tsunami"]


@functools.lru_cache(maxsize=None)
def _cached_record(settings, seeds, n_test) -> str:
    return json.dumps(_build_record(settings, seeds, n_test))


def _record(settings=("real", "synthetic@1", "mixed@1"), seeds=(0, 1), n_test=60) -> dict:
    """A fresh copy of a finalised record (built once per shape: the bootstrap takes a moment)."""
    return json.loads(_cached_record(tuple(settings), tuple(seeds), n_test))


def _build_record(settings, seeds, n_test) -> dict:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASSES)), n_test // len(CLASSES))
    runs = []
    for setting in settings:
        for seed in seeds:
            accuracy = {"real": 0.6, "synthetic@1": 0.4}.get(setting, 0.7)
            predictions = np.where(rng.random(labels.size) < accuracy, labels, rng.integers(0, len(CLASSES), labels.size))
            synthetic = 0 if setting == "real" else 100
            runs.append({
                "setting": setting, "ratio": SETTINGS[setting].ratio, "seed": seed,
                "n_train": 600 * (setting != "synthetic@1") + 6 * synthetic,
                "n_real_per_class": 0 if setting.startswith("synthetic") else 100,
                "n_synthetic_per_class": synthetic,
                "predictions": predictions.tolist(),
                "metrics": run_metrics(labels, predictions, CLASSES),
                "delta_vs_real": None, "params": {"C": 1.0}, "seconds": 0.5,
            })
    record = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "harness_version": "0.1.0",
        "official": False,
        "leakage_checked": True,
        "submission": {"id": "team__method", "content_hash": "ab" * 32, "kind": "images", "track": "generated"},
        "task": {"name": "demo-disaster6", "revision": "local", "test_manifest_hash": "cd" * 32},
        "backbone": {"name": "efficientnet-lite0", "weights": "pkg", "revision": "sha256-x", "preprocessing": "pp-y",
                     "input_size": 224},
        "protocol": {"name": "linear-probe", "params": {"C_grid": [0.1, 1.0]}},
        "classes": CLASSES,
        "test": {"n": int(labels.size), "labels": labels.tolist()},
        "runs": runs,
        "summary": {},
        "skipped": [{"setting": "synthetic@4", "reason": "needs 400 synthetic images per class, has 250 for 'storm'"}],
        "provenance": {"device": "cpu", "torch": "2.x", "started": "2025-01-01T00:00:00+00:00",
                       "finished": "2025-01-01T00:01:00+00:00", "seconds_total": 60.0, "seconds_encoding": 40.0,
                       "host": "test"},
    }
    return finalise(record)


def test_a_finalised_record_is_valid_and_round_trips(tmp_path):
    record = _record()
    validate_result_record(record, "x.json")
    assert record["runs"][0]["delta_vs_real"] is None  # real
    mixed = [r for r in record["runs"] if r["setting"] == "mixed@1"]
    assert all(r["delta_vs_real"] is not None for r in mixed)
    summary = record["summary"]["mixed@1"]
    assert summary["n_seeds"] == 2 and summary["delta_n_seeds"] == 2
    assert summary["macro_f1_mean"] == pytest.approx(np.mean([r["metrics"]["macro_f1"] for r in mixed]))
    expected_delta = np.mean([r["delta_vs_real"]["macro_f1"] for r in mixed])
    assert summary["delta_macro_f1_mean"] == pytest.approx(expected_delta)
    assert record["summary"]["real"]["delta_macro_f1_mean"] is None
    path = write_result(tmp_path / "results" / "a__b.json", record)
    assert load_result(path) == record


def _broken(mutate):
    record = _record()
    mutate(record)
    return record


CASES = {
    "schema_version": (lambda r: r.update(schema_version=99), "unknown version 99"),
    "submission.content_hash": (lambda r: r["submission"].pop("content_hash"), "missing"),
    "submission.kind": (lambda r: r["submission"].update(kind="zip"), "not one of"),
    "task.test_manifest_hash": (lambda r: r["task"].update(test_manifest_hash=5), "expected str"),
    "protocol.name": (lambda r: r["protocol"].update(name="svm"), "unknown protocol"),
    "runs[0].setting": (lambda r: r["runs"][0].update(setting="mixed@9"), "unknown setting 'mixed@9'"),
    "runs[2].ratio": (lambda r: r["runs"][2].update(ratio=3), "has ratio 1"),
    "runs[1].predictions": (lambda r: r["runs"][1]["predictions"].pop(), "59 predictions for test.n = 60"),
    "runs[3].predictions": (lambda r: r["runs"][3]["predictions"].__setitem__(0, 6), "integer in 0..5"),
    "runs[0].metrics.accuracy": (lambda r: r["runs"][0]["metrics"].update(accuracy=0.99), "the predictions give"),
    "runs[0].metrics.macro_f1_ci": (lambda r: r["runs"][0]["metrics"].update(macro_f1_ci=[0.9, 0.95]), "lo <="),
    "runs[0].metrics.per_class": (lambda r: r["runs"][0]["metrics"]["per_class"].pop("tsunami"), "are not the classes"),
    "runs[4].delta_vs_real.macro_f1_ci": (
        lambda r: r["runs"][4]["delta_vs_real"].update(macro_f1_ci=[0.5, 0.4]), "lo <="),
    "runs[0].metrics.confusion_matrix": (
        lambda r: r["runs"][0]["metrics"]["confusion_matrix"][0].__setitem__(0, 0), "does not match"),
    "runs[1]": (lambda r: r["runs"][1].update(seed=0), "duplicate run (setting 'real', seed 0)"),
    "classes": (lambda r: r.update(classes=CLASSES[:1]), "at least two"),
    "test.labels": (lambda r: r["test"].update(n=61), "60 labels for test.n = 61"),
    "summary['real'].accuracy_mean": (lambda r: r["summary"]["real"].update(accuracy_mean=0.1), "runs' mean"),
    "summary['mixed@1'].n_seeds": (lambda r: r["summary"]["mixed@1"].update(n_seeds=5), "has 2 run(s)"),
    "summary": (lambda r: r["summary"].pop("mixed@1"), "no entry for setting(s) mixed@1"),
    "summary['real'].ci_method": (lambda r: r["summary"]["real"].pop("ci_method"), "missing"),
    "summary['mixed@1'].ci_method": (
        lambda r: r["summary"]["mixed@1"].update(ci_method="bootstrap over test images"), "unknown CI method"),
    "skipped[0].setting": (lambda r: r["skipped"][0].update(setting="real"), "both skipped and run"),
    "provenance.seconds_total": (lambda r: r["provenance"].update(seconds_total=-1.0), ">= 0"),
    "official": (lambda r: r.update(official="yes"), "expected bool"),
    "leakage_checked": (lambda r: r.pop("leakage_checked"), "missing"),
    "backbone.input_size": (lambda r: r["backbone"].update(input_size="224px"), "expected an integer"),
    "signature.value": (lambda r: r.update(signature={"algorithm": "ed25519", "key_id": "k", "value": 3}), "expected str"),
}


@pytest.mark.parametrize("field", list(CASES))
def test_each_broken_field_is_named_with_the_file(field):
    mutate, problem = CASES[field]
    with pytest.raises(ResultsError) as info:
        validate_result_record(_broken(mutate), "submissions/t__m/results/x.json")
    message = str(info.value)
    assert message.startswith(f"submissions/t__m/results/x.json: field {field}:"), message
    assert problem in message


def test_no_training_protocols_use_their_own_setting():
    record = _record(settings=("real",), seeds=(0,))
    record["runs"][0]["setting"] = "checkpoint"
    record["protocol"]["name"] = "checkpoint"
    record["skipped"] = []
    finalise(record)
    validate_result_record(record)
    record["protocol"]["name"] = "linear-probe"
    with pytest.raises(ResultsError, match="unknown setting 'checkpoint'"):
        validate_result_record(record)
    assert set(PROTOCOLS) >= {"checkpoint", "zero-shot"}


def test_write_refuses_an_invalid_record_and_keeps_the_good_one(tmp_path):
    path = tmp_path / "results" / "efficientnet-lite0__linear-probe.json"
    good = _record()
    write_result(path, good)
    before = path.read_bytes()
    bad = copy.deepcopy(good)
    bad["runs"][0]["predictions"] = bad["runs"][0]["predictions"][:-1]
    with pytest.raises(ResultsError, match=str(path)):
        write_result(path, bad)
    assert path.read_bytes() == before
    nan = copy.deepcopy(good)
    nan["runs"][0]["params"]["C"] = float("nan")
    with pytest.raises(ResultsError, match="cannot be written as JSON"):
        write_result(path, nan)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind


def test_load_names_the_file_for_unreadable_records(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(ResultsError, match="none.json: result file not found"):
        load_result(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ResultsError, match="broken.json: not valid JSON"):
        load_result(broken)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(dict(_record(), schema_version=0)))
    with pytest.raises(ResultsError, match="old.json: field schema_version: unknown version 0"):
        load_result(old)


def test_summary_cis_are_two_level_and_named():
    """Summary CIs resample seeds and test images; deltas use the same draws for both sides."""
    record = _record()
    labels = record["test"]["labels"]
    mixed = [r for r in record["runs"] if r["setting"] == "mixed@1"]
    real = {r["seed"]: r["predictions"] for r in record["runs"] if r["setting"] == "real"}
    seeds = [r["seed"] for r in mixed]
    plain = bootstrap_cis(labels, [r["predictions"] for r in mixed], len(CLASSES), seeds=seeds)
    paired = bootstrap_cis(labels, [r["predictions"] for r in mixed], len(CLASSES),
                           baseline_preds=[real[s] for s in seeds], seeds=seeds)
    summary = record["summary"]["mixed@1"]
    assert summary["ci_method"] == CI_METHOD
    assert summary["macro_f1_ci"] == list(plain["macro_f1"][1:])
    assert summary["delta_accuracy_ci"] == list(paired["accuracy"][1:])
    image_only = bootstrap_cis(labels, [r["predictions"] for r in mixed], len(CLASSES))
    assert summary["macro_f1_ci"] != list(image_only["macro_f1"][1:])


def test_version_1_records_still_load_without_ci_method(tmp_path):
    """Before version 2 the summary CIs were over test images only and named no method."""
    old = _record()
    old["schema_version"] = 1
    for entry in old["summary"].values():
        del entry["ci_method"]
    del old["leakage_checked"], old["backbone"]["input_size"]
    assert 1 in READABLE_SCHEMA_VERSIONS and RESULT_SCHEMA_VERSION == 3
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert load_result(path) == old
    assert leakage_checked(old) is False  # unknown before version 3: never counted as checked
    old["schema_version"] = 2
    with pytest.raises(ResultsError, match="ci_method: missing"):
        validate_result_record(old)


def test_version_2_records_load_and_version_3_needs_the_new_fields():
    record = _record()
    assert leakage_checked(record) is True and record["backbone"]["input_size"] == 224
    old = copy.deepcopy(record)
    old["schema_version"] = 2
    del old["leakage_checked"], old["backbone"]["input_size"]
    validate_result_record(old)
    assert leakage_checked(old) is False
    unchecked = dict(record, leakage_checked=False)
    validate_result_record(unchecked)
    assert leakage_checked(unchecked) is False


HOSTILE_TEXTS = {
    "deep nesting": "[" * 200_000 + "]" * 200_000,
    "NaN": '{"schema_version": NaN}',
    "huge integer": '{"schema_version": ' + "9" * 5000 + "}",
    "runs of the wrong type": lambda r: json.dumps(dict(r, runs="many")),
    "run of the wrong type": lambda r: json.dumps(dict(r, runs=[["real", 0]])),
    "labels of the wrong type": lambda r: json.dumps(dict(r, test={"n": 1, "labels": [[0]]})),
    "summary entry of the wrong type": lambda r: json.dumps(dict(r, summary={"real": [1, 2]})),
    "per-class entry of the wrong type": lambda r: json.dumps(
        {**r, "runs": [{**r["runs"][0], "metrics": {**r["runs"][0]["metrics"], "per_class": {c: 1 for c in CLASSES}}}]}),
    "skipped of the wrong type": lambda r: json.dumps(dict(r, skipped=[None])),
    "not an object": "[1, 2, 3]",
    "not UTF-8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("case", list(HOSTILE_TEXTS))
def test_hostile_record_files_give_one_clean_error_naming_the_file(tmp_path, case):
    text = HOSTILE_TEXTS[case]
    text = text(_record()) if callable(text) else text
    path = tmp_path / "results" / "x__linear-probe.json"
    path.parent.mkdir()
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ResultsError) as info:
        load_result(path)
    assert str(info.value).startswith(f"{path}: ") and len(str(info.value)) < 2000


def test_a_huge_or_special_record_file_is_refused_before_reading(tmp_path, monkeypatch):
    import benchmark.results as results

    path = tmp_path / "big.json"
    with path.open("wb") as handle:  # sparse: nothing is written, the size is what is checked
        handle.truncate(results.MAX_RECORD_BYTES + 1)
    monkeypatch.setattr(results.Path, "read_text", None)  # reading it at all would fail the test
    with pytest.raises(ResultsError, match="larger than a result record may be"):
        load_result(path)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(ResultsError, match="not a regular file"):
        load_result(folder)


def test_fuzzed_records_never_raise_anything_but_a_results_error():
    """Property: any JSON value, or the valid record with any one field replaced by any JSON value,
    gives a valid record or one ResultsError, never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
        max_leaves=10,
    )
    base = _record(settings=("real", "mixed@1"), seeds=(0,), n_test=12)
    paths = []

    def collect(value, path):
        paths.append(path)
        if isinstance(value, dict):
            for key, child in value.items():
                collect(child, path + (key,))
        elif isinstance(value, list):
            for index, child in enumerate(value[:2]):
                collect(child, path + (index,))

    collect(base, ())

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(paths[1:]), json_values)
    def replaced_field(path, value):
        record = copy.deepcopy(base)
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        try:
            parse_record_text(json.dumps(record), "fuzz.json")
        except ResultsError as exc:
            assert str(exc).startswith("fuzz.json: ")

    @settings(max_examples=100, deadline=None)
    @given(json_values)
    def any_value(value):
        with pytest.raises(ResultsError):
            parse_record_text(json.dumps(value), "fuzz.json")

    replaced_field()
    any_value()


def test_result_path_layout_and_unsafe_names(tmp_path):
    assert result_path(tmp_path / "t__m", "clip-vit-b16", "linear-probe") == (
        tmp_path / "t__m" / "results" / "clip-vit-b16__linear-probe.json"
    )
    for backbone, protocol in (("../x", "linear-probe"), ("a__b", "linear-probe"), ("clip", "lin/ear"), ("", "x")):
        with pytest.raises(ResultsError):
            result_path(tmp_path, backbone, protocol)
