"""Importers: speakrl catalogs, the real SGD schema, OpenAI tools JSON, and the errors bad files give."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from speakrl.pipeline.catalog.specs import domain_specs
from speakrl.pipeline.quality import is_placeholder, parse_date
from speakrl.pipeline.catalog import load_catalog
from speakrl.pipeline.catalog.importers import from_json
from speakrl.pipeline.catalog.sim import Simulator
from speakrl.pipeline.stages.scenarios import sample_goal as goal_args
from speakrl.pipeline.catalog.specs import catalog_specs
from speakrl.pipeline.errors import CatalogError
from speakrl.schemas.catalog import Catalog

SGD = Path(__file__).resolve().parents[3] / "data/sgd"  # the repo copy (data/sgd/README.md)
SGD_SCHEMA = SGD / "train_schema.json"


def assert_all_tools_execute(catalog: Catalog, rounds: int = 5) -> None:
    sim = Simulator(catalog)
    rng = random.Random(0)
    for domain in catalog.domains:
        for tool in domain.tools:
            counts = []
            for _ in range(rounds):
                args = goal_args(sim, domain, tool, rng)
                assert set(tool.required) <= set(args), (tool.name, "a required slot has no values")
                result = sim.execute(tool.name, args)
                assert "error" not in result, (tool.name, args, result)
                if tool.kind == "search":
                    counts.append(result["count"])
                    assert result["count"] >= 1, (tool.name, args)
                if tool.kind == "action":
                    assert result["status"] == "confirmed"
            # database rows come in pairs sharing the searched attributes (an odd last entity may be alone)
            assert not counts or max(counts) >= 2, (tool.name, counts)
    for specs in catalog_specs(catalog).values():
        for spec in specs:
            jsonschema.Draft202012Validator.check_schema(spec.function.parameters)


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def assert_one_sentence(err: pytest.ExceptionInfo, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, (word, message)


# ------------------------------------------------------------------------------------------------- speakrl


def test_speakrl_shapes_round_trip(tmp_path: Path) -> None:
    builtin = load_catalog("builtin")
    hotels = builtin.domain("hotels").model_dump()
    flights = builtin.domain("flights").model_dump()
    for data in ({"domains": [hotels, flights]}, [hotels, flights], hotels):
        catalog = load_catalog(write(tmp_path, "cat.json", data))
        assert [d.name for d in catalog.domains] == [d["name"] for d in (data["domains"] if isinstance(data, dict) and "domains" in data else data if isinstance(data, list) else [data])]
        assert catalog.domain("hotels") == builtin.domain("hotels")
    assert_all_tools_execute(load_catalog(write(tmp_path, "cat.json", [hotels, flights])), rounds=2)


def test_speakrl_duplicate_tools_and_bad_domains(tmp_path: Path) -> None:
    hotels = load_catalog("builtin").domain("hotels").model_dump()
    clone = {**hotels, "name": "hotels_copy"}
    with pytest.raises(CatalogError) as err:
        load_catalog(write(tmp_path, "dup.json", {"domains": [hotels, clone]}))
    assert_one_sentence(err, "find_hotels", "hotels_copy", "unique")
    broken = {**hotels, "tools": [{**hotels["tools"][0], "required": ["no_such_slot"]}]}
    with pytest.raises(CatalogError) as err:
        load_catalog(write(tmp_path, "bad.json", [broken]))
    assert_one_sentence(err, "hotels", "no_such_slot")


# ------------------------------------------------------------------------------------------------------ SGD


def test_real_sgd_schema_imports_and_executes() -> None:
    catalog = load_catalog(str(SGD_SCHEMA), slot_values=str(SGD / "train_slot_values.json"))
    assert len(catalog.domains) == 26
    assert sum(len(d.tools) for d in catalog.domains) == 53
    assert all(d.source == "sgd" for d in catalog.domains)
    names = [t.name for d in catalog.domains for t in d.tools]
    assert len(names) == len(set(names))
    # services sharing intents are told apart
    assert {"find_bus_1", "find_bus_2", "find_movies_media_1", "find_movies_movies_1", "book_appointment_3"} <= set(names)

    restaurants = catalog.domain("restaurants_1")
    assert restaurants.entity_slot == "restaurant_name"
    assert restaurants.tool("find_restaurants").kind == "search"
    assert restaurants.tool("reserve_restaurant").kind == "action"
    assert catalog.domain("weather_1").tool("get_weather").kind == "lookup"
    # dontcare ("no preference") slots are left out of the intent, but stay result columns of the database
    assert restaurants.tool("find_restaurants").required == ["cuisine", "city"]
    assert restaurants.tool("find_restaurants").optional["price_range"] is None  # "dontcare": nullable, not dropped
    assert "price_range" in restaurants.attributes
    assert catalog.domain("music_1").tool("play_song").optional == {"artist": None, "playback_device": "TV"}
    # types: all-integer pools, True/False, categorical strings
    assert restaurants.slot("party_size").type == "integer"
    assert restaurants.tool("reserve_restaurant").optional["party_size"] == 2
    assert restaurants.slot("serves_alcohol").type == "boolean"
    assert restaurants.slot("price_range").enum == ["inexpensive", "moderate", "expensive", "very expensive"]
    assert restaurants.slot("price_range").invalid and not set(restaurants.slot("price_range").invalid) & {"moderate"}
    assert catalog.domain("banks_1").slot("amount").type == "integer"
    # value pools from the slot values file, generic vague phrasings for dates, places and counts
    assert "Berkeley" in restaurants.slot("city").values
    assert len(restaurants.slot("restaurant_name").values) >= 30
    assert restaurants.slot("date").vague and restaurants.slot("city").vague and restaurants.slot("party_size").vague
    # a slot a tool takes but with no values anywhere gets usable placeholders
    assert catalog.domain("movies_1").slot("show_time").values
    assert_all_tools_execute(catalog)


def test_sgd_slot_values_found_beside_schema(tmp_path: Path) -> None:
    explicit = load_catalog(str(SGD_SCHEMA), slot_values=str(SGD / "train_slot_values.json"))
    assert load_catalog(str(SGD_SCHEMA)) == explicit  # train_slot_values.json is picked up by its name
    services = json.loads(SGD_SCHEMA.read_text())
    lone = load_catalog(write(tmp_path, "schema.json", services))  # no values file: possible_values + synthesized ones
    assert len(lone.domains) == 26
    names = lone.domain("restaurants_1").slot("restaurant_name").values
    assert len(set(names)) >= 30 and not any(is_placeholder(v, "restaurant_name") for v in names)
    assert_all_tools_execute(lone, rounds=2)


def test_sgd_minimal_service() -> None:
    service = {
        "service_name": "Pets_1", "description": "Book pet grooming",
        "slots": [
            {"name": "groomer_name", "description": "Groomer", "is_categorical": False, "possible_values": []},
            {"name": "city", "description": "City", "is_categorical": False, "possible_values": []},
            {"name": "pet_type", "description": "Kind of pet", "is_categorical": True, "possible_values": ["dog", "cat"]},
            {"name": "date", "description": "Date", "is_categorical": False, "possible_values": []},
        ],
        "intents": [
            {"name": "FindGroomer", "description": "Find groomers", "is_transactional": False,
             "required_slots": ["city"], "optional_slots": {"pet_type": "dontcare"}, "result_slots": ["groomer_name", "city", "pet_type"]},
            {"name": "BookGroomer", "description": "Book a groomer", "is_transactional": True,
             "required_slots": ["groomer_name", "date"], "optional_slots": {"pet_type": "dog"}, "result_slots": ["groomer_name", "date"]},
        ],
    }
    values = {"Pets_1": {"groomer_name": [f"Groomer {c}" for c in "ABCDEFGH"], "city": ["Reno", "Boise", "dontcare"], "date": ["March 3rd"]}}
    catalog = from_json([service], source="pets.json", slot_values=values)
    domain = catalog.domain("pets_1")
    assert domain.entity_slot == "groomer_name" and domain.attributes == ["groomer_name", "city", "pet_type"]
    assert [t.kind for t in domain.tools] == ["search", "action"]
    assert domain.slot("city").values == ["Reno", "Boise"]  # "dontcare" is no value
    assert domain.tool("find_groomer").optional == {"pet_type": None}  # "dontcare": a nullable optional parameter
    spec = next(t for t in domain_specs(domain) if t.name == "find_groomer").function.parameters["properties"]["pet_type"]
    assert spec["default"] is None and "null" in spec["type"]
    assert domain.tool("book_groomer").optional == {"pet_type": "dog"}
    assert "invalid" not in str(domain.slot("pet_type").invalid) and domain.slot("pet_type").invalid
    assert_all_tools_execute(catalog)
    sim = Simulator(catalog)
    assert "error" in sim.execute("book_groomer", {"groomer_name": "Groomer A", "date": "March 3rd", "pet_type": "platinum plus"})


# --------------------------------------------------------------------------------------------------- OpenAI

OPENAI_TOOLS = [
    {"type": "function", "function": {
        "name": "search_hotels", "description": "Search hotels in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City", "examples": ["Lisbon", "Porto", "Faro"]},
            "stars": {"type": "integer", "enum": [3, 4, 5]},
            "pool": {"type": "boolean", "default": False},
        }, "required": ["city", "stars"]}}},
    {"type": "function", "function": {
        "name": "book_hotel", "description": "Book a room",
        "parameters": {"type": "object", "properties": {
            "hotel_name": {"type": "string", "description": "Hotel"},
            "check_in": {"type": "string", "format": "date", "description": "Check-in date"},
            "nights": {"type": "integer", "minimum": 1, "maximum": 14},
            "room": {"type": "string", "enum": ["single", "double", "suite"], "default": "double"},
        }, "required": ["hotel_name", "check_in", "nights"]}}},
    {"type": "function", "function": {
        "name": "get_hotel_reviews", "description": "Reviews of a hotel",
        "parameters": {"type": "object", "properties": {"hotel_name": {"type": "string"}, "language": {"type": "string"}},
                       "required": ["hotel_name"]}}},
    {"type": "function", "function": {
        "name": "cancel_booking", "description": "Cancel a booking",
        "parameters": {"type": "object", "properties": {"booking_id": {"type": "string", "examples": ["B-1", "B-2"]}},
                       "required": ["booking_id"]}}},
]


def test_openai_tools_import_and_execute(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, "hotel_tools.json", OPENAI_TOOLS))
    assert [d.name for d in catalog.domains] == ["hotel_tools"]
    domain = catalog.domains[0]
    assert domain.source == "openai"
    assert {t.name: t.kind for t in domain.tools} == {
        "search_hotels": "search", "book_hotel": "action", "get_hotel_reviews": "lookup", "cancel_booking": "action"}
    assert domain.entity_slot == "hotel_name"
    assert domain.attributes == ["hotel_name", "city", "stars", "pool"]
    assert domain.slot("city").values == ["Lisbon", "Porto", "Faro"]
    assert domain.slot("stars").type == "integer" and domain.slot("stars").values == ["3", "4", "5"]
    assert domain.slot("room").enum == ["single", "double", "suite"] and domain.slot("room").invalid
    assert domain.tool("book_hotel").optional == {"room": "double"}
    assert domain.tool("get_hotel_reviews").slots == ["hotel_name"]  # not required, no default: left out
    assert "language" not in {s.name for s in domain.slots}
    # no enum, no examples: realistic synthesized values (no placeholders), within declared bounds
    names = domain.slot("hotel_name").values
    assert len(set(names)) >= 30 and not any(is_placeholder(v, "hotel_name") for v in names)
    assert all(1 <= int(v) <= 14 for v in domain.slot("nights").values)
    assert domain.slot("check_in").vague  # a date can be underspecified
    assert all(parse_date(v, None) for v in domain.slot("check_in").values)  # dates a user can say
    assert_all_tools_execute(catalog)
    # the {"tools": [...]} wrapper and bare function dicts are read the same way
    wrapped = load_catalog(write(tmp_path, "hotel_tools.json", {"tools": OPENAI_TOOLS}))
    bare = load_catalog(write(tmp_path, "hotel_tools.json", [t["function"] for t in OPENAI_TOOLS]))
    assert wrapped == catalog == bare


def test_openai_domain_hint(tmp_path: Path) -> None:
    tools = [{**t, "domain": "stays" if "hotel" in t["function"]["name"] else "support"} for t in OPENAI_TOOLS]
    catalog = load_catalog(write(tmp_path, "mixed.json", tools))
    assert {d.name: [t.name for t in d.tools] for d in catalog.domains} == {
        "stays": ["search_hotels", "book_hotel", "get_hotel_reviews"], "support": ["cancel_booking"]}
    assert_all_tools_execute(catalog)


def _tool(name: str, properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": properties, "required": required or []}}}


@pytest.mark.parametrize(("data", "words"), [
    ([_tool("book", {"n": {"type": "strng"}})], ["'book'", "not a valid JSON Schema"]),
    ([_tool("book", {"n": {"type": "integer", "minimum": "one"}})], ["'book'", "not a valid JSON Schema"]),
    ([_tool("book", {"n": {"type": "integer"}}), _tool("book", {})], ["'book'", "twice"]),
    ([_tool("book", {"n": {"type": "integer"}}, ["n", "when"])], ["'book'", "'when'", "properties"]),
    ([_tool("book", {"n": {"type": "integer"}}), _tool("find", {"n": {"type": "string"}})], ["'n'", "'book'", "'find'"]),
    ([_tool("book", {"seat": {"type": "string", "enum": ["a", "b"]}}, ["seat"]),
      _tool("hold", {"seat": {"type": "string", "enum": ["c"]}}, ["seat"])],
     ["'seat'", "'book'", "'hold'"]),
    ([_tool("book", {"guests": {"type": "array", "items": {"type": "string"}}})], ["'book'", "'guests'", "array"]),
    ({"foo": 1}, ["unrecognized shape"]),
    ([], ["unrecognized shape"]),
    ([1, 2], ["unrecognized shape"]),
    ("tools", ["unrecognized shape"]),
    ([{"type": "function", "function": {"description": "no name"}}], ["no function name"]),
])
def test_bad_catalogs_raise_one_sentence(tmp_path: Path, data: Any, words: list[str]) -> None:
    with pytest.raises(CatalogError) as err:
        load_catalog(write(tmp_path, "tools.json", data))
    assert_one_sentence(err, *words)
    with pytest.raises(CatalogError):
        from_json(data, source="tools.json", slot_values=None)


def test_unreadable_catalog_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as err:
        load_catalog(str(tmp_path / "missing.json"))
    assert_one_sentence(err, "does not exist")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_catalog(str(bad))
    assert_one_sentence(err, "not valid JSON")


def test_a_synthesized_company_name_reads_as_one_in_a_list():
    """Faker's "Norman, Hahn and Newton" read as several in "I found 2 groomers: Norman, Hahn and Newton and Smith Ltd"."""
    from speakrl.pipeline.catalog.importers import synthetic_pool

    names = synthetic_pool("groomer_name", "string", 60)
    assert len(set(names)) > 30 and not [n for n in names if "," in n or " and " in n]
