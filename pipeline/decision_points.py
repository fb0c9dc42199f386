"""Decision points: every assistant turn of a dialogue as a prompt (history + tools) with its gold act.

Shared by publishing (the `decision_points` config) and training (GRPO prompts), torch-free.
"""

from __future__ import annotations

from typing import Any

from speakrl.schemas.base import Strict
from speakrl.schemas.dialogue import Act, Dialogue, FunctionCall, Message, ToolSpec, TurnKind


class DecisionPoint(Strict):
    id: str
    dialogue_id: str
    scenario_id: str
    domain: str
    turn: int  # 0-based index among the dialogue's assistant turns
    tools: list[ToolSpec]
    prompt: list[Message]  # every message before the assistant turn
    completion: list[Message]  # the gold assistant turn itself (reasoning_content, content, tool_calls)
    act: Act
    target_slots: list[str]
    kind: TurnKind | None = None  # a clarify that confirms rather than requests, an answer that offers (TurnLabel.kind)
    gold_call: FunctionCall | None
    gold_content: str | None
    gold_reasoning: str | None
    needs_clarification: bool  # this turn should ask
    ambiguity_types: list[str]
    goal: dict[str, Any]
    defaults: dict[str, Any]  # declared defaults of the gold call's tool (empty when no call)


def tool_defaults(tools: list[ToolSpec], name: str) -> dict[str, Any]:
    """Declared defaults of tool `name`'s optional parameters."""
    for spec in tools:
        if spec.name == name:
            props = spec.function.parameters.get("properties", {})
            return {k: p["default"] for k, p in props.items() if "default" in p}
    return {}


def decision_points(dialogue: Dialogue) -> list[DecisionPoint]:
    """One DecisionPoint per labelled assistant turn, in order."""
    points = []
    for turn, label in enumerate(dialogue.labels):
        message = dialogue.messages[label.message_index]
        call = message.tool_calls[0].function if message.tool_calls else None
        points.append(
            DecisionPoint(
                id=f"{dialogue.id}-t{turn}",
                dialogue_id=dialogue.id,
                scenario_id=dialogue.scenario_id,
                domain=dialogue.domain,
                turn=turn,
                tools=dialogue.tools,
                prompt=dialogue.messages[: label.message_index],
                completion=[message],
                act=label.act,
                target_slots=label.target_slots,
                kind=label.kind,
                gold_call=call,
                gold_content=message.content,
                gold_reasoning=message.reasoning_content,
                needs_clarification=label.act == "clarify",
                ambiguity_types=sorted({a.type for a in dialogue.ambiguities}),
                goal=dialogue.goal,
                defaults=tool_defaults(dialogue.tools, call.name) if call else {},
            )
        )
    return points
