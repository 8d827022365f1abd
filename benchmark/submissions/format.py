"""The submission format (docs/RECORDS.md section 2, docs/SUBMITTING.md): reading it safely.

A submission is a folder with `submission.yaml` and one of three payloads:

* `kind: images`: synthetic images in the Hugging Face imagefolder convention, `images/...` plus
  `metadata.jsonl` rows `{file_name, label, source_id, prompt}`;
* `kind: hub`: `hub: {repo_id, revision}` naming a Hub dataset repo (or a local directory) laid
  out the same way, fetched with `huggingface_hub.snapshot_download` at the pinned revision;
* `kind: checkpoint`: `model.safetensors` + `model.yaml`, scored directly by the harness.

Everything here is written against untrusted input, and every input is bounded before it is read
(the limits are the constants below, listed in docs/SUBMITTING.md): files are checked by `os.stat`
(a regular file, within its byte limit) before they are opened, hashed or decoded, so a FIFO never
blocks and a sparse terabyte file is never read; YAML goes through `load_yaml` (a SafeLoader that
refuses aliases and deep nesting, with a byte limit); JSON lines through `parse_json_line` (line
length, nesting depth and number size bounded, NaN/Infinity refused); no pickle; every `file_name`
is checked to stay inside its folder (no `..`, absolute paths, backslashes, NUL, or symlinks
resolving outside); images are decoded only through `benchmark.images.open_rgb`; archives are
refused by name; values are echoed in messages only through `benchmark.io.shorten`. Problems of
one kind on many metadata lines are summarised (the first few, then a count).

The records are pydantic models (benchmark.records): `SubmissionYaml` (submission.yaml; unknown
fields refused, every problem reported at once, in the harness's words) and `MetadataRow` (one
metadata line). They validate what the bounded readers return; `SUBMISSION_FIELDS` is read off
`SubmissionYaml`.

`parse_submission` collects *every* structural problem (validation reports them all at once);
`load_submission` raises one `SubmissionError` listing them, or returns a `Submission`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal

import numpy as np
import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from ..errors import SubmissionError
from ..images import MAX_FILE_BYTES, ImageRef, archive_format
from ..io import clip, read_bounded, regular_file_problem, sha256_bytes, sha256_file, sha256_json, shorten
from ..records import OpenRecord, Record, describe, problem

SUBMISSION_SCHEMA_VERSION = 1

SUBMISSION_FILE = "submission.yaml"
METADATA_FILE = "metadata.jsonl"
CHECKPOINT_FILE = "model.safetensors"
CHECKPOINT_CONFIG_FILE = "model.yaml"

#: Tracks: what a submission's images may be.
TRACKS: dict[str, str] = {
    "generated": "images made by a generative model from the task's generation inputs or from text; "
    "copies of real train or test images are rejected",
    "open": "anything but the test images: augmentations of the real train images, mixes, copies (the baselines' track)",
}

#: Payload kinds.
KINDS: dict[str, str] = {
    "images": "synthetic images in the folder (imagefolder convention: images/ + metadata.jsonl)",
    "hub": "a Hugging Face dataset repo (or local directory) in the same layout, pinned by revision",
    "checkpoint": "a model checkpoint (model.safetensors + model.yaml) scored directly on the test split",
    "recipe": "a harness-made baseline: no files, the images are regenerated from the task by the harness "
    "(`recipe: {multiplier, seed}`), content-hashed per task (`recipe.content_hashes`)",
}

#: File extensions a submitted image may have (the decoder checks the actual format too).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")

#: Tolerance on the sum of a soft label's weights.
SOFT_LABEL_TOLERANCE = 1e-6

# Limits on untrusted input (docs/SUBMITTING.md, "Limits"): each is checked before the input is read.
#: submission.yaml and model.yaml, in bytes.
MAX_YAML_BYTES = 64 * 1024
#: Nesting of YAML collections and of a JSON line's arrays/objects.
MAX_NESTING = 16
#: metadata.jsonl, in bytes, and one of its lines.
MAX_METADATA_BYTES = 64 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
#: Digits of an integer, characters of a number (YAML or JSON).
MAX_NUMBER_CHARS = 32
#: model.safetensors, in bytes (a ViT-L image tower in float32 is 1.2 GB).
MAX_CHECKPOINT_BYTES = 4 * 1024**3
#: Problems of one kind listed line by line before "and N more".
MAX_LISTED = 5
#: Entries walked in a submission folder (archives and unlisted files are looked for among them).
MAX_FOLDER_ENTRIES = 200_000
#: Archives, by extension (and, for any other name, by their first bytes: images.archive_format).
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".7z", ".rar", ".zst", ".lz4")

#: A pinned Hub revision is a full commit SHA (a branch or tag can move under the leaderboard).
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*__[A-Za-z0-9][A-Za-z0-9._-]*$")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def _baseline_names() -> tuple[str, ...]:
    from ..registry import BASELINES  # the baseline names, plain data (below both submissions and generators)

    return tuple(BASELINES)


@dataclass
class Problems:
    """Collects every problem (errors) and warning, each one line naming the file and the field.

    Problems on metadata lines go through `line_error` with a kind: `flush_lines` then lists the
    first MAX_LISTED of each kind (lines with the same message share one entry) and counts the rest,
    so 100 000 bad lines give a few lines of report, not 100 000.
    """

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _lines: dict[tuple[str, str], dict] = field(default_factory=dict, repr=False)

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def line_error(self, label: str, line: int, kind: str, message: str | None = None) -> None:
        """A problem on line `line` of file `label`; `message` defaults to `kind`."""
        group = self._lines.setdefault((label, kind), {"by_message": {}, "more": 0})
        lines = group["by_message"].get(message or kind)
        if lines is None and len(group["by_message"]) >= MAX_LISTED:
            group["more"] += 1
        else:
            group["by_message"].setdefault(message or kind, []).append(line)

    def flush_lines(self) -> None:
        for (label, kind), group in self._lines.items():
            for message, lines in group["by_message"].items():
                where = f"{label} line {lines[0]}" if len(lines) == 1 else f"{label} lines {listing(lines)}"
                self.errors.append(f"{where}: {message}")
            if group["more"]:
                self.errors.append(f"{label}: and {group['more']} more line(s) with the same kind of problem ({kind})")
        self._lines.clear()


def listing(numbers: list[int]) -> str:
    """'1, 2, 3, 4, 5 and 7 more': the first MAX_LISTED of `numbers`, then a count."""
    shown = ", ".join(str(n) for n in numbers[:MAX_LISTED])
    return shown + (f" and {len(numbers) - MAX_LISTED} more" if len(numbers) > MAX_LISTED else "")


# ----------------------------------------------------------------------------------------------
# bounded readers: YAML and JSON lines
# ----------------------------------------------------------------------------------------------


class BoundedSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing aliases (an alias bomb expands 900 bytes into gigabytes), nesting
    deeper than MAX_NESTING and numbers longer than MAX_NUMBER_CHARS."""

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{clip(str(event.anchor), 40)}) are not accepted", event.start_mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_NESTING} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of {len(node.value)} characters (at most {MAX_NUMBER_CHARS})", node.start_mark
            )
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node):
        if len(node.value) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"number of {len(node.value)} characters (at most {MAX_NUMBER_CHARS})", node.start_mark
            )
        return super().construct_yaml_float(node)


