"""The hostile part of the corpus: what an attacker or a careless participant sends.

Each case is built by code (nothing binary is committed): special files (directories, FIFOs,
sparse terabyte files), parser bombs (deep nesting, huge numbers, YAML aliases), image-header
bombs, archives, 16-bit images, escaping paths, and checkpoints that are wrong in every way `run`
would notice. `classify` runs one case through `synthbench validate` (in-process, with a time
limit) and says how it was treated; `python -m tests.malformed` prints the counts.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import re
import shutil
import signal
import tarfile
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from . import _DELETE, Case, _checkpoint, _edit_row, _meta, _replace_file, _set_meta, _write_text, png_header_only, read_rows, write_rows

# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------


def _replace_with_dir(name: str):
    def mutate(folder: Path, task) -> None:
        path = folder / name
        path.unlink()
        path.mkdir()

    return mutate


def _replace_with_fifo(name: str):
    def mutate(folder: Path, task) -> None:
        path = folder / name
        path.unlink()
        os.mkfifo(path)

    return mutate


def _image_path(folder: Path, index: int) -> Path:
    return folder / read_rows(folder)[index]["file_name"]


def _image_fifo(folder: Path, task) -> None:
    path = _image_path(folder, 0)
    path.unlink()
    os.mkfifo(path)


def _image_dir(folder: Path, task) -> None:
    path = _image_path(folder, 0)
    path.unlink()
    path.mkdir()


def _sparse(size: int):
    """A listed image turned into a sparse file of `size` bytes (no disk used, never read)."""

    def mutate(folder: Path, task) -> None:
        with open(_image_path(folder, 0), "r+b") as handle:
            handle.truncate(size)

    return mutate


def _sparse_metadata(folder: Path, task) -> None:
    with open(folder / "metadata.jsonl", "r+b") as handle:
        handle.truncate(1 << 40)


def _raw_line(index: int, text: str):
    def mutate(folder: Path, task) -> None:
        lines = (folder / "metadata.jsonl").read_text().splitlines()
        lines[index] = text
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")

    return mutate


def _deep_json(depth: int) -> str:
    return '{"file_name": "images/x.png", "label": ' + "[" * depth + "]" * depth + "}"


def _many_bad_lines(folder: Path, task) -> None:
    with open(folder / "metadata.jsonl", "a") as handle:
        handle.write("".join(f'{{"file_name": "images/missing/{i}.png", "label": {i}}}\n' for i in range(100_000)))


def _write_bytes(name: str, data: bytes):
    def mutate(folder: Path, task) -> None:
        (folder / name).write_bytes(data)

    return mutate


_ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
) + "\n"


def _alias_bomb_yaml(folder: Path, task) -> None:
    meta = yaml.safe_dump(_meta(folder), sort_keys=False).replace("generator:", "old_generator:", 1)
    text = _ALIAS_BOMB.replace("a: &a", "x_a: &a") + meta + "generator: *i\n"
    (folder / "submission.yaml").write_text(text)


def _yaml_line(text: str):
    def mutate(folder: Path, task) -> None:
        with open(folder / "submission.yaml", "a") as handle:
            handle.write(text)

    return mutate


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _archive(kind: str):
    """images/ packed into an archive and removed: each row's file is then missing."""

    def mutate(folder: Path, task) -> None:
        images = folder / "images"
        if kind == "zip":
            with zipfile.ZipFile(folder / "images.zip", "w") as archive:
                for path in sorted(images.rglob("*.png"))[:20]:
                    archive.write(path, path.relative_to(folder).as_posix())
        else:
            with tarfile.open(folder / "images.tar.gz", "w:gz") as archive:
                archive.add(images / read_rows(folder)[0]["label"], arcname="images")
        shutil.rmtree(images)

    return mutate


def _zip_named_png(folder: Path, task) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", b"x" * 100)
    _image_path(folder, 2).write_bytes(buffer.getvalue())


