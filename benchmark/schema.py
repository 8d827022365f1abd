"""`synthbench schema NAME`: print a record's JSON Schema, generated from its pydantic model.

The records (docs/RECORDS.md) are models owned by the modules that write them; this command names
them (RECORDS) and prints `model_json_schema()`, or with `--fields` the field table that
docs/RECORDS.md holds between `<!-- fields: NAME -->` and `<!-- /fields -->`. The tables there are
generated (`python -m benchmark.schema docs/RECORDS.md` rewrites them) and a test checks that they
are up to date. The models are imported only inside the command, so the parser stays light.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path

#: Record name -> (module, model class, what it is): the records `synthbench schema NAME` prints.
RECORDS: dict[str, tuple[str, str, str]] = {
    "submission": ("benchmark.submissions.format", "SubmissionYaml", "a submission's submission.yaml"),
    "metadata": ("benchmark.submissions.format", "MetadataRow", "one line of a submission's metadata.jsonl"),
    "task": ("benchmark.tasks.record", "TaskInfo", "a task folder's task.json"),
    "manifest": ("benchmark.tasks.record", "TaskManifest", "a task folder's manifest.json"),
    "result": ("benchmark.results", "ResultRecord", "a result record, results/<backbone>__<protocol>.json"),
}
HELP = "print a record's JSON Schema (" + ", ".join(RECORDS) + ")"
_BLOCK = re.compile(r"(<!-- fields: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /fields -->)", re.S)


def record_model(name: str):
    """The pydantic model of record `name`."""
    module, attribute, _ = RECORDS[name]
    return getattr(importlib.import_module(module), attribute)


def json_schema(name: str) -> dict:
    schema = record_model(name).model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def field_table(name: str) -> str:
    from .records import field_rows

    lines = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for path, kind, required, description in field_rows(record_model(name)):
        cells = [f"`{path}`", kind, "yes" if required else "no", description]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def update_field_tables(text: str) -> str:
    """`text` with every `<!-- fields: NAME -->` block regenerated from the models."""
    return _BLOCK.sub(lambda m: m.group(1) + field_table(m.group("name")) + m.group(4), text)


def _command(args: argparse.Namespace) -> int:
    if args.fields:
        sys.stdout.write(field_table(args.name))
    else:
        print(json.dumps(json_schema(args.name), indent=2))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "schema", help=HELP,
        description=HELP + ": the pydantic model every writer and reader of that record uses. "
        + "; ".join(f"{name}: {what}" for name, (_, _, what) in RECORDS.items()) + ".",
    )
    parser.add_argument("name", choices=list(RECORDS), help="the record")
    parser.add_argument("--fields", action="store_true", help="print the field table (markdown, as in docs/RECORDS.md)")
    parser.set_defaults(func=_command)


if __name__ == "__main__":  # python -m benchmark.schema docs/RECORDS.md: regenerate its field tables
    for target in map(Path, sys.argv[1:]):
        target.write_text(update_field_tables(target.read_text(encoding="utf-8")), encoding="utf-8")
