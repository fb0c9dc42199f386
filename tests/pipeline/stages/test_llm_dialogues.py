"""LLM dialogue modes end to end: the real `openai` SDK against a local server playing the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speakrl.pipeline.catalog import load_catalog
from speakrl.pipeline.catalog.sim import Simulator
from speakrl.pipeline.errors import BudgetExceeded, LLMError
from speakrl.pipeline.llm import LLM
from speakrl.pipeline.stages import dialogues as offline
from speakrl.pipeline.stages import llm_dialogues, scenarios, validate
from speakrl_testing.llm_replay import ReplayResponder, judge_reply
from speakrl_testing.openai_server import OpenAIServer
from speakrl.schemas.config import EndpointConfig, RunConfig, StageLLMConfig, ValidateConfig
from speakrl.schemas.dialogue import Dialogue, Rejection

N = 24
FAKE_KEY = "sk-speakrl-stage-KEY-0d8e7b"


@pytest.fixture(scope="module")
def world():
    catalog = load_catalog()
    sim = Simulator(catalog)
    cfg = RunConfig(n=N, seed=3)
    scen = list(scenarios.run(cfg, catalog, range(N), sim))
    drafts = list(offline.run(cfg, catalog, scen, sim))
    return catalog, sim, scen, drafts


def config(server: OpenAIServer, mode: str, judge: bool = False, **endpoint) -> RunConfig:
    return RunConfig(
        n=N,
        seed=3,
        dialogues=StageLLMConfig(backend="openai", mode=mode, max_reasks=1),
        endpoint=EndpointConfig(**{"base_url": server.base_url, "model": "local-test", "timeout": 2.0, "max_retries": 2, **endpoint}),
        validate=ValidateConfig(judge=judge),
    )


def generate(cfg: RunConfig, world, cache: Path | None, max_cost: float | None = None) -> list:
    catalog, sim, scen, drafts = world
    with LLM(cfg.endpoint, cache, max_cost=max_cost, api_key=FAKE_KEY) as llm:
        return llm_dialogues.run(cfg, scen, drafts, llm, sim, catalog)


def check_one_row_per_scenario(rows: list, scen: list) -> None:
    assert len(rows) == len(scen)
    assert [r.id for r in rows] == [f"d-{s.id}" for s in scen]
    for r in rows:
        assert isinstance(r, (Dialogue, Rejection))
        if isinstance(r, Rejection):
            assert r.check and r.reason and r.stage == "dialogues"


def test_paraphrase_rewrites_utterances_and_keeps_everything_else(world, tmp_path):
    catalog, sim, scen, drafts = world
    with OpenAIServer(ReplayResponder(scen, drafts, catalog)) as server:
        rows = generate(config(server, "paraphrase"), world, tmp_path)
        assert server.requests == N  # one request per dialogue
    check_one_row_per_scenario(rows, scen)
    ctx = validate.Context.build(catalog, sim)
    for row, draft in zip(rows, drafts):
        assert isinstance(row, Dialogue)
        assert row.labels == draft.labels and row.gold_calls == draft.gold_calls
        for new, old in zip(row.messages, draft.messages, strict=True):
            assert (new.role, new.tool_calls, new.tool_call_id) == (old.role, old.tool_calls, old.tool_call_id)
            if old.role in ("user", "assistant") and old.content:
                assert new.content != old.content and new.content.endswith(old.content)
            else:
                assert new.content == old.content
        assert validate.check(row, ctx) is None
        prov = row.provenance
        assert prov.backend == "openai" and prov.model == "local-test" and len(prov.prompt_hash or "") == 16
        assert prov.usage["requests"] == 1 and prov.usage["prompt_tokens"] > 0


def test_a_paraphrase_keeps_the_words_a_value_was_said_in():
    """reminder="none" is said "no reminder" (`Dialogue.aliases`): the paraphrase must keep those words, which
    ground the call's "none"."""
    catalog = load_catalog()
    sim = Simulator(catalog)
    cfg = RunConfig(n=400, seed=5)
    scenario = next(s for s in scenarios.run(cfg, catalog, range(400), sim) if s.goal.get("reminder") == "none")
    draft = next(offline.run(cfg, catalog, [scenario], sim))
    assert "no reminder" in llm_dialogues.keep_values(scenario, draft)
    _, lines = llm_dialogues.paraphrase_prompt(scenario, draft)
    assert any("no reminder" in line["keep"] for line in lines)