BoundedSafeLoader.add_constructor("tag:yaml.org,2002:int", BoundedSafeLoader.construct_yaml_int)
BoundedSafeLoader.add_constructor("tag:yaml.org,2002:float", BoundedSafeLoader.construct_yaml_float)


def load_yaml(data: bytes | str) -> Any:
    """Parse untrusted YAML with BoundedSafeLoader; every failure is a yaml.YAMLError or ValueError
    (e.g. an impossible date), both caught by the callers that report them."""
    loader = BoundedSafeLoader(data)
    try:
        return loader.get_single_data()
    except RecursionError:  # a nesting the composer's depth check does not see (flow scalars)
        raise ValueError(f"nested deeper than {MAX_NESTING} levels") from None
    finally:
        loader.dispose()


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"integer of {len(text)} digits (at most {MAX_NUMBER_CHARS})")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text[: MAX_NUMBER_CHARS + 1])
    if len(text) > MAX_NUMBER_CHARS or not math.isfinite(value):
        raise ValueError(f"number {shorten(text, 40)} is out of range (finite, at most {MAX_NUMBER_CHARS} characters)")
    return value


def _json_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number: JSON has no NaN or Infinity")


def _nesting_above(line: str, limit: int) -> bool:
    """Whether `line`'s JSON arrays/objects nest deeper than `limit` (brackets inside strings ignored)."""
    if line.count("[") + line.count("{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for char in line:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def parse_json_line(line: str) -> Any:
    """One untrusted JSON value, or ValueError saying what is wrong (json.JSONDecodeError is one):
    at most MAX_LINE_BYTES, nesting at most MAX_NESTING, bounded numbers, no NaN/Infinity."""
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"line of {len(line)} characters, above the limit of {MAX_LINE_BYTES}")
    if _nesting_above(line, MAX_NESTING):
        raise ValueError(f"nested deeper than {MAX_NESTING} levels")
    return json.loads(line, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)


# ----------------------------------------------------------------------------------------------
# submission.yaml and metadata.jsonl rows: the models (benchmark.records)
# ----------------------------------------------------------------------------------------------

#: Bounds of a recipe's regeneration (generators.baselines.generate_baseline checks the same).
RECIPE_MULTIPLIERS = (1, 16)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _checked(check: Callable[[Any], str | None], convert: Callable[[Any], Any] | None = None) -> BeforeValidator:
    """A field check in the project's words: `check(value)` returns the message, or None when the
    value is fine (then `convert`, if given, maps it before the type check)."""

    def validate(value: Any) -> Any:
        message = check(value)
        if message:
            raise problem(message)
        return convert(value) if convert else value

    return BeforeValidator(validate)


def _text(name: str, *, pattern: re.Pattern | None = None, placeholder: bool = False, number: bool = False,
          null_is_missing: bool = True):
    """A non-empty string (or, with `number`, a number) that is not a placeholder / matches `pattern`."""

    def check(value: Any) -> str | None:
        if value is None and null_is_missing:
            return f"missing required field '{name}'"
        kinds = (str, int, float) if number else str
        if not isinstance(value, kinds) or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
            return f"field '{name}' must be a non-empty string (got {shorten(value)})"
        if pattern is not None and not pattern.match(value.replace(" ", "-") if name in ("team", "method") else value):
            return _PATTERN_PROBLEMS[name].format(shorten(value))
        return placeholder_problem(name, value) if placeholder else None

    return _checked(check)


_PATTERN_PROBLEMS = {
    "id": "field 'id' must read <team>__<method> using letters, digits, '.', '_' or '-' (got {})",
    "team": "field 'team' may use letters, digits, spaces, '.', '_' or '-' (got {})",
    "method": "field 'method' may use letters, digits, spaces, '.', '_' or '-' (got {})",
}


def _one_of(name: str, allowed: Iterable[str]):
    allowed = tuple(allowed)
    return _checked(lambda v: None if isinstance(v, str) and v in allowed
                    else f"missing required field '{name}'" if v is None
                    else f"field '{name}' must be one of {', '.join(allowed)} (got {shorten(v)})")


def _mapping(name: str, shape: str, *, need: str | None = None):
    """A nested mapping: anything else (or one without the key `need`) is named with its shape."""
    return _checked(lambda v: None if isinstance(v, dict) and (need is None or need in v)
                    else f"missing required field '{name}'" if v is None
                    else f"field '{name}' must be a mapping {shape} (got {shorten(v)})")


def _link(name: str):
    return _checked(lambda v: None if v is None or (isinstance(v, str) and v.startswith("https://") and len(v) <= 500
                                                    and " " not in v)
                    else f"field '{name}' must be an https:// link of at most 500 characters (got {shorten(v)})")


def _schema_version_problem(version: Any) -> str | None:
    if not isinstance(version, int) or isinstance(version, bool):
        return (f"field 'schema_version' must be an integer, {SUBMISSION_SCHEMA_VERSION} "
                f"(got {type(version).__name__} {shorten(version)})")
    if version != SUBMISSION_SCHEMA_VERSION:
        return f"schema_version {version} is not supported (this harness reads version {SUBMISSION_SCHEMA_VERSION})"
    return None


def _content_hashes_problem(hashes: Any) -> str | None:
    if hashes is None or (isinstance(hashes, dict) and all(
            isinstance(k, str) and "@" in k and isinstance(v, str) and _SHA256.match(v) for k, v in hashes.items())):
        return None
    return "field 'recipe.content_hashes' must map <task>@<revision> to a 64-hex SHA-256 content hash"


def _whole_number(name: str, lowest: int, highest: int):
    return _checked(lambda v: None if isinstance(v, int) and not isinstance(v, bool) and lowest <= v <= highest
                    else f"field '{name}' must be a whole number from {lowest} to {highest} (got {shorten(v)})")


#: The names TRACKS and KINDS allow, as types (the JSON Schema lists them).
TrackName = Literal[tuple(TRACKS)]
KindName = Literal[tuple(KINDS)]


