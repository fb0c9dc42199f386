"""Every published row renders through every chat template TRL bundles (and the tiny tokenizer's), as loaded."""

from __future__ import annotations

import pytest

from speakrl_testing.chat_templates import (
    argument_shapes,
    measure,
    published_conversations,
    render,
    templates,
    with_string_arguments,
)

TEMPLATES = templates()


@pytest.fixture(scope="module")
def rows(small_run, tmp_path_factory):
    """Every row of `default` and `decision_points` of a real 300-scenario run, as `datasets.load_dataset` gives it."""
    out = published_conversations(str(small_run / "dataset"), cache_dir=str(tmp_path_factory.mktemp("cache")))
    assert {r["config"] for r in out} == {"default", "decision_points"} and len(out) > 500
    return out


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_row_renders_without_double_encoded_arguments(rows, name):
    template = TEMPLATES[name]
    shapes = argument_shapes(template)
    if not shapes:
        # No text tool conversation renders (vision templates want content parts; Gemma 1-3 and Cohere have no
        # system or tool role): there is no row shape to fix, so the template cannot be held to it.
        pytest.skip(f"{name} renders no text tool conversation")
    counts = measure(rows, template)
    if shapes == ["string"]:
        # Stock DeepSeek-V3 concatenates `arguments` as a string; every other tool template wants an object (or
        # takes both), so the rows carry an object and the card says how to serve this template.
        assert counts["failed"] == sum(any("tool_calls" in m for m in r["messages"]) for r in rows)
        for row in rows[:50]:
            render(template, with_string_arguments(row["messages"]), row["tools"])
        return
    assert counts["failed"] == 0, counts["error"]
    assert counts["double_encoded"] == 0


def test_the_check_would_catch_string_arguments(rows):
    """Qwen2.5's template `tojson`s the arguments: given the API's JSON string it double-encodes them."""
    with_calls = [r for r in rows if any("tool_calls" in m for m in r["messages"])][:20]
    as_strings = [{**r, "messages": with_string_arguments(r["messages"])} for r in with_calls]
    assert measure(as_strings, TEMPLATES["qwen2_5"])["double_encoded"] == len(as_strings)
    assert measure(with_calls, TEMPLATES["qwen2_5"])["double_encoded"] == 0


def test_decision_point_completions_keep_their_reasoning(rows):
    """Stock Qwen3 drops reasoning before the last user message, so a `default` row loses its clarify turns'
    reasoning; a decision point's completion comes after the last user message, so its reasoning is kept."""
    points = [r for r in rows if r["config"] == "decision_points" and r["messages"][-1].get("reasoning_content")]
    assert points
    for row in points[:100]:
        assert row["messages"][-1]["reasoning_content"] in render(TEMPLATES["qwen3"], row["messages"], row["tools"])
    dialogues = [r for r in rows if r["keep"]]
    assert measure(dialogues, TEMPLATES["qwen3"])["clarify_reasoning_dropped"] == len(dialogues)
    assert measure(dialogues, TEMPLATES["qwen3_training"])["clarify_reasoning_dropped"] == 0