def test_paraphrase_that_loses_a_value_is_reasked_then_rejected_with_raw(world, tmp_path):
    catalog, sim, scen, drafts = world

    def lossy(body):  # rewrites every line to the same words: slot values vanish
        lines = [ln for ln in body["messages"][1]["content"].splitlines() if ln.startswith("[")]
        return {"utterances": [{"index": int(ln[1:ln.index("]")]), "text": "Okay then."} for ln in lines]}

    with OpenAIServer(lossy) as server:
        rows = generate(config(server, "paraphrase"), world, tmp_path)
        assert server.requests == 2 * N  # each asked once, re-asked once (max_reasks=1)
    check_one_row_per_scenario(rows, scen)
    assert all(isinstance(r, Rejection) and r.check == "llm_invalid_output" for r in rows)
    assert all("line [" in r.reason for r in rows)  # the reason names the broken line
    assert any("exactly as written" in r.reason for r in rows)
    assert all(json.loads(r.raw)["utterances"][0]["text"] == "Okay then." for r in rows)
    assert rows[0].row["scenario_id"] == scen[0].id  # the draft is kept for study


def test_full_mode_builds_dialogues_that_pass_validation(world, tmp_path):
    catalog, sim, scen, drafts = world
    with OpenAIServer(ReplayResponder(scen, drafts, catalog)) as server:
        rows = generate(config(server, "full"), world, tmp_path)
        bodies = list(server.bodies)
    check_one_row_per_scenario(rows, scen)
    ctx = validate.Context.build(catalog, sim)
    assert all(isinstance(r, Dialogue) for r in rows)
    assert [validate.check(r, ctx) for r in rows] == [None] * N
    for row, s in zip(rows, scen):
        # Labels come from the structured acts; gold calls are the calls executed on the simulator.
        assert [lab.act for lab in row.labels][-1] == "answer"
        assert any(lab.act == "clarify" for lab in row.labels) == s.needs_clarification
        calls = [m.tool_calls[0].function for m in row.messages if m.tool_calls]
        assert row.gold_calls == calls and row.gold_calls[-1].name == s.tool
        results = [json.loads(m.content) for m in row.messages if m.role == "tool"]
        assert results == [sim.execute(c.name, c.args()) for c in calls]
        assert row.provenance.usage["requests"] >= 3 and row.outcome == "completed"
    # The assistant never sees the hidden goal; the user simulator does.
    schema_of = lambda b: b["response_format"]["json_schema"]["name"]  # noqa: E731
    assistant = [b for b in bodies if schema_of(b) == "AssistantTurn"]
    user = [b for b in bodies if schema_of(b) == "UserTurn"]
    assert assistant and user
    assert all("Your goal" not in json.dumps(b["messages"]) for b in assistant)
    assert all("Your goal, which the assistant cannot see" in b["messages"][1]["content"] for b in user)


def test_full_mode_faults_end_as_rejections_with_reasons(world, tmp_path):
    catalog, sim, scen, drafts = world
    with OpenAIServer(ReplayResponder(scen, drafts, catalog), retry_after=0.01) as server:
        server.fault_every("schema_violation", 7)
        server.fault_every("rate_limit", 10)
        server.fault_every("refusal", 53)
        rows = generate(config(server, "full", max_retries=8), world, tmp_path)
    check_one_row_per_scenario(rows, scen)
    rejected = [r for r in rows if isinstance(r, Rejection)]
    assert rejected and len(rejected) < N
    assert {r.check for r in rejected} <= {"llm_invalid_output", "llm_refusal"}
    assert all(r.raw for r in rejected)


def test_rerun_sends_no_request(world, tmp_path):
    catalog, sim, scen, drafts = world
    with OpenAIServer(ReplayResponder(scen, drafts, catalog)) as server:
        first = generate(config(server, "full"), world, tmp_path / "cache")
        sent = server.requests
        second = generate(config(server, "full"), world, tmp_path / "cache")
        assert server.requests == sent
    # Whole rows, provenance included: a row rebuilt from the cache is the row the first run wrote (what each run
    # paid for is in the run's usage ledger, not in the rows).
    assert [r.model_dump() for r in first] == [r.model_dump() for r in second]
    assert all(r.provenance.usage["requests"] > 0 and "cached" not in r.provenance.usage for r in second)


def test_fatal_errors_stop_the_shard_with_one_clear_sentence(world, tmp_path):
    with OpenAIServer(api_key="another-key") as server:
        with pytest.raises(LLMError) as err:
            generate(config(server, "paraphrase", max_concurrency=4), world, tmp_path)
        assert server.requests <= 4  # after the first 401 nothing more is sent
    assert "HTTP 401" in str(err.value) and FAKE_KEY not in str(err.value)


