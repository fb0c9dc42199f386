"""CLI conventions of `speakrl` (speakrl/cli.py and the option lists it mounts): defaults shown in --help, no value
placeholder on flags, OPENAI_BASE_URL bound to --base-url."""

from __future__ import annotations

import re

import pytest
import yaml

from speakrl.schemas.config import RunConfig
from speakrl_testing.runs import run_cli

COMMANDS = ["run", "scenarios", "dialogues", "validate", "publish", "train", "eval", "env"]


def help_text(monkeypatch, capsys, *command: str) -> str:
    monkeypatch.setenv("COLUMNS", "200")  # one option per line
    assert run_cli(monkeypatch, *command, "--help") == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_flags_show_no_value_placeholder(monkeypatch, capsys, command):
    text = help_text(monkeypatch, capsys, *command)
    assert "--help" in text and "<bool>" not in text
    for line in text.splitlines():
        if re.search(r"--(dry-run|private|create-pr|no-ood|quiet|version|verbose)\b", line):
            assert not re.search(r"<\w+>", line), line


def test_run_help_shows_run_configs_real_defaults(monkeypatch, capsys):
    text = help_text(monkeypatch, capsys, "run")
    defaults = RunConfig()
    for flag, value in (("--n", defaults.n), ("--seed", defaults.seed), ("--out", defaults.out),
                        ("--shard-size", defaults.shard_size), ("--backend", defaults.dialogues.backend),
                        ("--model", defaults.endpoint.model), ("--base-url", defaults.endpoint.base_url)):
        line = " ".join(text[text.index(f" {flag} "):].split("\n")[:2])
        assert f"[default: ({value})]" in line, (flag, line)
    assert "OPENAI_BASE_URL" in text
    assert "[default: test]" in help_text(monkeypatch, capsys, "eval")  # a real default, shown as it is


def test_base_url_comes_from_openai_base_url(monkeypatch, capsys, tmp_path):
    """The openai SDK's variable fills --base-url (recorded in the run's config.yaml); the flag still wins."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:9/v1")
    assert run_cli(monkeypatch, "scenarios", "--n", "3", "--out", str(tmp_path / "a")) == 0
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["endpoint"]["base_url"] == "http://localhost:9/v1"
    assert run_cli(monkeypatch, "scenarios", "--n", "3", "--out", str(tmp_path / "b"), "--base-url", "http://other:1/v1") == 0
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["endpoint"]["base_url"] == "http://other:1/v1"
