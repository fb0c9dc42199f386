"""Run-directory writes: atomic, and with the permissions a plain open() would give (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from speakrl.pipeline.io import atomic_write_text, write_jsonl


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_get_the_umask_mode_like_open(tmp_path):
    atomic_write_text(tmp_path / "card.md", "hello")
    write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    assert mode(tmp_path / "card.md") == mode(tmp_path / "rows.jsonl") == mode(tmp_path / "plain.txt")
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_stricter_umask_is_respected(tmp_path):
    """A fresh process with umask 077 (read at import) writes 0600 files, as open() would there."""
    code = ("import os; os.umask(0o077); from speakrl.pipeline.io import atomic_write_text; "
            f"atomic_write_text({str(tmp_path / 'secret.md')!r}, 'x')")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert mode(tmp_path / "secret.md") == 0o600
    code = ("import os; os.umask(0o022); from speakrl.pipeline.io import atomic_write_text; "
            f"atomic_write_text({str(tmp_path / 'public.md')!r}, 'x')")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert mode(tmp_path / "public.md") == 0o644
