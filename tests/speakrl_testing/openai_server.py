"""A local OpenAI-compatible chat completions server with fault injection, for tests and benchmarks.

It speaks real HTTP on 127.0.0.1 (ephemeral port), so the real `openai` SDK is exercised end to end.
Use it in-process (a background thread; the responder can be any Python function) or as a separate
process (`spawn_server`, so a benchmark measures the client, not the server):

    with OpenAIServer(responder=lambda body: "hello") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
        server.fail_next("rate_limit", times=2)   # the next two requests get 429 + Retry-After
        server.requests                           # chat completion requests received so far

Faults (`fail_next` / `fault_every`): rate_limit (429 + Retry-After), server_error (500), slow (answers
after `slow_seconds`, past a client timeout), malformed_body (HTTP 200 whose body is not JSON),
malformed_json (content that is not JSON), schema_violation (JSON content that fits no schema), refusal,
unauthorized (401), not_found (404). `reject_json_schema=True` makes the server answer 400 to
`response_format: json_schema`, like servers that only know `json_object`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from speakrl_testing import ThreadedServer

FAULTS = (
    "rate_limit",
    "server_error",
    "slow",
    "malformed_body",
    "malformed_json",
    "schema_violation",
    "refusal",
    "unauthorized",
    "not_found",
)


@dataclass
class Reply:
    """What the model "says": text content, tool calls (OpenAI format), or a refusal."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None
    finish_reason: str = "stop"


Responder = Callable[[dict[str, Any]], "Reply | str | dict | list"]


