"""Peer benchmarks of the same skill (ask, act or decline), converted to decision points and scored by the evaluation
harness, so a local checkpoint, an endpoint and the baselines are all measured the same way.

- `when2call` (NVIDIA When2Call, LLM-judge test set): 3 classes, tool_call / request_for_info / cannot_answer. Our
  acts map onto them: a call is tool_call, a question (`clarify`) is request_for_info, a plain answer is cannot_answer.
  Reported as its authors do: macro-F1 over the three classes and the tool-hallucination rate (a call made where the
  right move was to ask or decline).
- `bfcl-irrelevance` (BFCL v4 irrelevance): no offered function fits: the right move is not to call (accuracy: the
  share of items without a call; asking and declining both count).
- `bfcl-live-simple` (BFCL v4 live simple): a function fits and must be called; a call matches when the name is the
  gold one and every argument takes one of the values `possible_answer/` allows ("" there: the argument may be left
  out), with no other argument.

The data is the repository's copy in `data/benchmarks/` (licenses and sources in its README) or a directory the user
passes with the same layout; nothing is downloaded. BFCL's Python-flavoured types ("dict", "float", "tuple", "any")
become JSON Schema.
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Any

from speakrl.pipeline.checks import normalize
from speakrl.pipeline.errors import TrainingError
from speakrl.pipeline.io import read_jsonl
from speakrl.training.protocols import parse

logger = logging.getLogger(__name__)

BENCHMARKS = ("when2call", "bfcl-irrelevance", "bfcl-live-simple", "bfcl-miss-param")
CLASSES = ("tool_call", "request_for_info", "cannot_answer")
# Files each benchmark reads, relative to the benchmark directory.
FILES = {
    "when2call": ["when2call/when2call_test_llm_judge.jsonl"],
    "bfcl-irrelevance": ["bfcl/BFCL_v4_irrelevance.json"],
    "bfcl-live-simple": ["bfcl/BFCL_v4_live_simple.json", "bfcl/possible_answer/BFCL_v4_live_simple.json"],
}
# BFCL's multi-turn tool classes and the file documenting each (bfcl_eval MULTI_TURN_FUNC_DOC_FILE_MAPPING).
FUNC_DOCS = {
    "GorillaFileSystem": "gorilla_file_system.json", "MathAPI": "math_api.json", "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json", "TicketAPI": "ticket_api.json", "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json", "VehicleControlAPI": "vehicle_control.json",
}
FILES["bfcl-miss-param"] = ["bfcl/BFCL_v4_multi_turn_miss_param.json", "bfcl/possible_answer/BFCL_v4_multi_turn_miss_param.json",
                            *(f"bfcl/multi_turn_func_doc/{name}" for name in FUNC_DOCS.values())]
NOT_RUN = "(BFCL's tools are not run offline: this call's result is not available)"
ASK_MISSING = "I need one more detail before I can do that: could you give it to me?"
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "list": "array", "int": "integer", "str": "string",
          "bool": "boolean"}
_ACT_CLASS = {"tool_call": "tool_call", "clarify": "request_for_info", "answer": "cannot_answer"}


def default_dir() -> Path:
    """The repository's copy of the benchmark data (a source checkout: `<repo>/data/benchmarks`)."""
    return Path(__file__).resolve().parent.parent / "data" / "benchmarks"


def json_schema(spec: Any) -> Any:
    """A BFCL parameter spec as JSON Schema: Python-flavoured type names mapped, "any" dropped, nested specs too.

    >>> json_schema({"type": "dict", "properties": {"x": {"type": "float"}, "t": {"type": "tuple", "items": {"type": "any"}}}})
    {'type': 'object', 'properties': {'x': {'type': 'number'}, 't': {'type': 'array', 'items': {}}}}
    """
    if isinstance(spec, list):
        return [json_schema(s) for s in spec]
    if not isinstance(spec, dict):
        return spec
    out = {}
    for key, value in spec.items():
        if key == "type" and isinstance(value, str):
            if value == "any":
                continue
            out[key] = _TYPES.get(value, value)
        elif key in ("properties",) and isinstance(value, dict):
            out[key] = {name: json_schema(v) for name, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf"):
            out[key] = json_schema(value)
        else:
            out[key] = value
    return out


def _tool(fn: dict[str, Any]) -> dict[str, Any]:
    fn = dict(fn)
    fn["parameters"] = json_schema(fn.get("parameters") or {"type": "dict", "properties": {}})
    fn.pop("response", None)
    return {"type": "function", "function": fn}


def _lines(path: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path))  # by newline: `str.splitlines` also split at a U+2028 inside a JSON string


