"""The only module that talks to a model: any OpenAI-compatible endpoint through the `openai` SDK.

One `LLM` per endpoint, shared by every stage, owns:

- an `openai.AsyncOpenAI` client on the aiohttp transport (`DefaultAioHttpClient`; the default httpx
  transport is CPU-bound at high concurrency), with the SDK's own retries off: ours are tenacity's,
  for transient errors only (429 honouring Retry-After, 5xx, timeouts, connection errors);
- one concurrency limit and one request/token rate limit, so stages cannot overrun the endpoint together;
- an on-disk response cache (sqlite, WAL) keyed by everything that changes the answer, written as each
  response arrives: re-running a finished run sends no request, a killed run re-sends only what was in flight;
- structured outputs: a pydantic model's JSON Schema as `response_format` (json_object + validation for
  servers without json_schema), with re-asks that show the model its validation error;
- usage and cost per stage and model, a cost limit, and live counters for a progress display.

It runs its own event loop on a background thread, so the pipeline's synchronous stages call it with
`llm.run_sync(coroutine)` and a progress display can read `llm.stats` from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import random
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx2
import openai
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random,
    wait_random_exponential,
)

from speakrl.pipeline import secrets
from speakrl.pipeline.errors import BudgetExceeded, ConfigError, LLMError
from speakrl.pipeline.io import append_line
from speakrl.schemas.config import EndpointConfig, RunConfig, StageLLMConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_RETRY_AFTER = 120.0  # seconds; a server asking for longer is treated as down for this attempt
CACHE_FILE = "llm_cache.sqlite"
LEDGER_FILE = "usage.jsonl"  # beside the cache: what every invocation of the run has spent


# --------------------------------------------------------------------------------------------- errors
class LLMOutputError(Exception):
    """The model answered, but not usably (invalid after every re-ask, or a refusal): the row is rejected.

    Not a `SpeakrlError`: it never stops a run, it becomes a `Rejection` carrying `raw`.
    """

    def __init__(self, check: str, reason: str, raw: str | None, usage: dict[str, int] | None = None):
        super().__init__(reason)
        self.check = check
        self.reason = reason
        self.raw = raw
        self.usage = usage or {}


class LLMUnavailable(LLMOutputError):
    """Transient failures outlasted every retry; the row is rejected now and retried by the next run."""


class _MalformedResponse(Exception):
    """An HTTP 200 whose body is not a chat completion: treated as transient, like a 5xx."""


# --------------------------------------------------------------------------------------------- stats
@dataclass
class Usage:
    """Token usage of one stage and model. Cost is None when the endpoint's prices are unknown."""

    requests: int = 0  # requests answered by the endpoint (paid)
    cached: int = 0  # answers served from the cache (free)
    failed: int = 0  # requests that failed for good
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cached": self.cached,
            "failed": self.failed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": None if self.cost is None else round(self.cost, 6),
        }


class LiveStats:
    """Counters for a progress display: read them from any thread (plain ints, updated on the LLM's loop)."""

    def __init__(self) -> None:
        self.done = 0  # requests answered by the endpoint
        self.cached = 0  # requests answered from the cache
        self.failed = 0  # requests that failed for good (after retries) or fail-fast errors
        self.retries = 0  # transient failures that were retried
        self.in_flight = 0
        self.cost: float | None = None
        self._window: deque[tuple[float, int]] = deque()  # (time, tokens) of recent answers

    def record(self, tokens: int) -> None:
        now = time.monotonic()
        self._window.append((now, tokens))
        while self._window and self._window[0][0] < now - 60:
            self._window.popleft()

    def _recent(self) -> list[tuple[float, int]]:
        cutoff = time.monotonic() - 60
        return [x for x in list(self._window) if x[0] >= cutoff]

    @property
    def requests_per_minute(self) -> int:
        return len(self._recent())

    @property
    def tokens_per_minute(self) -> int:
        return sum(t for _, t in self._recent())

    def snapshot(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "failed": self.failed,
            "cached": self.cached,
            "in_flight": self.in_flight,
            "retries": self.retries,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "cost": None if self.cost is None else round(self.cost, 6),
        }


# --------------------------------------------------------------------------------------------- processes
_SHARED_FIELDS = ("done", "failed", "cached", "in_flight", "retries", "requests_per_minute", "tokens_per_minute")