def example_from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A small instance of a JSON Schema (first enum value, first anyOf branch, one list item).

    >>> example_from_schema({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", "y"]}}})
    {'a': 0, 'b': 'x'}
    """
    root = root or schema
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return example_from_schema(node, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_from_schema(schema[key][0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {k: example_from_schema(v, root) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_from_schema(schema.get("items", {}), root)] if schema.get("minItems", 1) else []
    return {"string": "example", "integer": 0, "number": 0.0, "boolean": False, "null": None}.get(kind, None)


def default_responder(body: dict[str, Any]) -> Reply:
    """Answer a schema-constrained request with a valid instance, anything else with a short text."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return Reply(content=json.dumps(example_from_schema(fmt["json_schema"]["schema"])))
    if fmt.get("type") == "json_object":
        return Reply(content="{}")
    return Reply(content="ok")


def _tokens(text: str) -> int:
    # A rough count (4 characters a token) is enough for usage accounting tests.
    return len(text) // 4 + 1


class _App:
    """The request handler and its state; runs on one event loop (thread or process)."""

    def __init__(
        self,
        responder: Responder | None,
        latency: float,
        api_key: str | None,
        models: set[str] | None,
        reject_json_schema: bool,
        retry_after: float,
        slow_seconds: float,
        record: bool,
    ):
        self.responder = responder or default_responder
        self.latency = latency
        self.api_key = api_key
        self.models = models
        self.reject_json_schema = reject_json_schema
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.record = record
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0  # most chat requests being answered at once (tests check client limits)
        self.in_flight_seconds = 0.0  # integral of in_flight over time: busy slot-seconds (benchmarks)
        # Wall-clock times of the first request and the last response since /stats?reset_span=1 (benchmarks: how long
        # a client took to send its first request, and whether its requests' span is near the ideal)
        self.span_first_request: float | None = None
        self.span_last_response: float | None = None
        self._changed = time.monotonic()
        self.status_counts: dict[int, int] = {}
        self.bodies: list[dict[str, Any]] = []
        self.queued: deque[str] = deque()
        self.every: dict[str, int] = {}
        self.lock = threading.Lock()  # fail_next/fault_every are called from the test's thread
        self._ids = itertools.count()

    def next_fault(self, n: int) -> str | None:
        with self.lock:
            if self.queued:
                return self.queued.popleft()
            for fault, k in self.every.items():
                if n % k == 0:
                    return fault
        return None

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        return web.Response(status=status, body=json.dumps(payload).encode(), content_type="application/json", headers=headers)

    def _error(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> web.Response:
        return self._json(status, {"error": {"message": message, "type": kind, "code": None, "param": None}}, headers)

    async def models_handler(self, request: web.Request) -> web.Response:
        names = sorted(self.models or {"local-model"})
        return self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "local"} for m in names]})

    async def stats_handler(self, request: web.Request) -> web.Response:
        self._count_in_flight(0)
        stats = {"requests": self.requests, "status_counts": self.status_counts, "cpu_seconds": time.process_time(),
                 "in_flight_seconds": self.in_flight_seconds, "max_in_flight": self.max_in_flight,
                 "span_first_request": self.span_first_request, "span_last_response": self.span_last_response}
        if request.query.get("reset_span"):
            self.span_first_request = self.span_last_response = None
        return self._json(200, stats)

    def _count_in_flight(self, change: int) -> None:
        now = time.monotonic()
        self.in_flight_seconds += self.in_flight * (now - self._changed)
        self._changed = now
        self.in_flight += change
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    async def chat(self, request: web.Request) -> web.Response:
        self.requests += 1
        self._count_in_flight(+1)
        if self.span_first_request is None:
            self.span_first_request = time.time()
        try:
            return await self._chat(request)
        finally:
            self._count_in_flight(-1)
            self.span_last_response = time.time()

    async def _chat(self, request: web.Request) -> web.Response:
        n = self.requests
        body = await request.json()
        if self.record:
            self.bodies.append(body)
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, "Incorrect API key provided.", "invalid_request_error")
        fault = self.next_fault(n)
        if fault == "unauthorized":
            return self._error(401, "Incorrect API key provided.", "invalid_request_error")
        if fault == "not_found" or (self.models is not None and body.get("model") not in self.models):
            return self._error(404, f"The model `{body.get('model')}` does not exist.", "invalid_request_error")
        fmt = (body.get("response_format") or {}).get("type")
        if self.reject_json_schema and fmt == "json_schema":
            return self._error(400, "response_format type 'json_schema' is not supported; use 'json_object'.", "invalid_request_error")
        if fault == "rate_limit":
            # Rate limiters answer at once; the client must wait Retry-After before trying again.
            headers = {"Retry-After": str(math.ceil(self.retry_after)), "retry-after-ms": str(int(self.retry_after * 1000))}
            return self._error(429, "Rate limit reached, retry later.", "rate_limit_error", headers)
        await asyncio.sleep(self.slow_seconds if fault == "slow" else self.latency)
        if fault == "server_error":
            return self._error(500, "The server had an error while processing your request.", "server_error")
        if fault == "malformed_body":
            self.status_counts[200] = self.status_counts.get(200, 0) + 1
            return web.Response(status=200, body=b'{"id": "chatcmpl-broken", "choices": [', content_type="application/json")
        if fault == "malformed_json":
            reply = Reply(content='{"this is": "not finished')
        elif fault == "schema_violation":
            reply = Reply(content='{"unexpected_field": 42}')
        elif fault == "refusal":
            reply = Reply(refusal="I'm sorry, I can't help with that.")
        else:
            out = self.responder(body)
            if isinstance(out, Reply):
                reply = out
            elif isinstance(out, str):
                reply = Reply(content=out)
            else:
                reply = Reply(content=json.dumps(out))
        return self._json(200, self._completion(body, reply))

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        prompt = "".join(str(m.get("content") or "") for m in body.get("messages", []))
        completion = (reply.content or "") + (reply.refusal or "") + json.dumps(reply.tool_calls or "")
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": reply.refusal}
        if reply.tool_calls:
            message["tool_calls"] = reply.tool_calls
        prompt_tokens, completion_tokens = _tokens(prompt), _tokens(completion)
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "local-model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else reply.finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models_handler)
        app.router.add_get("/stats", self.stats_handler)
        return app


