"""Training data: load SpeakER dialogues (run dir, local dataset dir or Hub id), split them, and turn them into
decision-point rows (one per assistant turn) and episode rows (one per dialogue). torch-free.

Structured columns (goal, arguments, tools, slots) are stored as JSON strings: their keys differ from row to row,
which Arrow cannot hold in one struct column.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from speakrl.pipeline.decision_points import decision_points, tool_defaults
from speakrl.pipeline.errors import TrainingError
from speakrl.schemas.catalog import SlotSpec
from speakrl.schemas.dialogue import Dialogue, ToolSpec

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
NEEDED_COLUMNS = ("messages", "tools", "turn_labels")  # `labels` in the data contract (and in older copies)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _clean_tools(tools: Any) -> list[dict[str, Any]]:
    tools = _maybe_json(tools)
    out = []
    for t in tools or []:
        t = _maybe_json(t)
        fn = dict(t.get("function", t))
        fn["parameters"] = _drop_nulls(_maybe_json(fn.get("parameters")) or {"type": "object", "properties": {}})
        out.append({"type": "function", "function": fn})
    return out


def _drop_nulls(value: Any) -> Any:
    """Parquet pads nested structs with nulls for keys other rows have; a JSON schema must not keep them."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def row_to_dialogue(row: Mapping[str, Any]) -> Dialogue:
    """A published/parquet row back into a Dialogue (JSON-string columns decoded, absent bookkeeping filled)."""
    if "turn_labels" not in row and "labels" in row:  # a run's own rows, or a copy published before the rename
        row = {**row, "turn_labels": row["labels"]}
    missing = [c for c in NEEDED_COLUMNS if c not in row]
    if missing:
        raise TrainingError(
            f"the dataset has no column(s) {', '.join(missing)}; speakrl train needs SpeakER rows with "
            f"{', '.join(NEEDED_COLUMNS)} (and goal for episodes)"
        )
    messages = []
    for m in _maybe_json(row["messages"]):
        m = dict(_maybe_json(m))
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                c = dict(c)
                fn = dict(c["function"])
                if not isinstance(fn.get("arguments"), str):  # published rows carry an object
                    fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
                calls.append({"id": c.get("id") or "call", "type": "function", "function": fn})
            m["tool_calls"] = calls
        if m.get("tool_calls") and m.get("content") == "":
            m["content"] = None  # published rows carry "" for a tool-call turn's text
        messages.append({k: v for k, v in m.items() if k in ("role", "content", "reasoning_content", "tool_calls", "tool_call_id", "name")})
    gold_calls = [
        {"name": c["name"], "arguments": c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])}
        for c in (_maybe_json(row.get("gold_calls")) or [])
    ]
    data = {
        "id": str(row.get("id", "")),
        "scenario_id": str(row.get("scenario_id", row.get("id", ""))),
        "domain": str(row.get("domain", "")),
        "tools": _clean_tools(row["tools"]),
        "messages": messages,
        "labels": [dict(_maybe_json(x)) for x in _maybe_json(row["turn_labels"])],
        "gold_calls": gold_calls,
        "goal": _maybe_json(row.get("goal")) or {},
        "ambiguities": [_drop_nulls(dict(_maybe_json(a))) for a in (_maybe_json(row.get("ambiguities")) or [])],
        "needs_clarification": bool(row.get("needs_clarification", False)),
        "outcome": row.get("outcome") or "completed",
        "provenance": _maybe_json(row.get("provenance")) or {"backend": "unknown", "seed": 0},
    }
    if isinstance(data["provenance"], dict):
        data["provenance"] = {k: _maybe_json(v) if k in ("versions", "usage") else v for k, v in _drop_nulls(data["provenance"]).items()}
    try:
        return Dialogue.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise TrainingError(f"dataset row {data['id']!r} is not a SpeakER dialogue: {err['msg']} at {where}") from None


def load_dialogues(source: str, split: str | None = None, config: str | None = None) -> dict[str, list[Dialogue]]:
    """Dialogues per split from a run dir (`accepted.jsonl`), a local HF dataset dir, or a Hub dataset id; `config`
    names a config of the dataset with dialogue rows (`sgd`), None its default."""
    path = Path(source)
    if (path / "accepted.jsonl").is_file() and not (path / "dataset" / "README.md").is_file():
        # Splitting accepted.jsonl here would not give the leak-free splits of the published dataset.
        raise TrainingError(f"run directory {source!r} has no dataset/ (its build was interrupted, or no row was "
                            "accepted); run the same `speakrl run` command again to build it")
    if (path / "accepted.jsonl").is_file():
        path = path / "dataset"
    if not path.exists() and ("/" not in source or source.startswith((".", "/"))):
        raise TrainingError(f"dataset {source!r} is neither a run directory, a dataset directory nor a Hub dataset id")
    return _load_hf(str(path) if path.exists() else source, split, config)