def test_the_stream_sends_requests_while_later_scenarios_are_still_being_made(world, tmp_path):
    catalog, sim, scen, drafts = world
    events: list[str] = []

    def pulled(rows, name):  # what the stream takes from its inputs, in order
        for r in rows:
            events.append(name)
            yield r

    with OpenAIServer(ReplayResponder(scen, drafts, catalog)) as server:
        cfg = config(server, "paraphrase", max_concurrency=2)  # a window of 2 x 2 rows in flight
        with LLM(cfg.endpoint, tmp_path, api_key=FAKE_KEY) as llm:
            rows = []
            for row in llm_dialogues.run_stream(cfg, pulled(scen, "scenario"), drafts, llm, sim, catalog):
                events.append("row")
                rows.append(row)
    assert [r.id for r in rows] == [d.id for d in drafts]
    assert all(isinstance(r, Dialogue) for r in rows)
    # Rows come out while scenarios are still being pulled, never more than the window ahead of them.
    assert events.index("row") < len(events) - 1 - events[::-1].index("scenario")
    for i in range(len(events)):
        assert events[: i + 1].count("scenario") - events[: i + 1].count("row") <= 2 * 2 + 1


def test_an_outage_stops_the_shard_instead_of_rejecting_rows(world, tmp_path):
    catalog, sim, scen, drafts = world
    with OpenAIServer(ReplayResponder(scen, drafts, catalog)) as server:
        server.fault_every("server_error", 1)
        with pytest.raises(LLMError, match="kept failing.*HTTP 500.*running the same command again resumes"):
            generate(config(server, "paraphrase", max_retries=1), world, tmp_path / "cache")
        server.clear_faults()
        rows = generate(config(server, "paraphrase", max_retries=1), world, tmp_path / "cache")
    assert all(isinstance(r, Dialogue) for r in rows)


def test_budget_stops_cleanly_and_a_rerun_resumes_without_paying_twice(world, tmp_path):
    catalog, sim, scen, drafts = world
    prices = {"price_input_per_mtok": 10.0, "price_output_per_mtok": 30.0, "max_concurrency": 2}
    with OpenAIServer(ReplayResponder(scen, drafts, catalog)) as server:
        with pytest.raises(BudgetExceeded, match="cost limit"):
            generate(config(server, "paraphrase", **prices), world, tmp_path / "cache", max_cost=0.01)
        stopped_at = server.requests
        assert 0 < stopped_at < N
        rows = generate(config(server, "paraphrase", **prices), world, tmp_path / "cache", max_cost=100.0)
        assert server.requests == N  # the answers bought before the stop were served from the cache
    assert all(isinstance(r, Dialogue) for r in rows)


def test_judge_keeps_its_verdict_and_rejects_failures(world, tmp_path):
    catalog, sim, scen, drafts = world
    replay = ReplayResponder(scen, drafts, catalog)
    with OpenAIServer(replay) as server:
        rows = generate(config(server, "paraphrase", judge=True), world, tmp_path / "a")
        assert server.requests == 2 * N
    assert all(isinstance(r, Dialogue) and r.judge and r.judge.verdict == "pass" for r in rows)
    asked = [r for r in rows if any(lab.act == "clarify" for lab in r.labels)]
    assert asked and all(len(r.judge.turns) == sum(lab.act == "clarify" for lab in r.labels) for r in asked)

    def strict_judge(body):
        if body["response_format"]["json_schema"]["name"] == "Judgement":
            return judge_reply(body, "fail")
        return replay(body)

    with OpenAIServer(strict_judge) as server:
        rows = generate(config(server, "paraphrase", judge=True), world, tmp_path / "b")
    failed = [r for r in rows if isinstance(r, Rejection)]
    assert failed and all(r.check == "judge_rejected" and r.row["judge"]["verdict"] == "fail" and r.raw for r in failed)
    assert all(isinstance(r, Dialogue) for r in rows if r not in failed)


def test_judge_as_a_validator_of_offline_dialogues(world, tmp_path):
    catalog, sim, scen, drafts = world
    replay = ReplayResponder(scen, drafts, catalog)
    failing = {d.id for d in drafts[::3] if any(lab.act == "clarify" for lab in d.labels)}

    def judge_some(body):  # fails the dialogues in `failing`, passes the rest
        text = body["messages"][1]["content"]
        bad = any(f"USER: {d.messages[1].content}" in text for d in drafts if d.id in failing)
        return judge_reply(body, "fail") if bad else replay(body)

    with OpenAIServer(judge_some) as server, LLM(config(server, "paraphrase").endpoint, tmp_path, api_key=FAKE_KEY) as llm:
        rows = llm_dialogues.judge(config(server, "paraphrase", judge=True), drafts, llm)
    assert [r.id for r in rows] == [d.id for d in drafts]
    rejected = {r.id for r in rows if isinstance(r, Rejection)}
    assert failing and failing <= rejected
    assert all(r.judge.verdict == "pass" for r in rows if isinstance(r, Dialogue))
    assert llm.usage_report().keys() == {"judge/local-test"}


