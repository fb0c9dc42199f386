"""The tool catalog: domains of slots and tools, from which OpenAI function specs are derived.

A catalog is declarative (SGD's schema shape): each domain lists its slots once and each tool names
the slots it takes. That is enough to derive the OpenAI tool spec, to simulate the tool against a
seeded in-memory database, and to plan ambiguities (which slots can be missing, vague, invalid...).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from speakrl.schemas.base import Strict

SlotType = Literal["string", "integer", "number", "boolean"]
# What the OpenAI API accepts as a function name (ASCII letters, digits, '_' and '-', at most 64).
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ToolKind = Literal["search", "action", "lookup"]


class SlotSpec(Strict):
    """One argument a domain's tools may take."""

    name: str
    description: str
    type: SlotType = "string"
    enum: list[str] | None = None  # categorical slot: the only values the tool accepts
    values: list[str] = Field(default_factory=list)  # value pool for goals and the simulated database
    vague: list[str] = Field(default_factory=list)  # underspecified ways to say a value ("sometime next week")
    vague_for: dict[str, list[str]] = Field(default_factory=dict)  # value -> vague phrases that fit only it ("a small one")
    invalid: list[str] = Field(default_factory=list)  # plausible values the tool does not offer (enum slots)
    mention: str | None = None  # how a user says it, with {value}: "for {value} people"
    mentions: list[str] = Field(default_factory=list)  # other ways to say it, each with {value}: "a party of {value}"
    # value -> the ways to say that value instead, where the slot's do not fit it: "an {value}" for SUV ("something
    # SUV" does not read), "a {value} car" for luxury ("a luxury" does not)
    mentions_for: dict[str, list[str]] = Field(default_factory=dict)
    # other slot -> its value -> this slot's pool in a tool result then: kelvin temperatures when the units are
    # kelvin, no snow showers at 97 degrees (the first key with a value in the result so far wins)
    values_for: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    # an entity's own value (a phone number, an account ending): no two entities of the simulated database share one
    unique: bool = False

    @model_validator(mode="after")
    def _check_mentions_for(self) -> SlotSpec:
        for value, templates in self.mentions_for.items():
            if self.pool() and value not in self.pool():
                raise ValueError(f"slot {self.name!r} has mentions_for {value!r}, which is not one of its values; fix "
                                 "the value or remove it")
            if not templates or not all("{value}" in t for t in templates):
                raise ValueError(f"slot {self.name!r}'s mentions_for {value!r} needs templates that each hold "
                                 "{value} (the value is said verbatim)")
        return self

    def pool(self) -> list[str]:
        """Values to draw from: the enum if categorical, else the pool."""
        return list(self.enum) if self.enum else list(self.values)


class ToolDef(Strict):
    """A tool of a domain, in catalog form."""

    name: str
    description: str
    kind: ToolKind  # search: returns matching entities; action: changes state; lookup: returns facts
    required: list[str] = Field(default_factory=list)
    optional: dict[str, Any] = Field(default_factory=dict)  # slot -> default value
    result_slots: list[str] = Field(default_factory=list)
    # How users ask for this tool, first person, in the domain's words ("I need a table"); empty: derived from the name.
    phrasings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_name(self) -> ToolDef:
        if not TOOL_NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} is not 1-64 ASCII letters, digits, '_' or '-' (what the OpenAI "
                             "API accepts); rename it")
        return self

    @property
    def slots(self) -> list[str]:
        return [*self.required, *self.optional]


class Domain(Strict):
    """A service: its slots, its tools, and the entity its database holds."""

    name: str
    description: str
    entity: str | None = None  # "restaurant"; None when the domain has no searchable entities
    entity_slot: str | None = None  # the slot naming an entity ("restaurant_name")
    attributes: list[str] = Field(default_factory=list)  # entity columns in the simulated database
    # entity name -> attributes it always has (a car model's class and seats), so simulated entities are coherent
    entities: dict[str, dict[str, Any]] = Field(default_factory=dict)
    slots: list[SlotSpec]
    tools: list[ToolDef]
    source: str = "builtin"

    @model_validator(mode="after")
    def _check_references(self) -> Domain:
        if not self.tools:
            raise ValueError(f"domain {self.name!r} has no tools; give it at least one or remove it")
        names = {s.name for s in self.slots}
        for tool in self.tools:
            unknown = [s for s in [*tool.slots, *tool.result_slots] if s not in names]
            if unknown:
                raise ValueError(f"tool {tool.name!r} uses undeclared slot(s) {unknown}")
        for slot in [*self.attributes, *([self.entity_slot] if self.entity_slot else [])]:
            if slot not in names:
                raise ValueError(f"domain {self.name!r} names undeclared slot {slot!r}")
        for spec in self.slots:
            for key, pools in spec.values_for.items():
                if key not in names:
                    raise ValueError(f"slot {spec.name!r} takes its values_for from undeclared slot {key!r}")
                if not all(pools.values()):
                    raise ValueError(f"slot {spec.name!r} has an empty values_for list under {key!r}; give it values "
                                     "or remove the entry")
        searched = {s: t.name for t in self.tools if t.kind == "search" for s in t.slots}
        for spec in self.slots:  # entities found by one search share its values, which a unique slot cannot
            if spec.unique and spec.name in searched:
                raise ValueError(f"slot {spec.name!r} is unique, but search tool {searched[spec.name]!r} takes it, "
                                 "and two entities must match one search; drop `unique` or the search argument")
        return self

    def slot(self, name: str) -> SlotSpec:
        return next(s for s in self.slots if s.name == name)

    def tool(self, name: str) -> ToolDef:
        return next(t for t in self.tools if t.name == name)


class Catalog(Strict):
    """All domains; tool names are unique across the catalog."""

    domains: list[Domain]

    @model_validator(mode="after")
    def _unique_tools(self) -> Catalog:
        seen: set[str] = set()
        for domain in self.domains:
            for tool in domain.tools:
                if tool.name in seen:
                    raise ValueError(f"duplicate tool name {tool.name!r}; tool names must be unique across the catalog")
                seen.add(tool.name)
        return self

    def domain(self, name: str) -> Domain:
        return next(d for d in self.domains if d.name == name)

    def tool_domain(self, tool_name: str) -> Domain:
        return next(d for d in self.domains if any(t.name == tool_name for t in d.tools))


def check_generation(catalog: Catalog) -> None:
    """Raise ValueError (one sentence) if scenarios cannot be generated from `catalog`: every tool argument needs
    values to draw goals from, an enum needs values, and an entity slot two (an ambiguous reference is two matching
    entities). Not a model validator: catalogs that only describe recorded dialogues (SGD import) need no pools."""
    for domain in catalog.domains:
        arguments = {s for tool in domain.tools for s in tool.slots}
        for slot in domain.slots:
            if slot.enum is not None and not slot.enum:
                raise ValueError(f"slot {slot.name!r} of domain {domain.name!r} has an empty enum; list its values or "
                                 "drop the enum for free text")
            if slot.name in arguments and not slot.pool():
                raise ValueError(f"slot {slot.name!r} of domain {domain.name!r} has no values to draw goals from; give "
                                 "it \"values\" or an \"enum\"")
        if domain.entity_slot and len(set(domain.slot(domain.entity_slot).pool())) < 2:
            raise ValueError(f"entity slot {domain.entity_slot!r} of domain {domain.name!r} needs at least two values")