class Generator(OpenRecord):
    name: Annotated[str | int | float, _text("generator.name", placeholder=True, number=True)] = Field(
        description="the generative model's (or baseline's) name")
    version: Annotated[str | int | float, _text("generator.version", placeholder=True, number=True)] = Field(
        description="its version (a number is accepted)")
    link: Annotated[str | int | float, _text("generator.link", placeholder=True, number=True)] = Field(
        description="where it is described")
    model_snapshot: Annotated[str | None, _checked(
        lambda v: None if v is None or (isinstance(v, str) and v.strip() and len(v) <= 500)
        else "field 'generator.model_snapshot' must be a non-empty string of at most 500 characters "
             "(the model's dated version or weights hash)")] = Field(
        None, description="optional: the model's dated version or weights hash")


class FineTuned(OpenRecord):
    used: Annotated[bool, _checked(lambda v: None if isinstance(v, bool)
                                   else f"field 'fine_tuned.used' must be yes or no (got {shorten(v)})")] = Field(
        description="yes or no")
    data: Any = Field(None, description="on what data (a non-empty string, required when used)")

    @model_validator(mode="after")
    def _data_when_used(self) -> FineTuned:
        if self.used and not (isinstance(self.data, str) and self.data.strip()):
            raise problem("field 'fine_tuned.data' must say on what data the generator was fine-tuned")
        return self


class TaskPin(OpenRecord):
    name: Annotated[str, _text("task.name", null_is_missing=False)] = Field(
        None, validate_default=True, description="the task's name (required)")
    revision: Annotated[str, _text("task.revision", null_is_missing=False)] = Field(
        None, validate_default=True, description="its revision, `local` for a task folder (required)")


class HubPin(OpenRecord):
    repo_id: Annotated[str, _checked(
        lambda v: None if isinstance(v, str) and v.strip()
        else "field 'hub.repo_id' must be a Hub dataset id or a directory inside the submission folder")] = Field(
        None, validate_default=True, description="a Hub dataset id (owner/name), or a directory inside the submission folder")
    revision: Any = Field(None, description="a full 40-hex commit SHA (checked when the dataset is fetched)")


class Recipe(Record):
    multiplier: Annotated[int, _whole_number("recipe.multiplier", *RECIPE_MULTIPLIERS)] = Field(
        None, validate_default=True, description="images per train_real image (required)")
    seed: Annotated[int, _whole_number("recipe.seed", 0, 2**31 - 1)] = Field(
        None, validate_default=True, description="the regeneration's seed (required)")
    content_hashes: Annotated[dict[str, str] | None, _checked(_content_hashes_problem)] = Field(
        None, description="{<task>@<revision>: sha256} of the regenerated images")


class SubmissionYaml(Record):
    """submission.yaml: docs/RECORDS.md section 2 (an unknown top-level field is an error)."""

    schema_version: Annotated[int, _checked(_schema_version_problem)] = Field(
        SUBMISSION_SCHEMA_VERSION, description=f"format version, {SUBMISSION_SCHEMA_VERSION} (default)")
    id: Annotated[str, _text("id", pattern=_ID_PATTERN)] = Field(
        description="`<team>__<method>` (letters, digits, ., _ or -), the folder's name")
    team: Annotated[str, _text("team", pattern=_NAME_PATTERN)] = Field(description="team name")
    method: Annotated[str, _text("method", pattern=_NAME_PATTERN)] = Field(description="method name")
    contact: Annotated[str, _text("contact", placeholder=True)] = Field(
        description="e-mail address or URL of the maintainer of this entry")
    licence: Annotated[str, _text("licence", placeholder=True)] = Field(
        description="licence of the submitted images or checkpoint (e.g. CC-BY-4.0)")
    track: Annotated[TrackName, _one_of("track", TRACKS)] = Field(description="one of: " + ", ".join(TRACKS))
    kind: Annotated[KindName, _one_of("kind", KINDS)] = Field(description="one of: " + ", ".join(KINDS))
    generator: Annotated[Generator, _mapping("generator", "{name, version, link}")] = Field(
        description="{name, version, link, model_snapshot (optional)}: the generative model (or baseline) used")
    fine_tuned: Annotated[FineTuned, _mapping("fine_tuned", "{used: yes|no, data: ...}", need="used")] = Field(
        description="{used: yes or no, data: on what data (required when used)}")
    task: Annotated[TaskPin, _mapping("task", "{name, revision}")] = Field(
        description="{name, revision}: the task the images were made for")
    baseline: Annotated[str | None, _checked(
        lambda v: None if v is None or (isinstance(v, str) and v in _baseline_names())
        else f"field 'baseline' must be one of {', '.join(_baseline_names())} (got {shorten(v)})")] = Field(
        None, description="baselines only: the baseline generator's name")
    hub: Annotated[HubPin | None, _checked(
        lambda v: None if v is None or isinstance(v, dict)
        else f"kind hub needs a field 'hub' mapping {{repo_id, revision}} (got {shorten(v)})")] = Field(
        None, description="kind hub only: {repo_id, revision}")
    recipe: Annotated[Recipe | None, _checked(
        lambda v: None if v is None or isinstance(v, dict)
        else f"kind recipe needs a field 'recipe' mapping {{multiplier, seed}} (got {shorten(v)})")] = Field(
        None, description="kind recipe only: {multiplier, seed, content_hashes: {<task>@<revision>: sha256}}")
    paper: Annotated[str | None, _link("paper")] = Field(
        None, description="https link to the paper describing the method (shown on the entry page)")
    code: Annotated[str | None, _link("code")] = Field(
        None, description="https link to the code that made the images (shown on the entry page)")
    citation: Annotated[str | None, _checked(
        lambda v: None if v is None or (isinstance(v, str) and v.lstrip().startswith("@") and len(v) <= 5000)
        else "field 'citation' must be a BibTeX entry (text starting with '@', at most 5000 characters)")] = Field(
        None, description="BibTeX entry to cite the method (shown on the entry page)")
    notes: Annotated[str | None, _checked(lambda v: None if v is None or isinstance(v, str)
                                          else "field 'notes' must be a string")] = Field(None, description="free text")

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem(cls, meta: Any, handler: Callable[[Any], SubmissionYaml]) -> SubmissionYaml:
        """Every problem at once: unknown fields, each field's own, then the rules across fields
        (which run even when a field is broken, so one report lists them all)."""
        if not isinstance(meta, dict):
            raise problem(f"must be a YAML mapping of fields (got {type(meta).__name__})")
        errors: list[dict] = []
        unknown = sorted(k if isinstance(k, str) else shorten(k) for k in meta if k not in cls.model_fields)
        if unknown:
            names = ", ".join(shorten(k, 60) if len(k) > 60 else k for k in unknown[:20])
            more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
            errors.append(_error(f"unknown field(s) {names}{more}; allowed: {', '.join(cls.model_fields)}"))
        # `hub` and `recipe` beside another kind: refused as such (below), their contents unread.
        mismatched = {key for key in ("hub", "recipe") if meta.get("kind") != key}
        known = {k: v for k, v in meta.items() if k in cls.model_fields and k not in mismatched}
        result = None
        try:
            result = handler(known)
        except ValidationError as exc:
            errors += [_error(e["ctx"]["problem"], e["loc"]) if e["type"] == "synthbench" else _rebuilt(e)
                       for e in exc.errors(include_url=False)]
        errors += [_error(message) for message in _rules_across_fields(meta)]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return result


