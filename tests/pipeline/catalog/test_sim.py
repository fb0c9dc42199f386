"""The simulator on the built-in catalog: seeded databases, deterministic results, errors for bad calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from speakrl.pipeline.catalog import load_catalog
from speakrl.pipeline.catalog.sim import MAX_RESULTS, Simulator, build_database
from speakrl.pipeline.catalog.specs import coerce

CATALOG = load_catalog("builtin")
SIM = Simulator(CATALOG)


def test_databases_hold_every_entity_in_pairs() -> None:
    for domain in CATALOG.domains:
        rows = SIM.databases[domain.name]
        if not domain.entity_slot:
            assert rows == []
            continue
        names = [r[domain.entity_slot] for r in rows]
        assert sorted(names) == sorted(set(domain.slot(domain.entity_slot).pool()))  # every entity can be booked
        searchable = {s for t in domain.tools if t.kind == "search" for s in t.slots if s in domain.attributes}
        searchable.discard(domain.entity_slot)
        assert searchable, domain.name
        singles = sum(len(names) % 2 for names in _fixed_groups(domain, searchable).values())
        paired = rows[: len(rows) - singles]  # entities whose fixed attributes no other entity shares come last
        assert len(paired) >= len(rows) // 2
        for a, b in zip(paired[::2], paired[1::2]):
            assert {k: a[k] for k in searchable} == {k: b[k] for k in searchable}
            assert a[domain.entity_slot] != b[domain.entity_slot]


def _fixed_groups(domain, searchable) -> dict:
    groups: dict = {}
    for name in dict.fromkeys(domain.slot(domain.entity_slot).pool()):
        key = tuple(sorted((k, str(v)) for k, v in domain.entities.get(name, {}).items() if k in searchable))
        groups.setdefault(key, []).append(name)
    return groups


def test_entities_are_generated_whole() -> None:
    """A car model always has its real class and seats, a flight number its airline, a doctor one clinic."""
    checked = 0
    for domain in CATALOG.domains:
        for row in SIM.databases[domain.name]:
            fixed = domain.entities.get(row[domain.entity_slot], {})
            assert {k: row[k] for k in fixed} == {k: coerce(domain.slot(k), v) for k, v in fixed.items()}
            checked += bool(fixed)
    cars = {r["car_model"]: r for r in SIM.databases["rental_cars"]}
    assert cars["BMW X3"]["car_type"] == "luxury" and cars["Kia Carnival"]["car_type"] == "minivan"
    flights = {r["flight_number"]: r for r in SIM.databases["flights"]}
    assert flights["UA 306"]["airline"] == "United Airlines"
    assert checked > 150
    # and every search result and lookup shows the same attributes
    result = SIM.execute("get_rental_car_details", {"car_model": "Fiat 500"})
    assert result["car_type"] == "compact" and result["seats"] == 4


def test_results_agree_with_the_arguments_and_defaults() -> None:
    """Every result field that names an argument (or a default the call left out) has that argument's value."""
    from speakrl.pipeline.stages import scenarios
    from speakrl.schemas import RunConfig

    rows = list(scenarios.run(RunConfig(n=400, seed=3), CATALOG, range(400), SIM))
    checked = 0
    for s in rows:
        if not s.goal:
            continue
        tool = CATALOG.domain(s.domain).tool(s.tool)
        result = SIM.execute(s.tool, s.goal)
        assert "error" not in result
        for item in result.get("results", [result]):
            for k, v in {**tool.optional, **s.goal}.items():
                if k in item and v is not None:
                    assert item[k] == v, (s.tool, k)
                    checked += 1
    assert checked > 500


def test_results_draw_from_the_values_that_fit_what_is_known() -> None:
    """`values_for`: a forecast in kelvin says kelvin, no snow at 97 degrees, no 90% rain on a sunny day."""
    weather = CATALOG.domain("weather")
    temperature, conditions, rain = (weather.slot(n) for n in ("temperature", "conditions", "chance_of_rain"))
    seen = set()
    for city in weather.slot("city").pool():
        for date in weather.slot("date").pool():
            for units in weather.slot("units").pool():
                forecast = SIM.execute("get_weather", {"city": city, "date": date, "units": units})
                t, c = forecast["temperature"], forecast["conditions"]
                assert t in temperature.values_for["units"].get(units, temperature.values), (units, t)
                assert c in conditions.values_for["temperature"][t], (t, c)
                assert str(forecast["chance_of_rain"]) in rain.values_for["conditions"][c], (c, forecast["chance_of_rain"])
                seen.add((units, c))
    assert {u for u, _ in seen} == {"fahrenheit", "celsius", "kelvin"} and len({c for _, c in seen}) >= 5  # still varied


