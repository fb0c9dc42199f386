"""Dialogues stage (offline backend): a user simulator that knows the hidden goal talks with an assistant policy
that asks about exactly what is unresolved, calls the tools against the simulated backends, and answers.

The assistant policy sees only what the user said and what tools returned; the hidden goal is used by the
user simulator alone (and, at the end, to assert that the dialogue reached it).
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from collections.abc import Iterable, Iterator
from typing import Any

from speakrl.pipeline.catalog.sim import Simulator, stable_seed
from speakrl.pipeline.catalog.specs import catalog_specs
from speakrl.pipeline.checks import call_matches, normalize
from speakrl.pipeline.stages import phrasing
from speakrl.schemas.catalog import Catalog, Domain, ToolDef
from speakrl.schemas.config import RunConfig
from speakrl.schemas.dialogue import (
    Ambiguity,
    Dialogue,
    FunctionCall,
    Message,
    Provenance,
    Scenario,
    ToolCall,
    ToolSpec,
    TurnLabel,
)

MAX_QUESTIONS = 6

SYSTEM_PROMPT = (
    "You are a helpful assistant. {now}Use the tools to complete the user's request. "
    "If the request is missing information a tool needs, or is vague, invalid or contradictory, ask a "
    "clarification question first and never guess a value the user has not given. If nothing is missing, act "
    "without asking. If no tool can do what the user asks, say so and offer what you can do."
)


def system_prompt(domain: Domain | None, now: str | None = None) -> str:
    """The system message: the reference date and time where an assistant would see it; it names no file or domain
    (catalog descriptions are written for developers, not as a persona)."""
    stated = ""
    if now:
        at = datetime.fromisoformat(now)
        stated = f"Today is {at.strftime('%A')}, {at.strftime('%B')} {at.day}, {at.year}"
        stated += f", and it is {at.strftime('%I:%M %p').lstrip('0').lower()}. " if "T" in now else ". "  # date only: no clock
    return SYSTEM_PROMPT.format(now=stated)


def volunteered_slots(scenario: Scenario, tool: ToolDef) -> dict[str, Any]:
    """Optional preferences the user holds back from the opening and volunteers in the first reply."""
    ambiguous = {a.slot for a in scenario.ambiguities}
    return {
        k: scenario.goal[k]
        for k, default in tool.optional.items()
        if k not in scenario.stated and k not in ambiguous and normalize(scenario.goal[k]) != normalize(default)
    }


class UserSimulator:
    """Answers the assistant's questions from the hidden goal; sometimes only partly, sometimes volunteering more."""

    def __init__(self, cfg: RunConfig, scenario: Scenario, domain: Domain, rng: random.Random):
        self.cfg, self.scenario, self.domain, self.rng = cfg, scenario, domain, rng
        self.volunteer = volunteered_slots(scenario, domain.tool(scenario.tool))

    def answer(self, targets: list[str], kind: str = "missing_slot") -> tuple[str, dict[str, Any]]:
        """Reply to a question of `kind` about `targets`; returns the text and the slot values it gives."""
        given = list(targets)
        if len(given) > 1 and self.rng.random() < self.cfg.partial_answer_rate:
            given = given[: self.rng.randint(1, len(given) - 1)]
        answers = {k: self.scenario.goal[k] for k in given}
        extra, self.volunteer = self.volunteer, {}
        return phrasing.user_answer(self.rng, self.domain, answers, extra, kind), {**answers, **extra}