def _error(message: str, loc: tuple = ()) -> dict:
    return {"type": problem(message), "loc": loc, "input": None}


def _rebuilt(error: dict) -> dict:
    rebuilt = {"type": error["type"], "loc": error["loc"], "input": error.get("input")}
    if "ctx" in error:
        rebuilt["ctx"] = error["ctx"]
    return rebuilt


def _rules_across_fields(meta: dict) -> list[str]:
    """The rules that tie fields together: baselines are open-track; `hub` and `recipe` only (and
    always) with their kind; a recipe names its baseline."""
    problems, kind, baseline, track = [], meta.get("kind"), meta.get("baseline"), meta.get("track")
    if isinstance(baseline, str) and baseline in _baseline_names() and track != "open":
        problems.append(f"baselines belong to the 'open' track (baseline {baseline!r} has track {shorten(track)})")
    if kind == "hub" and meta.get("hub") is None:
        problems.append("kind hub needs a field 'hub' mapping {repo_id, revision} (got None)")
    elif kind != "hub" and meta.get("hub") is not None:
        problems.append(f"field 'hub' is only allowed with kind hub (kind is {shorten(kind)})")
    if kind == "recipe":
        if not isinstance(baseline, str):
            problems.append("kind recipe needs a field 'baseline' naming the harness baseline that makes the images")
        if meta.get("recipe") is None:
            problems.append("kind recipe needs a field 'recipe' mapping {multiplier, seed} (got None)")
    elif meta.get("recipe") is not None:
        problems.append(f"field 'recipe' is only allowed with kind recipe (kind is {shorten(kind)})")
    return problems


def submission_yaml_problems(meta: Any) -> list[str]:
    """Every problem of a parsed submission.yaml, each in the project's words (no file name)."""
    try:
        SubmissionYaml.model_validate(meta)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    else:
        return []
    messages = [_submission_message(error) for error in errors if error["type"] != "extra_forbidden"]
    # Unknown keys inside `recipe` (the one nested mapping that forbids them): one message.
    unknown = sorted(str(error["loc"][-1]) for error in errors if error["type"] == "extra_forbidden")
    if unknown:
        messages.append(f"unknown field(s) recipe.{', recipe.'.join(unknown[:5])}; "
                        f"allowed: {', '.join(Recipe.model_fields)}")
    return messages


def _submission_message(error: dict) -> str:
    dotted = ".".join(str(part) for part in error["loc"])
    if error["type"] == "synthbench":
        return error["ctx"]["problem"]
    if error["type"] == "missing":
        return f"missing required field '{dotted}'"
    return f"field '{dotted}': {describe(error)}"


def check_submission_yaml(meta: Any, where: str, problems: Problems) -> dict:
    """Check a parsed submission.yaml against `SubmissionYaml`; return it (a dict) even when it
    has problems (each one recorded, naming `where` and the field)."""
    for message in submission_yaml_problems(meta):
        problems.error(f"{where}: {message}")
    return meta if isinstance(meta, dict) else {}


#: Top-level keys: name -> (required, what it is), from the model. Read by docs/SUBMITTING.md.
SUBMISSION_FIELDS: dict[str, tuple[bool, str]] = {
    name: (info.is_required(), info.description or "") for name, info in SubmissionYaml.model_fields.items()
}


# ----------------------------------------------------------------------------------------------
# file names and paths
# ----------------------------------------------------------------------------------------------


#: Values that stand for "not filled in": refused wherever a participant must say something.
PLACEHOLDER_VALUES = frozenset({
    "unknown", "n/a", "na", "none", "null", "tbd", "todo", "?", "-", "placeholder", "changeme", "xxx",
    "see the generator's terms of use", "see the generator's licence",
})


def placeholder_problem(field: str, value: Any) -> str | None:
    """A message when `value` is a placeholder (`unknown`, `TBD`, ...) rather than a real answer."""
    if isinstance(value, str) and value.strip().lower() in PLACEHOLDER_VALUES:
        return f"field '{field}' holds the placeholder {value.strip()!r}: give the real value"
    return None


def folder_id_problem(submission_id: Any, folder_name: str) -> str | None:
    """The identity rule, shared by `synthbench validate` and the leaderboard: a submission's id is
    its folder's name. None when they agree, else the one message both print."""
    if submission_id == folder_name:
        return None
    shown = submission_id if isinstance(submission_id, str) else type(submission_id).__name__
    return (f"id {shorten(shown, 60)} does not match its folder name {folder_name!r} "
            "(a submission's id is its folder's name: rename the folder or change the id)")


def id_from_folder(folder: str | os.PathLike) -> tuple[str, str]:
    """(team, method) of a submission folder named `<team>__<method>`; SubmissionError otherwise."""
    name = Path(folder).name
    if not _ID_PATTERN.match(name):
        raise SubmissionError(
            f"{folder}: a submission folder must be named <team>__<method> (letters, digits, '.', '_' or '-'), "
            f"e.g. my-team__my-method: its name is the submission's id (got {name!r})"
        )
    team, _, method = name.partition("__")
    return team, method


def file_name_problem(name: Any) -> str | None:
    """Why `name` is not an acceptable relative file name, or None. Pure string checks."""
    if not isinstance(name, str) or not name:
        return f"file_name must be a non-empty string (got {shorten(name)})"
    if len(name) > 1024:
        return f"file_name {shorten(name)} is longer than 1024 characters"
    if "\x00" in name:
        return f"file_name {name!r} contains a NUL character"
    if "\\" in name:
        return f"file_name {name!r} contains a backslash (use '/' separators)"
    if name.startswith("/") or _WINDOWS_DRIVE.match(name):
        return f"file_name {name!r} is an absolute path (must be relative to the submission folder)"
    parts = name.split("/")
    if ".." in parts:
        return f"file_name {name!r} contains '..' (must stay inside the submission folder)"
    if any(part in ("", ".") for part in parts):
        return f"file_name {name!r} has an empty or '.' path component"
    if name in (SUBMISSION_FILE, METADATA_FILE):
        return f"file_name {name!r} names a metadata file, not an image"
    if not name.lower().endswith(IMAGE_EXTENSIONS):
        return f"file_name {name!r}: extension not allowed (use one of {', '.join(IMAGE_EXTENSIONS)})"
    return None


