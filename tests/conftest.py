"""Shared fixtures: a small real SpeakER run, generated once per session on the offline backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the Hub: anything that tries fails fast instead of hanging.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """A 300-scenario run directory (accepted.jsonl, rejected.jsonl, stats.json, dataset/)."""
    from speakrl.pipeline.runner import generate
    from speakrl.schemas import RunConfig

    out = tmp_path_factory.mktemp("speaker") / "run"
    return generate(RunConfig(n=300, seed=0, out=str(out), workers=1, shard_size=100))


@pytest.fixture(scope="session")
def catalog():
    from speakrl.pipeline.catalog import load_catalog

    return load_catalog("builtin")


@pytest.fixture(scope="session")
def sim(catalog):
    from speakrl.pipeline.catalog.sim import Simulator

    return Simulator(catalog)
