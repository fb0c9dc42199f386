"""Run-directory writes: atomic, and with the permissions a plain open() would give (not mkstemp's 0600); JSON text
exactly as json.dumps writes it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from speakrl.pipeline.io import atomic_write_text, json_text, read_jsonl, write_jsonl


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


VALUES = [
    {"city": "Zürich", "note": "naïve café – 東京 ✓", "emoji": "🙂"},
    {"quote": 'say "hi"\\ there', "controls": "a\nb\tc\u0001\u001f\u007f", "separators": "\u2028\u2029"},
    {"n": 2, "x": 0.1, "big": 1e300, "price": 0.0001, "neg": -3.5, "exact": 12.0, "t": True, "f": False, "none": None},
    {1: "int key", "nested": [[], {}, [{"a": [1, 2, {"b": None}]}]]},
    [], "", "plain", 0, -(2**63), 2**64 - 1,
]


@pytest.mark.parametrize("value", VALUES)
def test_json_text_is_json_dumps(value):
    """Rows and messages are published as this text: the bytes json.dumps would give, however fast it is made."""
    assert json_text(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_json_text_of_tiny_floats_is_the_same_value():
    """Below 1e-4 a float is spelled differently ('1e-7', not json.dumps's '1e-07'), as the same value."""
    value = {"small": 1e-7, "smaller": -3.5e-12, "edge": 1.5e-5}
    assert json_text(value) != json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert json.loads(json_text(value)) == value


def test_rows_round_trip_through_jsonl(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", VALUES[:4])
    assert list(read_jsonl(tmp_path / "rows.jsonl")) == json.loads(json.dumps(VALUES[:4]))  # int keys come back as str