def resolve_inside(root: Path, name: str, max_bytes: int | None = None) -> tuple[Path | None, str | None]:
    """(path, None) when `root/name` is a regular file whose real path stays inside `root`.

    Symlinks are followed only to check where they lead: one resolving outside `root` is refused
    (it could make the harness read any file on the machine), naming the first path component
    that escapes (a symlinked `images/` is one message for every row under it). Anything but a
    regular file (a directory, FIFO, device, socket) is refused by what it is, from os.stat only.
    """
    candidate = root / name
    real_root = os.path.realpath(root)
    parts = name.split("/")
    for end in range(1, len(parts) + 1):
        partial = root.joinpath(*parts[:end])
        if os.path.islink(partial):
            real = os.path.realpath(partial)
            if os.path.commonpath([real_root, real]) != real_root:
                return None, f"{'/'.join(parts[:end])}: symlink resolves outside the submission folder (to {real})"
    if not os.path.lexists(candidate):
        return None, f"{name}: file not found"
    problem = regular_file_problem(candidate, max_bytes)
    if problem is not None:
        return None, f"{name}: {problem}"
    return candidate, None


# ----------------------------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------------------------


def parse_label(label: Any) -> tuple[dict[str, float] | None, str | None]:
    """A metadata `label` (class name or {class: weight}) as a soft label, or (None, problem).

    Class names are checked against a task later (`unknown_classes`); here only the shape and the
    numbers: finite, non-negative, summing to 1 within SOFT_LABEL_TOLERANCE.
    """
    if isinstance(label, str):
        if not label.strip():
            return None, "label is an empty string"
        return {label: 1.0}, None
    if isinstance(label, dict):
        if not label:
            return None, "soft label is empty"
        weights: dict[str, float] = {}
        for name, weight in label.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                return None, f"soft label weight for {shorten(name)} must be a number (got {shorten(weight)})"
            try:
                weight = float(weight)
            except OverflowError:
                return None, f"soft label weight for {shorten(name)} is out of range ({shorten(weight)})"
            if not math.isfinite(weight):
                return None, f"soft label weight for {shorten(name)} is not finite ({weight})"
            if weight < 0:
                return None, f"soft label weight for {shorten(name)} is negative ({weight})"
            weights[str(name)] = weight
        total = math.fsum(weights.values())
        if abs(total - 1.0) > SOFT_LABEL_TOLERANCE:
            return None, f"soft label weights sum to {total!r}, not 1 (tolerance {SOFT_LABEL_TOLERANCE})"
        return weights, None
    return None, f"label must be a class name or a {{class: weight}} mapping (got {shorten(label)})"


# ----------------------------------------------------------------------------------------------
# metadata rows: the model
# ----------------------------------------------------------------------------------------------


def _row_text(what: str):
    return _checked(lambda v: None if v is None or (isinstance(v, str) and v)
                    else f"{what} must be a generation-input image_id or null (got {shorten(v)})")


class MetadataRow(OpenRecord):
    """One line of metadata.jsonl (fields beyond these are kept in the file and ignored)."""

    file_name: Annotated[str, _checked(file_name_problem)] = Field(
        description="image path relative to the image root, `/` separators, an image extension; stays inside the folder")
    label: Annotated[str | dict[str, float], _checked(lambda v: parse_label(v)[1])] = Field(
        description="a class name, or a soft label {class: weight} (finite, non-negative, summing to 1)")
    source_id: Annotated[str | None, _row_text("source_id")] = Field(
        None, description="the generation input's image_id the image was made from, or null")
    prompt: Annotated[str, _checked(lambda v: None if not v or isinstance(v, str)
                                    else f"prompt must be a string (got {shorten(v)})", lambda v: v or "")] = Field(
        "", description="the prompt used (null or absent: empty)")
    sha256: Any = Field(None, description="optional: the file's SHA-256, checked by validate when it is a string")


#: The problem kind each row field's errors are summarised under (`Problems.line_error`).
_ROW_KINDS = {"file_name": "bad file_name", "label": "bad label", "source_id": "bad source_id", "prompt": "bad prompt"}


def row_problems(row: dict) -> dict[str, tuple[str, str]]:
    """{field: (kind, message)} of one metadata row under `MetadataRow`; missing fields under
    the key "missing" (one message naming them all)."""
    try:
        MetadataRow.model_validate(row)
    except ValidationError as exc:
        found: dict[str, tuple[str, str]] = {}
        missing = [str(e["loc"][0]) for e in exc.errors(include_url=False) if e["type"] == "missing"]
        if missing:
            found["missing"] = ("missing fields", f"missing required field(s) {', '.join(missing)}")
        for error in exc.errors(include_url=False):
            key = str(error["loc"][0])
            if error["type"] != "missing" and key not in found:
                message = error["ctx"]["problem"] if error["type"] == "synthbench" else f"{key}: {describe(error)}"
                found[key] = (_ROW_KINDS.get(key, f"bad {key}"), message)
        return found
    return {}


# ----------------------------------------------------------------------------------------------
# the loaded objects
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmissionImage:
    """One metadata row: an image file with its (soft) label and provenance."""

    file_name: str  # relative to the image root (the submission folder or the hub snapshot)
    path: Path
    label: dict[str, float]  # soft label, weights summing to 1
    source_id: str | None
    prompt: str
    sha256: str
    line: int  # line number in metadata.jsonl (for messages)
    recorded_sha256: str | None = None  # the row's own `sha256` column, when it has one

    @property
    def hard_label(self) -> str:
        """The class with the largest weight (ties: the first listed)."""
        return max(self.label.items(), key=lambda kv: kv[1])[0]


