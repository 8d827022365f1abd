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
import re
import reprlib
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

_CHUNK = 1 << 20

# A bounded repr: a YAML alias bomb or a deeply nested JSON value expands to gigabytes when repr-ed
# in full; messages show at most a few levels and items of any value.
class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # str() of a 5000-digit int raises ValueError (and is slow)
            return f"<integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxset = 3, 4, 4, 4, 4
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 60, 40, 60


def shorten(value: Any, limit: int = 100) -> str:
    """repr(value) for messages, bounded in time and length whatever `value` is."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters (for messages quoting another error's text)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_kind(mode: int) -> str:
    """What a stat mode is, in words (for messages refusing anything but a regular file)."""
    for test, name in (
        (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISLNK, "a symlink"),
        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def regular_file_problem(path: str | os.PathLike, max_bytes: int | None = None, *, follow: bool = True) -> str | None:
    """Why `path` may not be read as a bounded regular file, or None; from os.stat only (nothing
    is opened, so a FIFO never blocks and a sparse terabyte file is never read)."""
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return f"is {file_kind(info.st_mode)}, not a regular file"
    if max_bytes is not None and info.st_size > max_bytes:
        return f"file is {info.st_size} bytes, above the limit of {max_bytes}"
    return None


def read_bounded(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; OSError (ValueError for the limit) else.

    Checked by stat before opening and by the read itself (a file growing meanwhile is refused too).
    """
    problem = regular_file_problem(path, max_bytes)
    if problem is not None:
        raise ValueError(problem)
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"file grew above the limit of {max_bytes} bytes while it was read")
    return data


def sha256_file(path: str | os.PathLike, max_bytes: int | None = None) -> str:
    """SHA-256 of a file's bytes; with `max_bytes`, a file above it (or not regular) is refused
    (ValueError) before a byte is hashed."""
    if max_bytes is not None:
        problem = regular_file_problem(path, max_bytes)
        if problem is not None:
            raise ValueError(f"{path}: {problem}")
    digest = hashlib.sha256()
    read = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            read += len(chunk)
            if max_bytes is not None and read > max_bytes:
                raise ValueError(f"{path}: file grew above the limit of {max_bytes} bytes while it was hashed")
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


# ----------------------------------------------------------------------------------------------
# Temporary files of killed writers
# ----------------------------------------------------------------------------------------------

#: A temporary file's name carries its writer (host and pid), so that the next start can tell a
#: killed writer's leftover from a live writer's file: `.<target>.<host>-<pid>.<random>.tmp`.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_-]*)-(?P<pid>\d+)\.[^.]+\.tmp$")
_LEGACY_TEMP_NAME = re.compile(r"^\..+\.[^.]+\.tmp$")
#: A temporary file from another host (or of an older naming) is left alone until it is this old.
FOREIGN_TEMP_AGE_S = 24 * 3600


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64]


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{_host_tag()}-{os.getpid()}."


def _process_started_after(pid: int, moment: float) -> bool:
    """True when process `pid` is known to have started after `moment` (so did not write then)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # starttime: clock ticks after boot
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK") > moment + 1.0
    except (OSError, ValueError, IndexError, StopIteration):
        return False


def _writer_is_gone(name: str, mtime: float) -> bool:
    match = _TEMP_NAME.match(name)
    if match is None or match["host"] != _host_tag():
        return time.time() - mtime > FOREIGN_TEMP_AGE_S
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return _process_started_after(pid, mtime)  # the pid was reused by a later process


def remove_stale_temp_files(directory: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Remove the temporary files (`atomic_write_bytes`'s) in `directory` whose writer is dead.

    `target`: only those of that file name. A live writer's file is kept; one from another host
    is removed once older than FOREIGN_TEMP_AGE_S. Returns what was removed.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not _LEGACY_TEMP_NAME.match(name) or (target is not None and not name.startswith(f".{target}.")):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and _writer_is_gone(name, info.st_mtime):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # removed meanwhile by another cleaner
            continue
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `path` through a temporary sibling renamed into place; a killed writer's leftover
    temporary files for the same name are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
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
