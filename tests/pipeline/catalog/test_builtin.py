"""The built-in catalog (schemas/tools/*.json): size, well-formed specs, distinguishable values, executable tools."""

from __future__ import annotations

import random

import jsonschema
import pytest

from speakrl.pipeline.stages.scenarios import _can_be_vague

from speakrl.pipeline.catalog import load_catalog
from speakrl.pipeline.catalog.sim import Simulator
from speakrl.pipeline.stages.scenarios import sample_goal as goal_args
from speakrl.pipeline.catalog.specs import catalog_specs, coerce
from speakrl.pipeline.checks import mentioned
from speakrl.schemas.catalog import Catalog, Domain, ToolDef

CATALOG = load_catalog("builtin")
SIM = Simulator(CATALOG)
TOOLS = [(d, t) for d in CATALOG.domains for t in d.tools]


def test_size_and_unique_names() -> None:
    assert len(CATALOG.domains) >= 12
    names = [t.name for _, t in TOOLS]
    assert len(names) >= 48
    assert len(names) == len(set(names))
    assert len({d.name for d in CATALOG.domains}) == len(CATALOG.domains)
    assert all(d.source == "builtin" for d in CATALOG.domains)


@pytest.mark.parametrize("domain", CATALOG.domains, ids=lambda d: d.name)
def test_domain_content(domain: Domain) -> None:
    used = {s for t in domain.tools for s in [*t.slots, *t.result_slots]} | set(domain.attributes)
    assert {s.name for s in domain.slots} <= used, "every declared slot is used by a tool or the database"
    if domain.entity_slot:
        names = domain.slot(domain.entity_slot).pool()
        assert 30 <= len(set(names)) <= 60, "30+ entities, all of them in the simulated database (60 rows)"
        assert any(t.kind == "search" for t in domain.tools)
        assert any(domain.entity_slot in t.required for t in domain.tools if t.kind == "action")
    for slot in domain.slots:
        assert slot.mention and "{value}" in slot.mention, slot.name
        if slot.type == "boolean":
            assert sorted(slot.pool()) == ["False", "True"], slot.name
        elif slot.enum:
            assert len(slot.enum) >= 3 and slot.invalid, f"{slot.name}: enums need 3+ options and invalid values"
            assert not set(slot.invalid) & set(slot.enum), slot.name
        elif slot.name != domain.entity_slot:
            assert len(set(slot.values)) >= 6, slot.name
        for value in slot.pool():
            coerce(slot, value)  # integer/number pools must parse
    for tool in domain.tools:
        for name, default in tool.optional.items():
            slot = domain.slot(name)
            assert coerce(slot, default) == default, f"{tool.name}.{name}: default has the slot's type"
            if slot.enum:
                assert default in slot.enum


@pytest.mark.parametrize("domain", CATALOG.domains, ids=lambda d: d.name)
def test_values_are_distinguishable(domain: Domain) -> None:
    """No value is said inside another value, and no vague or invalid phrasing says a real value, so string
    grounding can tell which value a user gave."""
    values = {(s.name, v) for s in domain.slots for v in s.pool()}
    phrases = {(s.name, v) for s in domain.slots for v in [*s.vague, *s.invalid]}
    clashes = []
    for slot_a, a in values:
        if domain.slot(slot_a).type == "boolean":
            continue
        for slot_b, b in values | phrases:
            if a.lower() != b.lower() and mentioned(a, [b]):
                clashes.append(f"{slot_a}={a!r} in {slot_b}={b!r}")
    assert not clashes, clashes


@pytest.mark.parametrize("domain", CATALOG.domains, ids=lambda d: d.name)
def test_vague_slots_covered(domain: Domain) -> None:
    """Dates, times, places and counts can all be underspecified."""
    for slot in domain.slots:
        kind_words = ("date", "time", "city", "area", "location", "destination", "riders", "tickets", "travelers", "passengers", "party")
        if any(w in slot.name for w in kind_words) and slot.name in {s for t in domain.tools for s in t.slots}:
            assert _can_be_vague(slot), f"{domain.name}.{slot.name} needs vague phrasings"


@pytest.mark.parametrize(("domain", "tool"), TOOLS, ids=lambda x: x.name)
def test_spec_is_valid_json_schema(domain: Domain, tool: ToolDef) -> None:
    spec = next(s for s in catalog_specs(CATALOG)[domain.name] if s.name == tool.name)
    jsonschema.Draft202012Validator.check_schema(spec.function.parameters)
    assert spec.function.parameters["required"] == tool.required


@pytest.mark.parametrize(("domain", "tool"), TOOLS, ids=lambda x: x.name)
def test_tool_executes_on_pool_values(domain: Domain, tool: ToolDef) -> None:
    rng = random.Random(tool.name)
    for _ in range(10):
        args = goal_args(SIM, domain, tool, rng)
        assert set(tool.required) <= set(args)
        result = SIM.execute(tool.name, args)
        assert "error" not in result, (args, result)
        assert SIM.execute(tool.name, args) == result, "replaying a call gives the same result"
        if tool.kind == "search":
            # rows come in pairs sharing the searchable attributes, except an entity whose fixed attributes
            # (Domain.entities) no other entity shares: a search names two entities, or that one
            assert result["count"] >= 2 or (result["count"] == 1 and domain.entities)
            assert all(r[domain.entity_slot] for r in result["results"])
        elif tool.kind == "action":
            assert result["status"] == "confirmed" and result["confirmation_id"]
        rows = result["results"] if tool.kind == "search" else [result]
        for row in rows:
            missing = [n for n in tool.result_slots if n not in row]
            assert not missing, f"{tool.name} result lacks {missing}"


