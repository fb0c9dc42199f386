"""Scenarios stage: sample a tool and a hidden goal, then inject an ambiguity (or none, for controls).

Every scenario is a pure function of (run seed, scenario index, catalog), so a resumed run regenerates
exactly the scenarios an uninterrupted one would.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from speakrl.pipeline.catalog.sim import Simulator, date_span, order_span, separate_ends, stable_seed, trip_ends
from speakrl.pipeline.catalog.specs import coerce
from speakrl.pipeline.checks import normalize
from speakrl.pipeline.quality import parse_date
from speakrl.pipeline.stages import phrasing
from speakrl.schemas.catalog import Catalog, Domain, SlotSpec, ToolDef
from speakrl.schemas.config import RunConfig
from speakrl.schemas.dialogue import AMBIGUITY_TYPES, Ambiguity, Scenario

logger = logging.getLogger(__name__)

MAX_DRAWS = 20


@dataclass(frozen=True)
class Plan:
    """What a scenario can be built on: a tool, and the slots an ambiguity type may use there."""

    domain: Domain
    tool: ToolDef
    slots: tuple[str, ...]
    search: ToolDef | None = None  # for ambiguous references: the search that finds the candidates


def _reference_search(domain: Domain, tool: ToolDef) -> ToolDef | None:
    """A search of `domain` whose results name entities, usable before `tool` (which takes the entity)."""
    if not domain.entity_slot or tool.kind == "search" or domain.entity_slot not in tool.required:
        return None
    for search in domain.tools:
        if search.kind == "search" and domain.entity_slot in search.result_slots and search.required:
            if all(s in domain.attributes for s in search.required):
                return search
    return None


def _can_be_vague(slot: SlotSpec) -> bool:
    """A slot can be said vaguely when the catalog gives phrases, or its values are times, dates or head counts."""
    if slot.vague or slot.vague_for:
        return True
    sample = slot.pool()[:1]
    return bool(sample) and bool(phrasing.derived_vague(slot, coerce(slot, sample[0]), datetime(2026, 1, 1)))


def reference_now(rng: random.Random, domain: Domain, goal: dict[str, Any]) -> datetime:
    """The scenario's "now": a few days to weeks before the earliest date in the goal (so relative phrases like
    "next week" mean something), else a day of 2026; a time of day between 7 am and 10 pm."""
    days = [d for v in goal.values() if isinstance(v, str) and (d := parse_date(v, None))]
    day = min(days) - timedelta(days=rng.randint(1, 40)) if days else date(2026, 1, 1) + timedelta(days=rng.randint(0, 364))
    return datetime(day.year, day.month, day.day, rng.randint(7, 21), rng.choice(range(0, 60, 5)))


def build_plans(catalog: Catalog) -> dict[str, list[Plan]]:
    """For each ambiguity type (and "none"), the tools it can be injected into."""
    plans: dict[str, list[Plan]] = {k: [] for k in ("none", *AMBIGUITY_TYPES)}
    for domain in catalog.domains:
        for tool in domain.tools:
            plans["none"].append(Plan(domain, tool, ()))
            if len(domain.tools) > 1:  # the tool is withheld; the others are what the assistant can offer
                plans["unsupported"].append(Plan(domain, tool, ()))
            if tool.required:
                plans["missing_slot"].append(Plan(domain, tool, tuple(tool.required)))
            vague = tuple(s for s in tool.required if s != domain.entity_slot and _can_be_vague(domain.slot(s)))
            if vague:
                plans["underspecified_value"].append(Plan(domain, tool, vague))
            invalid = tuple(s for s in tool.slots if domain.slot(s).enum and domain.slot(s).invalid)
            if invalid:
                plans["invalid_value"].append(Plan(domain, tool, invalid))
            conflicting = tuple(s for s in tool.slots if len(domain.slot(s).enum or ()) >= 2)
            if conflicting:
                plans["conflicting_constraints"].append(Plan(domain, tool, conflicting))
            search = _reference_search(domain, tool)
            if search:
                plans["ambiguous_reference"].append(Plan(domain, tool, (domain.entity_slot,), search))
    return plans


def search_filters(search: ToolDef, row: dict[str, Any]) -> dict[str, Any]:
    """Arguments of a search that finds `row`: its required filters, plus optional ones that differ from the default."""
    filters = {s: row[s] for s in search.required}
    filters.update({s: row[s] for s, default in search.optional.items()
                    if s in row and normalize(row[s]) != normalize(default)})
    return filters


def _row_for(sim: Simulator, domain: Domain, rng: random.Random, min_matches: int, search: ToolDef | None):
    """A database row; with a search, one whose search filters match at least `min_matches` rows."""
    rows = sim.databases[domain.name]
    if not rows:
        return {}
    for _ in range(MAX_DRAWS):
        row = rng.choice(rows)
        if search is None:
            return row
        result = sim.execute(search.name, search_filters(search, row))
        shown = [r.get(domain.entity_slot) for r in result.get("results", [])]
        if len(shown) >= min_matches and row[domain.entity_slot] in shown:  # the user can point at it
            return row
    return None


def draw_goal(sim: Simulator, plan: Plan, rng: random.Random, row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hidden goal (every argument of the final call) and which optional slots stay at their default."""
    domain, tool = plan.domain, plan.tool
    goal: dict[str, Any] = {}
    for name in tool.required:
        slot = domain.slot(name)
        goal[name] = row[name] if name in row else coerce(slot, rng.choice(slot.pool()))
    ends = trip_ends(tool.required)
    if ends and ends[1] not in row:  # a trip does not end where it starts ("from Davis to Davis")
        goal = separate_ends(goal, ends, [coerce(domain.slot(ends[1]), v) for v in domain.slot(ends[1]).pool()], rng)
    kept_default: dict[str, Any] = {}
    for name, default in tool.optional.items():
        slot = domain.slot(name)
        if name in row and tool.kind == "search":
            value = row[name]  # a search filter must match the entity, default or not
        elif rng.random() < 0.5 or not slot.pool():
            value = default
        else:
            value = row.get(name, coerce(slot, rng.choice(slot.pool())))
        goal[name] = value
        if normalize(value) == normalize(default):  # a null default ("no preference") is kept by saying nothing
            kept_default[name] = value
    span = date_span(goal)
    if span:
        pools = {k: [coerce(domain.slot(k), v) for v in domain.slot(k).pool()] for k in span}
        goal = order_span(goal, span, pools, rng, fixed=[k for k in span if k in row])
    return goal, kept_default