@dataclass
class Submission:
    """A loaded submission folder (see the module docstring and docs/RECORDS.md section 2)."""

    path: Path
    meta: dict
    kind: str  # images | hub | checkpoint (guessed from the files when submission.yaml is unusable)
    entries: list[SubmissionImage]
    image_root: Path  # the folder file_names are relative to
    content_hash: str
    yaml_sha256: str
    checkpoint: Path | None = None
    checkpoint_config: dict | None = None

    @property
    def id(self) -> str:
        value = self.meta.get("id")
        return value if isinstance(value, str) and value else self.path.name

    @property
    def track(self) -> str | None:
        """The declared track (None or an invalid value only in a submission with problems)."""
        return self.meta.get("track")

    @property
    def baseline(self) -> str | None:
        return self.meta.get("baseline")

    @property
    def task_name(self) -> str | None:
        task = self.meta.get("task")
        return task.get("name") if isinstance(task, dict) else None

    def image_refs(self) -> list[ImageRef]:
        """One ImageRef per metadata row (rows repeating a file share its SHA-256)."""
        return [ImageRef(e.sha256, e.path, name=f"{self.id}/{e.file_name}") for e in self.entries]

    def targets(self, classes: list[str]) -> np.ndarray:
        """(N, C) float32 soft-label targets in `classes` order."""
        index = {name: i for i, name in enumerate(classes)}
        out = np.zeros((len(self.entries), len(classes)), dtype=np.float32)
        for row, entry in enumerate(self.entries):
            for name, weight in entry.label.items():
                if name not in index:
                    raise SubmissionError(
                        f"{self.path / METADATA_FILE} line {entry.line}: unknown class {name!r} "
                        f"(task classes: {', '.join(classes)})"
                    )
                out[row, index[name]] = weight
        return out

    def hard_labels(self, classes: list[str]) -> np.ndarray:
        """(N,) int64: the class index of each row's largest weight (first in `classes` on ties)."""
        return self.targets(classes).argmax(axis=1).astype(np.int64)

    def counts(self, classes: list[str]) -> dict[str, int]:
        """Rows per class by hard label, every class of `classes` present."""
        labels = self.hard_labels(classes) if self.entries else np.zeros(0, dtype=np.int64)
        return {name: int((labels == i).sum()) for i, name in enumerate(classes)}

    def __repr__(self) -> str:
        return f"Submission({self.id!r}, kind={self.kind}, track={self.track}, n={len(self.entries)})"


# ----------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------


def read_file_bytes(
    path: Path, label: str, max_bytes: int, problems: Problems, *, missing: str = "file not found"
) -> bytes | None:
    """The bytes of `path`, a regular file (not a symlink) of at most `max_bytes`, or None with a
    problem naming `label`: checked by os.stat before it is opened (a directory, FIFO or device is
    named as such; a sparse terabyte file is refused by its size, never read)."""
    if os.path.islink(path):
        problems.error(f"{label}: must be a regular file, not a symlink")
        return None
    problem = regular_file_problem(path, max_bytes)
    if problem is not None:
        problems.error(f"{label}: {missing if problem == 'file not found' else problem}")
        return None
    try:
        return read_bounded(path, max_bytes)
    except (OSError, ValueError) as exc:
        problems.error(f"{label}: cannot be read ({clip(str(exc), 200)})")
        return None


def parse_yaml_bytes(data: bytes, label: str, problems: Problems) -> Any:
    """Parsed YAML (through `load_yaml`), or None with a problem naming `label`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.error(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problems.error(f"{label}: invalid YAML{where} ({clip(str(getattr(exc, 'problem', None) or exc), 200)})")
    except (ValueError, OverflowError) as exc:  # e.g. a timestamp naming 30 February
        problems.error(f"{label}: invalid YAML ({clip(str(exc), 200)})")
    return None


def read_yaml(path: Path, problems: Problems, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Parsed YAML of a bounded regular file, or None with a problem naming the file."""
    data = read_file_bytes(path, path.name, max_bytes, problems)
    return None if data is None else parse_yaml_bytes(data, path.name, problems)


