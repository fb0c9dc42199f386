"""Run configuration: one pydantic model loaded from YAML, then overridden by CLI flags."""

from __future__ import annotations

from typing import Literal

from urllib.parse import urlsplit

from pydantic import Field, PositiveInt, field_validator

from speakrl.schemas.base import Strict
from speakrl.schemas.dialogue import AMBIGUITY_TYPES

DEFAULT_MIX = {
    "none": 0.28,
    "missing_slot": 0.23,
    "underspecified_value": 0.12,
    "ambiguous_reference": 0.13,
    "invalid_value": 0.10,
    "conflicting_constraints": 0.10,
    "unsupported": 0.04,
}


MAX_N = 100_000_000  # scenarios in one run: beyond this, split the work over several runs
MAX_CONCURRENCY = 4096  # requests in flight to one endpoint


def check_url(url: str) -> str:
    """An http(s) URL with a host, or ValueError saying what is wrong (at load, before any request is retried).

    >>> check_url("http://localhost:8000/v1")
    'http://localhost:8000/v1'
    >>> check_url("ftp://host")
    Traceback (most recent call last):
    ...
    ValueError: 'ftp://host' is not an http:// or https:// URL
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise ValueError(f"{url!r} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host name")
    if any(c.isspace() for c in url):
        raise ValueError(f"{url!r} contains white space")
    return url


class EndpointConfig(Strict):
    """An OpenAI-compatible endpoint. The key is read from the environment variable named here, never stored."""

    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = Field(default="OPENAI_API_KEY", min_length=1)
    model: str = Field(default="gpt-4o-mini", min_length=1)
    max_concurrency: int = Field(default=64, ge=1, le=MAX_CONCURRENCY)
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    timeout: float = Field(default=60.0, gt=0, le=3600)
    max_retries: int = Field(default=6, ge=0, le=100)
    # USD per million tokens; None means unknown, and cost is then reported as null, never guessed.
    price_input_per_mtok: float | None = Field(default=None, ge=0)
    price_output_per_mtok: float | None = Field(default=None, ge=0)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, url: str) -> str:
        return check_url(url)

    @property
    def max_processes(self) -> int:
        """How many processes this endpoint's limits can be split between (each needs at least one of each).

        >>> EndpointConfig(max_concurrency=8, requests_per_minute=3).max_processes
        3
        """
        return min(x for x in (self.max_concurrency, self.requests_per_minute, self.tokens_per_minute) if x is not None)


class StageLLMConfig(Strict):
    """How one stage uses the LLM backend."""

    backend: Literal["offline", "openai"] = "offline"
    mode: Literal["paraphrase", "full"] = "paraphrase"
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=1024, ge=1)
    max_reasks: int = Field(default=2, ge=0)


class ValidateConfig(Strict):
    near_duplicate_threshold: float = Field(default=0.9, gt=0, le=1)
    num_perm: int = Field(default=64, ge=16)
    judge: bool = False


class RunConfig(Strict):
    n: int = Field(default=1000, gt=0, le=MAX_N)
    seed: int = 0
    out: str = "outputs/demo"
    catalog: str = "builtin"  # "builtin", an OpenAI tools JSON file, or an SGD schema.json
    slot_values: str | None = None  # SGD train_slot_values.json to enrich value pools
    mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MIX))
    multi_slot_rate: float = Field(default=0.35, ge=0, le=1)  # share of missing_slot scenarios missing 2+ slots
    # share of dialogues missing 2+ slots from the start that ask for them one at a time (a good agent asks once)
    split_rate: float = Field(default=0.0, ge=0, le=1)
    partial_answer_rate: float = Field(default=0.2, ge=0, le=1)  # user answers only part of a question
    volunteer_rate: float = Field(default=0.2, ge=0, le=1)  # user volunteers an unasked value
    shard_size: int = Field(default=1000, gt=0, le=1_000_000)
    workers: int = Field(default=0, ge=0, le=256)  # worker processes; 0 = one per core (LLM runs split the endpoint limits)
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    scenarios: StageLLMConfig = Field(default_factory=StageLLMConfig)
    dialogues: StageLLMConfig = Field(default_factory=StageLLMConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    max_cost: float | None = Field(default=None, gt=0)

    model_config = {"extra": "forbid", "populate_by_name": True}

    @field_validator("mix")
    @classmethod
    def _check_mix(cls, mix: dict[str, float]) -> dict[str, float]:
        valid = {"none", *AMBIGUITY_TYPES}
        unknown = sorted(set(mix) - valid)
        if unknown:
            raise ValueError(f"unknown ambiguity type(s) {unknown} in mix; valid: {sorted(valid)}")
        if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError("mix weights must be non-negative and sum to more than 0")
        return mix
