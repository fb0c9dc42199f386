"""The run manifest: what was run, with what, and what came out."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from speakrl.schemas.base import Strict


class StageRecord(Strict):
    status: str = "pending"  # pending | done
    seconds: float = 0.0
    counts: dict[str, int] = Field(default_factory=dict)
    # A finished run's outputs (path relative to the run dir -> [bytes, mtime_ns]): re-running the same command
    # finds them unchanged and does nothing.
    outputs: dict[str, list[int]] = Field(default_factory=dict)
    usage: dict[str, Any] = Field(default_factory=dict)  # tokens and cost, for LLM stages


class Manifest(Strict):
    speakrl_version: str
    created: str
    seed: int
    n: int
    config_hash: str
    versions: dict[str, str] = Field(default_factory=dict)
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    # A finished run's outputs (path relative to the run dir -> [bytes, mtime_ns]): re-running the same command
    # finds them unchanged and does nothing.
    outputs: dict[str, list[int]] = Field(default_factory=dict)