def _archive_without_suffix(folder: Path, task) -> None:
    (folder / "extra-data").write_bytes(gzip.compress(b"hidden images" * 100))


def _symlinked_images(folder: Path, task) -> None:
    outside = folder.parent / f"{folder.name}-images"
    shutil.move(str(folder / "images"), outside)
    os.symlink(outside, folder / "images")


def _symlink_to_device(folder: Path, task) -> None:
    path = _image_path(folder, 0)
    path.unlink()
    os.symlink("/dev/zero", path)


def _yaml_symlink(folder: Path, task) -> None:
    real = folder / "real.yaml"
    (folder / "submission.yaml").rename(real)
    os.symlink(real, folder / "submission.yaml")


def _hub_local_outside(folder: Path, task) -> None:
    outside = folder.parent / f"{folder.name}-dataset"
    outside.mkdir()
    shutil.move(str(folder / "images"), outside / "images")
    shutil.move(str(folder / "metadata.jsonl"), outside / "metadata.jsonl")
    _set_meta(kind="hub", hub={"repo_id": str(outside), "revision": "0" * 40})(folder, task)


def _many_unknown_classes(folder: Path, task) -> None:
    rows = read_rows(folder)
    for index in range(12):
        rows[index]["label"] = f"class-{index}"
    write_rows(folder, rows)


# -- checkpoints: a valid tiny one, then one thing wrong --------------------------------------------


@functools.lru_cache(maxsize=4)
def _tiny_checkpoint_files(classes: tuple[str, ...]) -> tuple[bytes, str]:
    from torch import nn

    from benchmark.backbones import TINY_CONFIGS, load_backbone
    import tempfile

    from benchmark.protocols.checkpoint import save_checkpoint

    backbone = load_backbone("efficientnet-lite0", random_init_config=TINY_CONFIGS["efficientnet-lite0"], image_size=32)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(tmp, backbone, nn.Linear(backbone.feature_dim, len(classes)), list(classes))
        return (Path(tmp) / "model.safetensors").read_bytes(), (Path(tmp) / "model.yaml").read_text()


def tiny_checkpoint(edit_config=None, edit_tensors=None):
    """A mutate making the folder a valid tiny checkpoint submission, then applying the edits."""

    def mutate(folder: Path, task) -> None:
        from safetensors.torch import load, save

        weights, config_text = _tiny_checkpoint_files(tuple(task.classes))
        config = yaml.safe_load(config_text)
        if edit_config is not None:
            edit_config(config)
        if edit_tensors is not None:
            tensors = load(weights)
            edit_tensors(tensors)
            weights = save(tensors)
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        _checkpoint(weights, text)(folder, task)
        _set_meta(id="tester__noise")(folder, task)

    return mutate


def _first_float(tensors: dict) -> str:
    return next(k for k, v in sorted(tensors.items()) if v.is_floating_point() and v.numel() > 1)


def _nan_weights(tensors: dict) -> None:
    key = _first_float(tensors)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")


def _wrong_shape(tensors: dict) -> None:
    import torch

    tensors["head.weight"] = torch.zeros(tensors["head.weight"].shape[0], 7)


def _int_weights(tensors: dict) -> None:
    tensors["head.weight"] = tensors["head.weight"].to(dtype=__import__("torch").int32)


def _set(path: str, value):
    def edit(config: dict) -> None:
        keys = path.split(".")
        target = config
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        if value is _DELETE:
            target.pop(keys[-1], None)
        else:
            target[keys[-1]] = value

    return edit


def _weights_directory(folder: Path, task) -> None:
    tiny_checkpoint()(folder, task)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()


