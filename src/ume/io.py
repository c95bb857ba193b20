"""Atomic file writes: a crash leaves either the old file or the new one, never half of one.

Also the robust readers and run-folder helpers every command shares: JSON lines split on `\\n` only and
decoded per line (a bad byte or a torn line is that line's error, never the file's), a lock that keeps two runs
out of one folder, and a staging folder swapped in whole so one run's files are never mixed with another's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

DEFAULT_MAX_LINE_BYTES = 64 * 2**20  # a JSONL line longer than this is an error for that line, not read whole


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's own 0600 would hide reports from others


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write through `write(fileobj)` into a temp file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def dumps(data: Any, **kwargs: Any) -> bytes:
    """JSON as UTF-8, readable (non-ASCII kept as is); a string no UTF-8 can hold (an unpaired surrogate, as
    `json.loads('"\\ud800"')` gives) is written escaped instead of failing the write."""
    try:
        return json.dumps(data, ensure_ascii=False, **kwargs).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, ensure_ascii=True, **kwargs).encode("ascii")


def write_json(path: str | Path, data: Any) -> Path:
    blob = dumps(data, indent=2) + b"\n"
    return atomic_write(path, lambda f: f.write(blob))


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    blob = b"".join(dumps(r) + b"\n" for r in rows)
    return atomic_write(path, lambda f: f.write(blob))


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    return atomic_write(path, lambda f: np.save(f, array))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a malformed line raises with the file and line number."""
    rows = []
    for line in iter_json_lines(path):
        if line.error is not None:
            raise ValueError(f"{path}:{line.number}: {line.error}")
        rows.append(line.value)
    return rows


@dataclass
class JsonLine:
    """One non-blank line of a JSONL file: its 1-based number and its value, or why it has none."""

    number: int
    value: Any = None
    error: str | None = None


def iter_lines(path: str | Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw bytes) of a file split on b"\\n" only (U+2028, U+0085, form feeds stay inside their
    line; a trailing "\\r" is dropped). A line over `max_line_bytes` gives None and is skipped unread."""
    with open(path, "rb") as f:
        n = 0
        while True:
            raw = f.readline(max_line_bytes + 1)
            if not raw:
                return
            n += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line without keeping it
                    raw = f.readline(2**20)
                yield n, None
                continue
            yield n, raw.rstrip(b"\n").removesuffix(b"\r")


def iter_json_lines(path: str | Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[JsonLine]:
    """The non-blank lines of a JSONL file, each decoded as UTF-8 and parsed on its own: a bad byte, a torn or
    malformed line, a too-deep or too-long line is that line's `error`; the other lines are unaffected. A UTF-8
    byte-order mark before the first line is ignored."""
    for n, raw in iter_lines(path, max_line_bytes):
        line = parse_json_line(raw, n) if raw is not None else JsonLine(n, error=f"line longer than {max_line_bytes} "
                                                                                 "bytes")
        if line is not None:
            yield line


def parse_json_line(raw: bytes, number: int) -> JsonLine | None:
    """One line's bytes (without its "\\n"), decoded the way `iter_json_lines` decodes each line; None for a blank
    line. For readers that already hold the bytes (a log to be rewritten, a sidecar read whole)."""
    if number == 1:
        raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return JsonLine(number, error=f"invalid UTF-8 (byte {e.start} of the line: {raw[e.start:e.start + 1]!r})")
    if not text.strip():
        return None
    try:
        return JsonLine(number, json.loads(text))
    except json.JSONDecodeError as e:
        return JsonLine(number, error=f"invalid JSON ({e.msg} at column {e.colno})")
    except (ValueError, RecursionError) as e:  # an integer too long to convert, nesting too deep
        return JsonLine(number, error=f"invalid JSON ({type(e).__name__}: {str(e)[:200]})")


# --- run folders ---------------------------------------------------------------------------------------------
class FolderInUse(RuntimeError):
    """Another process holds the lock of a run folder."""


@contextlib.contextmanager
def lock_dir(directory: str | Path, what: str = "run") -> Iterator[Path]:
    """Hold an exclusive lock on `directory` (created if needed) for the duration of a run: a second process
    that tries gets FolderInUse at once, naming the holder. The lock (`flock` on `directory/.lock`) dies with its
    process, so a killed run never leaves a stale lock behind."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown process"
            raise FolderInUse(f"{directory} is in use by another {what} ({holder}); wait for it to finish or "
                              "choose another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{' '.join(sys.argv)[:500]}\n".encode("utf-8", "replace"), 0)
        yield directory
    finally:
        os.close(fd)  # releases the flock


def check_output_dir(path: str | Path, owned: Iterable[str]) -> Path:
    """Check, before any work, that `path` can receive a run's outputs: absent, empty, or holding only files a
    run of this kind writes (`owned`), which the new run replaces whole; and that its parent is writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output {path} exists and is not a directory")
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if p.name not in set(owned))
        if foreign:
            raise ValueError(f"output {path} holds files this command did not write ({', '.join(foreign[:5])}"
                             f"{', ...' if len(foreign) > 5 else ''}); refusing to replace it: choose a new or empty "
                             "folder")
    parent = path.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"output {path}: cannot write in {parent}")
    return path


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """A fresh folder beside `final` to write a run's outputs into; when the block succeeds it replaces `final`
    whole (the old folder is moved aside first and deleted after), when it fails it is removed and `final` is
    untouched. Readers thus see the old run's files or the new run's, never a mix."""
    final = Path(final)
    final.absolute().parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=final.absolute().parent, prefix=f".{final.name}.new-"))
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(dir=final.absolute().parent, prefix=f".{final.name}.old-"))
        os.rename(final, old / final.name)
    os.rename(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