def sample_goal(sim: Simulator, domain: Domain, tool: ToolDef, rng: random.Random) -> dict[str, Any]:
    """A goal for `tool` alone: entity and attribute values from one database row (so the entity exists and a
    search finds it), every other value from the slot's pool or the declared default."""
    rows = sim.databases[domain.name]
    return draw_goal(sim, Plan(domain, tool, ()), rng, rng.choice(rows) if rows else {})[0]


def make_scenario(cfg: RunConfig, plans: dict[str, list[Plan]], sim: Simulator, index: int) -> Scenario:
    """Scenario number `index` of the run."""
    seed = stable_seed(cfg.seed, index)
    rng = random.Random(seed)
    types = [t for t, w in cfg.mix.items() if w > 0 and plans.get(t)]
    kind = rng.choices(types, weights=[cfg.mix[t] for t in types])[0]
    for _ in range(MAX_DRAWS):
        plan = rng.choice(plans[kind])
        row = _row_for(sim, plan.domain, rng, 2 if plan.search else 1, plan.search)
        if row is not None:
            break
    else:  # pragma: no cover - only with a degenerate catalog
        raise RuntimeError(f"no usable database row for {kind}")
    goal, kept_default = draw_goal(sim, plan, rng, row)
    domain, tool = plan.domain, plan.tool
    # Values the user states up front: everything but defaults (unsaid is fine: the tool fills them in).
    stated = {k: v for k, v in goal.items() if k not in kept_default}
    ambiguities: list[Ambiguity] = []
    flow = [tool.name]
    search_args: dict[str, Any] = {}
    now = reference_now(rng, domain, goal)

    if kind == "missing_slot":
        k = 1
        if len(plan.slots) > 1 and rng.random() < cfg.multi_slot_rate:
            k = rng.randint(2, min(3, len(plan.slots)))
        for name in rng.sample(plan.slots, k):
            del stated[name]
            ambiguities.append(Ambiguity(type="missing_slot", slot=name, detail="not mentioned"))
    elif kind == "underspecified_value":
        # a vague phrase is a view of the hidden value, never independent of it
        usable = [n for n in plan.slots if phrasing.vague_phrases(domain.slot(n), goal[n], now)]
        name = rng.choice(usable or list(plan.slots))
        vague = rng.choice(phrasing.vague_phrases(domain.slot(name), goal[name], now) or ["whatever works best"])
        del stated[name]
        ambiguities.append(Ambiguity(type="underspecified_value", slot=name, detail=vague))
    elif kind == "invalid_value":
        name = rng.choice(plan.slots)
        slot = domain.slot(name)
        stated.pop(name, None)
        if goal.get(name) is None:  # a "no preference" default: the user does want a value once asked
            goal[name] = coerce(slot, rng.choice(slot.pool()))
        bad = rng.choice(slot.invalid)
        ambiguities.append(Ambiguity(type="invalid_value", slot=name, detail=bad, candidates=list(slot.enum)))
    elif kind == "conflicting_constraints":
        name = rng.choice(plan.slots)
        slot = domain.slot(name)
        if goal.get(name) is None:
            goal[name] = coerce(slot, rng.choice(slot.pool()))
        other = rng.choice([v for v in slot.enum if normalize(v) != normalize(goal[name])])
        stated.pop(name, None)
        said = phrasing.conflict_phrase(rng, domain, name, str(goal[name]), other)  # leans, if at all, to the goal
        pair = [str(goal[name]), other]
        rng.shuffle(pair)
        ambiguities.append(Ambiguity(type="conflicting_constraints", slot=name, detail=said, candidates=pair))
    elif kind == "unsupported":
        flow, goal = [], {}
        offered = [t.name for t in domain.tools if t.name != tool.name]
        ambiguities.append(Ambiguity(type="unsupported", slot="", detail=f"no offered tool can {phrasing.intent(tool)}",
                                     candidates=offered))
    elif kind == "ambiguous_reference":
        search = plan.search
        assert search is not None
        search_args = search_filters(search, row)
        flow = [search.name, tool.name]
        matches = sim.execute(search.name, search_args)["results"]
        name = domain.entity_slot
        stated.pop(name)
        for k in search_args:  # filters the user gives so the assistant can search
            stated.setdefault(k, search_args[k])
            if k in tool.optional:  # said once, it holds for the booking too: "3 rooms" is not back to the default 1
                goal[k] = stated[k]
        ambiguities.append(Ambiguity(type="ambiguous_reference", slot=name, detail=phrasing.reference_detail(domain, search_args),
                                     candidates=[m[name] for m in matches[:5]]))

    # Some users hold back an optional preference and volunteer it in their first reply.
    if ambiguities and kind != "unsupported" and rng.random() < cfg.volunteer_rate:
        ambiguous = {a.slot for a in ambiguities}
        extra = [k for k in tool.optional if k in stated and k not in ambiguous]
        if extra:
            held = rng.choice(extra)
            stated.pop(held)

    opening = phrasing.opening(rng, domain, tool, stated, ambiguities, search_args)
    unsupported = kind == "unsupported"
    persona, style = phrasing.persona(rng)
    return Scenario(
        id=f"s{cfg.seed}-{index:07d}",
        seed=seed,
        domain=domain.name,
        tool=tool.name,
        flow=flow,
        goal=goal,
        stated=stated,
        search_args=search_args,
        ambiguities=ambiguities,
        needs_clarification=bool(ambiguities) and not unsupported,
        opening=phrasing.styled(rng, opening, style, now.hour),
        persona=persona,
        style=style,
        now=now.isoformat(timespec="minutes"),
    )


def run(cfg: RunConfig, catalog: Catalog, indices: Iterable[int], sim: Simulator | None = None) -> Iterator[Scenario]:
    """Scenarios for the given indices of the run."""
    sim = sim or Simulator(catalog)
    plans = build_plans(catalog)
    missing = [t for t, w in cfg.mix.items() if w > 0 and not plans.get(t)]
    if missing:
        logger.warning("the catalog supports no scenario of type(s) %s; their share goes to the others", missing)
    for index in indices:
        yield make_scenario(cfg, plans, sim, index)
