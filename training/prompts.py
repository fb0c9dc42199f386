"""Rendering decision points for a tokenizer: the prompt (history + tools through the chat template, with the
protocol's instructions in the system message) and the gold completion in the protocol's format.

The same functions build SFT targets, GRPO prompts and evaluation prompts, so all three see identical text.
"""

from __future__ import annotations

import json
from typing import Any

from speakrl.training.protocols import instructions, render_speakrl

PROMPT_STYLES = ("chat_template", "compact")
# Short: every prompt token costs CPU time on each step, and a model trained from scratch learns the protocol from
# the targets, not from this line.
COMPACT_INSTRUCTIONS = {
    "speakrl": "<clarify>Yes + question if a value is unclear, else No + <tool_call> or answer.",
    "native": "Ask if a value is unclear, else call a tool or answer.",
}


def with_instructions(messages: list[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    """The conversation with the protocol's instructions appended to (or as) the system message."""
    messages = [dict(m) for m in messages]
    text = instructions(protocol)
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = f"{messages[0].get('content') or ''}\n\n{text}".strip()
    else:
        messages.insert(0, {"role": "system", "content": text})
    return messages


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def tool_signature(tool: dict[str, Any]) -> str:
    """One line per tool for compact prompts: name and parameters (a type unless string, enum choices, optional ones
    with their default); no description (the names carry it, and it would be a third of the prompt).

    >>> tool_signature({"function": {"name": "book", "description": "Book a table", "parameters": {"properties": {
    ...     "n": {"type": "integer"}, "seat": {"type": "string", "enum": ["in", "out"], "default": "in"}}, "required": ["n"]}}})
    'book(n: integer, seat: in|out = in)'
    >>> tool_signature({"name": "find", "parameters": {"properties": {"city": {"type": "string"}}, "required": ["city"]}})
    'find(city)'
    """
    fn = tool.get("function", tool)
    params = fn.get("parameters") or {}
    required = set(params.get("required") or [])
    parts = []
    for name, prop in (params.get("properties") or {}).items():
        kind = "|".join(map(str, prop["enum"])) if prop.get("enum") else prop.get("type", "string")
        part = name if kind == "string" else f"{name}: {kind}"
        if name in required:
            parts.append(part)
        else:
            parts.append(f"{part} = {prop['default']}" if "default" in prop else f"{part} = none")
    return f"{fn.get('name', '')}({', '.join(parts)})"


def compact_messages(history: list[dict[str, Any]], tools: list[dict[str, Any]] | None, protocol: str) -> list[dict[str, Any]]:
    """The conversation for a small model: the dataset's system text replaced by one line of protocol and one
    signature per tool (the same information, a third of the tokens of the chat template's JSON tool block)."""
    system = "\n".join([COMPACT_INSTRUCTIONS[protocol], "Tools:", *(tool_signature(t) for t in tools or [])])
    return [{"role": "system", "content": system}] + [dict(m) for m in history if m.get("role") != "system"]


def render_prompt(tokenizer: Any, history: Any, tools: Any, protocol: str, style: str = "chat_template",
                  add_generation_prompt: bool = True) -> str:
    """The prompt text a policy continues, ending with the assistant header: the chat template over history + tools
    (`chat_template`), or over the compact conversation with no tool block (`compact`). Without the generation
    prompt: a whole conversation as the same prompts would show it as history."""
    if style == "compact":
        messages = compact_messages(_loads(history), _loads(tools), protocol)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer.apply_chat_template(with_instructions(_loads(history), protocol), tools=_loads(tools) or None,
                                         tokenize=False, add_generation_prompt=add_generation_prompt)


def as_episode(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A dataset conversation as an episode sees it: each question the assistant asked becomes an `ask_user` call
    and the user's reply that call's result, as in `training.env` (TRL's tool loop).

    >>> [m["role"] for m in as_episode([{"role": "user", "content": "Book"}, {"role": "assistant", "content": "When?"},
    ...                                 {"role": "user", "content": "At 7."}])]
    ['user', 'assistant', 'tool']
    """
    out: list[dict[str, Any]] = []
    for i, m in enumerate(history):
        asked = out and out[-1].get("_asked")
        if m.get("role") == "user" and asked:
            out[-1].pop("_asked")
            out.append({"role": "tool", "name": "ask_user", "content": m.get("content") or ""})
            continue
        if m.get("role") == "assistant" and not m.get("tool_calls") and i + 1 < len(history) and history[i + 1].get("role") == "user":
            call = {"type": "function", "function": {"name": "ask_user", "arguments": {"question": m.get("content") or ""}}}
            out.append({"role": "assistant", "content": "", "tool_calls": [call], "_asked": True})
            continue
        out.append(dict(m))
    return out


def episode_example(row: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(conversation, gold assistant message) of a decision row in the episode protocol: native tool calls, questions
    as `ask_user` calls, earlier questions and replies as `ask_user` calls and results."""
    history = with_instructions(as_episode(_loads(row["history"])), "native")
    if row["act"] == "clarify":
        call = {"type": "function", "function": {"name": "ask_user", "arguments": {"question": row.get("gold_content") or ""}}}
        message: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": [call]}
    elif row["act"] == "tool_call" and row.get("gold_name"):
        call = {"type": "function", "function": {"name": row["gold_name"], "arguments": _loads(row["gold_args"])}}
        message = {"role": "assistant", "content": "", "tool_calls": [call]}
    else:
        message = {"role": "assistant", "content": row.get("gold_content") or ""}
    return history, message


def render_episode_example(tokenizer: Any, row: dict[str, Any], tools: list[Any]) -> tuple[str, str]:
    """(prompt, completion) of a decision row in the episode protocol (`episode_example`) with the environment's tools
    (`ask_user` + the domain's): what SFT must teach before episode GRPO, whose prompts TRL renders from the same
    conversation and tools."""
    history, message = episode_example(row)
    prompt = tokenizer.apply_chat_template(history, tools=tools, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(history + [message], tools=tools, tokenize=False)
    return prompt, _completion(tokenizer, prompt, full, message)


def _completion(tokenizer: Any, prompt: str, full: str, message: dict[str, Any]) -> str:
    """The assistant turn the template adds after `prompt`, without its end-of-turn token."""
    if not full.startswith(prompt):  # a template that renders the prompt differently alone: fall back to the content
        return (message["content"] or "").strip()
    target = full[len(prompt):]
    eos = tokenizer.eos_token or ""
    cut = target.rfind(eos) if eos else -1
    return target[:cut] if cut >= 0 else target.rstrip()


def render_target(tokenizer: Any, row: dict[str, Any], protocol: str) -> str:
    """The gold completion of a decision row, without the end-of-turn token (SFT appends the EOS)."""
    act = row["act"]
    call = (row["gold_name"], row["gold_args"]) if act == "tool_call" and row.get("gold_name") else None
    if protocol == "speakrl":
        return render_speakrl(act, row.get("gold_reasoning"), row.get("gold_content"), call)
    # native: exactly what the chat template renders for the gold assistant message
    message: dict[str, Any] = {"role": "assistant", "content": row.get("gold_content") or ""}
    if row.get("gold_reasoning"):
        message["reasoning_content"] = row["gold_reasoning"]
    if call:
        message["tool_calls"] = [{"id": "call_0", "type": "function", "function": {"name": call[0], "arguments": call[1]}}]
    history = with_instructions(_loads(row["history"]), protocol)
    tools = _loads(row["tools"]) or None
    prompt = tokenizer.apply_chat_template(history, tools=tools, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(history + [message], tools=tools, tokenize=False)
    return _completion(tokenizer, prompt, full, message)