def _load_hf(source: str, split: str | None, config: str | None = None) -> dict[str, list[Dialogue]]:
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # loading a few parquet files needs no progress bar on the user's terminal
    try:
        ds = datasets.load_dataset(source, config)
    except Exception as e:  # datasets raises many classes (FileNotFound, DatasetNotFound, connection errors)
        raise TrainingError(f"cannot load dataset {source!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    finally:
        if bars:
            datasets.enable_progress_bars()
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    out: dict[str, list[Dialogue]] = {}
    for name, part in ds.items():
        if split is not None and name != split and name != "train":
            continue
        missing = [c for c in NEEDED_COLUMNS if c not in part.column_names and not (c == "turn_labels" and "labels" in part.column_names)]
        if missing:
            raise TrainingError(
                f"dataset {source!r} has no column(s) {', '.join(missing)}; speakrl needs SpeakER dialogue rows "
                f"with {', '.join(NEEDED_COLUMNS)}"
            )
        out[name] = [row_to_dialogue(r) for r in part]
    if split is not None and split not in out:
        raise TrainingError(f"dataset {source!r} has no {split!r} split; it has {', '.join(sorted(out)) or 'none'}")
    return out


def slots_of(tools: Iterable[ToolSpec | Mapping[str, Any]]) -> list[SlotSpec]:
    """Slot specs derived from the tools' JSON schemas: enough for `question_targets` without the catalog.

    >>> from speakrl.schemas.dialogue import FunctionSpec
    >>> spec = ToolSpec(function=FunctionSpec(name="t", description="", parameters={"properties": {"city": {"type": "string", "description": "City"}}}))
    >>> [s.name for s in slots_of([spec])]
    ['city']
    """
    seen: dict[str, SlotSpec] = {}
    for tool in tools:
        fn = tool.function.model_dump() if isinstance(tool, ToolSpec) else tool.get("function", tool)
        for name, prop in (fn.get("parameters") or {}).get("properties", {}).items():
            if name not in seen:
                enum = prop.get("enum")
                seen[name] = SlotSpec(name=name, description=prop.get("description") or name, enum=list(enum) if enum else None)
    return list(seen.values())


def chat_messages(messages: Iterable[Any]) -> list[dict[str, Any]]:
    """Chat-template-ready dicts (no None fields; reasoning of past turns dropped to keep prompts short)."""
    out = []
    for m in messages:
        d = m.model_dump(exclude_none=True) if hasattr(m, "model_dump") else {k: v for k, v in m.items() if v is not None}
        d.pop("reasoning_content", None)
        if d.get("role") == "assistant" and "content" not in d:
            d["content"] = ""
        out.append(d)
    return out


def decision_rows(dialogues: Iterable[Dialogue]) -> list[dict[str, Any]]:
    """One row per assistant turn: prompt messages + tools and the gold act, call, answer for the rewards."""
    rows = []
    for dialogue in dialogues:
        tools = [t.model_dump() for t in dialogue.tools]
        slots = [s.model_dump(include={"name", "description", "enum"}) for s in slots_of(dialogue.tools)]
        for dp in decision_points(dialogue):
            last_tool = next((m.content for m in reversed(dp.prompt) if m.role == "tool"), None)
            rows.append(
                {
                    "id": dp.id,
                    "dialogue_id": dp.dialogue_id,
                    "domain": dp.domain,
                    "history": json.dumps(chat_messages(dp.prompt), ensure_ascii=False),
                    "tools": json.dumps(tools, ensure_ascii=False),
                    "act": dp.act,
                    "target_slots": list(dp.target_slots),
                    "gold_name": dp.gold_call.name if dp.gold_call else "",
                    "gold_args": dp.gold_call.arguments if dp.gold_call else "{}",
                    "gold_content": dp.gold_content or "",
                    "gold_reasoning": dp.gold_reasoning or "",
                    "needs_clarification": dp.needs_clarification,
                    "is_control": not dialogue.needs_clarification,
                    "defaults": json.dumps(dp.defaults, ensure_ascii=False),
                    "user_texts": [m.content or "" for m in dp.prompt if m.role == "user"],
                    "slots": json.dumps(slots, ensure_ascii=False),
                    "last_tool_result": last_tool or "",
                    "turn": dp.turn,
                }
            )
    return rows


def episode_rows(dialogues: Iterable[Dialogue]) -> list[dict[str, Any]]:
    """One row per dialogue for multi-turn episodes: the opening (system + first user message) and the hidden goal.

    The `environment` column routes the row to its domain's environment (TRL's multi-environment mode)."""
    rows = []
    for d in dialogues:
        if not d.gold_calls:
            continue
        first_user = next((i for i, m in enumerate(d.messages) if m.role == "user"), None)
        if first_user is None:
            continue
        final = d.gold_calls[-1]
        rows.append(
            {
                "id": d.id,
                "environment": d.domain,
                "domain": d.domain,
                "history": json.dumps(chat_messages(d.messages[: first_user + 1]), ensure_ascii=False),
                "tools": json.dumps([t.model_dump() for t in d.tools], ensure_ascii=False),
                "goal_tool": final.name,
                "goal_args": final.arguments,
                "goal": json.dumps(d.goal, ensure_ascii=False),
                "defaults": json.dumps(tool_defaults(d.tools, final.name), ensure_ascii=False),
                "needs_clarification": d.needs_clarification,
                "gold_turns": len(d.labels),
                "gold_turns_json": json.dumps(_gold_turns(d), ensure_ascii=False),
            }
        )
    return rows


def _gold_turns(d: Dialogue) -> list[dict[str, Any]]:
    """The dialogue's assistant turns in order, as the baseline policies replay them: act, content, call."""
    out = []
    for label in d.labels:
        m = d.messages[label.message_index]
        call = [m.tool_calls[0].function.name, m.tool_calls[0].function.arguments] if m.tool_calls else None
        out.append({"act": label.act, "content": m.content, "call": call})
    return out


def corpus_texts(dialogues: Iterable[Dialogue]) -> Iterator[str]:
    """Every text a tokenizer should know: messages, reasoning, tool specs."""
    for d in dialogues:
        yield json.dumps([t.model_dump() for t in d.tools], ensure_ascii=False)
        for m in d.messages:
            for text in (m.content, m.reasoning_content):
                if text:
                    yield text
            for c in m.tool_calls or []:
                yield c.function.arguments

