"""The data contract: tool specs, scenarios, dialogues, rejections.

Messages are OpenAI chat format, so TRL and chat templates read published rows directly.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from speakrl.schemas.base import Strict

AmbiguityType = Literal[
    "missing_slot",
    "underspecified_value",
    "ambiguous_reference",
    "invalid_value",
    "conflicting_constraints",
    "unsupported",  # no offered tool can do what the user asks: say so, offer what is possible; no call, no question
]
AMBIGUITY_TYPES: tuple[str, ...] = AmbiguityType.__args__  # type: ignore[attr-defined]
Act = Literal["clarify", "tool_call", "answer"]
# What kind of turn a label marks, beyond its act: a clarify turn asks for a value the call needs (request) or for a
# yes/no on values read back before acting (confirm, SGD's CONFIRM); an answer turn may propose values from a result
# for the user to take (offer, SGD's OFFER). Generated rows leave it unset: their clarify turns are all requests.
TurnKind = Literal["request", "confirm", "offer"]


class FunctionSpec(Strict):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments


class ToolSpec(Strict):
    """A tool in OpenAI function format."""

    type: Literal["function"] = "function"
    function: FunctionSpec

    @property
    def name(self) -> str:
        return self.function.name


class FunctionCall(Strict):
    name: str
    arguments: str  # JSON object, as the OpenAI API sends it

    def args(self) -> dict[str, Any]:
        return json.loads(self.arguments)


class ToolCall(Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Strict):
    """One chat message; unused fields stay None so the row is uniform in parquet."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class Ambiguity(Strict):
    type: AmbiguityType
    slot: str
    detail: str  # what the user said instead of the value, or why it cannot be used
    candidates: list[str] = Field(default_factory=list)  # the values the assistant should offer or choose between


class Scenario(Strict):
    id: str
    seed: int
    domain: str
    tool: str  # the tool whose call completes the task
    flow: list[str]  # tools called in order (a search before the action for ambiguous references)
    goal: dict[str, Any]  # hidden goal: every argument of the final call
    stated: dict[str, Any]  # what the opening request gives as-is (grounded values)
    search_args: dict[str, Any] = Field(default_factory=dict)  # arguments of the search step, if any
    ambiguities: list[Ambiguity] = Field(default_factory=list)
    needs_clarification: bool
    opening: str  # the user's first message
    persona: str
    style: str
    now: str | None = None  # the scenario's reference date and time (ISO), stated in the system message


class TurnLabel(Strict):
    message_index: int  # index into Dialogue.messages of the assistant turn
    act: Act
    target_slots: list[str] = Field(default_factory=list)  # slots a clarify turn asks about
    kind: TurnKind | None = None  # None: a request if the turn is a clarify, else a plain answer


class Inform(Strict):
    """A value the user gave in words of their own that no span points at, as human annotation labels it (SGD's
    INFORM act on a categorical slot: "something economical" -> price_range=moderate)."""

    message_index: int  # index into Dialogue.messages of the user turn the annotation names
    slot: str
    value: str  # the value as the annotation states it (SGD's canonical value)


class Provenance(Strict):
    backend: str
    model: str | None = None
    prompt_hash: str | None = None
    seed: int
    versions: dict[str, str] = Field(default_factory=dict)
    usage: dict[str, int] = Field(default_factory=dict)


class JudgeVerdict(Strict):
    """The optional LLM judge's view of a dialogue's clarification questions (necessary? targeted?)."""

    verdict: Literal["pass", "fail"]
    reason: str
    model: str | None = None
    turns: list[dict[str, Any]] = Field(default_factory=list)  # per question: message_index, necessary, targeted, reason


class Dialogue(Strict):
    id: str
    scenario_id: str
    domain: str
    tools: list[ToolSpec]
    messages: list[Message]
    labels: list[TurnLabel]
    gold_calls: list[FunctionCall]
    goal: dict[str, Any]
    ambiguities: list[Ambiguity]
    needs_clarification: bool
    outcome: Literal["completed", "failed"]
    provenance: Provenance
    judge: JudgeVerdict | None = None  # set when validate.judge is on (LLM backend)
    # The user's own words for a value they gave in other words ("Philly" for "Philadelphia"): value -> words, from
    # human annotation (SGD's slot spans), or from the generator ("no reminder" for "none"). Grounding accepts the
    # words, where the user said them, for the value.
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    # Values of closed-set slots the user expressed in other words, with the user turn, from human annotation (SGD's
    # INFORM acts on categorical slots). Grounding accepts such a value for that slot, from that turn on.
    informs: list[Inform] = Field(default_factory=list)


class Rejection(Strict):
    """A row that failed a check, kept for study."""

    id: str
    stage: str
    check: str  # snake_case reason code
    reason: str  # a sentence a person can read
    row: dict[str, Any] | None = None
    raw: str | None = None  # raw model output when the failure came from an LLM