class SharedLLMState:
    """What the processes that split one endpoint share, in shared memory: the money spent (one cost limit
    over all of them) and each process's live counters (one progress display).

    Made by the parent (`LLM.share`) and handed to each worker's `LLM` at its start; one CPU core cannot keep
    up with the SDK's per-request work at high concurrency, so a run spreads its rows over processes.
    """

    def __init__(self, processes: int, context: Any = None):
        context = context or multiprocessing.get_context("spawn")
        self.processes = processes
        self._spent = context.Value("d", 0.0)
        self._claimed = context.Value("i", 0)
        self._stats = context.Array("d", processes * len(_SHARED_FIELDS), lock=False)  # a row per process

    def claim(self) -> int:
        """A slot for the calling process: its index among the processes."""
        with self._claimed.get_lock():
            index = self._claimed.value
            if index >= self.processes:
                raise RuntimeError(f"more than {self.processes} processes share this endpoint")
            self._claimed.value += 1
        return index

    def spend(self, amount: float) -> float:
        """Add to the money spent by every process; return the total."""
        with self._spent.get_lock():
            self._spent.value += amount
            return self._spent.value

    @property
    def spent(self) -> float:
        return self._spent.value

    def publish(self, index: int, snapshot: dict[str, Any]) -> None:
        row = index * len(_SHARED_FIELDS)
        for i, name in enumerate(_SHARED_FIELDS):
            self._stats[row + i] = snapshot[name]

    def totals(self) -> dict[str, int]:
        """Every process's counters, added up."""
        width = len(_SHARED_FIELDS)
        return {name: int(sum(self._stats[p * width + i] for p in range(self.processes))) for i, name in enumerate(_SHARED_FIELDS)}


def endpoint_share(endpoint: EndpointConfig, parts: int, index: int) -> EndpointConfig:
    """Process `index`'s share of the endpoint's concurrency and rate limits when `parts` processes use it;
    the shares add up to the endpoint's limits, so together they never exceed them.

    >>> e = EndpointConfig(max_concurrency=5, requests_per_minute=100)
    >>> [(endpoint_share(e, 2, i).max_concurrency, endpoint_share(e, 2, i).requests_per_minute) for i in range(2)]
    [(3, 50), (2, 50)]
    """

    def part(limit: int | None) -> int | None:
        return None if limit is None else limit // parts + (1 if index < limit % parts else 0)

    return endpoint.model_copy(update={
        "max_concurrency": part(endpoint.max_concurrency),
        "requests_per_minute": part(endpoint.requests_per_minute),
        "tokens_per_minute": part(endpoint.tokens_per_minute),
    })