def test_entities_draw_from_the_values_that_fit_their_other_attributes() -> None:
    """`values_for` holds in the databases too: no animated film rated NC-17, no horror film rated G."""
    movies = CATALOG.domain("movies")
    fits = movies.slot("age_rating").values_for["genre"]
    rows = build_database(movies)
    assert all(row["age_rating"] in fits[row["genre"]] for row in rows), [(r["genre"], r["age_rating"]) for r in rows]
    assert len({row["age_rating"] for row in rows}) >= 4  # still varied


def test_entities_never_share_a_phone_number_or_an_account_ending() -> None:
    """`unique` slots: each entity its own value, which still fits what is known (a restaurant's area code its city)."""
    unique = [(d, s) for d in CATALOG.domains for s in d.slots if s.unique]
    assert {s.name for _, s in unique} == {"phone_number", "account_ending"} and len(unique) == 5
    for domain, slot in unique:
        rows = build_database(domain)
        values = [row[slot.name] for row in rows]
        assert len(values) > 30 and len(set(values)) == len(values), (domain.name, slot.name)
        for key, pools in slot.values_for.items():  # the area code of the number given for the entity's city
            for row in rows:
                assert row[slot.name][:-2] in {v[:-2] for v in pools[str(row[key])]}, (domain.name, row)


def test_count_is_what_is_listed() -> None:
    listed = 0
    for domain in CATALOG.domains:
        for tool in domain.tools:
            if tool.kind != "search":
                continue
            for row in SIM.databases[domain.name][:20]:
                result = SIM.execute(tool.name, {k: row[k] for k in tool.required if k in row} or {})
                if "error" not in result:
                    assert result["count"] == len(result["results"]) <= MAX_RESULTS
                    listed += result["count"] > 0
    assert listed > 50


