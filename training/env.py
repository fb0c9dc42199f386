"""Multi-turn episodes for TRL's `environment_factory`: a domain's tools (run by the catalog simulator) plus
`ask_user(question)`, answered by a user simulator that knows the hidden goal.

TRL (1.16) exposes every public method of an environment class as a tool, calls `reset(**row)` before each rollout
and, when the class defines `get_reward()`, scores the rollout with it. Tools differ per domain, so there is one class
per domain, built from the catalog, and the dataset's `environment` column picks it (TRL's multi-environment mode).

Reward = 1 when a call matches the goal (same tool, same arguments once defaults are filled), else half the argument
F1 of the closest call to the goal tool (dense credit for a weak policy), minus a cost per assistant turn.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from speakrl.pipeline.catalog.sim import Simulator
from speakrl.pipeline.checks import argument_f1, call_matches, question_targets
from speakrl.pipeline.errors import TrainingError
from speakrl.schemas.catalog import Catalog, Domain, SlotSpec, ToolDef
from speakrl.training.rewards import json_value

logger = logging.getLogger(__name__)

DEFAULT_TURN_COST = 0.05
_PY_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool}
_NOT_SURE = "Sorry, I'm not sure what you are asking. Could you ask about a specific detail?"


def user_reply(question: str, goal: Mapping[str, Any], slots: list[SlotSpec]) -> str:
    """The simulated user's answer: the goal values of the slots the question asks about (`question_targets`).

    >>> slots = [SlotSpec(name="party_size", description="", mention="for {value} people"),
    ...          SlotSpec(name="city", description="")]
    >>> user_reply("How many people, and which city?", {"party_size": 4, "city": "Oakland"}, slots)
    'For 4 people, and city: Oakland.'
    >>> user_reply("Anything else?", {"party_size": 4}, slots).startswith("Sorry")
    True
    """
    by_name = {s.name: s for s in slots}
    targets = [s for s in by_name if s in question_targets(question, slots) and s in goal]
    if not targets:
        return _NOT_SURE
    parts = []
    for name in targets:
        slot, value = by_name[name], goal[name]
        if slot.mention and "{value}" in slot.mention:
            parts.append(slot.mention.format(value=value))
        else:
            parts.append(f"{name.replace('_', ' ')}: {value}")
    text = ", and ".join(parts)
    return text[:1].upper() + text[1:] + "."


class SpeakerEnvironment:
    """Base episode state; per-domain subclasses add one method per catalog tool (see `environment_class`)."""

    domain: Domain
    simulator: Simulator
    turn_cost: float = DEFAULT_TURN_COST

    def reset(self, **row: Any) -> str | None:
        """Start an episode from a row of `training.data.episode_rows` (goal, goal_tool, goal_args, defaults)."""
        self.goal: dict[str, Any] = json_value(row.get("goal"), {}) or {}
        self.goal_tool: str = row.get("goal_tool") or ""
        self.goal_args: dict[str, Any] = json_value(row.get("goal_args"), {}) or dict(self.goal)
        self.defaults: dict[str, Any] = json_value(row.get("defaults"), {}) or {}
        self.turns = 0
        self.questions: list[str] = []
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        return None

    def ask_user(self, question: str) -> str:
        """Ask the user one clarification question when their request is missing or ambiguous information.

        Args:
            question: The question to ask the user.

        Returns:
            The user's reply.
        """
        self.turns += 1
        self.questions.append(str(question))
        return user_reply(str(question), self.goal, self.domain.slots)

    def _call(self, tool_name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.turns += 1
        result = self.simulator.execute(tool_name, args)
        self.calls.append((tool_name, dict(args), result))
        return result

    @property
    def completed(self) -> bool:
        return any(
            "error" not in result and call_matches(name, args, self.goal_tool, self.goal_args, self.defaults)
            for name, args, result in self.calls
        )

    def get_reward(self) -> float:
        """Task completion minus a cost per turn (each question or tool call is one more assistant turn)."""
        if self.completed:
            score = 1.0
        else:
            f1s = [argument_f1(a, self.goal_args, self.defaults) for n, a, _ in self.calls if n == self.goal_tool]
            score = 0.5 * max(f1s, default=0.0)
        return round(score - self.turn_cost * self.turns, 4)


def _tool_method(domain: Domain, tool: ToolDef) -> Callable[..., Any]:
    """A method with the tool's real signature and a Google docstring, so transformers renders its JSON schema."""

    def method(self: SpeakerEnvironment, **kwargs: Any) -> str:
        return json.dumps(self._call(tool.name, kwargs), ensure_ascii=False)

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    arg_docs = []
    for name in tool.slots:
        slot = domain.slot(name)
        annotations[name] = _PY_TYPES[slot.type]
        default = tool.optional.get(name, inspect.Parameter.empty)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotations[name]))
        choices = f" (choices: {json.dumps(slot.enum)})" if slot.enum else ""
        arg_docs.append(f"        {name}: {' '.join(slot.description.split()) or name}{choices}")
    annotations["return"] = str
    method.__name__ = method.__qualname__ = tool.name
    method.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    method.__annotations__ = annotations
    args_block = "\n\n    Args:\n" + "\n".join(arg_docs) if arg_docs else ""
    method.__doc__ = f"{' '.join(tool.description.split())}{args_block}\n\n    Returns:\n        The tool result as JSON.\n"
    return method


def environment_class(domain: Domain, simulator: Simulator, turn_cost: float = DEFAULT_TURN_COST) -> type[SpeakerEnvironment]:
    """The environment class of one domain: `ask_user` plus one method per tool."""
    members: dict[str, Any] = {"domain": domain, "simulator": simulator, "turn_cost": turn_cost}
    for tool in domain.tools:
        if tool.name in ("reset", "get_reward", "ask_user") or not tool.name.isidentifier():
            raise TrainingError(f"tool name {tool.name!r} of domain {domain.name!r} cannot be an environment method")
        members[tool.name] = _tool_method(domain, tool)
    name = "".join(part.capitalize() for part in re.split(r"[-_+]", domain.name)) + "Environment"
    return type(name, (SpeakerEnvironment,), members)


def service_domain(known: dict[str, Domain], name: str) -> Domain:
    """The domain a dialogue runs in: a catalog domain, or for a dialogue that spans services (SGD's
    "hotels_2+restaurants_1") one domain holding every service's slots and tools, so its episode can use them all."""
    parts = name.split("+")
    if len(parts) == 1:
        return known[name]
    services = [known[part] for part in parts]
    slots = {s.name: s for d in reversed(services) for s in d.slots}  # a shared slot name keeps the first service's
    return Domain(name=name, description=" ".join(d.description for d in services),
                  slots=list(slots.values()), tools=[t for d in services for t in d.tools], source=services[0].source)


def environment_factories(catalog: Catalog, domains: list[str], turn_cost: float = DEFAULT_TURN_COST) -> dict[str, type[SpeakerEnvironment]]:
    """`environment_factory` for GRPOTrainer: `{domain name: environment class}` for the domains of the dataset."""
    simulator = Simulator(catalog)
    known = {d.name: d for d in catalog.domains}
    unknown = sorted({part for name in domains for part in name.split("+")} - set(known))
    if unknown:
        raise TrainingError(
            f"the dataset uses domain(s) {', '.join(unknown)} that the catalog does not define; pass the catalog the "
            "dataset was generated from"
        )
    return {name: environment_class(service_domain(known, name), simulator, turn_cost) for name in sorted(set(domains))}