def load_benchmark(name: str, data_dir: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """A benchmark as decision items: id, `messages`, `tools` (OpenAI format), `gold` (one of CLASSES) and, for calls,
    `gold_call` ({name, arguments}: one allowed value per argument) and `allowed` (BFCL's possible answers)."""
    if name not in BENCHMARKS:
        raise TrainingError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    root = Path(data_dir) if data_dir else default_dir()
    missing = [f for f in FILES[name] if not (root / f).is_file()]
    if missing:
        raise TrainingError(
            f"benchmark {name!r} needs {', '.join(missing)} under {str(root)!r}; pass --benchmark-dir with the "
            "benchmark data (the repository keeps a copy in data/benchmarks)"
        )
    try:
        items = _CONVERTERS[name](root)
    except (ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"benchmark {name!r} under {str(root)!r} is not in the expected format: {e}") from None
    return items[:limit] if limit else items


def _when2call(root: Path) -> list[dict[str, Any]]:
    items = []
    for r in _lines(root / FILES["when2call"][0]):
        tools = [_tool(json.loads(t) if isinstance(t, str) else t) for t in r.get("tools") or []]
        item = {"id": r["uuid"], "messages": [{"role": "user", "content": r["question"]}], "tools": tools,
                "gold": r["correct_answer"], "reference": r.get("answers", {}).get(r["correct_answer"], "")}
        if r["correct_answer"] == "tool_call":
            call = json.loads(r["answers"]["tool_call"])
            item["gold_call"] = {"name": call["name"], "arguments": call.get("arguments", {})}
            item["allowed"] = {k: [v] for k, v in item["gold_call"]["arguments"].items()}
        items.append(item)
    return items


def _bfcl_items(path: Path, gold: str) -> list[dict[str, Any]]:
    items = []
    for r in _lines(path):
        turns = r["question"]
        messages = [m for turn in turns for m in turn]
        items.append({"id": r["id"], "messages": messages, "tools": [_tool(f) for f in r["function"]], "gold": gold,
                      "reference": ""})
    return items


def _bfcl_irrelevance(root: Path) -> list[dict[str, Any]]:
    return _bfcl_items(root / FILES["bfcl-irrelevance"][0], "cannot_answer")


def _bfcl_live_simple(root: Path) -> list[dict[str, Any]]:
    items = _bfcl_items(root / FILES["bfcl-live-simple"][0], "tool_call")
    answers = {a["id"]: a["ground_truth"][0] for a in _lines(root / FILES["bfcl-live-simple"][1])}
    for item in items:
        (name, allowed), = answers[item["id"]].items()
        item["allowed"] = allowed
        item["gold_call"] = {"name": name, "arguments": {k: v[0] for k, v in allowed.items() if v and v[0] != ""}}
    return items


def parse_call(text: str, params: list[str]) -> tuple[str, dict[str, Any]]:
    """(name, arguments) of one BFCL call string; positional arguments are named by `params`, in order.

    >>> parse_call("mv(source='a.txt',destination='temp')", []), parse_call("sort('report.pdf')", ["file_name"])
    (('mv', {'source': 'a.txt', 'destination': 'temp'}), ('sort', {'file_name': 'report.pdf'}))
    """
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"{text!r} is not a function call")
    args = {params[i]: ast.literal_eval(a) for i, a in enumerate(node.args)}
    args.update({k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg})
    return node.func.id, args


