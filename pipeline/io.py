"""Run-directory I/O: JSONL shards and atomic writes (temp file + rename), so a killed run never leaves a
file that looks complete but is not; and giving freed memory back between the passes of a large run."""

from __future__ import annotations

import ctypes
import gc
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from speakrl.pipeline.secrets import scrub_bytes

M = TypeVar("M", bound=BaseModel)

# mkstemp creates files 0600; a file written here gets the mode a plain open() would give it (0666 minus the
# umask, 0644 by default). The umask can only be read by setting it: once, at import, before any worker threads.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part.
    Registered secrets are scrubbed first (`pipeline.secrets`): no key reaches a file."""
    path = Path(path)
    data = scrub_bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # name the file, not a temp name or nothing
            e.filename = str(path)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def build_dir_atomically(final: Path, build: Callable[[Path], object]) -> Path:
    """Run `build(staging)` on a new directory beside `final`, then swap it in whole: readers see the old directory
    or the new one, never a mix (a build killed midway leaves the old one, and a `.NAME.building-*` that the next
    build's caller may remove)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent, f".{final.name}.building-")
    remove_stale(final.parent, f".{final.name}.old-")
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.building-{os.getpid()}-"))
    try:
        build(staging)
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-{os.getpid()}-"))
            os.rmdir(old)  # only the unique name is wanted: os.replace needs a free target
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def remove_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove the entries of `parent` named `PREFIX<pid>-...` whose process no longer runs (left by a killed build or
    push; a live one's are left alone). Returns what was removed."""
    removed = []
    for path in Path(parent).glob(f"{prefix}*"):
        pid = path.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def append_line(path: Path, line: str) -> None:
    """Append one line to an append-only log (one `write` on an O_APPEND descriptor: processes may share the file;
    a process killed mid-write leaves at most a partial last line, which readers skip)."""
    data = scrub_bytes(line.rstrip("\n").encode("utf-8") + b"\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def json_text(value: Any) -> str:
    """`value` as compact JSON text, non-ASCII kept: the text of `json.dumps(value, ensure_ascii=False,
    separators=(",", ":"))` by orjson, ~7x faster (every build encodes its rows and their messages so). Only a float
    below 1e-4 is spelled differently, as the same value ("1e-7", not "1e-07").

    >>> json_text({"city": "Zürich", "n": 2, "ok": [True, None]})
    '{"city":"Zürich","n":2,"ok":[true,null]}'
    """
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def dump_row(row: BaseModel | dict) -> str:
    if isinstance(row, BaseModel):
        return row.model_dump_json(exclude_none=False)
    return json_text(row)


def write_jsonl(path: Path, rows: Iterable[BaseModel | dict]) -> int:
    """Atomically write rows as JSON lines; returns the number written."""
    lines = [dump_row(r) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: Path, model: type[M] | None = None) -> Iterator[M | dict]:
    """Yield rows of a JSONL file, validated into `model` when given."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield model.model_validate_json(line) if model else orjson.loads(line)


def read_shards(directory: Path, model: type[M] | None = None, pattern: str = "shard-*.jsonl") -> Iterator[M | dict]:
    """Yield the rows of every shard in `directory`, in shard order."""
    for path in sorted(Path(directory).glob(pattern)):
        yield from read_jsonl(path, model)


def release_freed_memory() -> None:
    """Give the heap memory Python has freed back to the OS (glibc's `malloc_trim`, as Dask's workers do): after a
    pass that grew and dropped large arrays, glibc keeps it for reuse, and it can be most of the process. A no-op
    without glibc."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
