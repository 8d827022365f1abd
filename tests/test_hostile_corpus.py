"""The hostile corpus (tests/malformed): every malformed or hostile submission is refused by
`synthbench validate` with a message naming the file and the problem, without a traceback or a
hang, leaving the folder byte-identical and writing nothing anywhere; `synthbench run` refuses
each one too, with the same problems (validate accepts exactly what run accepts)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main

from .malformed.fixtures import task, valid_base  # noqa: F401 (fixtures)
from .malformed import MALFORMED, read_rows
from .malformed.hostile import HOSTILE, classify, png_bytes, run_validate, tiny_checkpoint

CORPUS = MALFORMED + HOSTILE
_NAMES_A_FILE = re.compile(r"submission\.yaml|metadata\.jsonl|model\.yaml|model\.safetensors|images[/.]|extra-data")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A work folder, a feature cache that must stay unmade, and no Hub access."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SYNTHBENCH_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    work = tmp_path / "work"
    work.mkdir()
    return work, cache


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (symlinks not followed) with its mode, size, mtime and, for regular
    files up to 1 MiB, a hash of its bytes (sparse terabyte files and FIFOs are never read)."""
    state = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode) and info.st_size <= 1 << 20:
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = None
            state[path.relative_to(root).as_posix()] = (info.st_mode, info.st_size, info.st_mtime_ns, content)
    return state


def test_the_corpus_is_large_and_its_names_unique():
    assert len(CORPUS) >= 75
    assert len({case.name for case in CORPUS}) == len(CORPUS)


def _run_problems(text: str) -> list[str]:
    """The problem lines of `synthbench run`'s one-line error (`error: PATH: ...:` then '  problem')."""
    return [line[2:] for line in text.splitlines() if line.startswith("  ")]


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_hostile_submission_is_refused_precisely_and_alike_by_run(case, task, valid_base, isolated, capsys):
    work, cache = isolated
    folder = work / "tester__noise"
    shutil.copytree(valid_base, folder, symlinks=True)
    case.mutate(folder, task)
    before, around = tree_state(folder), tree_state(work)

    code, report, stderr = run_validate(folder, task.path)
    verdict = classify(code, report, case.expected)
    assert verdict == "precise", (verdict, case.expected, report and report["problems"], stderr[-3000:])
    if case in HOSTILE:  # the precise line names the file it is about
        line = next(p for p in report["problems"] if re.search(case.expected, p))
        assert _NAMES_A_FILE.search(line), line
    assert "Traceback" not in stderr
    assert tree_state(folder) == before, "validation changed the submission folder"
    assert tree_state(work) == around and not cache.exists(), "validation wrote outside its output"

    out = work.parent / "record.json"
    code = main(["run", "--submission", str(folder), "--task", str(task.path), "--no-leakage", "--device", "cpu", "--no-progress",
                 "--seeds", "1", "--settings", "real", "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: ") and "Traceback" not in err
    refused = _run_problems(err)
    assert refused and set(refused) <= set(report["problems"]), (refused, report["problems"])
    assert not out.exists() and tree_state(folder) == before
    assert tree_state(work) == around and not cache.exists(), "run wrote something for a refused submission"


def test_a_valid_tiny_checkpoint_is_accepted_by_both(task, valid_base, isolated, capsys):
    work, _ = isolated
    folder = work / "tester__noise"
    shutil.copytree(valid_base, folder)
    tiny_checkpoint()(folder, task)
    code, report, _ = run_validate(folder, task.path)
    assert code == 3 and report["ok"], report["problems"]  # 3: --no-leakage
    out = work.parent / "record.json"
    assert main(["run", "--submission", str(folder), "--task", str(task.path), "--no-leakage", "--device", "cpu", "--no-progress",
                 "--out", str(out)]) == 0
    assert out.is_file()


@pytest.mark.parametrize("mode", ["I;16", "LA", "P-transparent", "CMYK", "RGBA-opaque"])
def test_other_pixel_modes_are_decoded_to_the_right_8_bit_rgb(mode, task, valid_base, isolated):
    """Accepted, and decoded to the pixels they show: 16-bit greyscale scaled (not clipped to white),
    transparency composited over black, CMYK converted."""
    from benchmark.submissions import load_submission

    work, _ = isolated
    folder = work / "tester__noise"
    shutil.copytree(valid_base, folder)
    ramp = np.arange(64, dtype=np.int64).reshape(8, 8)
    if mode == "I;16":
        data = png_bytes((ramp * 1000).astype(np.uint16))
        expected = np.repeat(np.round(ramp * 1000 / 257).astype(np.uint8)[..., None], 3, axis=2)
    elif mode == "LA":
        grey_alpha = np.stack([np.full((8, 8), 200, np.uint8), (ramp * 4).astype(np.uint8)], axis=2)
        data = png_bytes(grey_alpha)
        value = np.round(200 * ramp * 4 / 255).astype(np.uint8)
        expected = np.repeat(value[..., None], 3, axis=2)
    elif mode == "P-transparent":
        image = Image.new("P", (8, 8), 1)
        image.putpalette([0, 0, 0, 250, 10, 20] + [0] * 762)
        image.info["transparency"] = 1  # palette entry 1 fully transparent: black
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", transparency=1)
        data, expected = buffer.getvalue(), np.zeros((8, 8, 3), np.uint8)
    elif mode == "CMYK":
        buffer = io.BytesIO()
        Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(buffer, format="JPEG", quality=100)
        data, expected = buffer.getvalue(), np.tile(np.array([255, 0, 0], np.uint8), (8, 8, 1))
    else:
        rgba = np.dstack([np.full((8, 8, 3), 77, np.uint8), np.full((8, 8), 255, np.uint8)])
        data, expected = png_bytes(rgba), np.full((8, 8, 3), 77, np.uint8)
    target = folder / read_rows(folder)[0]["file_name"]
    target.write_bytes(data)
    code, report, _ = run_validate(folder, task.path)
    assert code == 3 and report["ok"], report["problems"]
    decoded = np.asarray(load_submission(folder).image_refs()[0].open())
    tolerance = 3 if mode == "CMYK" else 0  # JPEG
    assert decoded.dtype == np.uint8 and decoded.shape == (8, 8, 3)
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= tolerance, (mode, decoded[0, :4])
