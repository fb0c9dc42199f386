"""pipeline/llm.py against a real local HTTP server, through the real `openai` SDK (no network)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from speakrl.pipeline.errors import BudgetExceeded, ConfigError, LLMError
from speakrl.pipeline.llm import LLM, LLMOutputError, LLMUnavailable, RateLimiter, ResponseCache, request_key, retry_after
from speakrl_testing.openai_server import OpenAIServer, Reply
from speakrl.schemas.config import EndpointConfig, RunConfig, StageLLMConfig

FAKE_KEY = "sk-speakrl-test-KEY-5f3a9c1e"


class Answer(BaseModel):
    text: str
    count: int


def ask(i: int = 0) -> list[dict]:
    return [{"role": "user", "content": f"question {i}"}]


@pytest.fixture
def server():
    with OpenAIServer(retry_after=0.05, slow_seconds=2.0) as s:
        yield s


@pytest.fixture
def make_llm(server, tmp_path):
    made: list[LLM] = []

    def make(cache: Path | None = tmp_path / "cache", max_cost: float | None = None, **endpoint) -> LLM:
        fields = {"base_url": server.base_url, "model": "test-model", "timeout": 1.0, "max_retries": 3, **endpoint}
        llm = LLM(EndpointConfig(**fields), cache, max_cost=max_cost, api_key=endpoint.pop("api_key", FAKE_KEY))
        made.append(llm)
        return llm

    yield make
    for llm in made:
        llm.close()


def test_structured_output_sends_the_json_schema_and_parses(server, make_llm):
    llm = make_llm()
    result = llm.run_sync(llm.complete(ask(), stage="t", schema=Answer))
    assert result.parsed == Answer(text="example", count=0)
    fmt = server.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["required"] == ["text", "count"]
    assert server.bodies[0]["model"] == "test-model"


@pytest.mark.parametrize("fault", ["rate_limit", "server_error", "malformed_body", "slow"])
def test_transient_errors_are_retried(server, make_llm, fault):
    llm = make_llm()
    server.fail_next(fault, times=2)
    result = llm.run_sync(llm.complete(ask(), stage="t", schema=Answer))
    assert result.parsed == Answer(text="example", count=0)
    assert server.requests == 3
    assert llm.stats.retries == 2 and llm.stats.failed == 0


def test_rate_limit_waits_at_least_retry_after(make_llm):
    with OpenAIServer(retry_after=0.4) as s:
        llm = make_llm(base_url=s.base_url)
        s.fail_next("rate_limit", times=2)
        start = time.monotonic()
        llm.run_sync(llm.complete(ask(), stage="t"))
        assert time.monotonic() - start >= 0.8  # a lower bound: the client honoured both Retry-After headers
        assert s.status_counts == {429: 2, 200: 1}


def test_retry_after_parsing():
    class R:
        def __init__(self, headers):
            self.headers = headers

    class E(Exception):
        def __init__(self, headers):
            self.response = R(headers)

    assert retry_after(E({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after(E({"retry-after": "3"})) == 3.0
    assert retry_after(E({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # a date in the past
    assert retry_after(E({})) is None
    assert retry_after(ValueError()) is None


def test_retries_are_bounded_and_end_in_a_rejectable_failure(server, make_llm):
    llm = make_llm(max_retries=2)
    server.fail_next("server_error", times=10)
    with pytest.raises(LLMUnavailable) as err:
        llm.run_sync(llm.complete(ask(), stage="t", schema=Answer))
    assert err.value.check == "llm_unavailable"
    assert "HTTP 500" in err.value.reason
    assert server.requests == 3
    assert llm.stats.failed == 1


def test_a_refused_connection_is_named_as_such_not_as_a_timeout(tmp_path):
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=5.0, max_retries=0)
    with LLM(endpoint, None, api_key=FAKE_KEY) as llm, pytest.raises(LLMUnavailable) as err:
        llm.run_sync(llm.complete(ask(), stage="t"))
    assert "connection failed" in err.value.reason and f"127.0.0.1:{port}" in err.value.reason
    assert "timed out" not in err.value.reason


def test_unauthorized_fails_fast_with_a_clear_message_without_the_key(make_llm):
    with OpenAIServer(api_key="the-right-key") as s:
        llm = make_llm(base_url=s.base_url, api_key_env="MY_LLM_KEY")
        with pytest.raises(LLMError) as err:
            llm.run_sync(llm.complete(ask(), stage="t", schema=Answer))
        message = str(err.value)
        assert s.requests == 1  # no retry
        assert "HTTP 401" in message and "$MY_LLM_KEY" in message
        assert FAKE_KEY not in message and "\n" not in message


def test_unknown_model_fails_fast(make_llm):
    with OpenAIServer(models={"real-model"}) as s:
        llm = make_llm(base_url=s.base_url, model="no-such-model")
        with pytest.raises(LLMError, match="HTTP 404.*'no-such-model'.*--model"):
            llm.run_sync(llm.complete(ask(), stage="t"))
        assert s.requests == 1


def test_json_object_fallback_for_servers_without_json_schema(make_llm):
    with OpenAIServer(reject_json_schema=True) as s:
        s.responder = lambda body: {"text": "fallback", "count": 3}
        llm = make_llm(base_url=s.base_url)
        result = llm.run_sync(llm.complete(ask(), stage="t", schema=Answer))
        assert result.parsed == Answer(text="fallback", count=3)
        assert [b["response_format"]["type"] for b in s.bodies] == ["json_schema", "json_object"]
        assert "JSON Schema" in s.bodies[1]["messages"][-1]["content"]  # the schema is in the prompt instead
        llm.run_sync(llm.complete(ask(1), stage="t", schema=Answer))
        assert s.bodies[-1]["response_format"]["type"] == "json_object"  # remembered: no second 400


def test_invalid_json_is_reasked_with_the_error_shown(server, make_llm):
    llm = make_llm()
    server.fail_next("malformed_json")
    result = llm.run_sync(llm.complete(ask(), stage="t", schema=Answer))
    assert result.parsed == Answer(text="example", count=0)
    assert server.requests == 2
    reask = server.bodies[1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": '{"this is": "not finished'}
    assert "Invalid JSON" in reask[-1]["content"] or "json" in reask[-1]["content"].lower()
    assert result.usage["requests"] == 2


def test_schema_violation_after_every_reask_keeps_the_raw_output(server, make_llm):
    llm = make_llm()
    server.fail_next("schema_violation", times=10)
    sampling = StageLLMConfig(backend="openai", max_reasks=2)
    with pytest.raises(LLMOutputError) as err:
        llm.run_sync(llm.complete(ask(), stage="t", schema=Answer, sampling=sampling))
    assert err.value.check == "llm_invalid_output"
    assert err.value.raw == '{"unexpected_field": 42}'
    assert "text: Field required" in server.bodies[-1]["messages"][-1]["content"]
    assert server.requests == 3
    assert err.value.usage["requests"] == 3


def test_check_failures_are_reasked(server, make_llm):
    llm = make_llm()
    answers = iter([{"text": "no number", "count": 0}, {"text": "has 7", "count": 7}])
    server.responder = lambda body: next(answers)
    result = llm.run_sync(
        llm.complete(ask(), stage="t", schema=Answer, check=lambda a: None if a.count else "count must not be 0")
    )
    assert result.parsed.count == 7
    assert "count must not be 0" in server.bodies[1]["messages"][-1]["content"]


def test_refusal_is_rejected_without_reask(server, make_llm):
    llm = make_llm()
    server.fail_next("refusal")
    with pytest.raises(LLMOutputError) as err:
        llm.run_sync(llm.complete(ask(), stage="t", schema=Answer))
    assert err.value.check == "llm_refusal" and "can't help" in err.value.raw
    assert server.requests == 1


def test_rerun_is_served_from_the_cache(server, make_llm, tmp_path):
    llm = make_llm()
    first = llm.run_sync(llm.gather([llm.complete(ask(i), stage="t", schema=Answer) for i in range(5)]))
    llm.close()
    assert server.requests == 5
    again = make_llm()
    second = again.run_sync(again.gather([again.complete(ask(i), stage="t", schema=Answer) for i in range(5)]))
    assert server.requests == 5  # nothing sent
    assert [r.parsed for r in first] == [r.parsed for r in second]
    assert again.stats.cached == 5 and again.stats.done == 0
    assert all(r.cached and r.usage["requests"] == 0 for r in second)
    # Anything that changes the answer changes the key: sampling, template content, model.
    again.run_sync(again.complete(ask(0), stage="t", schema=Answer, sampling=StageLLMConfig(backend="openai", temperature=0.1)))
    again.run_sync(again.complete(ask(0), stage="t", schema=Answer, template="x.j2", template_hash="abc"))
    assert server.requests == 7


def test_identical_requests_in_flight_are_sent_once(server, make_llm):
    server.latency = 0.2  # the copies arrive while the first is still waiting for its answer
    llm = make_llm()
    results = llm.run_sync(llm.gather([llm.complete(ask(i % 2), stage="t", schema=Answer) for i in range(6)]))
    assert server.requests == 2
    assert [r.parsed for r in results[:2]] * 3 == [r.parsed for r in results]
    assert sum(r.usage["requests"] for r in results) == 2 and llm.stats.cached == 4  # paid once each
    uncached = make_llm(cache=None)  # without a cache nothing is shared: each request is its own
    uncached.run_sync(uncached.gather([uncached.complete(ask(0), stage="t", schema=Answer) for _ in range(3)]))
    assert server.requests == 5


def test_cache_key_ignores_the_api_key_and_files_never_hold_it(server, make_llm, tmp_path):
    body = {"model": "m", "messages": ask()}
    assert request_key("http://h/v1", body, None, None) == request_key("http://h/v1/", body, None, None)
    assert request_key("http://h/v1", body, "a.j2", "1") != request_key("http://h/v1", body, "a.j2", "2")
    llm = make_llm()
    llm.run_sync(llm.gather([llm.complete(ask(i), stage="t", schema=Answer) for i in range(3)]))
    llm.close()
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files
    assert all(FAKE_KEY.encode() not in p.read_bytes() for p in files)


def test_workers_opening_one_new_cache_at_once_all_succeed(tmp_path):
    # Worker processes of one run share <run>/cache; sqlite refuses some of the simultaneous switches
    # to WAL outright (about 1 open in 100 here without the retry), so many rounds are needed.
    errors: list[Exception] = []

    def open_and_write(path: Path, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            cache = ResponseCache(path)
            cache.put("k", {"ok": True})
            cache.close()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    for round_ in range(150):
        barrier = threading.Barrier(6)
        threads = [threading.Thread(target=open_and_write, args=(tmp_path / f"{round_}.sqlite", barrier)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


def test_concurrency_limit_is_shared_by_stages(server, make_llm):
    server.latency = 0.1
    llm = make_llm(max_concurrency=3)
    coros = [llm.complete(ask(i), stage="paraphrase" if i % 2 else "judge") for i in range(12)]
    results = llm.run_sync(llm.gather(coros))
    assert not [r for r in results if isinstance(r, BaseException)]
    assert server.max_in_flight == 3
    assert set(llm.usage_report()) == {"judge/test-model", "paraphrase/test-model"}


def test_usage_and_cost_per_stage(server, make_llm):
    llm = make_llm(price_input_per_mtok=1.0, price_output_per_mtok=2.0)
    llm.run_sync(llm.complete(ask(), stage="dialogues", schema=Answer))
    usage = llm.usage_report()["dialogues/test-model"]
    assert usage["requests"] == 1 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["cost"] == pytest.approx((usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6)
    assert llm.stats.snapshot()["cost"] == pytest.approx(usage["cost"], abs=1e-6)
    unpriced = make_llm(cache=None)
    unpriced.run_sync(unpriced.complete(ask(), stage="dialogues"))
    assert unpriced.usage_report()["dialogues/test-model"]["cost"] is None  # unknown, never guessed
    assert unpriced.stats.snapshot()["cost"] is None


def test_max_cost_stops_cleanly_and_the_rerun_resumes(server, make_llm):
    prices = {"price_input_per_mtok": 1000.0, "price_output_per_mtok": 1000.0}
    llm = make_llm(max_cost=0.01, max_concurrency=1, **prices)  # one request costs more than the limit
    results = llm.run_sync(llm.gather([llm.complete(ask(i), stage="t", schema=Answer) for i in range(4)]))
    assert isinstance(results[0], object) and not isinstance(results[0], BaseException)
    assert all(isinstance(r, BudgetExceeded) for r in results[1:])
    assert "cost limit" in str(results[1]) and server.requests == 1
    llm.close()
    resumed = make_llm(max_cost=100.0, **prices)
    again = resumed.run_sync(resumed.gather([resumed.complete(ask(i), stage="t", schema=Answer) for i in range(4)]))
    assert not [r for r in again if isinstance(r, BaseException)]
    assert server.requests == 4 and resumed.stats.cached == 1  # the paid answer was not bought twice


def test_config_errors(server, monkeypatch):
    with pytest.raises(ConfigError, match="needs the endpoint's prices"):
        LLM(EndpointConfig(base_url=server.base_url), None, max_cost=1.0, api_key=FAKE_KEY)
    monkeypatch.delenv("SPEAKRL_TEST_NO_KEY", raising=False)
    with pytest.raises(ConfigError, match="SPEAKRL_TEST_NO_KEY is not set"):
        LLM(EndpointConfig(base_url="https://api.example.com/v1", api_key_env="SPEAKRL_TEST_NO_KEY"), None)
    monkeypatch.setenv("SPEAKRL_TEST_KEY", FAKE_KEY)
    cfg = RunConfig(endpoint=EndpointConfig(base_url=server.base_url, api_key_env="SPEAKRL_TEST_KEY", model="m"))
    with LLM.from_config(cfg, None) as llm:
        assert llm.run_sync(llm.complete(ask(), stage="t")).content == "ok"
    # A local server needs no key.
    with LLM(EndpointConfig(base_url=server.base_url, api_key_env="SPEAKRL_TEST_NO_KEY"), None) as llm:
        assert llm.run_sync(llm.complete(ask(), stage="t")).content == "ok"


def test_tool_call_replies_are_available(server, make_llm):
    call = {"id": "call_1", "type": "function", "function": {"name": "find", "arguments": json.dumps({"q": "x"})}}
    server.responder = lambda body: Reply(tool_calls=[call])
    llm = make_llm()
    result = llm.run_sync(llm.request(llm.body(ask()), stage="t"))
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [call]


def test_rate_limiter_spaces_requests():
    import asyncio

    async def go() -> float:
        limiter = RateLimiter(per_minute=600)  # 10 a second, a burst of 600
        limiter.level = 0.0  # start empty, so each acquire waits for refill
        start = time.monotonic()
        for _ in range(3):
            await limiter.acquire(1)
        return time.monotonic() - start

    assert asyncio.run(go()) >= 0.25  # three tokens at 10/s from an empty bucket: at least ~0.3 s


def test_the_test_server_lists_models_through_the_sdk(make_llm):
    with OpenAIServer(models={"alpha", "beta"}) as s:
        llm = make_llm(base_url=s.base_url)

        async def names() -> list[str]:
            page = await llm.client.models.list()
            return [m.id for m in page.data]

        assert llm.run_sync(names()) == ["alpha", "beta"]


def test_a_workers_final_counts_are_the_last_it_publishes(server, monkeypatch):
    # A worker's stats thread publishes its counters every 0.5 s, and close() publishes the final ones, which the
    # parent reads once its workers have exited. A snapshot the thread took before the last answer must not land
    # after them (a flaky `done` count under load).
    from speakrl.pipeline.llm import SharedLLMState

    shared = SharedLLMState(1)
    llm = LLM(EndpointConfig(base_url=server.base_url, model="test-model"), None, api_key=FAKE_KEY, shared=shared)
    taken, snapshot = threading.Event(), llm.stats.snapshot

    def preempted_snapshot():
        counts = snapshot()
        if threading.current_thread().name == "speakrl-llm-stats":
            taken.set()
            time.sleep(0.3)  # the thread loses the CPU between its snapshot and its publish
        return counts

    monkeypatch.setattr(llm.stats, "snapshot", preempted_snapshot)
    assert taken.wait(timeout=5)
    llm.stats.done = 24  # the last answers arrive while the stale snapshot waits to be published
    llm.close()
    time.sleep(0.4)
    assert shared.totals()["done"] == 24