def test_dry_run_estimate(world, tmp_path):
    catalog, sim, scen, drafts = world
    with OpenAIServer(ReplayResponder(scen, drafts, catalog)) as server:
        cfg = config(server, "paraphrase", price_input_per_mtok=1.0, price_output_per_mtok=2.0)
        with LLM(cfg.endpoint, tmp_path, api_key=FAKE_KEY) as llm:
            before = llm_dialogues.estimate(cfg, scen, drafts, catalog, llm)
            llm_dialogues.run(cfg, scen, drafts, llm, sim, catalog)
            after = llm_dialogues.estimate(cfg, scen, drafts, catalog, llm)
        assert server.requests == N  # estimating sends nothing
    assert before["requests"] == N and before["cached"] == 0 and after["cached"] == N
    assert before["prompt_tokens"] > 0 and before["cost"] > 0
    dry = llm_dialogues.dry_run(cfg.model_copy(update={"n": N, "seed": 3}), tmp_path)  # what --dry-run prints
    assert dry == after
    full = llm_dialogues.estimate(config(server, "full"), scen, drafts, catalog)
    turns = sum(sum(m.role == "assistant" for m in d.messages) + sum(m.role == "user" for m in d.messages) for d in drafts)
    assert full["requests"] == turns and full["cost"] is None  # unknown prices: no guess


def test_speakrl_run_with_the_openai_backend(tmp_path, monkeypatch):
    """`speakrl run --backend openai --base-url ... --model M` completes against a local server, keeps the key
    out of the run dir, and a second run sends no request."""
    from typer.testing import CliRunner

    from speakrl.pipeline import runner
    from speakrl.cli import app
    from speakrl.pipeline.io import read_jsonl, read_shards
    from speakrl.schemas.dialogue import Scenario

    n, seed = 30, 5
    offline_dir = runner.generate(RunConfig(n=n, seed=seed, out=str(tmp_path / "offline"), shard_size=15))
    scen = list(read_shards(offline_dir / "scenarios", Scenario))
    drafts = list(read_shards(offline_dir / "dialogues", Dialogue))
    monkeypatch.setenv("SPEAKRL_E2E_KEY", FAKE_KEY)
    out = tmp_path / "llm-run"
    args = ["run", "--n", str(n), "--seed", str(seed), "--out", str(out), "--shard-size", "15", "--backend", "openai",
            "--mode", "full", "--model", "local-test", "--api-key-env", "SPEAKRL_E2E_KEY"]
    with OpenAIServer(ReplayResponder(scen, drafts, load_catalog()), api_key=FAKE_KEY) as server:
        result = CliRunner().invoke(app, [*args, "--base-url", server.base_url])
        assert result.exit_code == 0, result.output + repr(result.exception)
        sent = server.requests
        assert sent > n
        stats = json.loads((out / "stats.json").read_text())
        assert stats["generated"] == n == stats["accepted"] + stats["rejected"]
        accepted = list(read_jsonl(out / "accepted.jsonl", Dialogue))
        assert accepted and all(d.provenance.backend == "openai" and d.provenance.model == "local-test" for d in accepted)
        usage = json.loads((out / "manifest.json").read_text())["stages"]["generate"]["usage"]["dialogues/local-test"]
        assert usage["requests"] == sent and usage["prompt_tokens"] > 0 and usage["cost"] is None  # no prices: unknown
        again = CliRunner().invoke(app, [*args, "--base-url", server.base_url, "--out", str(tmp_path / "llm-run-2")])
        assert again.exit_code == 0, again.output
        assert server.requests > sent  # a new run dir has a new cache
        sent = server.requests
        paid = usage["requests"]
        rerun = CliRunner().invoke(app, [*args, "--base-url", server.base_url])
        assert rerun.exit_code == 0 and server.requests == sent  # a finished run sends nothing
        usage = json.loads((out / "manifest.json").read_text())["stages"]["generate"]["usage"]["dialogues/local-test"]
        assert usage["requests"] == paid  # usage adds up across resumed processes, not overwritten by them
        dry = CliRunner().invoke(app, [*args, "--base-url", server.base_url, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert server.requests == sent and '"requests"' in dry.output  # an estimate, nothing sent
        # As if killed before writing its shards: the dialogues are redone from the response cache, for free.
        import shutil

        for stage_dir in ("dialogues", "validated"):
            shutil.rmtree(out / stage_dir)
        redo = CliRunner().invoke(app, [*args, "--base-url", server.base_url])
        assert redo.exit_code == 0, redo.output
        assert server.requests == sent
        assert [d.model_dump(exclude={"provenance"}) for d in read_jsonl(out / "accepted.jsonl", Dialogue)] == [
            d.model_dump(exclude={"provenance"}) for d in accepted
        ]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite") for p in files)
    leaked = [str(p) for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert leaked == []