@pytest.mark.parametrize("domain", [d for d in CATALOG.domains if d.entity_slot], ids=lambda d: d.name)
def test_search_can_be_ambiguous(domain: Domain) -> None:
    """Some search filter matches two different entities: the source of ambiguous references."""
    search = next(t for t in domain.tools if t.kind == "search")
    rng = random.Random(0)
    args = goal_args(SIM, domain, search, rng)
    result = SIM.execute(search.name, args)
    names = {r[domain.entity_slot] for r in result["results"]}
    assert len(names) >= 2


def test_invalid_arguments_give_error_results() -> None:
    restaurants = CATALOG.domain("restaurants")
    ok = goal_args(SIM, restaurants, restaurants.tool("reserve_table"), random.Random(1))
    assert "error" not in SIM.execute("reserve_table", ok)
    missing = {k: v for k, v in ok.items() if k != "date"}
    assert "date" in SIM.execute("reserve_table", missing)["error"]
    assert "error" in SIM.execute("reserve_table", {**ok, "seating": "private island"})
    assert "error" in SIM.execute("reserve_table", {**ok, "party_size": "four"})
    assert "error" in SIM.execute("reserve_table", {**ok, "restaurant_name": "Nowhere Diner"})
    assert "error" in SIM.execute("reserve_table", {**ok, "unexpected": 1})
    assert "error" in SIM.execute("no_such_tool", {})


def test_every_invalid_value_is_rejected() -> None:
    """An out-of-catalog value for an enum slot gives an error result from every tool that takes the slot."""
    rng = random.Random(2)
    checked = 0
    for domain, tool in TOOLS:
        args = goal_args(SIM, domain, tool, rng)
        for name in tool.slots:
            for bad in domain.slot(name).invalid:
                assert "error" in SIM.execute(tool.name, {**args, name: bad}), (tool.name, name, bad)
                checked += 1
    assert checked > 50


def test_builtin_catalog_is_a_catalog() -> None:
    assert isinstance(CATALOG, Catalog)
    assert Catalog.model_validate(CATALOG.model_dump()) == CATALOG


@pytest.mark.parametrize("domain", CATALOG.domains, ids=lambda d: d.name)
def test_other_mentions_keep_the_value(domain: Domain) -> None:
    """Every other way to say a slot's value says the value itself once (grounding finds it verbatim)."""
    for slot in domain.slots:
        for template in slot.mentions:
            assert template.count("{value}") == 1, (slot.name, template)
        assert not slot.mentions or slot.mention, f"{slot.name}: mentions are alternatives to a mention"


def test_date_and_time_pools_span_the_catalogs_range() -> None:
    """Dates and times are every day / quarter hour in the listed span, so a run does not cycle through seven."""
    from speakrl.pipeline.quality import parse_date

    rentals = CATALOG.domain("rental_cars")
    pickups = [parse_date(v, None) for v in rentals.slot("pickup_date").pool()]
    returns = [parse_date(v, None) for v in rentals.slot("return_date").pool()]
    assert len(pickups) > 20 and max(pickups) < min(returns)  # pickups still come before returns
    assert len(CATALOG.domain("restaurants").slot("time").pool()) > 30


def test_payee_names_fit_the_payee_kind() -> None:
    """A utility company is a company ("Brightwater Utilities"), a friend or landlord a person: every payee keeps the
    relationship its name fits (`Domain.entities`), in the catalog and in the simulated database."""
    banking = CATALOG.domain("banking")
    companies = {n for n, fixed in banking.entities.items() if fixed["relationship"] == "utility company"}
    assert set(banking.slot("payee_name").pool()) == set(banking.entities)
    assert len(companies) >= 4 and all(len(n.split()) >= 2 for n in companies)
    company_word = ("Utilities", "Power", "Gas", "Water", "Energy", "Internet", "Electric")
    for row in SIM.databases["banking"]:
        is_company = any(w in row["payee_name"] for w in company_word)
        assert is_company == (row["relationship"] == "utility company"), row


def test_a_values_own_mentions_name_a_value_and_say_it() -> None:
    from pydantic import ValidationError

    from speakrl.schemas.catalog import SlotSpec

    SlotSpec(name="car_type", description="Class", enum=["SUV", "compact"], mention="a {value} car",
             mentions_for={"SUV": ["an {value}"]})
    with pytest.raises(ValidationError, match="mentions_for 'SUB', which is not one of its values"):
        SlotSpec(name="car_type", description="Class", enum=["SUV"], mention="a {value} car", mentions_for={"SUB": ["an {value}"]})
    with pytest.raises(ValidationError, match="needs templates that each hold"):
        SlotSpec(name="car_type", description="Class", enum=["SUV"], mention="a {value} car", mentions_for={"SUV": ["an SUV"]})
