"""Builders for submission folders in tests: a valid base, and the corpus of malformed variants.

`write_valid_submission` makes a small, valid, open-track `kind: images` submission (distinct
random-noise PNGs, 100 per class). Each entry of `MALFORMED` turns a copy of it into one specific
malformed submission and names the message validation must give for it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from PIL import Image

PER_CLASS = 100


def noise_png(rng: np.random.Generator, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def base_meta(task_name: str, task_revision: str = "local", **overrides) -> dict:
    meta = {
        "schema_version": 1,
        "id": "tester__noise",
        "team": "tester",
        "method": "noise",
        "contact": "tester@example.org",
        "licence": "CC0-1.0",
        "track": "open",
        "kind": "images",
        "generator": {"name": "numpy-noise", "version": "1", "link": "https://numpy.org"},
        "fine_tuned": {"used": False, "data": None},
        "task": {"name": task_name, "revision": task_revision},
    }
    meta.update(overrides)
    return meta


def write_yaml(folder: Path, meta) -> None:
    (folder / "submission.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))


def read_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]


def write_rows(folder: Path, rows: list[dict]) -> None:
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def write_valid_submission(folder: Path, classes: list[str], task_name: str, *, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    for class_name in classes:
        (folder / "images" / class_name).mkdir(parents=True)
        for index in range(per_class):
            name = f"images/{class_name}/{index:04d}.png"
            (folder / name).write_bytes(noise_png(rng))
            rows.append({"file_name": name, "label": class_name, "source_id": None, "prompt": ""})
    write_rows(folder, rows)
    team, _, method = folder.name.partition("__")  # a submission's id is its folder's name
    write_yaml(folder, base_meta(task_name, id=folder.name, team=team, method=method))
    return folder


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR announces width x height, followed by a token IDAT: no pixel data at all
    (a few dozen bytes claiming 2.7 GB of pixels, the shape of a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00"))


# ----------------------------------------------------------------------------------------------
# the corpus: (name, mutate(folder, task), expected message fragment)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    mutate: Callable[[Path, object], None]
    expected: str  # a fragment the report must contain (regex)


def _meta(folder: Path) -> dict:
    return yaml.safe_load((folder / "submission.yaml").read_text())


def _set_meta(**changes):
    def mutate(folder: Path, task) -> None:
        meta = _meta(folder)
        for key, value in changes.items():
            if value is _DELETE:
                meta.pop(key, None)
            else:
                meta[key] = value
        write_yaml(folder, meta)

    return mutate


_DELETE = object()


def _edit_row(index: int, **changes):
    def mutate(folder: Path, task) -> None:
        rows = read_rows(folder)
        for key, value in changes.items():
            if value is _DELETE:
                rows[index].pop(key, None)
            else:
                rows[index][key] = value
        write_rows(folder, rows)

    return mutate


def _replace_file(index: int, data: bytes):
    def mutate(folder: Path, task) -> None:
        (folder / read_rows(folder)[index]["file_name"]).write_bytes(data)

    return mutate


def _truncated_png(folder: Path, task) -> None:
    path = folder / read_rows(folder)[3]["file_name"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _gif_named_png(folder: Path, task) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="GIF")
    (folder / read_rows(folder)[4]["file_name"]).write_bytes(buffer.getvalue())


def _symlink_outside(folder: Path, task) -> None:
    outside = folder.parent / f"{folder.name}-outside.png"
    outside.write_bytes(noise_png(np.random.default_rng(99)))
    rows = read_rows(folder)
    link = folder / "images" / "escape.png"
    os.symlink(outside, link)
    rows[0]["file_name"] = "images/escape.png"
    write_rows(folder, rows)


def _duplicate_name(folder: Path, task) -> None:
    rows = read_rows(folder)
    rows[1]["file_name"] = rows[0]["file_name"]
    write_rows(folder, rows)


def _byte_identical(folder: Path, task) -> None:
    rows = read_rows(folder)
    shutil.copyfile(folder / rows[0]["file_name"], folder / rows[1]["file_name"])


def _case_collision(folder: Path, task) -> None:
    rows = read_rows(folder)
    rows[6]["file_name"] = rows[5]["file_name"].replace("images/", "IMAGES/", 1)
    write_rows(folder, rows)


def _too_few(folder: Path, task) -> None:
    rows = read_rows(folder)
    first = task.classes[0]
    kept = [r for r in rows if r["label"] != first] + [r for r in rows if r["label"] == first][:50]
    write_rows(folder, kept)


def _class_missing(folder: Path, task) -> None:
    last = task.classes[-1]
    write_rows(folder, [r for r in read_rows(folder) if r["label"] != last])


def _bad_json(folder: Path, task) -> None:
    lines = (folder / "metadata.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-3]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def _checkpoint(weights: bytes | None, config: dict | str | None):
    def mutate(folder: Path, task) -> None:
        shutil.rmtree(folder / "images")
        (folder / "metadata.jsonl").unlink()
        meta = _meta(folder)
        meta["kind"] = "checkpoint"
        write_yaml(folder, meta)
        if weights is not None:
            (folder / "model.safetensors").write_bytes(weights)
        if config is not None:
            text = config if isinstance(config, str) else yaml.safe_dump(config)
            (folder / "model.yaml").write_text(text)

    return mutate


def _pickled_weights() -> bytes:
    return pickle.dumps({"head.weight": [[0.0] * 4] * 6})


def _source_test_image(folder: Path, task) -> None:
    _edit_row(7, source_id=task.image_ids("test")[0])(folder, task)


def _source_unknown(folder: Path, task) -> None:
    _edit_row(7, source_id="no-such-input")(folder, task)


def _generated_track_from_train(folder: Path, task) -> None:
    _set_meta(track="generated")(folder, task)
    _edit_row(8, source_id=task.image_ids("train_real")[0])(folder, task)


def _hub_unpinned(folder: Path, task) -> None:
    _set_meta(kind="hub", hub={"repo_id": "someone/some-dataset", "revision": "main"})(folder, task)


def _row_hash_mismatch(folder: Path, task) -> None:
    rows = read_rows(folder)
    rows[9]["sha256"] = "0" * 64
    write_rows(folder, rows)


def _remove(name: str):
    def mutate(folder: Path, task) -> None:
        (folder / name).unlink()

    return mutate


def _write_text(name: str, text: str):
    def mutate(folder: Path, task) -> None:
        (folder / name).write_text(text)

    return mutate


MALFORMED: list[Case] = [
    Case("missing-yaml", _remove("submission.yaml"), r"submission\.yaml: file not found"),
    Case("invalid-yaml", _write_text("submission.yaml", "id: [unclosed\nteam: x\n"), r"submission\.yaml: invalid YAML at line"),
    Case("yaml-not-mapping", _write_text("submission.yaml", "- just\n- a list\n"), r"must be a YAML mapping of fields \(got list\)"),
    Case("missing-contact", _set_meta(contact=_DELETE), r"missing required field 'contact'"),
    Case("bad-track", _set_meta(track="best"), r"field 'track' must be one of generated, open \(got 'best'\)"),
    Case("unknown-field", _set_meta(colour="blue"), r"unknown field\(s\) colour"),
    Case("bad-schema-version", _set_meta(schema_version=2), r"schema_version 2 is not supported"),
    Case("baseline-in-generated", _set_meta(track="generated", baseline="mixup"), r"baselines belong to the 'open' track"),
    Case("fine-tuned-without-data", _set_meta(fine_tuned={"used": True}), r"fine_tuned\.data' must say on what data"),
    Case("wrong-task", _set_meta(task={"name": "another-task", "revision": "local"}), r"task\.name is 'another-task' but it is validated against task"),
    Case("missing-metadata", _remove("metadata.jsonl"), r"metadata\.jsonl: file not found"),
    Case("invalid-json-row", _bad_json, r"metadata\.jsonl line 3: invalid JSON"),
    Case("row-without-label", _edit_row(2, label=_DELETE), r"metadata\.jsonl line 3: missing required field\(s\) label"),
    Case("unknown-class", _edit_row(0, label="cyclone"), r"unknown class 'cyclone' on line\(s\) 1 "),
    Case("weights-not-summing-to-1", _edit_row(0, label={"flooding": 0.5, "storm": 0.4}), r"line 1: soft label weights sum to 0\.9"),
    Case("nan-weight", _edit_row(0, label={"flooding": float("nan"), "storm": 1.0}), r"line 1: invalid JSON \(NaN is not a number: JSON has no NaN or Infinity\)"),
    Case("negative-weight", _edit_row(0, label={"flooding": 1.5, "storm": -0.5}), r"line 1: soft label weight for 'storm' is negative"),
    Case("dotdot-file-name", _edit_row(0, file_name="../outside.png"), r"line 1: file_name '\.\./outside\.png' contains '\.\.'"),
    Case("absolute-file-name", _edit_row(0, file_name="/etc/passwd.png"), r"line 1: file_name '/etc/passwd\.png' is an absolute path"),
    Case("backslash-file-name", _edit_row(0, file_name="images\\a.png"), r"contains a backslash"),
    Case("nul-file-name", _edit_row(0, file_name="images/a\x00.png"), r"contains a NUL character"),
    Case("bad-extension", _edit_row(0, file_name="images/a.gif"), r"extension not allowed"),
    Case("missing-file", _edit_row(0, file_name="images/not-there.png"), r"line 1: images/not-there\.png: file not found"),
    Case("symlink-escaping", _symlink_outside, r"images/escape\.png: symlink resolves outside the submission folder"),
    Case("duplicate-names", _duplicate_name, r"line 2: duplicate file_name .* \(also on line 1\)"),
    Case("case-collision", _case_collision, r"differs from .* only by letter case"),
    Case("byte-identical", _byte_identical, r"1 image\(s\) are byte-identical copies of another listed image"),
    Case("truncated-png", _truncated_png, r"corrupt or truncated PNG data"),
    Case("zero-byte-file", _replace_file(1, b""), r"empty file \(0 bytes\)"),
    Case("text-named-png", _replace_file(2, b"this is not an image\n" * 20), r"not a decodable image \(unrecognised format\)"),
    Case("huge-header", _replace_file(3, png_header_only(30000, 30000)), r"(30000x30000 = 900000000 pixels, above the limit|image header too large)"),
    Case("gif-named-png", _gif_named_png, r"format GIF not allowed"),
    Case("too-few-images", _too_few, r"class '[a-z]+' has 50 images; at least 100 are needed"),
    Case("class-without-images", _class_missing, r"class '[a-z]+' has no images"),
    Case("source-is-test-image", _source_test_image, r"line\(s\) 8: source_id '.*' is a test image"),
    Case("source-unknown", _source_unknown, r"source_id 'no-such-input' is not a generation_inputs image_id"),
    Case("generated-from-train", _generated_track_from_train, r"source_id '.*' is a train_real image; the generated track"),
    Case("hub-unpinned", _hub_unpinned, r"hub\.revision' must be a full 40-character commit SHA"),
    Case("row-hash-mismatch", _row_hash_mismatch, r"line 10: .* does not match the sha256 recorded in its row"),
    Case("pickle-checkpoint", _checkpoint(_pickled_weights(), {"backbone": "efficientnet-lite0"}), r"model\.safetensors: this is a pickle/torch\.save file"),
    Case("checkpoint-without-yaml", _checkpoint(None, None), r"model\.safetensors: file not found"),
    Case("checkpoint-bad-yaml", _checkpoint(b"", "backbone: [x\n"), r"model\.yaml: invalid YAML"),
]
