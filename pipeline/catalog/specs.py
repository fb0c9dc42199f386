"""Derive OpenAI function specs from catalog tools."""

from __future__ import annotations

from typing import Any

from speakrl.schemas.catalog import Catalog, Domain, SlotSpec, ToolDef
from speakrl.schemas.dialogue import FunctionSpec, ToolSpec

_JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


def slot_schema(slot: SlotSpec, default: Any = None, with_default: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _JSON_TYPES[slot.type], "description": slot.description}
    if slot.enum:
        schema["enum"] = list(slot.enum)
    if with_default:
        schema["default"] = default
        if default is None:  # "no preference": the parameter may be null (SGD's "dontcare")
            schema["type"] = [schema["type"], "null"]
            if slot.enum:
                schema["enum"] = [*slot.enum, None]
    return schema


def tool_spec(domain: Domain, tool: ToolDef) -> ToolSpec:
    """The OpenAI function spec of one tool: required slots, enums for categorical ones, defaults for optional ones."""
    properties = {name: slot_schema(domain.slot(name)) for name in tool.required}
    for name, default in tool.optional.items():
        properties[name] = slot_schema(domain.slot(name), default, with_default=True)
    parameters = {
        "type": "object",
        "properties": properties,
        "required": list(tool.required),
        "additionalProperties": False,
    }
    return ToolSpec(function=FunctionSpec(name=tool.name, description=tool.description, parameters=parameters))


def domain_specs(domain: Domain) -> list[ToolSpec]:
    return [tool_spec(domain, t) for t in domain.tools]


_SPECS_CACHE: dict[int, tuple[Catalog, dict[str, list[ToolSpec]]]] = {}


def catalog_specs(catalog: Catalog) -> dict[str, list[ToolSpec]]:
    """Tool specs per domain (cached: the catalog is immutable during a run)."""
    cached = _SPECS_CACHE.get(id(catalog))
    if cached is None or cached[0] is not catalog:
        cached = (catalog, {d.name: domain_specs(d) for d in catalog.domains})
        _SPECS_CACHE[id(catalog)] = cached
    return cached[1]


def coerce(slot: SlotSpec, value: Any) -> Any:
    """A pool value (pools hold strings) in the slot's JSON type."""
    if value is None:
        return None
    if slot.type == "integer":
        return int(value)
    if slot.type == "number":
        return float(value)
    if slot.type == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in {"true", "yes", "1"}
    return str(value)