def _encoded(image: Image.Image, fmt: str, keep: int | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()[:keep]


def _model_yaml_text(text: str):
    def mutate(folder: Path, task) -> None:
        tiny_checkpoint()(folder, task)
        (folder / "model.yaml").write_text(text)

    return mutate


# ----------------------------------------------------------------------------------------------
# the hostile cases
# ----------------------------------------------------------------------------------------------

HOSTILE: list[Case] = [
    # special files where a file is expected
    Case("yaml-is-directory", _replace_with_dir("submission.yaml"), r"^submission\.yaml: is a directory, not a regular file"),
    Case("metadata-is-directory", _replace_with_dir("metadata.jsonl"), r"^metadata\.jsonl: is a directory, not a regular file"),
    Case("yaml-is-fifo", _replace_with_fifo("submission.yaml"), r"^submission\.yaml: is a FIFO \(named pipe\), not a regular file"),
    Case("metadata-is-fifo", _replace_with_fifo("metadata.jsonl"), r"^metadata\.jsonl: is a FIFO \(named pipe\), not a regular file"),
    Case("image-is-fifo", _image_fifo, r"line 1: images/\w+/0000\.png: is a FIFO \(named pipe\), not a regular file"),
    Case("image-is-directory", _image_dir, r"line 1: images/\w+/0000\.png: is a directory, not a regular file"),
    Case("image-symlink-to-device", _symlink_to_device, r"line 1: images/\w+/0000\.png: symlink resolves outside the submission folder \(to /dev/zero\)"),
    Case("yaml-is-symlink", _yaml_symlink, r"^submission\.yaml: must be a regular file, not a symlink"),
    Case("symlinked-images-folder", _symlinked_images, r"^metadata\.jsonl lines 1, 2, 3, 4, 5 and \d+ more: images: symlink resolves outside"),
    # sizes: refused by stat, never read or hashed
    Case("sparse-terabyte-image", _sparse(1 << 40), r"line 1: images/\w+/0000\.png: file is 1099511627776 bytes, above the limit of 67108864"),
    Case("image-above-64-mib", _sparse(64 * 1024 * 1024 + 1), r"line 1: images/\w+/0000\.png: file is 67108865 bytes, above the limit"),
    Case("sparse-terabyte-metadata", _sparse_metadata, r"^metadata\.jsonl: file is 1099511627776 bytes, above the limit of 67108864"),
    Case("yaml-above-64-kib", _yaml_line("notes: '" + "x" * 70_000 + "'\n"), r"^submission\.yaml: file is \d+ bytes, above the limit of 65536"),
    Case("metadata-line-above-64-kib", _raw_line(0, '{"file_name": "images/a.png", "label": "' + "x" * 70_000 + '"}'), r"^metadata\.jsonl line 1: invalid JSON \(line of \d+ characters, above the limit of 65536\)"),
    # parser bombs
    Case("json-nested-200000-deep", _raw_line(0, _deep_json(200_000)), r"^metadata\.jsonl line 1: invalid JSON \(line of|nested deeper than 16 levels"),
    Case("json-nested-40-deep", _raw_line(0, _deep_json(40)), r"^metadata\.jsonl line 1: invalid JSON \(nested deeper than 16 levels\)"),
    Case("json-weight-1e400", _raw_line(0, '{"file_name": "images/a.png", "label": {"storm": 1e400}}'), r"^metadata\.jsonl line 1: invalid JSON \(number '1e400' is out of range"),
    Case("json-5000-digit-weight", _raw_line(0, '{"file_name": "images/a.png", "label": {"storm": ' + "9" * 5000 + "}}"), r"^metadata\.jsonl line 1: invalid JSON \(integer of 5000 digits \(at most 32\)\)"),
    Case("json-infinity", _raw_line(0, '{"file_name": "images/a.png", "label": {"storm": Infinity}}'), r"^metadata\.jsonl line 1: invalid JSON \(Infinity is not a number"),
    Case("json-array-row", _raw_line(0, '["images/a.png", "storm"]'), r"^metadata\.jsonl line 1: must be a JSON object \(got list\)"),
    Case("metadata-not-utf8", _write_bytes("metadata.jsonl", b'{"file_name": "\xff\xfe"}\n'), r"^metadata\.jsonl: not UTF-8 text"),
    Case("metadata-gzipped", _write_bytes("metadata.jsonl", gzip.compress(b'{"file_name": "images/a.png"}\n')), r"^metadata\.jsonl: not UTF-8 text"),
    Case("metadata-empty", _write_text("metadata.jsonl", "\n\n"), r"^metadata\.jsonl: no images listed"),
    Case("yaml-alias-bomb", _alias_bomb_yaml, r"^submission\.yaml: invalid YAML at line \d+, column \d+ \(YAML aliases \(\*\w\) are not accepted\)"),
    Case("yaml-5000-digit-int", _yaml_line("notes: " + "7" * 5000 + "\n"), r"^submission\.yaml: invalid YAML at line \d+, column \d+ \(integer of 5000 characters"),
    Case("yaml-nested-deep", _yaml_line("notes: " + "[" * 60 + "]" * 60 + "\n"), r"^submission\.yaml: invalid YAML at line \d+, column \d+ \(nested deeper than 16 levels\)"),
    Case("yaml-impossible-date", _yaml_line("notes: 2001-02-30\n"), r"^submission\.yaml: invalid YAML \(day is out of range for month\)"),
    Case("yaml-not-utf8", _write_bytes("submission.yaml", b"id: \xff\xfe\n"), r"^submission\.yaml: not UTF-8 text"),
    Case("yaml-empty", _write_text("submission.yaml", ""), r"^submission\.yaml: file is empty"),
    Case("yaml-tab-indent", _write_text("submission.yaml", "id: a\n\tteam: b\n"), r"^submission\.yaml: invalid YAML at line 2"),
    # submission.yaml fields of the wrong type
    Case("schema-version-string", _set_meta(schema_version="one"), r"field 'schema_version' must be an integer, 1 \(got str 'one'\)"),
    Case("schema-version-bool", _set_meta(schema_version=True), r"field 'schema_version' must be an integer, 1 \(got bool True\)"),
    Case("kind-not-a-string", _set_meta(kind=["images"]), r"field 'kind' must be one of images, hub, checkpoint, recipe \(got \['images'\]\)"),
    Case("generator-not-a-mapping", _set_meta(generator="gpt"), r"field 'generator' must be a mapping \{name, version, link\} \(got 'gpt'\)"),
    Case("fine-tuned-used-string", _set_meta(fine_tuned={"used": "maybe"}), r"field 'fine_tuned\.used' must be yes or no \(got 'maybe'\)"),
    Case("task-not-a-mapping", _set_meta(task="xbd"), r"field 'task' must be a mapping \{name, revision\} \(got 'xbd'\)"),
    Case("id-with-slash", _set_meta(id="../evil__x"), r"field 'id' must read <team>__<method>"),
    Case("team-missing", _set_meta(team=_DELETE), r"missing required field 'team'"),
    Case("unknown-baseline", _set_meta(baseline="magic"), r"field 'baseline' must be one of .* \(got 'magic'\)"),
    Case("notes-not-a-string", _set_meta(notes=["a"]), r"field 'notes' must be a string"),
    Case("hub-with-kind-images", _set_meta(hub={"repo_id": "a/b", "revision": "0" * 40}), r"field 'hub' is only allowed with kind hub"),
    Case("huge-unknown-key", _set_meta(**{"k" * 5000: 1}), r"^submission\.yaml: unknown field\(s\) 'k+\.\.\.k+'; allowed: schema_version"),
    Case("hub-local-outside", _hub_local_outside, r"hub\.repo_id '.*' is a local path outside the submission folder"),
    Case("hub-not-an-id", _set_meta(kind="hub", hub={"repo_id": "not a hub id!", "revision": "0" * 40}), r"hub\.repo_id 'not a hub id!' is not a Hub dataset id"),
    Case("hub-etc-passwd", _set_meta(kind="hub", hub={"repo_id": "/etc", "revision": "0" * 40}), r"hub\.repo_id '/etc' is a local path outside the submission folder"),
    # metadata rows
    Case("label-list", _edit_row(0, label=["storm"]), r"^metadata\.jsonl line 1: label must be a class name or a \{class: weight\} mapping \(got \['storm'\]\)"),
    Case("label-empty", _edit_row(0, label=""), r"^metadata\.jsonl line 1: label is an empty string"),
    Case("label-weight-bool", _edit_row(0, label={"storm": True}), r"^metadata\.jsonl line 1: soft label weight for 'storm' must be a number \(got True\)"),
    Case("label-weight-nested", _edit_row(0, label={"storm": {"a": [1]}}), r"^metadata\.jsonl line 1: soft label weight for 'storm' must be a number \(got \{'a': \[1\]\}\)"),
    Case("source-id-number", _edit_row(0, source_id=7), r"^metadata\.jsonl line 1: source_id must be a generation-input image_id or null \(got 7\)"),
    Case("prompt-not-a-string", _edit_row(0, prompt={"a": 1}), r"^metadata\.jsonl line 1: prompt must be a string"),
    Case("file-name-number", _edit_row(0, file_name=12), r"^metadata\.jsonl line 1: file_name must be a non-empty string \(got 12\)"),
    Case("file-name-too-long", _edit_row(0, file_name="images/" + "a" * 2000 + ".png"), r"^metadata\.jsonl line 1: file_name 'images/aaa.*' is longer than 1024 characters"),
    Case("many-unknown-classes", _many_unknown_classes, r"^metadata\.jsonl: and 7 more unknown class\(es\) on 7 line\(s\)"),
    Case("100000-bad-lines", _many_bad_lines, r"^metadata\.jsonl: and 99995 more line\(s\) with the same kind of problem \(bad label\)"),
    # archives
    Case("images-as-zip", _archive("zip"), r"^images\.zip: is a zip archive; archives are not accepted"),
    Case("images-as-tar-gz", _archive("tar.gz"), r"^images\.tar\.gz: is a gz archive; archives are not accepted"),
    Case("zip-named-png", _zip_named_png, r"^images/\w+/0002\.png: is a zip archive, not an image \(archives are not accepted"),
    Case("gzip-without-suffix", _archive_without_suffix, r"^extra-data: is a gzip archive; archives are not accepted"),
    # images: header bombs and pixel formats
    Case("png-16777216x1", _replace_file(3, png_header_only(16_777_216, 1)), r"^images/\w+/0003\.png: 16777216x1: aspect ratio above 8:1"),
    Case("png-1x4096", _replace_file(3, png_header_only(1, 4096)), r"^images/\w+/0003\.png: 1x4096: aspect ratio above 8:1"),
    Case("png-zero-width", _replace_file(3, png_header_only(0, 64)), r"^images/\w+/0003\.png: (image has zero size|not a decodable image|corrupt)"),
    Case("tiff-named-png", _replace_file(3, _encoded(Image.new("RGB", (8, 8)), "TIFF")), r"^images/\w+/0003\.png: format TIFF not allowed"),
    Case("truncated-jpeg", _replace_file(3, _encoded(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG", keep=200)), r"^images/\w+/0003\.png: corrupt or truncated (JPEG data|image header)"),
    # checkpoints: everything run checks, checked by validate
    Case("checkpoint-wrong-shape", tiny_checkpoint(edit_tensors=_wrong_shape), r"^model\.safetensors: does not match backbone 'efficientnet-lite0' .*shape mismatch: head\.weight \(\d+, 7\)"),
    Case("checkpoint-nan-weights", tiny_checkpoint(edit_tensors=_nan_weights), r"^model\.safetensors: non-finite values in encoder\."),
    Case("checkpoint-int-weights", tiny_checkpoint(edit_tensors=_int_weights), r"^model\.safetensors: does not match .*wrong dtype: head\.weight dtype I32 \(expected a floating-point dtype\)"),
    Case("checkpoint-missing-tensor", tiny_checkpoint(edit_tensors=lambda t: t.pop("head.bias")), r"^model\.safetensors: does not match .*1 missing tensor\(s\): head\.bias"),
    Case("checkpoint-unknown-config-key", tiny_checkpoint(_set("backbone_config.dropout", 0.5)), r"^model\.yaml: backbone_config\.dropout is not a setting of this architecture"),
    Case("checkpoint-huge-config", tiny_checkpoint(_set("backbone_config.depth_coefficient", 1e6)), r"^model\.yaml: backbone_config\.depth_coefficient must be a number in 0\.1\.\.2\.0 \(got 1000000\.0\)"),
    Case("checkpoint-config-not-mapping", tiny_checkpoint(_set("backbone_config", [1, 2])), r"^model\.yaml: 'backbone_config' must be a mapping or null"),
    Case("checkpoint-unknown-backbone", tiny_checkpoint(_set("backbone", "resnet-9000")), r"^model\.yaml: unknown backbone 'resnet-9000'"),
    Case("checkpoint-claims-other-backbone", tiny_checkpoint(_set("backbone", "clip-vit-b32")), r"^model\.yaml: backbone_config\.width_coefficient is not a setting of this architecture"),
    Case("checkpoint-class-order", tiny_checkpoint(lambda c: c["classes"].reverse()), r"^model\.yaml: classes .* differ from the task's classes"),
    Case("checkpoint-image-size", tiny_checkpoint(_set("preprocessing.image_size", 100000)), r"^model\.yaml: preprocessing\.image_size 100000 is outside 16\.\.1024"),
    Case("checkpoint-schema-string", tiny_checkpoint(_set("schema_version", "1")), r"^model\.yaml: schema_version must be an integer, 1 \(got '1'\)"),
    Case("checkpoint-yaml-alias-bomb", _model_yaml_text(_ALIAS_BOMB + "backbone: *i\n"), r"^model\.yaml: invalid YAML at line \d+, column \d+ \(YAML aliases"),
    Case("checkpoint-weights-directory", _weights_directory, r"^model\.safetensors: is a directory, not a regular file"),
    Case("checkpoint-header-garbage", _checkpoint(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + b"\x00" * 64, "backbone: x\n"), r"^model\.safetensors: not a valid safetensors file"),
]


# ----------------------------------------------------------------------------------------------
# running a case
# ----------------------------------------------------------------------------------------------

#: Seconds one case may take before it counts as hung.
CASE_TIME_LIMIT_S = 60


class _Hung(Exception):
    pass


def _alarm(signum, frame):
    raise _Hung()


def run_validate(folder: Path, task_path: Path) -> tuple[int | str, dict | None, str]:
    """`synthbench validate FOLDER --no-leakage --json` in-process: (exit code or 'crashed'/'hung',
    the JSON report, stderr)."""
    from benchmark.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIME_LIMIT_S)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code: int | str = main(["validate", str(folder), "--task", str(task_path), "--no-leakage", "--json"])
    except _Hung:
        return "hung", None, err.getvalue()
    except BaseException as exc:  # noqa: BLE001 - a crash is what this corpus looks for
        return "crashed", None, f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    try:
        return code, json.loads(out.getvalue()), err.getvalue()
    except ValueError:
        return "crashed", None, out.getvalue()[-2000:] + err.getvalue()[-2000:]


def classify(code, report: dict | None, expected: str) -> str:
    """'precise', 'vague' (refused without the expected message), 'accepted', 'crashed' or 'hung'."""
    if code in ("crashed", "hung"):
        return code
    if code != 1 or report is None or report.get("ok"):
        return "accepted"
    return "precise" if any(re.search(expected, p) for p in report["problems"]) else "vague"