def _bfcl_miss_param(root: Path) -> list[dict[str, Any]]:
    docs = {cls: _lines(root / "bfcl" / "multi_turn_func_doc" / name) for cls, name in FUNC_DOCS.items()}
    answers = {a["id"]: a["ground_truth"] for a in _lines(root / FILES["bfcl-miss-param"][1])}
    items = []
    for r in _lines(root / FILES["bfcl-miss-param"][0]):
        missing = [c for c in r["involved_classes"] if c not in docs]
        if missing:
            raise ValueError(f"no function docs for {', '.join(missing)}")
        excluded = set(r.get("excluded_function") or [])  # BFCL leaves these out of the offered functions
        functions = [f for c in r["involved_classes"] for f in docs[c] if f["name"] not in excluded]
        params = {f["name"]: list((f.get("parameters") or {}).get("properties", {})) for f in functions}
        tools = [_tool(f) for f in functions]
        history: list[dict[str, Any]] = []
        for k, (turn, gold_calls) in enumerate(zip(r["question"], answers[r["id"]], strict=True)):
            history = history + list(turn)
            calls = [parse_call(c, params.get(c.split("(", 1)[0].strip(), [])) for c in gold_calls]
            item: dict[str, Any] = {"id": f"{r['id']}-turn{k}", "messages": list(history), "tools": tools,
                                    "gold": "tool_call" if calls else "request_for_info", "reference": ""}
            if calls:
                name, args = calls[0]
                spec = next(f for f in functions if f["name"] == name)["parameters"]
                optional = {p: v for p, v in spec.get("properties", {}).items() if p not in (spec.get("required") or [])}
                item["gold_call"] = {"name": name, "arguments": args}
                item["allowed"] = {**{p: [v["default"], ""] if "default" in v else [""] for p, v in optional.items()},
                                   **{p: [v] for p, v in args.items()}}
            items.append(item)
            if calls:  # the gold turn, as the next turn's history
                for i, (name, args) in enumerate(calls):
                    call = {"id": f"call_{k}_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                    history.append({"role": "assistant", "content": "", "tool_calls": [call]})
                    history.append({"role": "tool", "tool_call_id": call["id"], "name": name, "content": NOT_RUN})
            else:
                history.append({"role": "assistant", "content": ASK_MISSING})
    return items


_CONVERTERS = {"when2call": _when2call, "bfcl-irrelevance": _bfcl_irrelevance, "bfcl-live-simple": _bfcl_live_simple,
               "bfcl-miss-param": _bfcl_miss_param}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return normalize(a) == normalize(b)


def call_allowed(name: str | None, args: dict[str, Any] | None, gold_name: str, allowed: dict[str, list[Any]]) -> bool:
    """BFCL's check of one call: the gold function, each argument one of its allowed values ("" allows leaving it
    out), and no argument the answer does not list.

    >>> call_allowed("f", {"x": 2, "u": "C"}, "f", {"x": [2], "u": ["C", "c", ""]}), call_allowed("f", {"x": 2}, "f", {"x": [2], "u": ["", "C"]})
    (True, True)
    >>> call_allowed("f", {"x": 3}, "f", {"x": [2]}), call_allowed("f", {"x": 2, "y": 1}, "f", {"x": [2]})
    (False, False)
    """
    if name != gold_name or args is None or set(args) - set(allowed):
        return False
    for key, values in allowed.items():
        if not values:  # BFCL writes an empty list of answers for "nothing": left out or empty
            if args.get(key) not in (None, "", []):
                return False
            continue
        if key not in args:
            if "" not in values:
                return False
        elif not any(_same(args[key], v) for v in values if v != "" or args[key] == ""):
            return False
    return True


def benchmark_metrics(policy: Any, name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Score `policy` (a `training.evaluate.Policy`) on converted benchmark items."""
    from speakrl.training.evaluate import Conversation, f1_score

    turns = policy.respond([Conversation(i["messages"], i["tools"], gold={"benchmark": name, **i}) for i in items])
    predicted = []
    exact = []
    for item, turn in zip(items, turns, strict=True):
        p = parse(turn.text, policy.protocol, turn.tool_calls)
        predicted.append(_ACT_CLASS.get(p.act or "", "cannot_answer" if p.act is None else p.act))
        if item["gold"] == "tool_call" and "allowed" in item:
            exact.append(float(p.act == "tool_call" and call_allowed(p.call_name, p.call_args, item["gold_call"]["name"], item["allowed"])))
    gold = [i["gold"] for i in items]
    n = len(items)
    if name == "bfcl-irrelevance":  # must not call: asking and declining are both right
        right = [p != "tool_call" for p in predicted]
    elif name == "bfcl-miss-param":  # `[]` turns must not act (asking or declining), the others must call
        right = [(p == "tool_call") == (g == "tool_call") for p, g in zip(predicted, gold)]
    else:
        right = [a == b for a, b in zip(predicted, gold)]
    out: dict[str, Any] = {"benchmark": name, "items": n, "protocol": policy.protocol,
                           "accuracy": round(sum(right) / n, 4) if n else None}
    if name == "when2call":
        f1s = {}
        for c in CLASSES:
            tp = sum(p == c and g == c for p, g in zip(predicted, gold))
            fp = sum(p == c and g != c for p, g in zip(predicted, gold))
            fn = sum(p != c and g == c for p, g in zip(predicted, gold))
            f1s[c] = round(f1_score(tp, fp, fn), 4)
        not_call = [p for p, g in zip(predicted, gold) if g != "tool_call"]
        out.update({f"f1_{c}": f for c, f in f1s.items()})
        out["macro_f1"] = round(sum(f1s.values()) / len(f1s), 4)
        out["tool_hallucination_rate"] = round(sum(p == "tool_call" for p in not_call) / len(not_call), 4) if not_call else None
    else:
        out["call_rate"] = round(sum(p == "tool_call" for p in predicted) / n, 4) if n else None
    if name == "bfcl-miss-param":
        for key, kind in (("wait_accuracy", "request_for_info"), ("act_accuracy", "tool_call")):
            scored = [ok for ok, g in zip(right, gold) if g == kind]
            out[key] = round(sum(scored) / len(scored), 4) if scored else None
    if exact:
        out["call_exact_match"] = round(sum(exact) / len(exact), 4)
    return out


BENCHMARK_ROWS = [
    ("macro_f1", "macro-F1 (when2call)"),
    ("f1_tool_call", "F1 tool_call"),
    ("f1_request_for_info", "F1 request_for_info"),
    ("f1_cannot_answer", "F1 cannot_answer"),
    ("tool_hallucination_rate", "tool-hallucination rate"),
    ("accuracy", "accuracy (right act)"),
    ("wait_accuracy", "accuracy on must-wait turns"),
    ("act_accuracy", "accuracy on must-act turns"),
    ("call_rate", "call rate"),
    ("call_exact_match", "call exact match"),
]


def baseline_turn(kind: str, item: dict[str, Any]) -> tuple[str, str | None, tuple[str, Any] | None]:
    """(act, content, call) of a baseline policy on a benchmark item: `oracle` does the gold thing, `always-ask` asks,
    `always-act` calls (the gold call where one is due, else the first offered tool with no arguments)."""
    gold = item["gold"]
    call = (item["gold_call"]["name"], item["gold_call"]["arguments"]) if "gold_call" in item else None
    first = (item["tools"][0]["function"]["name"], {}) if item["tools"] else ("none", {})
    if kind == "always-ask" or kind == "oracle" and gold == "request_for_info":
        return "clarify", item.get("reference") if kind == "oracle" and item.get("reference") else "Could you give me more details?", None
    if kind == "always-act" or gold == "tool_call":
        return "tool_call", None, call or first
    return "answer", item.get("reference") or "Sorry, I can't help with that with the tools I have.", None


def metrics_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """The table rows that have a value for at least one column."""
    return [(k, label) for k, label in BENCHMARK_ROWS if any(m.get(k) is not None for m in results.values())]

