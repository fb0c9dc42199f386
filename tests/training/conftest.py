"""Shared fixtures: a small real SpeakER run (offline backend) and a tiny model built from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from speakrl.pipeline.runner import generate
    from speakrl.schemas.config import RunConfig

    return Path(generate(RunConfig(n=160, seed=3, out=str(tmp_path_factory.mktemp("speaker") / "run"))))


@pytest.fixture(scope="session")
def splits(run_dir: Path) -> dict:
    from speakrl.training.data import load_dialogues

    return load_dialogues(str(run_dir))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, splits: dict) -> Path:
    from speakrl.training.data import corpus_texts
    from speakrl.training.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "base", list(corpus_texts(splits["train"])), vocab_size=1024,
                      hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128)


@pytest.fixture(scope="session")
def slice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first items of each benchmark file of the repository's copy, in the same layout (a user's --benchmark-dir);
    When2Call's slice keeps each of its three classes."""
    import json

    from speakrl.training.benchmarks import FILES, default_dir

    out = tmp_path_factory.mktemp("benchmarks")
    for files in FILES.values():
        for f in files:
            (out / f).parent.mkdir(parents=True, exist_ok=True)
            lines = (default_dir() / f).read_text(encoding="utf-8").splitlines()
            if f.startswith("when2call"):
                by_class = {}
                for line in lines:
                    by_class.setdefault(json.loads(line)["correct_answer"], []).append(line)
                lines = [line for part in by_class.values() for line in part[:4]]
            keep = len(lines) if "multi_turn_func_doc" in f else 12  # function docs whole: any gold call may use any
            (out / f).write_text("\n".join(lines[:keep]) + "\n", encoding="utf-8")
    return out
