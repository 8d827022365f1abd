"""Typed records: the pydantic base every record model shares, how its errors read, and the registry.

Each record of the flow (docs/RECORDS.md) is one pydantic model, owned by the module that writes
it: `submission.yaml` and the `metadata.jsonl` rows (benchmark.submissions.format), the task's
`task.json` and `manifest.json` (benchmark.tasks.record) and the result record
(benchmark.results). The writer and every reader go through the model; the bounded readers
(`read_bounded`, the YAML loader refusing aliases and depth, the JSON depth and number limits)
still come first: a model validates what they return, it never reads a file itself.

The models are strict (an integer is not a string, `true` is not `1`) and say which fields they
allow. Their errors are translated back into the project's messages, which name the file and the
field (`describe`, `field_path`); a check that needs words of its own raises `problem(...)`.

`synthbench schema NAME` (benchmark.schema) prints a model's JSON Schema, and the field tables
of docs/RECORDS.md are `field_rows` of the models (a test keeps them equal).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Iterable, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from .io import shorten


class Record(BaseModel):
    """A record whose every field is declared: an unknown field is an error."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_default=False)


class OpenRecord(BaseModel):
    """A record that keeps (and does not check) fields beyond the declared ones."""

    model_config = ConfigDict(strict=True, extra="allow", validate_default=False)


def problem(message: str, *at: str | int) -> PydanticCustomError:
    """A validation error in the project's own words, raised from a validator; `at` continues the
    location below the validated value (a model's check naming one of its fields)."""
    return PydanticCustomError("synthbench", "{problem}", {"problem": message, "at": at})


def field_path(loc: Iterable[Any], quoted: Iterable[str] = ()) -> str:
    """A pydantic location as the project writes a field: `runs[0].metrics.accuracy`, and
    `summary['real'].n_seeds` for the mappings named in `quoted` (whose keys are data, not names)."""
    quoted = set(quoted)
    text, previous = "", None
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif previous in quoted:
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else str(part)
        previous = part
    return text or "<root>"


_TYPE_WORDS = {
    "int_type": "an integer", "float_type": "a finite number", "finite_number": "a finite number",
    "string_type": "str", "bool_type": "bool", "dict_type": "dict", "list_type": "list",
    "model_type": "an object", "model_attributes_type": "an object",
}


def describe(error: dict) -> str:
    """The problem of one pydantic error in the project's words (without file and field)."""
    kind, value = error["type"], error.get("input")
    if kind == "synthbench":
        return error["ctx"]["problem"]
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("int_type", "float_type", "finite_number"):
        return f"expected {_TYPE_WORDS[kind]}, got {shorten(value)}"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {type(value).__name__}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(error["ctx"].values()))
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        return f"must be {sign} {bound}"
    if kind == "literal_error":
        return f"{shorten(value)} is not one of {error['ctx']['expected']}"
    return f"{error['msg'][:1].lower()}{error['msg'][1:]} (got {shorten(value)})"


def error_field(error: dict, quoted: Iterable[str] = ()) -> str:
    """The field one pydantic error is about, written as `field_path` writes it."""
    at = error.get("ctx", {}).get("at", ()) if error["type"] == "synthbench" else ()
    return field_path(tuple(error["loc"]) + tuple(at), quoted)


def first_error(exc: ValidationError) -> dict:
    """The error a reader reports first: pydantic lists them in field order."""
    return exc.errors(include_url=False)[0]


# ----------------------------------------------------------------------------------------------
# field tables (docs/RECORDS.md holds them, benchmark.schema writes them)
# ----------------------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, str]:
    """(the model inside `annotation`, the path suffix leading to it) or (None, "")."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            model, suffix = _unwrap(arg)
            if model is not None:
                return model, suffix
    if origin is list:
        model, suffix = _unwrap(get_args(annotation)[0])
        return model, "[]" + suffix
    if origin is dict:
        model, suffix = _unwrap(get_args(annotation)[1])
        return model, ".<key>" + suffix
    return None, ""


def type_text(annotation: Any) -> str:
    """A short, stable spelling of a field's type for the tables."""
    origin = get_origin(annotation)
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if origin is typing.Annotated:
        return type_text(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return " or ".join(type_text(arg) for arg in get_args(annotation))
    if origin is Literal:
        return " or ".join(repr(arg) for arg in get_args(annotation))
    if origin is list:
        return f"list of {type_text(get_args(annotation)[0])}"
    if origin is dict:
        key, value = get_args(annotation)
        return f"{{{type_text(key)}: {type_text(value)}}}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def field_rows(model: type[BaseModel], prefix: str = "", seen: dict | None = None) -> list[tuple[str, str, bool, str]]:
    """(dotted field, type, required, description) of `model` and of every model inside it (a
    model met a second time is not listed again: its row says where its fields are)."""
    seen = {} if seen is None else seen
    rows = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        description = info.description or ""
        inner, suffix = _unwrap(info.annotation)
        if inner is not None and inner in seen:
            description += f" (the fields of `{seen[inner]}`)"
        rows.append((path, type_text(info.annotation), info.is_required(), description))
        if inner is not None and inner not in seen:
            seen[inner] = f"{path}{suffix}"
            rows += field_rows(inner, f"{path}{suffix}.", seen)
    return rows
