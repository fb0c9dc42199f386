"""Simulated tool backends: a small seeded in-memory database per domain, so tool results are real data.

Results depend only on the catalog and the call's arguments, never on the run: replaying a gold call
always returns the same result (the validator's execution-consistency check relies on this).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import fastjsonschema

from speakrl.pipeline.catalog.specs import catalog_specs, coerce
from speakrl.schemas.catalog import Catalog, Domain, ToolDef

ROWS_PER_DOMAIN = 60
MAX_RESULTS = 5


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # 63 bits: fits an int64 column


def _norm(value: Any) -> str:
    return str(value).strip().lower()


def build_database(domain: Domain) -> list[dict[str, Any]]:
    """Entities of a domain, generated in pairs that share every attribute but the name, so a search can
    match two entities (the source of ambiguous references)."""
    if not domain.entity_slot:
        return []
    rng = random.Random(stable_seed("db", domain.name))
    names = list(dict.fromkeys(domain.slot(domain.entity_slot).pool()))
    rng.shuffle(names)
    searchable = {s for t in domain.tools if t.kind == "search" for s in t.slots}

    def draw(attrs: list[str]) -> dict[str, Any]:
        return {a: coerce(domain.slot(a), rng.choice(domain.slot(a).pool())) for a in attrs if domain.slot(a).pool()}

    others = [a for a in domain.attributes if a != domain.entity_slot]
    shared_attrs = [a for a in others if a in searchable]
    own_attrs = [a for a in others if a not in searchable]
    rows: list[dict[str, Any]] = []
    shared: dict[str, Any] = {}
    for i, name in enumerate(names[:ROWS_PER_DOMAIN]):
        if i % 2 == 0:
            shared = draw(shared_attrs)
        rows.append({domain.entity_slot: name, **shared, **draw(own_attrs)})
    return rows


class Simulator:
    """Executes catalog tools against the seeded databases."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.databases = {d.name: build_database(d) for d in catalog.domains}
        self._normalized = {name: [{k: _norm(v) for k, v in row.items()} for row in rows]
                            for name, rows in self.databases.items()}
        specs = catalog_specs(catalog)
        # Compiled validators: checking arguments is on the hot path of generation and validation.
        self._validators = {
            spec.name: fastjsonschema.compile(spec.function.parameters)
            for domain_specs in specs.values()
            for spec in domain_specs
        }
        self._tools = {t.name: (d, t) for d in catalog.domains for t in d.tools}

    def search(self, domain: Domain, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Database rows matching every filter on an attribute (case-insensitive)."""
        keys = [(k, _norm(v)) for k, v in filters.items() if k in domain.attributes and v is not None]  # null: any
        rows, normalized = self.databases[domain.name], self._normalized[domain.name]
        return [row for row, norm in zip(rows, normalized) if all(norm.get(k) == v for k, v in keys)]

    def find(self, domain: Domain, name: Any) -> dict[str, Any] | None:
        rows = self.search(domain, {domain.entity_slot: name}) if domain.entity_slot else []
        return rows[0] if rows else None

    def argument_error(self, tool_name: str, args: Any) -> str | None:
        """Why a call's arguments break the tool's JSON Schema, or None when they are valid."""
        if tool_name not in self._tools:
            return f"unknown tool {tool_name!r}"
        try:
            self._validators[tool_name](args)
        except fastjsonschema.JsonSchemaValueException as e:
            return f"invalid arguments: {e.message}"
        return None

    def execute(self, tool_name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run a tool call; invalid calls return an error result, as a real API would."""
        error = self.argument_error(tool_name, args)
        if error:
            return {"error": error}
        domain, tool = self._tools[tool_name]
        full = {**tool.optional, **args}
        if tool.kind == "search":
            return self._run_search(domain, tool, full)
        return self._run_single(domain, tool, full)

    def _run_search(self, domain: Domain, tool: ToolDef, args: dict[str, Any]) -> dict[str, Any]:
        rows = self.search(domain, args)[:MAX_RESULTS]
        results = [self._project(domain, tool, args, row) for row in rows]
        return {"count": len(results), "results": results}  # count is what is listed

    def _run_single(self, domain: Domain, tool: ToolDef, args: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if domain.entity_slot and domain.entity_slot in args:
            found = self.find(domain, args[domain.entity_slot])
            if found is None:
                return {"error": f"no {domain.entity or 'entity'} named {args[domain.entity_slot]!r}"}
            row = found
        result = self._project(domain, tool, args, row)
        if tool.kind == "action":
            code = stable_seed(tool.name, sorted((k, str(v)) for k, v in args.items())) % 10**8
            return {"status": "confirmed", "confirmation_id": f"{tool.name[:3].upper()}-{code:08d}", **result}
        return result

    def _project(self, domain: Domain, tool: ToolDef, args: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
        """The tool's result slots: from the entity row, else the arguments, else a value derived from the arguments."""
        rng = random.Random(stable_seed(tool.name, sorted((k, str(v)) for k, v in args.items()), row.get(domain.entity_slot or "")))
        out: dict[str, Any] = {}
        for name in tool.result_slots or tool.slots:
            if args.get(name) is not None:  # a result agrees with what was asked for
                out[name] = args[name]
            elif name in row:
                out[name] = row[name]
            else:
                pool = domain.slot(name).pool()
                if pool:
                    out[name] = coerce(domain.slot(name), rng.choice(pool))
        return out
