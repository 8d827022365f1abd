"""Small I/O helpers shared by every stage: hashing and atomic writes.

Results and task folders are never half-written: files go to a temporary sibling first and are
renamed into place (rename is atomic on one filesystem), so an interrupted run leaves either the
old good file or the new good file, never a broken one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object in canonical form (sorted keys, no spaces)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask sets it too,
    process-wide, which a concurrent thread could notice)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _usual_mode(directory: bool) -> int:
    """What open()/mkdir() would have given: mkstemp/mkdtemp make owner-only entries, which would
    keep results, submissions and the published site from the other users of a shared machine."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _usual_mode(directory=False))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def check_replaceable(path: str | os.PathLike, marker: str, what: str) -> None:
    """Refuse to replace an existing path that is not a `what` (no `marker` file inside it).

    Replacing deletes the old folder: a mistyped `--out` must never take a user's own files.
    """
    from .errors import SynthbenchError

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir() or not (path / marker).is_file():
        raise SynthbenchError(
            f"{path}: exists and is not {what} (no {marker} in it); refusing to replace it with --overwrite"
        )


@contextlib.contextmanager
def atomic_directory(
    target: str | os.PathLike, overwrite: bool = False, replaces: tuple[str, str] | None = None
) -> Iterator[Path]:
    """Build a directory in a temporary sibling and move it to `target` only on success.

    On any exception the temporary directory is removed and `target` is untouched. With
    `overwrite`, an existing `target` is replaced only after the new one is complete, and only
    when it is of the same kind: `replaces` = (marker file, what) (`check_replaceable`).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        from .errors import SynthbenchError

        raise SynthbenchError(f"{target}: already exists (pass --overwrite to replace it)")
    if overwrite and replaces is not None:
        check_replaceable(target, *replaces)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        tmp.chmod(_usual_mode(directory=True))
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
