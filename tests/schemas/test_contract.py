import pytest
from pydantic import ValidationError

from speakrl.pipeline.io import read_jsonl
from speakrl.schemas import Dialogue, Message, RunConfig, Scenario


def test_unknown_fields_are_errors():
    with pytest.raises(ValidationError, match="extra"):
        Message(role="user", content="hi", colour="blue")
    with pytest.raises(ValidationError):
        RunConfig(n=5, colour="blue")


def test_mix_rejects_unknown_ambiguity_types():
    with pytest.raises(ValidationError, match="sarcasm"):
        RunConfig(mix={"sarcasm": 1.0})


def test_dialogues_round_trip_through_json(small_run):
    rows = list(read_jsonl(small_run / "accepted.jsonl", Dialogue))
    for d in rows[:50]:
        assert Dialogue.model_validate_json(d.model_dump_json()) == d
        roles = [m.role for m in d.messages]
        assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
        for m in d.messages:
            if m.tool_calls:
                assert m.role == "assistant" and all(isinstance(c.function.args(), dict) for c in m.tool_calls)
            if m.role == "tool":
                assert m.tool_call_id and m.name


def test_scenarios_round_trip(small_run):
    rows = list(read_jsonl(next((small_run / "scenarios").glob("shard-*.jsonl")), Scenario))
    assert rows and all(Scenario.model_validate_json(s.model_dump_json()) == s for s in rows)
