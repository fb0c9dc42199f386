"""Peer benchmarks (When2Call, BFCL) converted to decision points: slices round-trip with the oracle at 1.0, the
trivial policies score what they must (the `speakrl eval --benchmark` command: tests/training/test_cli.py)."""

import json

import pytest

from speakrl.pipeline.errors import TrainingError
from speakrl.training.benchmarks import BENCHMARKS, benchmark_metrics, load_benchmark
from speakrl.training.evaluate import ApiPolicy, BaselinePolicy
from speakrl_testing.openai_server import OpenAIServer, Reply


def _types(schema):
    if isinstance(schema, dict):
        yield from ([schema["type"]] if isinstance(schema.get("type"), str) else [])
        for v in schema.values():
            yield from _types(v)
    elif isinstance(schema, list):
        for v in schema:
            yield from _types(v)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_slices_convert_and_the_oracle_scores_one(name, slice_dir):
    items = load_benchmark(name, slice_dir)
    if name == "bfcl-miss-param":  # one item per user turn of 12 multi-turn tasks
        assert len({i["id"].rsplit("-turn", 1)[0] for i in items}) == 12 and len(items) > 12
    else:
        assert len(items) == 12
    for item in items:
        assert item["messages"] and item["messages"][-1]["role"] == "user"
        types = set(_types([t["function"]["parameters"] for t in item["tools"]]))
        assert types <= {"object", "string", "number", "integer", "boolean", "array", "null"}, types
    oracle = benchmark_metrics(BaselinePolicy("oracle"), name, items)
    assert oracle["accuracy"] == 1.0
    act = benchmark_metrics(BaselinePolicy("always-act"), name, items)
    ask = benchmark_metrics(BaselinePolicy("always-ask"), name, items)
    if name == "when2call":
        assert oracle["macro_f1"] == 1.0 and oracle["tool_hallucination_rate"] == 0.0 and oracle["call_exact_match"] == 1.0
        # One class predicted for all of three balanced classes: F1 0.5 on it, 0 on the others.
        assert act["macro_f1"] == ask["macro_f1"] == pytest.approx(1 / 6, abs=1e-3)
        assert act["tool_hallucination_rate"] == 1.0 and ask["tool_hallucination_rate"] == 0.0
    elif name == "bfcl-miss-param":  # `[]` turns must wait, the others must call the gold first call
        assert oracle["call_exact_match"] == 1.0 and oracle["wait_accuracy"] == oracle["act_accuracy"] == 1.0
        assert (act["wait_accuracy"], act["act_accuracy"], ask["wait_accuracy"], ask["act_accuracy"]) == (0.0, 1.0, 1.0, 0.0)
        waits = [i for i in items if i["gold"] == "request_for_info"]
        assert waits and all("gold_call" not in i for i in waits)
    elif name == "bfcl-irrelevance":  # must not call
        assert (act["accuracy"], ask["accuracy"], oracle["call_rate"]) == (0.0, 1.0, 0.0)
    else:  # must call, with an allowed value for every argument
        assert oracle["call_exact_match"] == 1.0 and oracle["call_rate"] == 1.0
        assert (act["accuracy"], ask["accuracy"], ask["call_exact_match"]) == (1.0, 0.0, 0.0)


def test_wrong_calls_do_not_match(slice_dir):
    items = load_benchmark("bfcl-live-simple", slice_dir)

    def wrong(body):  # the gold function with every argument changed
        item = next(i for i in items if i["messages"][-1]["content"] == body["messages"][-1]["content"])
        args = {k: f"{v}-not" for k, v in item["gold_call"]["arguments"].items()} or {"unexpected": 1}
        return Reply(tool_calls=[{"id": "c", "type": "function", "function": {"name": item["gold_call"]["name"], "arguments": json.dumps(args)}}])

    with OpenAIServer(responder=wrong) as server:
        m = benchmark_metrics(ApiPolicy(server.base_url, "wrong", protocol="native"), "bfcl-live-simple", items)
    assert m["call_rate"] == 1.0 and m["call_exact_match"] == 0.0


def test_miss_param_turns_carry_the_gold_history(slice_dir):
    """Turn k's prompt is the task's user turns so far with the earlier turns' gold calls between them; a wrong
    argument in the first gold call does not match."""
    from speakrl.training.benchmarks import call_allowed

    items = load_benchmark("bfcl-miss-param", slice_dir)
    first, second = items[0], items[1]
    assert [m["role"] for m in first["messages"]] == ["user"]
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][-1]["role"] == "user" and len(second["messages"]) > 2
    act = next(i for i in items if i["gold"] == "tool_call" and i["gold_call"]["arguments"])
    name, args = act["gold_call"]["name"], act["gold_call"]["arguments"]
    assert call_allowed(name, args, name, act["allowed"])
    assert not call_allowed(name, {k: f"{v}-not" for k, v in args.items()}, name, act["allowed"])


def test_missing_data_and_unknown_names_are_one_sentence(tmp_path):
    with pytest.raises(TrainingError, match="unknown benchmark 'bfcl'; valid: when2call"):
        load_benchmark("bfcl")
    with pytest.raises(TrainingError, match="needs when2call/when2call_test_llm_judge.jsonl under .*--benchmark-dir"):
        load_benchmark("when2call", tmp_path)


def test_a_question_holding_a_unicode_line_separator_stays_one_item(slice_dir, tmp_path):
    """JSON leaves U+2028 unescaped in a string; the loader splits items at newlines only."""
    source = slice_dir / "when2call" / "when2call_test_llm_judge.jsonl"
    items = [json.loads(line) for line in source.read_text(encoding="utf-8").split("\n") if line]
    items[0]["question"] += "\u2028Thanks."
    target = tmp_path / "when2call" / "when2call_test_llm_judge.jsonl"
    target.parent.mkdir()
    target.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    loaded = load_benchmark("when2call", tmp_path)
    assert len(loaded) == len(load_benchmark("when2call", slice_dir)) == 12