def test_databases_are_the_same_in_another_process() -> None:
    code = (
        "import json; from speakrl.pipeline.catalog import load_catalog; from speakrl.pipeline.catalog.sim import build_database;"
        "c = load_catalog('builtin'); print(json.dumps({d.name: build_database(d) for d in c.domains}, sort_keys=True))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == json.loads(json.dumps({d.name: build_database(d) for d in CATALOG.domains}, sort_keys=True))


def test_search_filters_and_caps_results() -> None:
    rows = SIM.databases["restaurants"]
    row = rows[0]
    result = SIM.execute("find_restaurants", {"city": row["city"], "cuisine": row["cuisine"], "price_range": row["price_range"]})
    expected = [r["restaurant_name"] for r in rows if (r["city"], r["cuisine"], r["price_range"]) == (row["city"], row["cuisine"], row["price_range"])]
    assert result["count"] == len(expected) >= 2
    assert [r["restaurant_name"] for r in result["results"]] == expected[:MAX_RESULTS]
    # filters are case-insensitive, like a real search box
    upper = SIM.execute("find_restaurants", {"city": row["city"].upper(), "cuisine": row["cuisine"], "price_range": row["price_range"]})
    assert upper["count"] == result["count"]
    # the optional filter's default applies when it is omitted
    omitted = SIM.execute("find_restaurants", {"city": row["city"], "cuisine": row["cuisine"]})
    assert all(r["price_range"] == "moderate" for r in omitted["results"])


def test_search_gives_every_matching_row_in_database_order() -> None:
    # Searches look rows up by their first filter's value: the same rows, in the same order, as a scan of all of them.
    for domain in CATALOG.domains:
        rows = SIM.databases[domain.name]
        for row in rows[:40]:
            for names in ([], list(domain.attributes)[:1], list(domain.attributes)[:2], list(domain.attributes)[1:3]):
                filters = {k: row[k].upper() if isinstance(row[k], str) else row[k] for k in names if k in row}
                scanned = [r for r in rows if all(str(r.get(k, "")).lower() == str(v).lower() for k, v in filters.items())]
                assert SIM.search(domain, filters) == scanned
    restaurants = CATALOG.domain("restaurants")
    assert SIM.search(restaurants, {"city": "Atlantis"}) == [] and SIM.search(restaurants, {"city": None}) == SIM.databases["restaurants"]


def test_actions_and_lookups() -> None:
    row = SIM.databases["hotels"][3]
    args = {"hotel_name": row["hotel_name"], "check_in_date": "April 9th", "nights": 3}
    booked = SIM.execute("book_hotel", args)
    assert booked["status"] == "confirmed" and booked["confirmation_id"].startswith("BOO-")
    assert booked["rooms"] == 1 and booked["room_type"] == "standard room"  # defaults filled in
    assert booked["phone_number"] == row["phone_number"]  # facts come from the database row
    assert SIM.execute("book_hotel", args) == booked
    other = SIM.execute("book_hotel", {**args, "nights": 4})
    assert other["confirmation_id"] != booked["confirmation_id"]
    info = SIM.execute("get_hotel_info", {"hotel_name": row["hotel_name"]})
    assert info["street_address"] == row["street_address"] and "status" not in info
    weather = SIM.execute("get_weather", {"city": "Omaha"})  # no entity: facts derived from the arguments
    assert weather["city"] == "Omaha" and weather["date"] == "today" and weather["conditions"]
    assert SIM.execute("get_weather", {"city": "Omaha"}) == weather


def test_bad_calls_return_errors() -> None:
    row = SIM.databases["flights"][0]
    good = {"flight_number": row["flight_number"], "departure_date": "May 7th", "passengers": 2}
    assert "error" not in SIM.execute("book_flight", good)
    assert "error" in SIM.execute("book_flight", {**good, "cabin_class": "hyper class"})  # not offered
    assert "error" in SIM.execute("book_flight", {**good, "passengers": "two"})  # wrong type
    assert "error" in SIM.execute("book_flight", {k: v for k, v in good.items() if k != "passengers"})  # missing
    assert "error" in SIM.execute("book_flight", {**good, "flight_number": "ZZ 999"})  # no such flight
    assert "error" in SIM.execute("book_flight", {**good, "seat": "12A"})  # unknown argument
    assert "error" in SIM.execute("teleport", {})


def test_a_flight_arrives_after_it_departs() -> None:
    from speakrl.pipeline.quality import parse_time

    flights = load_catalog("builtin").domain("flights")
    rows = build_database(flights)
    assert rows
    for row in rows:
        leave, arrive = parse_time(row["departure_time"]), parse_time(row["arrival_time"])
        assert leave < arrive, row


def test_a_tools_schema_is_compiled_when_first_used_and_checks_the_same() -> None:
    sim = Simulator(CATALOG)
    schemas = sim._validators
    assert "book_flight" in schemas and "teleport" not in schemas and schemas._compiled == {}  # `in` compiles nothing
    assert sim.argument_error("book_flight", {"flight_number": "AA 1", "departure_date": "May 7th", "passengers": 2}) is None
    assert "passengers" in sim.argument_error("book_flight", {"flight_number": "AA 1", "departure_date": "May 7th"})
    assert sim.argument_error("teleport", {}) == "unknown tool 'teleport'"
    assert list(schemas._compiled) == ["book_flight"]  # only the tool that was checked
    assert len(schemas) == sum(len(d.tools) for d in CATALOG.domains)


def test_an_argument_error_reads_the_same_in_every_process() -> None:
    # fastjsonschema names unexpected properties as a set, whose order follows the process's hash seed
    code = (
        "from speakrl.pipeline.catalog import load_catalog; from speakrl.pipeline.catalog.sim import Simulator;"
        "print(Simulator(load_catalog('builtin')).argument_error('book_flight', {'flight_number': 'AA 1',"
        " 'departure_date': 'May 7th', 'passengers': 2, 'tickets': 3, 'fare_class': 'coach', 'new_date': 'May 8th',"
        " 'new_time': '8:30 pm', 'city': 'Reno'}))"
    )
    seen = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)}, check=True,
                           capture_output=True, text=True).stdout.strip() for seed in range(4)}
    assert seen == {"invalid arguments: data must not contain {'city', 'fare_class', 'new_date', 'new_time', 'tickets'} properties"}


def test_a_call_leaves_its_arguments_as_sent() -> None:
    """Validating fills a tool's defaults into the dict it checks; the caller's arguments stay what was sent (a
    closing read the default memo back as the user's words: `with the note "transfer"`)."""
    payee = SIM.databases["banking"][0]["payee_name"]
    args = {"payee_name": payee, "amount": 25.0}
    result = SIM.execute("transfer_money", args)
    assert "error" not in result and result.get("memo") == "transfer"  # the default did reach the call
    assert args == {"payee_name": payee, "amount": 25.0}
