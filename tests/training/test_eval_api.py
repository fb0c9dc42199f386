"""The evaluation harness against an OpenAI-compatible endpoint: the real openai SDK over HTTP to a local server."""

import json

import pytest

from speakrl.pipeline.errors import TrainingError
from speakrl_testing.openai_server import OpenAIServer, Reply
from speakrl.training.data import episode_rows
from speakrl.training.evaluate import ApiPolicy, evaluate


def test_always_asking_model(run_dir):
    with OpenAIServer(responder=lambda body: "Could you tell me which one you mean?") as server:
        policy = ApiPolicy(server.base_url, "asker", protocol="native", concurrency=4)
        m = evaluate(policy, str(run_dir), "test", max_turns=3)
        assert server.requests > 0
        body = server.bodies[0]
        assert body["tools"] and body["messages"][0]["role"] == "system"
    assert m["clarify_recall"] == 1.0 and m["under_asking_rate"] == 0.0
    assert m["over_asking_rate"] == 1.0 and m["control_over_asking_rate"] == 1.0
    assert m["task_completion"] == 0.0
    assert m["avg_turns"] == 3.0  # never acts: every episode runs to the turn limit
    assert m["tool_call_exact_match"] == 0.0


def test_oracle_that_knows_the_goal(run_dir, splits):
    """Calls the goal tool at once, then answers: completes every task in two turns and never asks."""
    goals = {json.loads(r["history"])[1]["content"]: (r["goal_tool"], r["goal_args"]) for r in episode_rows(splits["test"])}

    def oracle(body):
        messages = body["messages"]
        if messages[-1]["role"] == "tool":
            return Reply(content="All done: it is confirmed.")
        name, args = goals[messages[1]["content"]]
        return Reply(tool_calls=[{"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}])

    with OpenAIServer(responder=oracle) as server:
        m = evaluate(ApiPolicy(server.base_url, "oracle", protocol="native"), str(run_dir), "test", max_turns=4)
    assert m["task_completion"] == 1.0 and m["avg_turns"] == 2.0
    assert m["clarify_recall"] == 0.0 and m["over_asking_rate"] == 0.0
    assert 0.0 < m["tool_call_exact_match"] <= 1.0


def test_endpoint_errors_are_one_sentence(run_dir):
    with OpenAIServer(responder=lambda body: "x") as server:
        server.fail_next("unauthorized", times=100)
        with pytest.raises(TrainingError, match="refused"):
            evaluate(ApiPolicy(server.base_url, "m", protocol="native"), str(run_dir), "test", limit=1)


def test_dataset_from_a_hub_id(run_dir, tmp_path):
    """`--dataset OWNER/NAME`: the real datasets client loads a pushed SpeakER through a local Hub endpoint."""
    from speakrl.pipeline.hub import push
    from speakrl_testing.hub_server import HubServer, hub_environment
    from speakrl.training.data import load_dialogues

    with HubServer() as hub, hub_environment(hub, tmp_path):
        repo_id = f"{hub.user}/SpeakER-train-test"
        push(run_dir, repo_id)
        splits = load_dialogues(repo_id)
    local = load_dialogues(str(run_dir))
    assert {k: len(v) for k, v in splits.items()} == {k: len(v) for k, v in local.items()}
    assert splits["test"][0].messages == local["test"][0].messages


def test_baseline_policies_score_what_they_must(run_dir):
    """oracle: 1.0 everywhere in gold turns; always-act: never asks, so recall 0 and only controls complete;
    always-ask: recall 1 at the base rate's precision, never completes; both at chance on P(ask) AUC."""
    from speakrl.training.evaluate import BaselinePolicy

    oracle = evaluate(BaselinePolicy("oracle"), str(run_dir), "test")
    for key in ("clarify_f1", "p_ask_auc", "tool_call_exact_match", "answer_accuracy", "format_score", "task_completion",
                "forced_call_right_tool", "forced_call_argument_f1", "forced_call_exact_match",
                "forced_call_values_in_context"):  # every gold value is said (or returned by a tool) before the call
        assert oracle[key] == 1.0, key
    assert oracle["avg_turns"] == oracle["avg_gold_turns"]
    assert oracle["clarify_f1_ci95"] == [1.0, 1.0]  # resampling cannot move a perfect score
    act = evaluate(BaselinePolicy("always-act"), str(run_dir), "test")
    assert "forced_call_right_tool" not in act  # its turns ignore a given start: no calls' metrics to report
    assert act["clarify_recall"] == 0.0 and act["clarify_f1"] == 0.0 and act["over_asking_rate"] == 0.0
    assert act["p_ask_auc"] == 0.5 and act["avg_turns"] < oracle["avg_turns"]
    # Acting on what the user said completes the controls; of the ambiguous requests only those whose gold value the
    # user did say (one side of a conflict) can complete: always-act is an optimistic floor for acting without asking.
    assert act["task_completion_control"] == 1.0 and act["task_completion_ambiguous"] < 0.5
    ask = evaluate(BaselinePolicy("always-ask"), str(run_dir), "test", max_turns=3)
    assert ask["clarify_recall"] == 1.0 and ask["over_asking_rate"] == 1.0 and ask["p_ask_auc"] == 0.5
    precision = ask["clarify_precision"]
    assert ask["clarify_f1"] == pytest.approx(2 * precision / (1 + precision), abs=1e-3)
    low, high = ask["clarify_f1_ci95"]
    assert low < ask["clarify_f1"] < high and act["clarify_f1_ci95"] == [0.0, 0.0]
    assert ask["task_completion"] == 0.0 and ask["avg_turns"] == 3.0
