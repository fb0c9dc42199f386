"""Simulated tool backends: a small seeded in-memory database per domain, so tool results are real data.

Results depend only on the catalog and the call's arguments, never on the run: replaying a gold call
always returns the same result (the validator's execution-consistency check relies on this).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import ChainMap
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import fastjsonschema

from speakrl.pipeline.catalog.specs import catalog_specs, coerce
from speakrl.schemas.catalog import Catalog, Domain, SlotSpec, ToolDef

ROWS_PER_DOMAIN = 60
MAX_RESULTS = 5


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # 63 bits: fits an int64 column


def _norm(value: Any) -> str:
    return str(value).strip().lower()


def build_database(domain: Domain) -> list[dict[str, Any]]:
    """Entities of a domain, generated whole and in pairs that share every searchable attribute but the name, so a
    search can match two entities (the source of ambiguous references).

    An entity keeps the attributes the catalog fixes for it (`Domain.entities`: a car model's class and seats, a
    flight's airline), so it is paired only with entities that agree on the searchable ones."""
    if not domain.entity_slot:
        return []
    rng = random.Random(stable_seed("db", domain.name))
    names = list(dict.fromkeys(domain.slot(domain.entity_slot).pool()))
    rng.shuffle(names)
    searchable = {s for t in domain.tools if t.kind == "search" for s in t.slots}

    def draw(attrs: list[str], known: Mapping[str, Any] | None = None) -> dict[str, Any]:
        drawn: dict[str, Any] = {}
        for a in attrs:  # in order, each from the values that fit those already known (a film's rating its genre)
            pool = _pool_given(domain.slot(a), ChainMap(drawn, known or {}))
            if pool:
                drawn[a] = coerce(domain.slot(a), rng.choice(pool))
        return drawn

    def fixed(name: str) -> dict[str, Any]:
        return {k: coerce(domain.slot(k), v) for k, v in domain.entities.get(name, {}).items()}

    groups: dict[tuple, list[str]] = {}
    for name in names[:ROWS_PER_DOMAIN]:
        key = tuple(sorted((k, str(v)) for k, v in fixed(name).items() if k in searchable))
        groups.setdefault(key, []).append(name)
    chunks = [members[i: i + 2] for members in groups.values() for i in range(0, len(members), 2)]
    pairs = [c for c in chunks if len(c) == 2] + [c for c in chunks if len(c) == 1]  # rows 2k and 2k+1 are a pair
    others = [a for a in domain.attributes if a != domain.entity_slot]
    rows: list[dict[str, Any]] = []
    span = date_span(others)
    pools = {k: [coerce(domain.slot(k), v) for v in domain.slot(k).pool()] for k in span or ()}
    for pair in pairs:
        own = fixed(pair[0])
        shared = order_span(draw([a for a in others if a in searchable and a not in own]), span, pools, rng)
        for name in pair:
            own = fixed(name)
            rest = draw([a for a in others if a not in searchable and a not in own], ChainMap(own, shared))
            row = {domain.entity_slot: name, **shared, **rest, **own}
            row = order_span(row, span, pools, rng, fixed=[k for k in (span or ()) if k in own or k in shared])
            rows.append(_arrival_after_departure(row, rng))
        ends = trip_ends(others)
        if ends and ends[0] in shared and ends[1] in shared:  # the pair shares its route: fix it for both rows
            fixed_route = separate_ends(shared, ends, [coerce(domain.slot(ends[1]), v) for v in domain.slot(ends[1]).pool()], rng)
            for row in rows[-len(pair):]:
                row.update({k: fixed_route[k] for k in ends})
    return distinct_values(rows, [s.name for s in domain.slots if s.unique])


def distinct_values(rows: list[dict[str, Any]], slots: Iterable[str]) -> list[dict[str, Any]]:
    """Entities never share a value of the `unique` slots (`SlotSpec.unique`): a value already taken gets other last
    two digits ("415-555-0134" stays a fictional 555-01XX number, "ending 2847" an account ending).

    >>> rows = [{"phone": "415-555-0134"}, {"phone": "415-555-0134"}, {"phone": "408-555-0134"}]
    >>> [r["phone"] for r in distinct_values(rows, ["phone"])]
    ['415-555-0134', '415-555-0171', '408-555-0134']
    """
    for slot in slots:
        taken: set[str] = set()
        for row in rows:
            value = row.get(slot)
            m = _LAST_TWO_DIGITS.fullmatch(value) if isinstance(value, str) else None
            if m is None:
                continue
            head, last = m.group(1), int(m.group(2))
            for _ in range(100):  # a step of 37 visits all 100 endings, and spreads neighbours apart
                if f"{head}{last:02d}" not in taken:
                    break
                last = (last + 37) % 100
            row[slot] = f"{head}{last:02d}"
            taken.add(row[slot])
    return rows


_LAST_TWO_DIGITS = re.compile(r"(.*)(\d\d)", re.DOTALL)


_START_WORDS = {"from", "origin", "pickup", "departure", "leaving"}
_END_WORDS = {"to", "destination", "dropoff", "arrival", "going"}


def trip_ends(names: Iterable[str]) -> tuple[str, str] | None:
    """The slots holding a trip's two ends ("from"/"to", "origin_city"/"destination_city"), if there are both.

    >>> trip_ends(["from", "to", "date_of_journey"]), trip_ends(["origin_city", "destination_city"]), trip_ends(["city"])
    (('from', 'to'), ('origin_city', 'destination_city'), None)
    """
    names = list(names)
    start = next((n for n in names if set(n.lower().split("_")) & _START_WORDS and "time" not in n and "date" not in n), None)
    end = next((n for n in names if set(n.lower().split("_")) & _END_WORDS and "time" not in n and "date" not in n), None)
    return (start, end) if start and end else None


def separate_ends(values: dict[str, Any], ends: tuple[str, str] | None, pool: list[Any], rng: random.Random) -> dict[str, Any]:
    """A trip does not end where it starts: redraw the end from `pool` when it equals the start."""
    if not ends or ends[0] not in values or ends[1] not in values:
        return values
    start, end = ends
    others = [v for v in pool if _norm(v) != _norm(values[start])]
    if _norm(values[start]) == _norm(values[end]) and others:
        values = {**values, end: rng.choice(others)}
    return values


_FIRST_DAY = {"pickup", "start", "departure", "leaving", "outbound", "in", "begin"}
_LAST_DAY = {"dropoff", "return", "end", "out", "inbound", "until"}


def date_span(names: Iterable[str]) -> tuple[str, str] | None:
    """The date slots holding a booking's first and last day, if there are both.

    >>> date_span(["pickup_date", "dropoff_date"]), date_span(["check_in_date", "check_out_date"]), date_span(["date"])
    (('pickup_date', 'dropoff_date'), ('check_in_date', 'check_out_date'), None)
    """
    dates = [n for n in names if "date" in n.lower().split("_")]
    start = next((n for n in dates if set(n.lower().split("_")) & _FIRST_DAY), None)
    end = next((n for n in dates if set(n.lower().split("_")) & _LAST_DAY and n != start), None)
    return (start, end) if start and end else None


def order_span(values: dict[str, Any], span: tuple[str, str] | None, pools: dict[str, list[Any]], rng: random.Random,
               fixed: Iterable[str] = ()) -> dict[str, Any]:
    """A booking does not end before it starts (a car dropped off the day before its pickup), and a stay checks out
    after the day it checks in: swap two dates drawn apart, or redraw the one not `fixed` (taken from an entity)."""
    from speakrl.pipeline.quality import parse_date

    if not span or span[0] not in values or span[1] not in values:
        return values
    start, end = span
    first, last = parse_date(values[start], None), parse_date(values[end], None)
    overnight = "out" in end.lower().split("_")  # a car can come back the same day; a hotel stay is a night at least
    if first is None or last is None or last > first or (last == first and not overnight):
        return values
    fixed = set(fixed)
    if {start, end} <= fixed:  # both are the entity's own: a search must still find it
        return values
    if last < first and not fixed & {start, end}:
        return {**values, start: values[end], end: values[start]}
    free = end if end not in fixed else start
    keep = first if free == end else last
    fits = [v for v in pools.get(free, []) if (d := parse_date(v, None)) and ((d > keep) if free == end else (d < keep))]
    return {**values, free: rng.choice(fits)} if fits else values


def _clock(minutes: int) -> str:
    hour, minute = divmod(minutes, 60)
    return f"{hour % 12 or 12}:{minute:02d} {'am' if hour < 12 else 'pm'}"


def _arrival_after_departure(row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A trip's arrival follows its departure by a flight's length (70 minutes to 6 hours, the same day), rather
    than being drawn on its own (a 7:45 am departure arriving at 6:10 am)."""
    from speakrl.pipeline.quality import parse_time

    start = parse_time(row.get("departure_time", "")) if "arrival_time" in row else None
    if start is None:
        return row
    leave = start[0] * 60 + start[1]
    length = min(rng.randrange(70, 361, 5), 23 * 60 + 55 - leave)
    return {**row, "arrival_time": _clock(leave + max(length, 5))}


class CompiledSchemas(Mapping):
    """Tool name -> its arguments' JSON Schema compiled by fastjsonschema, each compiled when first used: compiling
    every tool of the built-in catalog up front costs ~0.15 s, in each worker process before its first row."""

    def __init__(self, schemas: Mapping[str, dict[str, Any]]):
        self._schemas, self._compiled = dict(schemas), {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._compiled:
            self._compiled[name] = fastjsonschema.compile(self._schemas[name])
        return self._compiled[name]

    def __contains__(self, name: object) -> bool:  # without compiling
        return name in self._schemas

    def __iter__(self) -> Iterator[str]:
        return iter(self._schemas)

    def __len__(self) -> int:
        return len(self._schemas)


def argument_error(validators: Mapping[str, Any], tool_name: str, args: Any) -> str | None:
    """Why a call's arguments break its tool's compiled JSON Schema (`validators[tool_name]`), or None when valid."""
    if tool_name not in validators:
        return f"unknown tool {tool_name!r}"
    try:  # on a copy: validating fills the schema's defaults into the dict it is given, and the caller's stays as sent
        validators[tool_name](dict(args) if isinstance(args, dict) else args)
    except fastjsonschema.JsonSchemaValueException as e:
        return f"invalid arguments: {_schema_message(e)}"
    return None


def _schema_message(e: fastjsonschema.JsonSchemaValueException) -> str:
    """fastjsonschema's message, with unexpected properties in sorted order: it names them as a Python set, whose
    order changes with each process's hash seed, so the same call would read differently from run to run (in a tool
    result an evaluated policy reads next, or a rejection's reason)."""
    definition = e.definition if isinstance(e.definition, dict) else {}
    if e.rule == "additionalProperties" and isinstance(e.value, dict) and "patternProperties" not in definition:
        extra = sorted(k for k in e.value if k not in definition.get("properties", {}))
        return f"{e.name} must not contain {{{', '.join(map(repr, extra))}}} properties"
    return e.message


class Simulator:
    """Executes catalog tools against the seeded databases."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.databases = {d.name: build_database(d) for d in catalog.domains}
        self._normalized = {name: [{k: _norm(v) for k, v in row.items()} for row in rows]
                            for name, rows in self.databases.items()}
        specs = catalog_specs(catalog)
        # Compiled validators: checking arguments is on the hot path of generation and validation.
        self._validators = CompiledSchemas({spec.name: spec.function.parameters
                                            for domain_specs in specs.values() for spec in domain_specs})
        self._tools = {t.name: (d, t) for d in catalog.domains for t in d.tools}
        self._indexes: dict[tuple[str, str], dict[str | None, list[int]]] = {}

    def search(self, domain: Domain, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Database rows matching every filter on an attribute (case-insensitive), in database order."""
        keys = [(k, _norm(v)) for k, v in filters.items() if k in domain.attributes and v is not None]  # null: any
        rows, normalized = self.databases[domain.name], self._normalized[domain.name]
        if not keys:
            return list(rows)
        (first, value), rest = keys[0], keys[1:]
        return [rows[i] for i in self._index(domain.name, first).get(value, ())
                if all(normalized[i].get(k) == v for k, v in rest)]

    def _index(self, domain: str, attribute: str) -> dict[str | None, list[int]]:
        """The positions of a domain's rows by their normalized value of `attribute`, made at its first search:
        generation searches on every turn, and a scan of every row made searching ~5% of it."""
        index = self._indexes.get((domain, attribute))
        if index is None:
            index = self._indexes[domain, attribute] = {}
            for i, norm in enumerate(self._normalized[domain]):
                index.setdefault(norm.get(attribute), []).append(i)
        return index

    def find(self, domain: Domain, name: Any) -> dict[str, Any] | None:
        rows = self.search(domain, {domain.entity_slot: name}) if domain.entity_slot else []
        return rows[0] if rows else None

    def argument_error(self, tool_name: str, args: Any) -> str | None:
        """Why a call's arguments break the tool's JSON Schema, or None when they are valid."""
        return argument_error(self._validators, tool_name, args)

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
        rng = None  # made at the first derived value: most results need none, and seeding costs more than the rest
        out: dict[str, Any] = {}
        for name in tool.result_slots or tool.slots:
            if args.get(name) is not None:  # a result agrees with what was asked for
                out[name] = args[name]
            elif name in row:
                out[name] = row[name]
            else:
                pool = _pool_given(domain.slot(name), ChainMap(out, args, row))
                if pool:
                    rng = rng or random.Random(stable_seed(tool.name, sorted((k, str(v)) for k, v in args.items()),
                                                           row.get(domain.entity_slot or "")))
                    out[name] = coerce(domain.slot(name), rng.choice(pool))
        return out


def _pool_given(slot: SlotSpec, known: Mapping[str, Any]) -> list[str]:
    """The values `slot` may take in a result whose other values are `known` (`SlotSpec.values_for`).

    >>> temperature = SlotSpec(name="temperature", description="", values=["55 degrees"],
    ...                        values_for={"units": {"kelvin": ["286 kelvin"]}})
    >>> _pool_given(temperature, {"units": "kelvin"}), _pool_given(temperature, {"units": "fahrenheit"})
    (['286 kelvin'], ['55 degrees'])
    """
    for key, pools in slot.values_for.items():
        if key in known and str(known[key]) in pools:
            return pools[str(known[key])]
    return slot.pool()