def read_metadata_rows(path: Path, problems: Problems, label: str | None = None) -> list[tuple[int, dict]]:
    """(line number, row) for every well-formed JSON object line; problems for the rest."""
    label = label or path.name
    raw = read_file_bytes(
        path, label, MAX_METADATA_BYTES, problems,
        missing="file not found (a kind images submission lists its images there)",
    )
    if raw is None:
        return []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.error(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return []
    rows = []
    n_errors = len(problems.errors)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = parse_json_line(line)
        except json.JSONDecodeError as exc:
            problems.line_error(label, number, "invalid JSON", f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            problems.line_error(label, number, "invalid JSON", f"invalid JSON (nested deeper than {MAX_NESTING} levels)")
            continue
        except ValueError as exc:
            problems.line_error(label, number, "invalid JSON", f"invalid JSON ({clip(str(exc), 200)})")
            continue
        if not isinstance(row, dict):
            problems.line_error(label, number, "not a JSON object", f"must be a JSON object (got {type(row).__name__})")
            continue
        rows.append((number, row))
    problems.flush_lines()
    if not rows and len(problems.errors) == n_errors:
        problems.error(f"{label}: no images listed")
    return rows


def _kind_of(detail: str) -> str:
    """A problem's kind for summaries: its text without the file name, parentheses and numbers."""
    return re.sub(r"\d+", "N", re.sub(r" \(.*", "", detail.split(": ", 1)[-1]))


def _row_problem(found: dict, name: Any, allow: bool, seen_names: dict, seen_folded: dict) -> tuple[str, str] | None:
    """(kind, message) for a row's missing fields (`row_problems`' findings), its file name and a
    name listed before, or None."""
    first = found.get("missing") or found.get("file_name")
    if first:
        return first
    if name in seen_names and not allow:
        return "duplicate file_name", (
            f"duplicate file_name {name!r} (also on line {seen_names[name]}); "
            "only the 'duplicate' baseline may list a file more than once"
        )
    folded = name.casefold()
    if folded in seen_folded and seen_folded[folded] != name:
        return "letter-case collision", (
            f"file_name {name!r} differs from {seen_folded[folded]!r} only by letter case "
            "(they collide on case-insensitive file systems)"
        )
    return None


def parse_rows(
    rows: list[tuple[int, dict]],
    image_root: Path,
    metadata_label: str,
    problems: Problems,
    *,
    allow_repeated_files: bool,
) -> list[SubmissionImage]:
    """Turn metadata rows into SubmissionImages, recording every problem; bad rows are dropped.

    Each listed file is checked by os.stat (regular, at most MAX_FILE_BYTES) before it is hashed."""
    entries: list[SubmissionImage] = []
    seen_names: dict[str, int] = {}
    seen_folded: dict[str, str] = {}
    file_sha: dict[str, str] = {}
    for number, row in rows:
        name = row.get("file_name")
        found = row_problems(row)
        named = _row_problem(found, name, allow_repeated_files, seen_names, seen_folded)
        if named:
            problems.line_error(metadata_label, number, *named)
            continue
        seen_names.setdefault(name, number)
        seen_folded.setdefault(name.casefold(), name)
        other = next((found[key] for key in found if key not in ("missing", "file_name")), None)
        if other:
            problems.line_error(metadata_label, number, *other)
            continue
        soft, _ = parse_label(row["label"])
        source_id = row.get("source_id")
        prompt = row.get("prompt") or ""

        path, path_problem = resolve_inside(image_root, name, max_bytes=MAX_FILE_BYTES)
        if path_problem:
            problems.line_error(metadata_label, number, _kind_of(path_problem), path_problem)
            continue
        if name not in file_sha:
            try:
                file_sha[name] = sha256_file(path, MAX_FILE_BYTES)
            except (OSError, ValueError) as exc:
                problems.line_error(metadata_label, number, "unreadable file", f"{name}: cannot be read ({clip(str(exc), 200)})")
                continue
        entries.append(
            SubmissionImage(
                file_name=name, path=path, label=soft, source_id=source_id, prompt=prompt,
                sha256=file_sha[name], line=number,
                recorded_sha256=row["sha256"] if isinstance(row.get("sha256"), str) else None,
            )
        )
    problems.flush_lines()
    return entries


def compute_content_hash(yaml_sha256: str, entries: Iterable[SubmissionImage], extra: dict | None = None) -> str:
    """SHA-256 over submission.yaml and the sorted (file_name, sha256, label, source_id) rows."""
    rows = sorted(
        [e.file_name, e.sha256, json.dumps(e.label, sort_keys=True), e.source_id or ""] for e in entries
    )
    return sha256_json({"submission_yaml": yaml_sha256, "rows": rows, **(extra or {})})


def _local_hub_root(repo_id: str, folder: Path, problems: Problems) -> tuple[bool, Path | None]:
    """(is it a local path, the directory): a local `hub.repo_id` must stay inside the folder."""
    candidate = folder / repo_id
    if "\x00" in repo_id:
        problems.error(f"{SUBMISSION_FILE}: field 'hub.repo_id' contains a NUL character")
        return True, None
    if not (repo_id.startswith(("/", ".", "~")) or os.path.isdir(candidate)):
        return False, None
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(os.path.expanduser(repo_id) if repo_id.startswith("~") else candidate)
    if os.path.commonpath([real_folder, real]) != real_folder or real == real_folder:
        problems.error(
            f"{SUBMISSION_FILE}: hub.repo_id {shorten(repo_id)} is a local path outside the submission folder; "
            "use a Hub dataset id (owner/name) pinned by commit, or kind images with the images in the folder"
        )
        return True, None
    if not os.path.isdir(real):
        problems.error(f"{SUBMISSION_FILE}: hub.repo_id {shorten(repo_id)} is not a directory")
        return True, None
    problems.warn(
        f"{SUBMISSION_FILE}: hub.repo_id {repo_id!r} is a local directory; the official run needs a Hub "
        "dataset repo pinned by commit"
    )
    return True, candidate


def resolve_hub_root(meta: dict, folder: Path, problems: Problems) -> Path | None:
    """The directory holding a kind hub submission's metadata.jsonl and images.

    `hub.repo_id` is either a Hub dataset id (`owner/name`) fetched with `snapshot_download` at
    `hub.revision`, which must then be a full commit SHA (a branch can move after validation), or,
    for local checks, a directory inside the submission folder (a path outside it is refused: it
    could make the harness read anything on the machine). HF_HUB_OFFLINE / a local cache work as usual.
    """
    hub = meta.get("hub") or {}
    repo_id, revision = hub.get("repo_id"), hub.get("revision")
    is_local, local = _local_hub_root(repo_id, folder, problems)
    if is_local:
        return local
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("must read owner/name")
    except HFValidationError as exc:
        problems.error(f"{SUBMISSION_FILE}: hub.repo_id {shorten(repo_id)} is not a Hub dataset id ({clip(str(exc), 160)})")
        return None
    if not isinstance(revision, str) or not _COMMIT_SHA.match(revision):
        problems.error(f"{SUBMISSION_FILE}: field 'hub.revision' must be a full 40-character commit SHA (got {shorten(revision)})")
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision))
    except Exception as exc:  # network, auth, unknown repo/revision: all reported, not raised
        problems.error(f"{SUBMISSION_FILE}: could not fetch Hub dataset {repo_id}@{revision} ({type(exc).__name__}: {clip(str(exc), 300)})")
        return None


_SMALL_FILE_SUFFIXES = (".yaml", ".yml", ".jsonl", ".json", ".md", ".txt", ".safetensors") + IMAGE_EXTENSIONS


def archive_problems(folder: Path) -> list[str]:
    """One problem per archive in `folder` (by extension, or by magic bytes for other names).

    The walk does not follow symlinks and stops after MAX_FOLDER_ENTRIES entries (a problem too)."""
    problems, seen = [], 0
    for dirpath, dirs, files in os.walk(folder):
        seen += len(dirs) + len(files)
        if seen > MAX_FOLDER_ENTRIES:
            problems.append(f"{folder.name}: holds more than {MAX_FOLDER_ENTRIES} files and folders (not checked further)")
            break
        for name in sorted(files):
            path = Path(dirpath, name)
            rel = path.relative_to(folder).as_posix()
            lower = name.lower()
            kind = next((suffix[1:] for suffix in ARCHIVE_SUFFIXES if lower.endswith(suffix)), None)
            if kind is None and not lower.endswith(_SMALL_FILE_SUFFIXES) and regular_file_problem(path, None, follow=False) is None:
                try:
                    with open(path, "rb") as handle:
                        kind = archive_format(handle.read(512))
                except OSError:
                    continue
            if kind is not None:
                problems.append(
                    f"{rel}: is a {kind} archive; archives are not accepted (unpack it: {METADATA_FILE} "
                    "lists the image files themselves)"
                )
    return problems