class Conversation:
    """Accumulates messages and per-turn labels."""

    def __init__(self, domain: Domain, opening: str, now: str | None = None):
        self.messages = [Message(role="system", content=system_prompt(domain, now)), Message(role="user", content=opening)]
        self.labels: list[TurnLabel] = []
        self.calls: list[FunctionCall] = []

    def assistant(self, act: str, reasoning: str, content: str | None = None, call: FunctionCall | None = None,
                  targets: list[str] | None = None) -> None:
        tool_calls = [ToolCall(id=f"call_{len(self.calls)}", function=call)] if call else None
        self.labels.append(TurnLabel(message_index=len(self.messages), act=act, target_slots=targets or []))
        self.messages.append(Message(role="assistant", content=content, reasoning_content=reasoning, tool_calls=tool_calls))
        if call:
            self.calls.append(call)

    def tool_result(self, call: FunctionCall, result: dict[str, Any]) -> None:
        self.messages.append(Message(role="tool", content=json.dumps(result, ensure_ascii=False),
                                     tool_call_id=f"call_{len(self.calls) - 1}", name=call.name))

    def user(self, text: str) -> None:
        self.messages.append(Message(role="user", content=text))


def _known_text(known: dict[str, Any]) -> str:
    if not known:
        return "They haven't given any details yet."
    return "They gave " + phrasing.join([f"{phrasing.label(k)} {v}" for k, v in known.items()]) + "."


def _is_count(domain: Domain, name: str) -> bool:
    """Whether a slot holds a number, which a question asks for as one ("the number of travelers")."""
    return domain.slot(name).type in ("integer", "number")


def _question(rng: random.Random, amb: list[Ambiguity], domain: Domain, tool: ToolDef, intent: str,
              known: dict[str, Any]) -> tuple[str, str]:
    """The clarification question about `amb` (one ambiguity, or several missing slots) and the reasoning behind it."""
    first = amb[0]
    label = phrasing.label(first.slot)
    if first.type == "missing_slot":
        names = [a.slot for a in amb]
        counts = [n for n in names if _is_count(domain, n)]
        why = (f"{tool.name} requires the {phrasing.missing_labels(names, counts)}, which the user hasn't given, "
               "so I should ask instead of guessing.")
        question = phrasing.question_missing(rng, names, counts, tool)
        return question, f"The user wants to {intent}. {_known_text(known)} {why}"
    if first.type == "underspecified_value":
        why = f"\"{first.detail}\" does not pin down an exact {label}, and {tool.name} needs one, so I'll ask them to narrow it."
        question = phrasing.question_vague(rng, first.slot, first.detail, _is_count(domain, first.slot), tool)
        return question, f"The user wants to {intent}. {why}"
    if first.type == "invalid_value":
        why = (f"\"{first.detail}\" is not a valid {label} for {tool.name}; the valid options are "
               f"{phrasing.join(first.candidates)}. I'll offer them rather than pick one myself.")
        return phrasing.question_invalid(rng, first.slot, first.detail, first.candidates), f"The user wants to {intent}. {why}"
    if first.type == "conflicting_constraints":
        a, b = first.candidates
        why = f"The user asked for both {a} and {b} as the {label}; a call can take only one, so I'll ask which wins."
        return phrasing.question_conflict(rng, first.slot, a, b), why
    why = (f"The search returned {len(first.candidates)} matches and the user didn't say which "
           f"{phrasing.which_label(first.slot)} they mean, "
           f"so I'll ask instead of picking one.")
    return phrasing.question_reference(rng, first.slot, first.candidates, tool), why


