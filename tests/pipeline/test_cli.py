"""`speakrl run` and the stage commands: bad input ends in one clear sentence on stderr, exit code 2, no traceback,
nothing that looks complete; the dataset build forks its workers."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speakrl_testing.openai_server import spawn_server


def speakrl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from speakrl.cli import main; main()", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_clean_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) <= 4, proc.stderr  # one sentence (rich may wrap it; the list of settings is long)
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_main_command_prints_summary(tmp_path):
    proc = speakrl("run", "--n", "120", "--seed", "1", "--out", "out/demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "accepted" in proc.stdout and "generated" in proc.stdout
    stats = json.loads((tmp_path / "out/demo/stats.json").read_text())
    assert stats["generated"] == 120
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "out/demo").rglob("*") if p.is_file()}
    again = speakrl("run", "--n", "120", "--seed", "1", "--out", "out/demo", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout and "generated" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out/demo").rglob("*") if p.is_file()} == mtimes


def test_an_unfinished_run_whose_catalog_is_gone_ends_in_one_sentence(tmp_path):
    tools = [{"type": "function", "function": {"name": "find_cafe", "description": "Find a cafe.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}}, "required": ["city"]}}}]
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    args = ["--n", "20", "--shard-size", "10", "--catalog", "tools.json", "--out", "r"]
    assert speakrl("scenarios", *args, cwd=tmp_path).returncode == 0
    (tmp_path / "tools.json").unlink()
    assert_clean_error(speakrl("run", *args, cwd=tmp_path), "tools.json", "does not exist")


def test_stage_subcommands_run_one_stage_each(tmp_path):
    args = ["--n", "50", "--out", "r", "--shard-size", "25"]
    assert speakrl("scenarios", *args, cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in (tmp_path / "r/scenarios").iterdir()) == ["shard-00000.jsonl", "shard-00001.jsonl"]
    assert not (tmp_path / "r/dialogues").exists()
    assert speakrl("dialogues", *args, cwd=tmp_path).returncode == 0
    assert (tmp_path / "r/dialogues/shard-00001.jsonl").exists() and not (tmp_path / "r/validated").exists()
    assert speakrl("validate", *args, cwd=tmp_path).returncode == 0
    assert json.loads((tmp_path / "r/stats.json").read_text())["generated"] == 50


@pytest.mark.parametrize(
    ("config_text", "words"),
    [
        ("n: [1, 2\nseed: 0\n", ["not valid YAML"]),
        ("n: 10\ncolour: blue\n", ["unknown setting", "colour"]),
        ("- just\n- a list\n", ["mapping"]),
        ("n: 10\nmix: {sarcasm: 1.0}\n", ["sarcasm"]),
    ],
)
def test_bad_config_files(tmp_path, config_text, words):
    (tmp_path / "cfg.yaml").write_text(config_text)
    assert_clean_error(speakrl("run", "--config", "cfg.yaml", "--out", "o", cwd=tmp_path), *words)
    assert not (tmp_path / "o").exists()


def test_bad_flags(tmp_path):
    assert_clean_error(speakrl("run", "--n", "0", "--out", "o", cwd=tmp_path), "'n'", "greater than 0")
    assert_clean_error(speakrl("run", "--n", "5", "--backend", "gemini", "--out", "o", cwd=tmp_path), "backend")
    assert_clean_error(speakrl("run", "--config", "missing.yaml", cwd=tmp_path), "does not exist")
    assert not (tmp_path / "o").exists()


def test_bad_catalogs(tmp_path):
    broken = [{"type": "function", "function": {"name": "f", "description": "d",
                                                "parameters": {"type": "object", "properties": {"x": {"type": "strin"}}}}}]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    dup = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}}] * 2
    (tmp_path / "dup.json").write_text(json.dumps(dup))
    (tmp_path / "garbage.json").write_text("{not json")
    for name, word in [("broken.json", "f"), ("dup.json", "twice"), ("garbage.json", "JSON"), ("nope.json", "does not exist")]:
        proc = speakrl("run", "--n", "5", "--catalog", name, "--out", f"o-{name}", cwd=tmp_path)
        assert_clean_error(proc, word)
        assert not (tmp_path / f"o-{name}" / "accepted.jsonl").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir_as_user(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert_clean_error(speakrl("run", "--n", "5", "--out", str(ro / "run"), cwd=tmp_path), "cannot write")


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert_clean_error(speakrl("run", "--n", "5", "--out", str(blocker / "run"), cwd=tmp_path), "cannot write")


# --- the dataset build forks its workers -----------------------------------------------------------------------

BUILD_PROBE = """
import sys
from speakrl.pipeline.stages import publish
from speakrl.cli import main
publish.PART_BYTES = 8_000  # a worker pool even for a small run
real = publish._pool
def pool(workers):
    made = real(workers)
    print("start method:", made._mp_context.get_start_method(), file=sys.stderr)
    return made
publish._pool = pool
main()
"""


@pytest.mark.parametrize("backend", ["offline", "openai"])
def test_the_dataset_build_forks_its_workers(tmp_path, backend):
    """The build forks its worker processes only when no other thread runs (a fork could deadlock on a lock one
    holds), and spawns them otherwise, each importing datasets and pyarrow again (~2 s of CPU): `speakrl run` stops
    its progress display, its live LLM counters and its LLM client first."""
    args = ["run", "--n", "40", "--seed", "3", "--out", str(tmp_path / "run")]
    with spawn_server(replay=True) if backend == "openai" else contextlib.nullcontext() as base_url:
        if base_url is not None:
            args += ["--backend", "openai", "--mode", "paraphrase", "--model", "local-test", "--base-url", base_url,
                     "--workers", "1"]
        proc = subprocess.run([sys.executable, "-c", BUILD_PROBE, *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "start method: fork" in proc.stderr, proc.stderr
    assert (tmp_path / "run" / "dataset" / "README.md").is_file()
