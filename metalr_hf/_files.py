"""Writing and reading the files of long jobs safely: atomic writes under a name of their own, a lock per output
folder, and errors that name the file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["FolderInUseError", "atomic_write", "folder_lock", "read_json"]

LOCK_NAME = ".metalr-hf.lock"


class FolderInUseError(RuntimeError):
    """Another live process writes into this output folder."""


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """``write(tmp)`` into a temporary file of its own beside ``path``, then rename it onto ``path``: a kill
    never leaves a half-written file, and two writers never share a temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_json(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None):
    """The JSON in ``path``, or a ``ValueError`` that names the file and says what to do. ``max_bytes``: refuse a
    larger file before reading it (files from a Hub repo, which anyone can fill)."""
    try:
        if max_bytes is not None and os.stat(path).st_size > max_bytes:
            raise ValueError(f"{os.stat(path).st_size} bytes, more than the {max_bytes} such a file may hold")
        return loads_bounded(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise ValueError(
            f"The {what} {str(path)!r} is damaged ({e}); delete it (the job recomputes what it held) or pass "
            "another --output-dir"
        ) from None


MAX_JSON_DEPTH = 32  # more nesting than any file of the project holds (results: 5 levels)


def loads_bounded(text: str):
    """``json.loads`` of ``text``, refusing nesting deeper than :data:`MAX_JSON_DEPTH` before parsing (a file nested
    100,000 deep would exhaust the parser's recursion): a ``ValueError`` that says so."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
        elif ch in "]}":
            depth -= 1
    return json.loads(text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder`` for this process: a second job writing into it is refused with :class:`FolderInUseError`
    while this one lives; a lock left by a killed job is taken over."""
    path = Path(folder) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise FolderInUseError(
                    f"{str(folder)!r} is in use by another job (process {pid}, lock {path}); wait for it to end or "
                    "pass another --output-dir"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left by a job that was killed
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise FolderInUseError(f"could not take the lock {path}")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
