"""Property-based fuzz of the submission readers: whatever bytes submission.yaml, model.yaml or
metadata.jsonl hold, reading them yields a clean result (problems in the report) and never a
traceback, and every message stays short."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.submissions.format import MAX_NESTING, Problems, load_yaml, parse_json_line, parse_submission

from .malformed import base_meta, write_valid_submission

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: Longest acceptable problem line (values are echoed through benchmark.io.shorten).
MAX_MESSAGE = 2000

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**60), max_value=10**60),
    st.integers(min_value=40, max_value=4000).map(lambda digits: 7 * (10**digits - 1) // 9),  # 777...7 (str()-able)
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["images", "hub", "checkpoint", "open", "generated", "../x.png", "/etc/passwd", "a\x00b"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)
yaml_snippets = st.sampled_from([
    "a: &x [1, 2]\nb: *x\n", "generator: *i\n", "? [a, b]\n: c\n", "notes: 2001-02-30\n", "x: !!python/object:os.system {}\n",
    "\t- bad", "--- a\n--- b\n", "%YAML 9.9\n---\n1\n",
]) | st.integers(min_value=1, max_value=6000).map(lambda n: f"id: {'9' * n}\nnotes: {'[' * (n // 20)}{']' * (n // 20)}\n")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    classes = ["earthquake", "wildfire", "volcano", "storm", "flooding", "tsunami"]
    return write_valid_submission(tmp_path_factory.mktemp("fuzz") / "tester__noise", classes, "demo-disaster6", per_class=2)


def _assert_clean(folder) -> Problems:
    _, problems = parse_submission(folder)  # must not raise
    for line in problems.errors + problems.warnings:
        assert isinstance(line, str) and len(line) <= MAX_MESSAGE, line[:300]
    return problems


@FUZZ
@given(meta=st.one_of(values, st.fixed_dictionaries({}, optional={k: values for k in base_meta("t")})))
def test_any_submission_yaml_value_is_reported_cleanly(folder, meta):
    try:
        text = yaml.safe_dump(meta, sort_keys=False)
    except (yaml.YAMLError, ValueError, OverflowError):
        return  # not representable as YAML
    (folder / "submission.yaml").write_text(text)
    _assert_clean(folder)


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode), yaml_snippets.map(str.encode)),
       prefix=st.sampled_from([b"", yaml.safe_dump(base_meta("demo-disaster6")).encode()]))
def test_any_submission_yaml_bytes_are_reported_cleanly(folder, data, prefix):
    (folder / "submission.yaml").write_bytes(prefix + data)
    _assert_clean(folder)


rows = st.one_of(
    values,
    st.fixed_dictionaries({"file_name": st.one_of(st.text(max_size=30), values), "label": values},
                          optional={"source_id": values, "prompt": values, "sha256": values}),
)


@FUZZ
@given(lines=st.lists(st.one_of(
    rows.map(lambda row: json.dumps(row, default=str)),
    st.text(max_size=80),
    st.integers(min_value=1, max_value=100_000).map(lambda depth: "[" * depth + "]" * depth),
    st.sampled_from(['{"label": 1e400}', '{"label": NaN}', "\ufeff{}", "\u2028"]),
    st.integers(min_value=1, max_value=6000).map(lambda n: '{"file_name": "a.png", "label": {"storm": ' + "9" * n + "}}"),
), max_size=8))
def test_any_metadata_jsonl_is_reported_cleanly(folder, lines):
    (folder / "submission.yaml").write_text(yaml.safe_dump(base_meta("demo-disaster6")))
    original = (folder / "metadata.jsonl").read_bytes()
    try:
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
        _assert_clean(folder)
    finally:
        (folder / "metadata.jsonl").write_bytes(original)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), yaml_snippets))
def test_the_yaml_reader_raises_only_its_documented_errors(text):
    try:
        load_yaml(text)
    except (yaml.YAMLError, ValueError):
        pass


@FUZZ
@given(line=st.one_of(st.text(max_size=200), rows.map(lambda row: json.dumps(row, default=str))),
       depth=st.integers(min_value=0, max_value=3 * MAX_NESTING))
def test_the_json_line_reader_raises_only_value_errors(line, depth):
    for candidate in (line, "[" * depth + line + "]" * depth):
        try:
            parse_json_line(candidate)
        except ValueError:
            pass
