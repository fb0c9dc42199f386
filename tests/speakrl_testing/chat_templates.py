"""Render conversations through every chat template TRL bundles (and the tiny tokenizer's), as a tokenizer would.

Shared by `tests/pipeline/stages/test_chat_templates.py` and `benchmarks/chat_templates.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# What `tokenizer.apply_chat_template` passes to every template besides the messages (its special tokens).
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}

# The smallest tool-calling conversation in OpenAI chat format with string content: a template that cannot render
# this does not support text tool conversations at all (a vision template wanting content parts, one with no system
# or tool role), whatever the dataset does.
MINIMAL_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
MINIMAL_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "tool_call_id": "call_0", "name": "get_weather", "content": "{\"temp_c\": 21}"},
    {"role": "assistant", "content": "It is 21 C in Paris."},
]


def templates() -> dict[str, str]:
    """Every `trl/chat_templates/*.jinja` by file stem, plus `tiny` (the tiny tokenizer's template)."""
    import trl

    from speakrl.training.tiny import qwen3_chat_template

    found = {p.stem: p.read_text() for p in sorted((Path(trl.__file__).parent / "chat_templates").glob("*.jinja"))}
    return {**found, "tiny": qwen3_chat_template()}


def render(template: str, messages: list[dict[str, Any]], tools: Any) -> str:
    """One conversation rendered as `apply_chat_template(messages, tools=tools, tokenize=False)` would."""
    from transformers.utils.chat_template_utils import render_jinja_template

    tools = json.loads(tools) if isinstance(tools, str) else tools
    (text,), _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=template, **SPECIAL_TOKENS)
    return text


def with_string_arguments(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with each tool call's arguments JSON-encoded, as the OpenAI API sends them."""
    return [{**m, "tool_calls": [{**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"])}}
                                 for c in m["tool_calls"]]} if m.get("tool_calls") else m for m in messages]


def _renders(template: str, messages: list[dict[str, Any]]) -> bool:
    try:
        render(template, messages, MINIMAL_TOOLS)
    except Exception:  # noqa: BLE001 - any template error means "does not render"
        return False
    return True


def argument_shapes(template: str) -> list[str]:
    """Which shapes of tool-call arguments the template renders the minimal conversation with: "object", "string"."""
    shapes = {"object": MINIMAL_CONVERSATION, "string": with_string_arguments(MINIMAL_CONVERSATION)}
    return [name for name, messages in shapes.items() if _renders(template, messages)]


def tool_arguments(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every tool call's arguments in `messages`, decoded whatever the storage (a JSON string or an object)."""
    out = []
    for m in messages:
        for call in m.get("tool_calls") or []:
            args = call["function"]["arguments"]
            out.append(json.loads(args) if isinstance(args, str) else args)
    return out


def double_encoded(text: str, messages: list[dict[str, Any]]) -> bool:
    """Whether some call's arguments object appears in `text` as an escaped JSON string (in either spacing)."""
    for args in tool_arguments(messages):
        for separators in ((", ", ": "), (",", ":")):
            inner = json.dumps(args, ensure_ascii=False, separators=separators)
            if json.dumps(inner, ensure_ascii=False)[1:-1] in text:
                return True
    return False


def published_conversations(dataset_dir: str, cache_dir: str | None = None) -> list[dict[str, Any]]:
    """Every row of `default` (messages) and `decision_points` (prompt + completion when present), as loaded by
    `datasets.load_dataset`, with the clarify-turn reasoning a faithful rendering keeps (`keep`)."""
    import datasets

    out = []
    for split in datasets.load_dataset(dataset_dir, "default", cache_dir=cache_dir).values():
        for row in split:
            labels = row["turn_labels"] if "turn_labels" in row else row["labels"]
            clarify = [row["messages"][lab["message_index"]].get("reasoning_content") for lab in labels if lab["act"] == "clarify"]
            out.append({"config": "default", "id": row["id"], "messages": row["messages"], "tools": row["tools"],
                        "keep": [r for r in clarify if r]})
    for split in datasets.load_dataset(dataset_dir, "decision_points", cache_dir=cache_dir).values():
        for row in split:
            out.append({"config": "decision_points", "id": row["id"], "messages": row["prompt"] + (row.get("completion") or []),
                        "tools": row["tools"], "keep": []})
    return out


def measure(rows: list[dict[str, Any]], template: str) -> dict[str, Any]:
    """Per template: rows, failed (first error kept), double_encoded, clarify_reasoning_dropped."""
    counts: dict[str, Any] = {"rows": len(rows), "failed": 0, "double_encoded": 0, "clarify_reasoning_dropped": 0,
                              "error": None}
    for row in rows:
        try:
            text = render(template, row["messages"], row["tools"])
        except Exception as e:  # noqa: BLE001 - any template error is a failure to count
            counts["failed"] += 1
            counts["error"] = counts["error"] or f"{row['id']}: {type(e).__name__}: {e}"[:200]
            continue
        counts["double_encoded"] += double_encoded(text, row["messages"])
        counts["clarify_reasoning_dropped"] += any(r not in text for r in row["keep"])
    return counts