async def _start(app: _App, port: int = 0) -> tuple[web.AppRunner, int]:
    # access_log=None: logging every request would cost more CPU than answering it.
    runner = web.AppRunner(app.web_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    sockets = site._server.sockets  # type: ignore[union-attr]
    return runner, sockets[0].getsockname()[1]


class OpenAIServer(ThreadedServer):
    """The server on a background thread (a context manager); state is readable from the test's thread."""

    thread_name = "openai-test-server"

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        models: set[str] | None = None,
        reject_json_schema: bool = False,
        retry_after: float = 0.05,
        slow_seconds: float = 5.0,
        record: bool = True,
    ):
        super().__init__()
        self._app = _App(responder, latency, api_key, models, reject_json_schema, retry_after, slow_seconds, record)

    # --- controls and counters (safe to call from any thread) ---
    def fail_next(self, fault: str, times: int = 1) -> None:
        """The next `times` chat requests get `fault` (see FAULTS)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; valid: {FAULTS}")
        with self._app.lock:
            self._app.queued.extend([fault] * times)

    def fault_every(self, fault: str, k: int) -> None:
        """Every k-th chat request gets `fault` (k=10: 10% of requests)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; valid: {FAULTS}")
        with self._app.lock:
            self._app.every[fault] = k

    def clear_faults(self) -> None:
        with self._app.lock:
            self._app.queued.clear()
            self._app.every.clear()

    @property
    def requests(self) -> int:
        return self._app.requests

    @property
    def max_in_flight(self) -> int:
        return self._app.max_in_flight

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return self._app.bodies

    @property
    def status_counts(self) -> dict[int, int]:
        return dict(self._app.status_counts)

    @property
    def responder(self) -> Responder:
        return self._app.responder

    @responder.setter
    def responder(self, fn: Responder) -> None:
        self._app.responder = fn

    @property
    def latency(self) -> float:
        return self._app.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._app.latency = seconds

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def web_app(self) -> web.Application:
        return self._app.web_app()


@contextmanager
def spawn_server(
    latency: float = 0.0,
    rate_limit_every: int = 0,
    retry_after: float = 0.5,
    replay: bool = False,
) -> Iterator[str]:
    """Run the server in a separate process and yield its base URL. It answers with `default_responder`, or
    with `replay=True` plays the paraphrase and judge roles like `ReplayResponder` (valid answers, so a whole
    `speakrl run` goes through).

    Statistics are served at `<base_url without /v1>/stats`.
    """
    cmd = [sys.executable, "-m", "speakrl_testing.openai_server", "--latency", str(latency), "--retry-after", str(retry_after)]
    if rate_limit_every:
        cmd += ["--rate-limit-every", str(rate_limit_every)]
    if replay:
        cmd.append("--replay")
    # The child imports this package by name: put the folder holding it on its path (benchmarks run outside pytest).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"test server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawned_server_stats(base_url: str, reset_span: bool = False) -> dict[str, Any]:
    """The statistics of a server started by `spawn_server`: requests, status counts, in-flight time, CPU, and the
    wall-clock times of the first request and the last response since the last `reset_span`."""
    query = "?reset_span=1" if reset_span else ""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats" + query) as response:
        return json.load(response)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local OpenAI-compatible server with fault injection.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=0.5)
    parser.add_argument("--rate-limit-every", type=int, default=0)
    parser.add_argument("--replay", action="store_true", help="answer paraphrase and judge requests validly")
    args = parser.parse_args(argv)
    responder = None
    if args.replay:
        from speakrl_testing.llm_replay import ReplayResponder

        responder = ReplayResponder()
    app = _App(responder, args.latency, None, None, False, args.retry_after, 5.0, record=False)
    if args.rate_limit_every:
        app.every["rate_limit"] = args.rate_limit_every

    async def serve() -> None:
        runner, port = await _start(app, args.port)
        print(f"PORT {port}", flush=True)
        # Serve until the parent closes our stdin (or terminates us).
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