def converse(cfg: RunConfig, scenario: Scenario, domain: Domain, sim: Simulator) -> tuple[Conversation, bool]:
    """Play the scenario out; returns the conversation and whether the final call reached the goal."""
    rng = random.Random(stable_seed("dialogue", scenario.seed))
    tool = domain.tool(scenario.tool)
    intent = phrasing.intent(tool)
    conv = Conversation(domain, scenario.opening, scenario.now)
    pending = list(scenario.ambiguities)
    if pending and pending[0].type == "unsupported":
        offered = [domain.tool(name) for name in pending[0].candidates]
        conv.assistant("answer", f"The user wants to {intent}, but none of my tools does that: {tool.name} is not "
                       f"offered. I shouldn't call another tool or ask for details; I'll say so and offer what I can do.",
                       content=phrasing.decline(rng, tool, offered))
        return conv, True
    user = UserSimulator(cfg, scenario, domain, rng)
    known = dict(scenario.stated)

    if len(scenario.flow) > 1:  # ambiguous reference: search first, then ask which result
        search = domain.tool(scenario.flow[0])
        call = FunctionCall(name=search.name, arguments=json.dumps(scenario.search_args, ensure_ascii=False))
        entity = domain.entity or phrasing.label(domain.entity_slot or "")
        conv.assistant("tool_call", f"The user refers to a {entity} without naming it. I'll search with what they "
                       f"said ({phrasing.describe(scenario.search_args)}) to find the candidates.", call=call)
        result = sim.execute(search.name, scenario.search_args)
        conv.tool_result(call, result)
        names = [r[domain.entity_slot] for r in result.get("results", [])]
        pending = [a.model_copy(update={"candidates": names}) if a.type == "ambiguous_reference" else a for a in pending]

    for _ in range(MAX_QUESTIONS):
        if not pending:
            break
        if pending[0].type == "missing_slot":
            missing = [a for a in pending if a.type == "missing_slot"]
            batch = missing[:1] if rng.random() < cfg.split_rate else missing
        else:
            batch = pending[:1]
        question, reasoning = _question(rng, batch, domain, tool, intent, known)
        targets = [a.slot for a in batch]
        conv.assistant("clarify", reasoning, content=question, targets=targets)
        reply, values = user.answer(targets, batch[0].type)
        conv.user(reply)
        known.update(values)
        pending = [a for a in pending if a.slot not in values]

    args = {k: known[k] for k in tool.slots if k in known}
    call = FunctionCall(name=tool.name, arguments=json.dumps(args, ensure_ascii=False))
    unset = [phrasing.label(k) for k in tool.optional if k not in args]
    note = ""
    if unset:
        note = f" The {phrasing.join(unset)} {'keeps its default' if len(unset) == 1 else 'keep their defaults'}."
    conv.assistant("tool_call", f"I have everything {tool.name} needs: {phrasing.describe(args)}.{note}", call=call)
    result = sim.execute(tool.name, args)
    conv.tool_result(call, result)
    conv.assistant("answer", "The tool returned a result; I'll report it to the user.",
                   content=phrasing.final_answer(rng, domain, tool, result, asked=args))
    reached = "error" not in result and call_matches(tool.name, args, tool.name, scenario.goal, tool.optional)
    return conv, reached


def offered_tools(specs: list[ToolSpec], scenario: Scenario) -> list[ToolSpec]:
    """The tools the assistant is given: all of the domain's, except the one an unsupported request needs."""
    if any(a.type == "unsupported" for a in scenario.ambiguities):
        return [t for t in specs if t.name != scenario.tool]
    return specs


def run(cfg: RunConfig, catalog: Catalog, scenarios: Iterable[Scenario], sim: Simulator | None = None,
        versions: dict[str, str] | None = None) -> Iterator[Dialogue]:
    """Dialogues for scenarios, one each, in order."""
    sim = sim or Simulator(catalog)
    specs = catalog_specs(catalog)
    domains = {d.name: d for d in catalog.domains}
    for scenario in scenarios:
        domain = domains[scenario.domain]
        conv, reached = converse(cfg, scenario, domain, sim)
        yield Dialogue(
            id=f"d-{scenario.id}",
            scenario_id=scenario.id,
            domain=scenario.domain,
            tools=offered_tools(specs[scenario.domain], scenario),
            messages=conv.messages,
            labels=conv.labels,
            gold_calls=conv.calls,
            goal=scenario.goal,
            ambiguities=scenario.ambiguities,
            needs_clarification=scenario.needs_clarification,
            outcome="completed" if reached else "failed",
            provenance=Provenance(backend="offline", seed=scenario.seed, versions=versions or {}),
            aliases=phrasing.aliases(domain, scenario.goal),
        )