def parse_submission(path: str | os.PathLike) -> tuple[Submission | None, Problems]:
    """Read a submission folder, collecting every structural problem (no task needed).

    Returns the Submission (bad rows dropped) and the problems. Parsing goes on past a broken
    submission.yaml (the payload's kind is then guessed from the files) so that one run reports
    every problem; a Submission returned with problems must not be scored (`load_submission`
    refuses it). None only when there is no folder.
    """
    folder = Path(path)
    problems = Problems()
    if not folder.is_dir():
        problems.error(f"{folder}: not a directory")
        return None, problems
    yaml_bytes = read_file_bytes(folder / SUBMISSION_FILE, SUBMISSION_FILE, MAX_YAML_BYTES, problems)
    raw_meta = None
    if yaml_bytes is not None:
        n_before = len(problems.errors)
        raw_meta = parse_yaml_bytes(yaml_bytes, SUBMISSION_FILE, problems)
        if raw_meta is None and len(problems.errors) == n_before:
            problems.error(f"{SUBMISSION_FILE}: file is empty")
    meta = check_submission_yaml(raw_meta, SUBMISSION_FILE, problems) if raw_meta is not None else {}
    yaml_sha = sha256_bytes(yaml_bytes) if yaml_bytes is not None else ""
    id_problem = folder_id_problem(meta.get("id"), folder.name) if isinstance(meta.get("id"), str) else None
    if id_problem:
        problems.error(f"{SUBMISSION_FILE}: {id_problem}")
    for archive in archive_problems(folder):
        problems.error(archive)

    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # unusable yaml: check what the files say the payload is
        kind = "checkpoint" if os.path.lexists(folder / CHECKPOINT_FILE) and not os.path.lexists(folder / METADATA_FILE) else "images"
    if kind == "recipe":  # no files: the harness regenerates the images from the task (benchmark.generators.recipe)
        submission = Submission(
            path=folder, meta=meta, kind=kind, entries=[], image_root=folder,
            content_hash=compute_content_hash(yaml_sha, []), yaml_sha256=yaml_sha,
        )
        return submission, problems
    if kind == "checkpoint":
        checkpoint, config, config_sha = _parse_checkpoint(folder, problems)
        extra = {}
        if checkpoint is not None:
            extra["model_safetensors"] = sha256_file(checkpoint, MAX_CHECKPOINT_BYTES)
            extra["model_yaml"] = config_sha
        submission = Submission(
            path=folder, meta=meta, kind=kind, entries=[], image_root=folder,
            content_hash=compute_content_hash(yaml_sha, [], extra), yaml_sha256=yaml_sha,
            checkpoint=checkpoint, checkpoint_config=config,
        )
        return submission, problems

    if kind == "hub":
        image_root = resolve_hub_root(meta, folder, problems) if isinstance(meta.get("hub"), dict) else None
        metadata_label = f"hub:{meta['hub']['repo_id']}/{METADATA_FILE}" if image_root else METADATA_FILE
    else:
        image_root = folder
        metadata_label = METADATA_FILE
    entries: list[SubmissionImage] = []
    if image_root is not None:
        rows = read_metadata_rows(image_root / METADATA_FILE, problems, metadata_label)
        entries = parse_rows(
            rows, image_root, metadata_label, problems,
            allow_repeated_files=meta.get("baseline") == "duplicate",
        )
    extra = {"hub": meta.get("hub")} if kind == "hub" else None
    submission = Submission(
        path=folder, meta=meta, kind=kind, entries=entries, image_root=image_root or folder,
        content_hash=compute_content_hash(yaml_sha, entries, extra), yaml_sha256=yaml_sha,
    )
    return submission, problems


_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container (a zip holding a pickle)


def _weights_problem(weights_path: Path, folder: Path) -> str | None:
    """Why model.safetensors cannot be read at all (header only, through safetensors), or None."""
    if os.path.islink(weights_path):
        return "must be a regular file, not a symlink"
    problem = regular_file_problem(weights_path, MAX_CHECKPOINT_BYTES)
    if problem == "file not found":
        others = sorted(p.name for p in folder.glob("*") if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl"))
        hint = f" (found {', '.join(others)}: pickled checkpoints are not accepted, convert to safetensors)" if others else ""
        return f"file not found{hint}"
    if problem is not None:
        return problem
    with open(weights_path, "rb") as handle:
        head = handle.read(8)
        # A safetensors header length can begin like a pickle (0x80 0x02 is 640): look at the header.
        header_start = handle.read(1) if len(head) == 8 else b""
    if not head:
        return "empty file (0 bytes)"
    if header_start != b"{" and (head.startswith(_PICKLE_MAGIC) or head.startswith(_ZIP_MAGIC)):
        return (
            "this is a pickle/torch.save file, not safetensors "
            "(pickles can run code and are never loaded; save with safetensors.torch.save_file)"
        )
    try:
        from safetensors import safe_open

        with safe_open(str(weights_path), framework="numpy") as handle:
            if not list(handle.keys()):
                return "holds no tensors"
    except Exception as exc:  # safetensors raises its own error types for bad headers
        return f"not a valid safetensors file ({type(exc).__name__}: {clip(str(exc), 200)})"
    return None


def _parse_checkpoint(folder: Path, problems: Problems) -> tuple[Path | None, dict | None, str]:
    """Check model.safetensors (header only, never unpickled) and read model.yaml (bounded).

    Returns (weights path or None, the parsed model.yaml or None, model.yaml's SHA-256 or "").
    The tensors themselves are `checkpoints.check_checkpoint`'s (validate and run share it)."""
    weights_path = folder / CHECKPOINT_FILE
    weights_problem = _weights_problem(weights_path, folder)
    if weights_problem is not None:
        problems.error(f"{CHECKPOINT_FILE}: {weights_problem}")
    config: dict | None = None
    data = read_file_bytes(
        folder / CHECKPOINT_CONFIG_FILE, CHECKPOINT_CONFIG_FILE, MAX_YAML_BYTES, problems,
        missing="file not found (it describes the architecture and class order)",
    )
    parsed = None if data is None else parse_yaml_bytes(data, CHECKPOINT_CONFIG_FILE, problems)
    if parsed is not None and not isinstance(parsed, dict):
        problems.error(f"{CHECKPOINT_CONFIG_FILE}: must be a YAML mapping (got {type(parsed).__name__})")
    elif isinstance(parsed, dict):
        config = parsed
        classes = parsed.get("classes")
        if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            problems.error(f"{CHECKPOINT_CONFIG_FILE}: field 'classes' must be a list of class names")
    return (None if weights_problem else weights_path), config, (sha256_bytes(data) if data is not None else "")


def load_submission(path: str | os.PathLike) -> Submission:
    """Load a submission folder, or raise SubmissionError listing every structural problem.

    Task-dependent checks (class names, counts, source ids, decoding, leakage) are
    `validate_submission`'s job.
    """
    submission, problems = parse_submission(path)
    if problems.errors or submission is None:
        details = "\n  ".join(problems.errors) or "unusable submission.yaml"
        raise SubmissionError(f"{path}: invalid submission ({len(problems.errors)} problem(s)):\n  {details}")
    return submission


def describe_fields() -> str:
    """Markdown table of submission.yaml fields (for the guide and `--help`)."""
    lines = ["| field | required | what |", "|---|---|---|"]
    for name, (required, what) in SUBMISSION_FIELDS.items():
        lines.append(f"| `{name}` | {'yes' if required else 'no'} | {what} |")
    return "\n".join(lines)