def merge_usage(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Usage added up over processes, or over the sessions of a resumed run (cost stays None when unknown).

    >>> merge_usage({"d/m": {"requests": 2, "cost": None}}, {"d/m": {"requests": 1, "cost": None}})
    {'d/m': {'requests': 3, 'cost': None}}
    """
    merged = {key: dict(value) for key, value in old.items()}
    for key, value in new.items():
        into = merged.setdefault(key, {})
        for field, amount in value.items():
            before = into.get(field)
            into[field] = None if before is None and amount is None else (before or 0) + (amount or 0)
    return merged


class UsageLedger:
    """An append-only record of what a run has spent, one JSON line per paid or failed request, written as each
    happens by every process and every invocation of the run: a killed, budget-stopped or resumed run loses no
    usage, and the cost limit is enforced against the run's total, not one invocation's.
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def record(self, stage: str, model: str, **amounts: Any) -> None:
        append_line(self.path, json.dumps({"key": f"{stage}/{model}", **amounts}, separators=(",", ":")))

    def totals(self) -> dict[str, dict[str, Any]]:
        """Usage per "stage/model" over every line (a line cut short by a kill is skipped); cost stays None when no
        line has a price."""
        totals: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return totals
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    into = totals.setdefault(entry.pop("key"), Usage().as_dict())
                    for name, amount in entry.items():
                        if amount is not None:
                            into[name] = (into.get(name) or 0) + amount
                except (ValueError, KeyError, AttributeError, TypeError):
                    continue
        return dict(sorted(totals.items()))

    def cost(self) -> float:
        return sum(u.get("cost") or 0.0 for u in self.totals().values())


@dataclass
class Completion:
    """One answer: the text, the parsed object (structured calls), and what it took."""

    content: str | None
    parsed: Any = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI format, when the request offered tools
    finish_reason: str | None = None
    cached: bool = False
    usage: dict[str, int] = field(default_factory=dict)  # requests, cached, prompt_tokens, completion_tokens


# --------------------------------------------------------------------------------------------- cache
def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


class ResponseCache:
    """Answers keyed by request hash, in sqlite (WAL: readers never block the writer; each answer is
    committed as it arrives, so a killed run loses at most the requests in flight)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # The cache is used from the LLM's loop thread only, but created on the caller's thread.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        # Worker processes open the same new file at once; switching it to WAL takes a lock that
        # sqlite's busy timeout does not wait for, so the losers retry.
        for attempt in Retrying(
            retry=retry_if_exception(_is_locked), wait=wait_random(0.01, 0.1), stop=stop_after_attempt(100), reraise=True
        ):
            with attempt:
                self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process, fast
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        # Scrubbed like every file: an endpoint that echoes the key back must not plant it in the cache.
        self._db.execute("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, secrets.scrub(json.dumps(value))))

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def request_key(base_url: str, body: dict[str, Any], template: str | None, template_hash: str | None) -> str:
    """Hash of everything that changes the answer: endpoint, the full request body (model, messages,
    sampling, response format/schema) and the template. Never the API key."""
    blob = json.dumps(
        {"base_url": base_url.rstrip("/"), "body": body, "template": template, "template_hash": template_hash},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def request_body(
    model: str,
    messages: list[dict[str, Any]],
    sampling: StageLLMConfig | None = None,
    schema: type[BaseModel] | None = None,
    json_schema: bool = True,
) -> dict[str, Any]:
    """A chat completion request body: model, messages, sampling, and the structured-output format."""
    sampling = sampling or StageLLMConfig(backend="openai")
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": sampling.temperature,
        "max_tokens": sampling.max_tokens,
    }
    if schema is not None:
        if json_schema:
            body["response_format"] = response_format(schema)
        else:
            # Servers without structured outputs: ask for any JSON object and describe the schema instead.
            body["response_format"] = {"type": "json_object"}
            schema_text = json.dumps(schema.model_json_schema(), separators=(",", ":"))
            body["messages"] = [
                *messages,
                {"role": "system", "content": f"Answer with one JSON object matching this JSON Schema: {schema_text}"},
            ]
    return body


# --------------------------------------------------------------------------------------------- limits
class RateLimiter:
    """A token bucket refilled continuously at `per_minute`, holding at most a minute's worth."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        amount = min(amount, self.capacity)  # a request larger than the bucket waits for a full bucket
        async with self._lock:  # FIFO: a large request is not starved by small ones
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
                self.updated = now
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A rough prompt token count (4 characters a token), for rate limiting and dry-run estimates."""
    return sum(len(str(m.get("content") or "")) for m in messages) // 4 + 4 * len(messages)


# --------------------------------------------------------------------------------------------- retries
def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) if isinstance(exc, openai.APIStatusError) else None


def is_transient(exc: BaseException) -> bool:
    """429, 5xx, 408/409, timeouts, connection errors and broken bodies are worth retrying; nothing else."""
    if isinstance(exc, (openai.APIConnectionError, _MalformedResponse)):  # includes APITimeoutError
        return True
    status = _status(exc)
    return status is not None and (status in (408, 409, 429) or status >= 500)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or HTTP date), if any."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            return max(0.0, parsed.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _wait_retry_after:
    """Wait what the server asked for (plus jitter, so waiting clients do not return in lockstep), else
    exponential backoff with full jitter."""

    def __init__(self, backoff: wait_random_exponential):
        self.backoff = backoff

    def __call__(self, state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after(exc) if exc is not None else None
        if asked is not None and asked <= MAX_RETRY_AFTER:
            return asked + random.uniform(0, min(1.0, 0.1 + asked * 0.1))
        return self.backoff(state)


def _os_error(exc: BaseException) -> OSError | None:
    """The socket error behind a connection failure, if any (the SDK wraps it twice)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and not isinstance(seen, TimeoutError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _one_sentence(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------- schema
@functools.lru_cache(maxsize=64)
def response_format(model: type[BaseModel]) -> dict[str, Any]:
    """The `response_format` asking for JSON that matches `model` (OpenAI strict structured outputs)."""
    try:
        from openai.lib._pydantic import to_strict_json_schema

        schema = to_strict_json_schema(model)
    except ImportError:  # the helper is private to the SDK; fall back to the plain schema
        schema = model.model_json_schema()
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema, "strict": True}}


def _strip_fences(text: str) -> str:
    # Servers in json_object mode (and local models) often wrap JSON in a markdown fence.
    t = text.strip()
    if t.startswith("```"):
        t = t.split("\n", 1)[1] if "\n" in t else t[3:]
        if t.rstrip().endswith("```"):
            t = t.rstrip()[:-3]
    return t.strip()


def validation_message(err: ValidationError, limit: int = 5) -> str:
    """A short, model-readable summary of a pydantic validation error."""
    parts = []
    for e in err.errors()[:limit]:
        where = ".".join(str(p) for p in e["loc"]) or "top level"
        parts.append(f"{where}: {e['msg']}")
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# --------------------------------------------------------------------------------------------- client
class LLM:
    """A model endpoint: `await llm.complete(...)` from coroutines on its loop, or `llm.run_sync(...)`."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        cache_dir: str | Path | None,
        *,
        max_cost: float | None = None,
        api_key: str | None = None,
        shared: SharedLLMState | None = None,
    ):
        # A worker process of a run takes its share of the endpoint's limits and spends from the shared budget.
        self.shared = shared
        self.index = shared.claim() if shared is not None else 0
        if shared is not None:
            endpoint = endpoint_share(endpoint, shared.processes, self.index)
        self.worker_usage: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}  # reported by worker processes
        self._pools = 0
        self.endpoint = endpoint
        self.base_url = endpoint.base_url.rstrip("/")
        self.model = endpoint.model
        self.max_cost = max_cost
        if max_cost is not None and (endpoint.price_input_per_mtok is None or endpoint.price_output_per_mtok is None):
            raise ConfigError(
                "--max-cost needs the endpoint's prices (endpoint.price_input_per_mtok and price_output_per_mtok); "
                "without them the cost is unknown and cannot be limited"
            )
        self._api_key = api_key if api_key is not None else self._key_from_env(endpoint)
        secrets.register(self._api_key)  # scrubbed from every file and log line this process writes
        secrets.register_url(endpoint.base_url)
        self.cache = ResponseCache(Path(cache_dir) / CACHE_FILE) if cache_dir is not None else None
        self.ledger = UsageLedger(Path(cache_dir) / LEDGER_FILE) if cache_dir is not None else None
        # What earlier invocations of the run spent; workers get it through the shared state instead.
        self._prior_cost = self.ledger.cost() if self.ledger is not None and shared is None else 0.0
        self.stats = LiveStats()
        self.usage: dict[tuple[str, str], Usage] = {}
        self.json_schema_supported = True  # flips to False on a server that rejects json_schema
        self._budget_warned = False
        self._fatal: LLMError | None = None  # after a fail-fast error, nothing more is sent
        self._closed = False
        self._in_flight: dict[str, asyncio.Future] = {}  # cache key -> the answer of the request sent for it
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="speakrl-llm", daemon=True)
        self._thread.start()
        self.run_sync(self._setup())
        self._publishes = shared is not None  # a worker publishes its counters; the parent reads them
        # Held while counters are published, so the stats thread's last snapshot cannot land after the final one
        self._publish_lock = threading.Lock()
        self._published_final = False
        if self._publishes:
            threading.Thread(target=self._publish_stats, name="speakrl-llm-stats", daemon=True).start()

    @staticmethod
    def _key_from_env(endpoint: EndpointConfig) -> str:
        key = os.environ.get(endpoint.api_key_env)
        if key:
            return key
        host = urlparse(endpoint.base_url).hostname or ""
        if host in ("localhost", "127.0.0.1", "::1", "0.0.0.0"):
            return "EMPTY"  # local servers (vLLM, SGLang, Ollama) usually take any key
        raise ConfigError(
            f"environment variable {endpoint.api_key_env} is not set; export your API key there "
            "or name another variable with endpoint.api_key_env"
        )

    @classmethod
    def from_config(cls, cfg: RunConfig, cache_dir: str | Path | None, shared: SharedLLMState | None = None) -> LLM:
        """The run's LLM: its endpoint, its cost limit, and a response cache in `cache_dir`; with `shared`, one
        worker process's share of them."""
        return cls(cfg.endpoint, cache_dir, max_cost=cfg.max_cost, shared=shared)

    # ------------------------------------------------------------------ several processes
    def share(self, processes: int) -> SharedLLMState:
        """Shared state for `processes` worker processes that take over this endpoint (see `from_config`).
        This LLM then reports their counters and usage with its own."""
        spent = self._spent()
        self.shared = SharedLLMState(processes)
        self.shared.spend(spent)  # the cost limit counts what this process has spent already
        self._pools += 1
        return self.shared

    def record_worker_usage(self, index: int, usage: dict[str, dict[str, Any]]) -> None:
        """A worker's usage so far (its `usage_summary()`), merged into this LLM's `usage_summary()`."""
        self.worker_usage[(self._pools, index)] = usage

    def snapshot(self) -> dict[str, Any]:
        """Live counters of this process and of the worker processes it handed the endpoint to."""
        own = self.stats.snapshot()
        if self.shared is None:
            return own
        totals = self.shared.totals()
        merged: dict[str, Any] = {k: own[k] + totals[k] for k in _SHARED_FIELDS}
        merged["cost"] = None if self._cost(0, 0) is None else round(self._spent(), 6)
        return merged

    def _publish_stats(self) -> None:
        assert self.shared is not None
        while True:
            with self._publish_lock:
                if self._published_final:
                    return
                self.shared.publish(self.index, self.stats.snapshot())
            time.sleep(0.5)

    def _spent(self) -> float:
        """Money spent against the cost limit: by every process sharing the endpoint, or by this one."""
        if self.shared is not None:
            return self.shared.spent
        return self._prior_cost + (self.cost or 0.0)

    @property
    def _budget_hit(self) -> bool:
        return self.max_cost is not None and self._spent() >= self.max_cost

    async def _setup(self) -> None:
        # Created on the loop thread: the aiohttp session binds to the loop that first uses it.
        c = self.endpoint.max_concurrency
        self._sem = asyncio.Semaphore(c)
        self._rpm = RateLimiter(self.endpoint.requests_per_minute) if self.endpoint.requests_per_minute else None
        self._tpm = RateLimiter(self.endpoint.tokens_per_minute) if self.endpoint.tokens_per_minute else None
        http_client = openai.DefaultAioHttpClient(
            # Keep every connection alive: reconnecting per request costs more than the request.
            limits=httpx2.Limits(max_connections=c + 16, max_keepalive_connections=c + 16),
            timeout=httpx2.Timeout(self.endpoint.timeout, connect=min(10.0, self.endpoint.timeout)),
        )
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key,
            http_client=http_client,
            max_retries=0,  # retries are ours (tenacity), so they can honour Retry-After and be counted
            timeout=httpx2.Timeout(self.endpoint.timeout, connect=min(10.0, self.endpoint.timeout)),
        )

    # ------------------------------------------------------------------ sync bridge
    def run_sync(self, awaitable: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the LLM's loop and wait for its result (from any other thread)."""
        return self.submit(awaitable).result()

    def submit(self, awaitable: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start a coroutine on the LLM's loop (from any other thread); its future."""
        if self._closed:
            raise RuntimeError("this LLM is closed")
        return asyncio.run_coroutine_threadsafe(awaitable, self._loop)

    def close(self) -> None:
        """Close the HTTP client, the loop and the cache. Idempotent."""
        if self._closed:
            return
        if self._publishes:
            with self._publish_lock:  # the final counts: after the stats thread's publish in progress, none after them
                self._published_final = True
                self.shared.publish(self.index, self.stats.snapshot())
        if self.ledger is not None:
            for (stage, model), u in self.usage.items():  # answers from the cache are free: one line per process
                if u.cached:
                    self.ledger.record(stage, model, cached=u.cached)
        try:
            asyncio.run_coroutine_threadsafe(self.client.close(), self._loop).result(timeout=30)
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
            if self.cache is not None:
                self.cache.close()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ accounting
    def _usage(self, stage: str) -> Usage:
        key = (stage, self.model)
        if key not in self.usage:
            self.usage[key] = Usage(cost=self._cost(0, 0))
        return self.usage[key]

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        pin, pout = self.endpoint.price_input_per_mtok, self.endpoint.price_output_per_mtok
        if pin is None or pout is None:
            return None
        return (prompt_tokens * pin + completion_tokens * pout) / 1e6

    @property
    def cost(self) -> float | None:
        """Cost of this process's paid requests so far (None when prices are unknown)."""
        return self._cost(
            sum(u.prompt_tokens for u in self.usage.values()), sum(u.completion_tokens for u in self.usage.values())
        )

    def usage_summary(self) -> dict[str, dict[str, Any]]:
        """Usage of every stage and model, this process's and its worker processes', for the run manifest."""
        total = self.usage_report()
        for usage in self.worker_usage.values():
            total = merge_usage(total, usage)
        return total

    def usage_report(self, stage: str | None = None) -> dict[str, dict[str, Any]]:
        """Usage per "stage/model" (for the manifest), optionally for one stage."""
        return {f"{s}/{m}": u.as_dict() for (s, m), u in sorted(self.usage.items()) if stage is None or s == stage}

    # ------------------------------------------------------------------ requests
    def body(
        self,
        messages: list[dict[str, Any]],
        sampling: StageLLMConfig | None = None,
        schema: type[BaseModel] | None = None,
        json_schema: bool = True,
    ) -> dict[str, Any]:
        """The chat completion request body for this endpoint's model (what the cache key hashes)."""
        return request_body(self.model, messages, sampling, schema, json_schema)

    async def request(
        self,
        body: dict[str, Any],
        *,
        stage: str,
        template: str | None = None,
        template_hash: str | None = None,
    ) -> Completion:
        """Send one chat completion (or serve it from the cache). Transient errors are retried; a
        non-transient one raises `LLMError`; exhausted retries raise `LLMUnavailable`."""
        usage = self._usage(stage)
        key = request_key(self.base_url, body, template, template_hash) if self.cache is not None else ""
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is None and key in self._in_flight:  # the same request is on its way: wait for its answer
                hit = await asyncio.shield(self._in_flight[key])
            if hit is not None:
                self.stats.cached += 1
                usage.cached += 1
                return self._completion(hit, cached=True)
            answer = self._in_flight[key] = self._loop.create_future()
            try:
                stored = await self._fetch(body, usage, stage)
            except asyncio.CancelledError:
                answer.cancel()
                raise
            except BaseException as e:
                answer.set_exception(e)
                answer.exception()  # retrieved: a request nobody else waited for must not warn
                raise
            finally:
                del self._in_flight[key]
            answer.set_result(stored)
            self.cache.put(key, stored)
            return self._completion(stored, cached=False)
        return self._completion(await self._fetch(body, usage, stage), cached=False)

    async def _fetch(self, body: dict[str, Any], usage: Usage, stage: str) -> dict[str, Any]:
        """Send a request (with retries) and account for its answer, in the form the cache stores."""
        if self._fatal is not None:
            raise self._fatal
        try:
            data = await self._send_with_retries(body)
        except (LLMError, BudgetExceeded) as e:
            if isinstance(e, LLMError):
                self.stats.failed += 1
                usage.failed += 1
                self._record_failure(stage)
                if "HTTP 400" not in str(e):  # a bad key or model fails every request: stop sending
                    self._fatal = e
            raise
        except Exception as e:
            self.stats.failed += 1
            usage.failed += 1
            self._record_failure(stage)
            raise LLMUnavailable(
                "llm_unavailable",
                f"the endpoint failed {self.endpoint.max_retries + 1} times in a row ({_one_sentence(self._describe(e), 120)})",
                raw=None,
            ) from None
        stored = self._stored(data)
        self._account(usage, stored["usage"], stage)
        return stored

    async def _send_with_retries(self, body: dict[str, Any]) -> dict[str, Any]:
        attempts = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.endpoint.max_retries + 1),
            wait=_wait_retry_after(wait_random_exponential(multiplier=0.5, max=30)),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        est = estimate_tokens(body["messages"]) + int(body.get("max_tokens") or 0)
        async for attempt in attempts:
            with attempt:
                # The slot is held for one HTTP exchange only: a request sleeping before its retry does
                # not block others (the server's Retry-After, not our semaphore, paces it).
                async with self._sem:
                    if self._fatal is not None:  # another request hit a fail-fast error while we waited
                        raise self._fatal
                    if self._budget_hit:  # checked after the wait for a slot: the limit may have been hit meanwhile
                        raise BudgetExceeded(self._budget_message())
                    if self._rpm is not None:
                        await self._rpm.acquire(1)
                    if self._tpm is not None:
                        await self._tpm.acquire(est)
                    self.stats.in_flight += 1
                    try:
                        return await self._send(body)
                    finally:
                        self.stats.in_flight -= 1
        raise AssertionError("unreachable")  # tenacity either returns or reraises

    def _before_sleep(self, state: Any) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception()
        log.debug("retrying after %s (attempt %d)", self._describe(exc), state.attempt_number)

    async def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            # The SDK's low-level post: its auth, headers, timeouts and error classes, without building
            # typed request/response models, which cost more CPU than the HTTP exchange itself.
            response = await self.client.post("/chat/completions", body=body, cast_to=httpx2.Response)
        except openai.APIStatusError as e:
            if is_transient(e):
                raise
            raise self._fatal_error(e) from None
        try:
            data = json.loads(response.content)
            data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise _MalformedResponse(f"the endpoint's answer is not a chat completion ({type(e).__name__})") from None
        return data

    def _describe(self, exc: BaseException) -> str:
        status = _status(exc)
        text = f"HTTP {status}" if status else type(exc).__name__
        message = getattr(exc, "message", None) or str(exc)
        refused = _os_error(exc)
        if refused is not None:  # the SDK's aiohttp transport reports a refused connection as "Request timed out"
            text, message = "connection failed", str(refused)
        return self._scrub(f"{text}: {message}")

    def _scrub(self, text: str) -> str:
        # Never let the key reach a message, a log or a file, even if a server echoes it back.
        text = text.replace(self._api_key, "***") if self._api_key and self._api_key != "EMPTY" else text
        return secrets.scrub(text)

    def _fatal_error(self, e: openai.APIStatusError) -> LLMError:
        status = _status(e)
        # The server's own words ("Incorrect API key provided.") rather than the SDK's "Error code: 401 - {...}".
        message = e.body.get("message") if isinstance(e.body, dict) else None
        detail = _one_sentence(self._scrub(str(message or e.message or "")), 160).rstrip(".")
        hint = {
            401: f"check the API key in ${self.endpoint.api_key_env}",
            403: f"the key in ${self.endpoint.api_key_env} may not have access to this model",
            404: "check --model and --base-url",
            400: "the server rejected the request",
        }.get(status or 0, "the server rejected the request")
        return LLMError(f"{self.base_url} answered HTTP {status} for model {self.model!r} ({detail}); {hint}")

    @staticmethod
    def _stored(data: dict[str, Any]) -> dict[str, Any]:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        u = data.get("usage") or {}
        return {
            "content": message.get("content"),
            "refusal": message.get("refusal"),
            "tool_calls": message.get("tool_calls"),
            "finish_reason": choice.get("finish_reason"),
            "model": data.get("model"),
            "usage": {"prompt_tokens": int(u.get("prompt_tokens") or 0), "completion_tokens": int(u.get("completion_tokens") or 0)},
        }

    def _completion(self, stored: dict[str, Any], cached: bool) -> Completion:
        u = stored["usage"]
        return Completion(
            content=stored.get("content"),
            refusal=stored.get("refusal"),
            tool_calls=stored.get("tool_calls"),
            finish_reason=stored.get("finish_reason"),
            cached=cached,
            usage={
                "requests": 0 if cached else 1,
                "cached": 1 if cached else 0,
                "prompt_tokens": u["prompt_tokens"],
                "completion_tokens": u["completion_tokens"],
            },
        )

    def _record_failure(self, stage: str) -> None:
        if self.ledger is not None:
            self.ledger.record(stage, self.model, failed=1)

    def _account(self, usage: Usage, u: dict[str, int], stage: str) -> None:
        if self.ledger is not None:  # first: money spent is on disk before anything else can fail
            self.ledger.record(stage, self.model, requests=1, prompt_tokens=u["prompt_tokens"],
                               completion_tokens=u["completion_tokens"], cost=self._cost(u["prompt_tokens"], u["completion_tokens"]))
        usage.requests += 1
        usage.prompt_tokens += u["prompt_tokens"]
        usage.completion_tokens += u["completion_tokens"]
        usage.cost = self._cost(usage.prompt_tokens, usage.completion_tokens)
        self.stats.done += 1
        self.stats.record(u["prompt_tokens"] + u["completion_tokens"])
        self.stats.cost = self.cost
        if self.shared is not None and self.stats.cost is not None:
            self.shared.spend(self._cost(u["prompt_tokens"], u["completion_tokens"]) or 0.0)
        if self._budget_hit and not self._budget_warned:
            self._budget_warned = True
            log.warning("cost limit reached (%.4f >= %.4f); finishing requests in flight", self._spent(), self.max_cost)

    def _budget_message(self) -> str:
        return (
            f"the cost limit of {self.max_cost} was reached (spent {self._spent():.4f}); answers so far are cached, "
            "so re-running with a higher --max-cost resumes where this run stopped"
        )

    # ------------------------------------------------------------------ structured calls
    async def complete(
        self,
        messages: list[dict[str, Any]] | Prompt,
        *,
        stage: str,
        schema: type[M] | None = None,
        sampling: StageLLMConfig | None = None,
        template: str | None = None,
        template_hash: str | None = None,
        check: Callable[[Any], str | None] | None = None,
        prompt: Prompt | None = None,
    ) -> Completion:
        """Ask the model; with `schema`, return a validated instance in `.parsed`.

        An answer that does not parse, does not validate, or fails `check` (a function returning None or
        a reason) is re-asked with the problem shown to the model, up to `sampling.max_reasks` times; then
        `LLMOutputError` carries the last raw answer. A refusal raises `LLMOutputError` at once.
        `messages` may be a rendered `Prompt`, whose template name and hash then key the cache.
        """
        if isinstance(messages, Prompt):
            prompt, messages = messages, messages.messages
        if prompt is not None:
            template, template_hash = prompt.template, prompt.template_hash
        sampling = sampling or StageLLMConfig(backend="openai")
        total = {"requests": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0}
        convo = list(messages)
        raw: str | None = None
        problem = ""
        for _ in range(sampling.max_reasks + 1):
            body = self.body(convo, sampling, schema, json_schema=self.json_schema_supported)
            try:
                result = await self.request(body, stage=stage, template=template, template_hash=template_hash)
            except LLMError as e:
                if schema is None or not self.json_schema_supported or "HTTP 400" not in str(e):
                    raise
                # Servers without structured outputs reject json_schema: use json_object + validation.
                log.warning("%s rejected response_format json_schema; falling back to json_object", self.base_url)
                self.json_schema_supported = False
                body = self.body(convo, sampling, schema, json_schema=False)
                result = await self.request(body, stage=stage, template=template, template_hash=template_hash)
            except LLMOutputError as e:
                e.usage = _add(total, e.usage)
                raise
            total = _add(total, result.usage)
            if result.refusal:
                raise LLMOutputError("llm_refusal", f"the model refused: {_one_sentence(result.refusal, 120)}", result.refusal, total)
            raw = result.content
            if schema is None:
                problem = "" if raw else "the answer was empty"
                if not problem and check is not None:
                    problem = check(raw) or ""
                if not problem:
                    result.parsed, result.usage = raw, total
                    return result
            else:
                parsed = None
                if raw is None:
                    problem = "the answer was empty"
                else:
                    try:
                        parsed = schema.model_validate_json(_strip_fences(raw))
                        problem = (check(parsed) or "") if check is not None else ""
                    except ValidationError as err:
                        problem = validation_message(err)
                if not problem:
                    result.parsed, result.usage = parsed, total
                    return result
            log.debug("re-asking (%s)", problem)
            convo = [
                *convo,
                {"role": "assistant", "content": raw or ""},
                {
                    "role": "user",
                    "content": f"Your answer cannot be used: {problem}. Answer again, "
                    + ("with only a JSON object that matches the schema." if schema is not None else "following the instructions."),
                },
            ]
        raise LLMOutputError(
            "llm_invalid_output",
            f"the model's answer was still invalid after {sampling.max_reasks} re-ask(s): {_one_sentence(problem, 160)}",
            raw,
            total,
        )

    async def gather(self, coros: list[Awaitable[T]]) -> list[T | BaseException]:
        """Run coroutines concurrently; exceptions are returned in place (the caller decides)."""
        return await asyncio.gather(*coros, return_exceptions=True)


# --------------------------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompt:
    """A rendered template: its chat messages, and the name and content hash that go into the cache key."""

    template: str
    template_hash: str
    messages: list[dict[str, Any]]


@functools.lru_cache(maxsize=1)
def prompt_env() -> Any:
    """The jinja2 environment over the `prompts` package (package data, so it works from a wheel).

    StrictUndefined: a variable missing from the context is an error, never an empty string in a prompt.
    """
    import jinja2

    from speakrl.pipeline.checks import slot_label

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("speakrl.prompts", "."),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # prompts are not HTML
        auto_reload=False,  # a run renders thousands of prompts; their hashes (hash_template) are read once anyway
    )
    env.filters["label"] = slot_label  # "party_size" -> "party size"
    env.filters["value"] = lambda v: ("yes" if v else "no") if isinstance(v, bool) else v
    # jinja's own tojson escapes <, > and & for HTML; a prompt wants the JSON as it is.
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False)
    return env


@functools.lru_cache(maxsize=None)
def hash_template(name: str) -> str:
    """sha256 (first 16 hex digits) of a template's source: editing a template invalidates its cached answers."""
    source, _, _ = prompt_env().loader.get_source(prompt_env(), name)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def render(name: str, **context: Any) -> Prompt:
    """Render a template's `system` and `user` blocks into chat messages."""
    tmpl = prompt_env().get_template(name)
    ctx = tmpl.new_context(context)
    messages = []
    for role in ("system", "user"):
        if role in tmpl.blocks:
            text = "".join(tmpl.blocks[role](ctx)).strip()
            if text:
                messages.append({"role": role, "content": text})
    return Prompt(template=name, template_hash=hash_template(name), messages=messages)


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}
