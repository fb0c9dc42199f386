"""Run-directory I/O: JSONL shards and atomic writes (temp file + rename), so a killed run never leaves a
file that looks complete but is not."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from speakrl.pipeline.secrets import scrub_bytes

M = TypeVar("M", bound=BaseModel)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part.
    Registered secrets are scrubbed first (`pipeline.secrets`): no key reaches a file."""
    path = Path(path)
    data = scrub_bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def append_line(path: Path, line: str) -> None:
    """Append one line to an append-only log (one `write` on an O_APPEND descriptor: processes may share the file;
    a process killed mid-write leaves at most a partial last line, which readers skip)."""
    data = scrub_bytes(line.rstrip("\n").encode("utf-8") + b"\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def dump_row(row: BaseModel | dict) -> str:
    if isinstance(row, BaseModel):
        return row.model_dump_json(exclude_none=False)
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


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
                yield model.model_validate_json(line) if model else json.loads(line)


def read_shards(directory: Path, model: type[M] | None = None, pattern: str = "shard-*.jsonl") -> Iterator[M | dict]:
    """Yield the rows of every shard in `directory`, in shard order."""
    for path in sorted(Path(directory).glob(pattern)):
        yield from read_jsonl(path, model)
