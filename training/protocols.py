"""Output protocols: how a policy writes one assistant turn, and a parser per protocol that never crashes.

- `speakrl` (SpeakRL paper): `<think>…</think>` then `<clarify>`, whose first word is the decision: `Yes`, a newline
  and the question to ask (`<clarify>Yes\nWhich city?</clarify>`), or `No` (`<clarify>No</clarify>`) followed by the
  action, which is a tool call in the chat template's format (`<tool_call>{json}</tool_call>`) or the answer. The
  decision is one token at one position (`decision_tokens`), so greedy decoding of a small model cannot hide it behind
  the many ways a question can begin; SFT targets, GRPO parsing, rewards and eval all read it here.
- `native`: the model's own chat-template tool calls; a clarification question is plain text.

A parsed turn says which act the policy took (clarify / tool_call / answer, or None when nothing usable came out),
with the question, the call and the answer, and a format score in [0, 1] used by the format reward.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

PROTOCOLS = ("speakrl", "native")

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_CLARIFY = re.compile(r"<clarify>(.*?)</clarify>", re.DOTALL)
_UNCLOSED = re.compile(r"<clarify>(.*)$", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_TAG = re.compile(r"</?(?:think|clarify|tool_call|tool_response)>")
_UNTAGGED_CALL = re.compile(r'^\s*\{\s*"name"\s*:')
# End-of-turn markers some decoders keep in the text.
_EOT = re.compile(r"(<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|</s>).*$", re.DOTALL)
_NO = {"no", "no.", "none", "no question", ""}
# The decision word right after `<clarify>`: ask or act.
ASK, ACT = "Yes", "No"
_ASK_MARK = re.compile(rf"^{ASK}\b[:.,]?\s*")

SPEAKRL_INSTRUCTIONS = (
    "Before every reply, think inside <think></think>. Then decide whether the user's request is missing or "
    "ambiguous information that you need: if so, write <clarify>Yes, a new line, the one question you must ask, "
    "</clarify> and stop. Otherwise write <clarify>No</clarify> and then act: call a tool inside <tool_call></tool_call> as "
    "JSON {\"name\": ..., \"arguments\": {...}}, or answer the user. Never invent a value the user did not give."
)
NATIVE_INSTRUCTIONS = (
    "If the user's request is missing or ambiguous information that a tool needs, ask one short question. "
    "Otherwise call the right tool or answer the user. Never invent a value the user did not give."
)


@dataclass
class Parsed:
    """One assistant turn, as the protocol reads it."""

    act: str | None = None  # "clarify" | "tool_call" | "answer" | None (nothing usable)
    question: str | None = None
    call_name: str | None = None
    call_args: dict[str, Any] | None = None  # None when the call's arguments are not a JSON object
    answer: str | None = None
    think: str | None = None
    format_score: float = 0.0
    problems: list[str] = field(default_factory=list)


def completion_text(completion: Any) -> str:
    """The text of a completion as TRL passes it: a string (standard format) or a list of messages (conversational)."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _message_text(completion)
    if isinstance(completion, list):
        return "\n".join(_message_text(m) for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant")
    return str(completion)


def _message_text(message: dict[str, Any]) -> str:
    """A message back to text, re-rendering structured tool calls in the Qwen3/Hermes format."""
    parts = []
    if message.get("reasoning_content"):
        parts.append(f"<think>\n{message['reasoning_content']}\n</think>\n\n")
    content = message.get("content")
    if isinstance(content, list):  # content blocks
        content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
    parts.append(content or "")
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        args = fn.get("arguments", {})
        args_json = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        parts.append(f'\n<tool_call>\n{{"name": {json.dumps(fn.get("name", ""))}, "arguments": {args_json}}}\n</tool_call>')
    return "".join(parts)


def _parse_call(body: str) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """(name, args, problem) of one `<tool_call>` body; args None when they are not a JSON object."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, ValueError):
        m = re.search(r'"name"\s*:\s*"([^"]*)"', body)
        return (m.group(1) if m else None), None, "tool_call_not_json"
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None, None, "tool_call_without_name"
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):  # some models send the OpenAI wire format: a JSON string
        try:
            args = json.loads(args)
        except (json.JSONDecodeError, ValueError):
            return data["name"], None, "arguments_not_json"
    if not isinstance(args, dict):
        return data["name"], None, "arguments_not_object"
    return data["name"], args, None


def _first_call(text: str, parsed: Parsed) -> bool:
    m = _TOOL_CALL.search(text)
    if not m:
        return False
    name, args, problem = _parse_call(m.group(1))
    if problem:
        parsed.problems.append(problem)
    if name is None:
        return False
    parsed.act, parsed.call_name, parsed.call_args = "tool_call", name, args
    return True


def _structured_call(tool_calls: list[Any], parsed: Parsed) -> bool:
    call = tool_calls[0]
    fn = call.get("function", call) if isinstance(call, dict) else getattr(call, "function", None)
    if isinstance(fn, dict):
        name, args = fn.get("name"), fn.get("arguments")
    else:
        name, args = getattr(fn, "name", None), getattr(fn, "arguments", None)
    body = json.dumps({"name": name, "arguments": args if args is not None else {}})
    found = _first_call(f"<tool_call>{body}</tool_call>", parsed)
    return found


def parse(text: Any, protocol: str = "speakrl", tool_calls: list[Any] | None = None) -> Parsed:
    """Read one assistant turn. Never raises: malformed output gives `act=None` or a low format score.

    `tool_calls` are structured calls from an API response (OpenAI format); they take the place of inline ones.

    >>> p = parse('<think>no restaurant</think><clarify>Yes\\nWhich restaurant?</clarify>')
    >>> p.act, p.question, p.format_score
    ('clarify', 'Which restaurant?', 1.0)
    >>> p = parse('<think></think><clarify>Yes\\nWhich restaurant? Which restaurant? Which')  # never closed
    >>> p.act, p.question, p.format_score, p.problems
    ('clarify', 'Which restaurant? Which restaurant? Which', 0.25, ['unclosed_clarify'])
    >>> p = parse('<think></think><clarify>Which restaurant?</clarify>')  # a question without the decision word
    >>> p.act, p.format_score, p.problems
    ('clarify', 0.75, ['no_decision_token'])
    >>> p = parse('<think>all set</think><clarify>No</clarify><tool_call>{"name": "book", "arguments": {"n": 2}}</tool_call>')
    >>> p.act, p.call_name, p.call_args, p.format_score
    ('tool_call', 'book', {'n': 2}, 1.0)
    >>> parse('<clarify>No</clarify><tool_call>{"name": "book", "arguments": {"n": 2</tool_call>').call_args is None
    True
    >>> parse('Which city?', protocol="native").act
    'clarify'
    >>> parse('<tool_call>{"name": "ask_user", "arguments": {"question": "Which city?"}}</tool_call>', "native").question
    'Which city?'
    >>> parse(None).act is None
    True
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    raw = _EOT.sub("", completion_text(text))
    parsed = Parsed()
    think = _THINK.search(raw)
    if think:
        parsed.think = think.group(1).strip()
    body = raw[think.end():] if think else raw
    if protocol == "speakrl":
        return _parse_speakrl(raw, body, think is not None, parsed, tool_calls)
    return _parse_native(raw, body, parsed, tool_calls)


def _parse_speakrl(raw: str, body: str, has_think: bool, parsed: Parsed, tool_calls: list[Any] | None) -> Parsed:
    clarifies = _CLARIFY.findall(body)
    clarify = _CLARIFY.search(body)
    after = body[clarify.end():] if clarify else body
    score = 0.0
    if has_think and raw.lstrip().startswith("<think>") and raw.count("<think>") == 1:
        score += 0.25
    else:
        parsed.problems.append("no_think")
    unclosed = _UNCLOSED.search(body) if clarify is None else None
    if unclosed and _ASK_MARK.match(unclosed.group(1)):
        # The decision token says ask but the block never closes (a runaway or truncated question). The decision is
        # read where it is written, as for `No`: a question (up to the next tag), with no format credit past think.
        parsed.act, parsed.question = "clarify", _TAG.split(_ASK_MARK.sub("", unclosed.group(1), count=1))[0].strip()
        parsed.problems.append("unclosed_clarify")
        parsed.format_score = score
        return parsed
    if len(clarifies) == 1 and (not has_think or body.lstrip().startswith("<clarify>")):
        score += 0.25
    else:
        parsed.problems.append("no_clarify" if not clarifies else "misplaced_clarify")
    question = clarify.group(1).strip() if clarify else None
    asks = question is not None and question.lower().strip(" .!") not in _NO
    marked = False
    if asks:
        marked = bool(_ASK_MARK.match(question))
        question = _ASK_MARK.sub("", question, count=1).strip() if marked else question
        if not marked:
            parsed.problems.append("no_decision_token")
            score -= 0.25
        elif not question:  # the decision is to ask (the token says so), but nothing is asked: no credit past it
            parsed.problems.append("empty_question")
    if asks:
        parsed.act, parsed.question = "clarify", question
        if question and not after.strip():
            score += 0.25
        elif after.strip():  # asking and acting in one turn: the action is ignored, the format is not clean
            parsed.problems.append("action_after_question")
        if question and "<tool_call>" not in after:
            score += 0.25
    else:
        found = _structured_call(tool_calls, parsed) if tool_calls else _first_call(after, parsed)
        if not found and clarify is not None:
            # Without a `<clarify>` block, free text is not an answer in this protocol, just unformatted output.
            _read_text(after, parsed)
        if clarify is not None and parsed.act is not None:
            score += 0.25  # `<clarify>No</clarify>` followed by an action
        else:
            parsed.problems.append("no_action")
        clean = (parsed.act == "answer" and "stray_tags" not in parsed.problems) or (
            parsed.act == "tool_call" and parsed.call_args is not None
        )
        if clean and clarify is not None or parsed.act == "tool_call" and parsed.call_args is not None:
            score += 0.25
    parsed.format_score = max(0.0, score)
    return parsed


def _read_text(text: str, parsed: Parsed, questions: bool = False) -> None:
    """Text after the decision: an answer (or, in `native`, a question), unless it is a tool call gone wrong: a
    JSON call without its `<tool_call>` tag, or text with stray protocol tags, which must not pass for an answer."""
    rest = _TOOL_CALL.sub("", text)
    if _TAG.search(rest):
        parsed.problems.append("stray_tags")
    plain = _TAG.sub("", rest).strip()
    if not plain:
        return
    if _UNTAGGED_CALL.match(plain):
        m = re.search(r'"name"\s*:\s*"([^"]*)"', plain)
        parsed.act, parsed.call_name, parsed.call_args = "tool_call", (m.group(1) if m else ""), None
        parsed.problems.append("tool_call_untagged")
    elif questions and "?" in plain:
        parsed.act, parsed.question = "clarify", plain
    else:
        parsed.act, parsed.answer = "answer", plain


def _parse_native(raw: str, body: str, parsed: Parsed, tool_calls: list[Any] | None) -> Parsed:
    found = _structured_call(tool_calls, parsed) if tool_calls else _first_call(body, parsed)
    if found and parsed.call_name == "ask_user":  # the episodes' question tool (training.env): a question, not an action
        parsed.act, parsed.question = "clarify", str((parsed.call_args or {}).get("question") or "")
    score = 0.0
    if found:
        score = 1.0 if parsed.call_args is not None else 0.25
    else:
        # Plain text: a question asks the user, anything else answers them.
        _read_text(body, parsed, questions=True)
        if parsed.act == "tool_call":
            score = 0.25
        elif parsed.act is not None:
            score = 0.5 if "stray_tags" in parsed.problems else 1.0
        else:
            parsed.problems.append("empty")
    if "<clarify>" in raw or raw.count("<think>") > 1:
        parsed.problems.append("foreign_tags")
        score = min(score, 0.5)
    parsed.format_score = score
    return parsed


def render_call(name: str, args: dict[str, Any] | str) -> str:
    """A tool call in the Qwen3/Hermes format (`<tool_call>` JSON), as TRL's response parser reads it.

    >>> render_call("book", {"n": 2})
    '<tool_call>\\n{"name": "book", "arguments": {"n": 2}}\\n</tool_call>'
    """
    args_json = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return f'<tool_call>\n{{"name": {json.dumps(name)}, "arguments": {args_json}}}\n</tool_call>'


def render_speakrl(act: str, reasoning: str | None, content: str | None, call: tuple[str, Any] | None) -> str:
    """The gold turn in the `speakrl` protocol (without the end-of-turn token).

    >>> render_speakrl("clarify", "no time given", "What time?", None)
    '<think>\\nno time given\\n</think>\\n\\n<clarify>Yes\\nWhat time?</clarify>'
    >>> render_speakrl("answer", None, "Booked.", None)
    '<think>\\n\\n</think>\\n\\n<clarify>No</clarify>\\nBooked.'
    """
    head = f"<think>\n{(reasoning or '').strip()}\n</think>\n\n"
    if act == "clarify":
        return f"{head}<clarify>{ASK}\n{(content or '').strip()}</clarify>"
    action = render_call(*call) if act == "tool_call" and call else (content or "").strip()
    return f"{head}<clarify>{ACT}</clarify>\n{action}"


def decision_tokens(tokenizer: Any) -> tuple[list[int], int, int]:
    """(ids just before the decision, ask token id, act token id) for a tokenizer: the one position where the
    `speakrl` protocol's two branches first differ, found by tokenizing both (any tokenizer, no special tokens)."""
    ask = tokenizer.encode(render_speakrl("clarify", "", "Which one?", None), add_special_tokens=False)
    act = tokenizer.encode(render_speakrl("answer", "", "Done.", None), add_special_tokens=False)
    i = next(i for i, (a, b) in enumerate(zip(ask, act)) if a != b)
    return ask[:i], ask[i], act[i]


def instructions(protocol: str) -> str:
    return SPEAKRL_INSTRUCTIONS if protocol == "speakrl" else NATIVE_INSTRUCTIONS
