"""Turn catalog files into a `Catalog`: speakrl catalogs, SGD `schema.json` files and OpenAI tools JSON.

`from_json` dispatches on the file's shape:

- **speakrl**: `{"domains": [...]}`, one Domain dict, or a list of Domain dicts (the format of `schemas/tools/*.json`).
- **SGD** (`schema.json` of the Schema-Guided Dialogue dataset): a list of services, each with `service_name`.
- **OpenAI tools**: `[{"type": "function", "function": {...}}]` or `{"tools": [...]}` (bare `{"name", "parameters"}`
  function dicts are accepted too).

How SGD maps onto the catalog:

- service -> Domain (name in snake_case, source "sgd"); intent -> ToolDef named in snake_case. An intent name that
  several services share gets its service's number ("find_bus_1", "find_bus_2"), or the whole service name when
  the numbers collide too (Media_1 and Movies_1 both have FindMovies: "find_movies_media_1", "find_movies_movies_1").
- `is_transactional` -> action; otherwise search when the intent returns the domain's entity without taking it as
  an argument (FindRestaurants), else lookup (GetWeather, GetEventDates).
- entity slot: a non-categorical slot named "title" or "*_name" that a non-transactional intent returns without
  taking it as an argument, and that a transactional intent requires, or has values, or names what the service is
  about ("car_name" for "Car rental service"; not "origin_station_name" of a bus service). If several qualify, the
  one a transactional intent requires wins, then one with values.
  attributes (the simulated database's columns): the entity slot plus what the search intents return.
- optional slots: SGD's default is kept (typed: "1" -> 1 for an integer slot). SGD's "dontcare" default means
  "no preference": the slot becomes a nullable optional parameter with default null (`"type": ["string", "null"]`),
  which a simulated search ignores, so FindRestaurants still takes price_range and no intent loses its filters.
- categorical slots -> enum, except when every value is an integer ("1".."5": an integer slot with that pool) or
  "True"/"False" (a boolean slot). Non-categorical pools come from `slot_values` (`{service: {slot: [values]}}`,
  e.g. `train_slot_values.json`) or `possible_values`; all-integer pools make integer slots. When `slot_values` is
  not given, a `*slot_values.json` file beside the schema with the same prefix is used if there is one.
  "dontcare" is dropped from pools.
- a slot that a tool takes (or the entity slot) with no values at all gets a synthetic pool (below), with a warning;
  slots that are only returned may stay empty (results then leave them out).

How OpenAI tools map onto the catalog:

- domain: the file's stem (snake_case), unless a tool carries a `"domain": "<name>"` key beside `"type"` and
  `"function"` (speakrl's hint; an OpenAI request would not carry it), which groups tools into several domains.
- parameters -> slots, shared by name within a domain (a name used with two types or two enums is an error);
  `enum` -> enum (integer enums become integer slots with that pool), `default` -> optional slot with that default,
  `examples` -> pool. A non-required parameter without a default is left out (logged): the catalog needs a default
  for every optional slot, for the same reason as SGD's "dontcare"; give it a `default` to keep it.
- kind from the name's first word: search/find/list -> search; get/check/lookup/look/show/fetch -> lookup; else action.
- entity slot: a string slot named "name", "title", "id" or "*_name"/"*_title"/"*_id" that a non-search tool requires
  and no search tool takes; attributes: it plus the search tools' slots.
- vague phrasings and placeholders follow the parameter's name, or its JSON Schema `format` ("date", "time").
- parameters with neither enum nor examples get a **synthetic** pool of realistic values drawn with Faker, seeded
  by the slot, from the JSON Schema (`pattern`, `minimum`/`maximum`) and the slot's name and description: names,
  cities, addresses, e-mails, phone numbers, identifiers, amounts, dates ("June 4th") and times ("7:30 pm").
  Give `examples` to choose them yourself. JSON Schema constraints beyond type/enum/default are not carried into
  the derived spec.

Generic `vague` phrasings (by slot-name pattern: dates, times, places, counts, amounts) and generic `invalid` values for
enums are added to imported slots so every ambiguity type can arise for imported catalogs too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import date
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jsonschema
from faker import Faker
from pydantic import ValidationError

from speakrl.pipeline.errors import CatalogError
from speakrl.schemas.catalog import Catalog, Domain, SlotSpec, ToolDef

logger = logging.getLogger(__name__)

__all__ = ["from_json", "from_openai", "from_sgd", "from_speakrl"]

_DONTCARE = "dontcare"
_INT_RE = re.compile(r"^-?\d+$")
# Code words for synthetic values: distinct whole words, none inside another, no number words.
_CODE_WORDS = [
    "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett", "Kilo", "Lima",
    "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo", "Sierra", "Tango", "Uniform", "Victor", "Whiskey",
    "Xray", "Yankee", "Zulu", "Gamma", "Theta", "Kappa", "Omega", "Sigma", "Zeta", "Iota", "Lambda", "Epsilon", "Beta",
]
ENTITY_POOL_SIZE = 36
POOL_SIZE = 24  # a run of thousands of dialogues should not cycle through eight names, dates and times

# Underspecified ways to say a value, by what the slot name says it holds (first match wins).
_VAGUE: list[tuple[tuple[str, ...], list[str]]] = [
    (("date", "day"), ["sometime next week", "some day soon", "later this month", "early next month"]),
    (("time", "hour"), ["in the evening", "around lunchtime", "sometime in the afternoon", "early in the morning"]),
    (("city", "location", "area", "destination", "where", "origin", "from", "to", "address", "place", "pickup"),
     ["somewhere downtown", "somewhere nearby", "around here", "not too far away"]),
    (("party", "passengers", "tickets", "seats", "riders", "travelers", "adults", "people", "guests",
      "group"),  # not "number" or "size": a tracking number or a shoe size is no group of people
     ["a few of us", "a small group", "the whole family", "a couple of people"]),
    (("amount", "price", "fare", "cost", "budget", "balance", "rent"),
     ["a bit of money", "the usual amount", "not too much", "whatever is reasonable"]),
]
_MENTIONS: list[tuple[tuple[str, ...], str]] = [
    (("date", "day"), "on {value}"),
    (("time", "hour"), "at {value}"),
    (("destination", "to"), "to {value}"),
    (("origin", "from"), "from {value}"),
    (("city", "location", "area", "where", "place"), "in {value}"),
    (("passengers", "tickets", "seats", "riders", "travelers", "adults", "people", "guests", "party", "group"),
     "for {value}"),
]
# Plausible-sounding options no tool offers: for "invalid value" ambiguities on any enum slot.
_INVALID = ["platinum plus", "ultra deluxe", "experimental tier", "members-only special"]
# Plausible mistakes for enum slots, by what the slot holds (first match wins): an option of the same kind that a
# user might expect but the tool does not offer. Slots matching none get the generic tiers above. A key "a+b" needs
# both words in the slot's name.
_INVALID_BY_KIND: list[tuple[tuple[str, ...], list[str]]] = [
    (("species", "pet", "animal"), ["hamster", "parrot", "iguana", "goldfish"]),
    # a kind of class one attends ("class_type": yoga, spin), not a class of travel
    (("class+type", "class+kind", "class+style", "lesson", "course", "workshop"),
     ["private lesson", "drop-in workshop", "kids' session"]),
    (("class", "cabin", "tier", "plan", "level", "seat", "seating", "package"), ["first class", "VIP", "premium plus"]),
    (("format", "media", "edition"), ["vinyl", "DVD", "microfilm"]),
    (("speed", "delivery", "shipping"), ["same-day", "drone delivery", "two-hour"]),
    (("payment", "method", "card"), ["cash", "personal check", "bitcoin"]),
    (("utility", "bill"), ["cable TV", "trash pickup"]),
    (("service", "treatment"), ["teeth cleaning", "massage", "pet sitting"]),
    (("type", "kind", "category", "genre", "style", "cuisine"), ["something else entirely", "a mix of everything"]),
]


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def _matching(name: str, table: list[tuple[tuple[str, ...], Any]]) -> Any:
    """The value of the first row of `table` with a key among the words of `name` ("a+b": both words).

    >>> _matching("class_type", _INVALID_BY_KIND)[0], _matching("seating_class", _INVALID_BY_KIND)[0]
    ('private lesson', 'first class')
    """
    words = set(_words(name))
    return next((value for keys, value in table if any(set(k.split("+")) <= words for k in keys)), None)


def snake(name: str) -> str:
    """snake_case of a CamelCase or spaced name.

    >>> snake("FindRestaurants"), snake("RentalCars_1"), snake("getHTTPStatus"), snake("my tools")
    ('find_restaurants', 'rental_cars_1', 'get_http_status', 'my_tools')
    """
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _label(name: str) -> str:
    return " ".join(w.capitalize() for w in _words(name))


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _from_pattern(fake: Faker, pattern: str) -> str | None:
    r"""A string matching a simple regex (literals, \d, [A-Z0-9] classes, {n} / {n,m} counts), or None."""
    body = pattern.removeprefix("^").removesuffix("$")
    out, i = [], 0
    while i < len(body):
        if body.startswith("\\d", i):
            chars, i = "0123456789", i + 2
        elif body[i] == "[":
            close = body.find("]", i)
            if close < 0:
                return None
            spec, chars, i = body[i + 1:close], "", close + 1
            for a, _, b in re.findall(r"(.)(-(.))?", spec):
                chars += "".join(chr(c) for c in range(ord(a), ord(b) + 1)) if b else a
        elif body[i] in "()|+*?.\\":
            return None
        else:
            chars, i = body[i], i + 1
        count = 1
        m = re.match(r"\{(\d+)(?:,(\d+))?\}", body[i:])
        if m:
            count = fake.random_int(int(m.group(1)), int(m.group(2) or m.group(1)))
            i += m.end()
        out.extend(fake.random_element(chars) for _ in range(count))
    value = "".join(out)
    return value if re.fullmatch(pattern, value) else None


# Frames of titles, filled with Faker's names and real places: "Letters from Tupelo", "The Hayes Inheritance".
_TITLE_FRAMES = ["The {last} Affair", "{first}'s Promise", "A Summer in {city}", "Letters from {city}",
                 "The {last} Inheritance", "Dear {first}", "Night Train to {city}", "The Girl from {city}",
                 "The {last} Letters", "Winter in {city}", "Finding {first}", "The Road to {city}"]


# Real car models and frames of landmark names, for a car or an attraction slot with no values (not "Jackson Inc").
_CAR_MODELS = ["Toyota Camry", "Honda Civic", "Ford Escape", "Chevrolet Malibu", "Nissan Altima", "Hyundai Elantra",
               "Kia Sportage", "Subaru Outback", "Mazda CX-5", "Jeep Cherokee", "Volkswagen Jetta", "Ford Mustang",
               "Toyota RAV4", "Honda Accord", "Chevrolet Tahoe", "Dodge Charger"]
_VENUE_FRAMES = ["{last} Hall", "{city} Arena", "The {last} Theater", "{city} Civic Center", "{last} Amphitheater"]
_ATTRACTION_FRAMES = ["{last} Museum", "{city} Botanical Garden", "{last} Park", "{city} Art Gallery",
                      "The {last} Observatory", "{city} History Center", "{last} Memorial Plaza", "{city} Aquarium"]


def _real_city(fake: Faker) -> str:
    """A real US place (Faker's geo data: "Shreveport", "Tupelo"), not Faker's invented city names ("Lisaburgh")."""
    return fake.local_latlng(country_code="US")[2]


def _fake_value(fake: Faker, words: set[str], description: str) -> str:
    """One realistic value for a string slot, by what its name and description say it holds."""
    said = words | set(_words(description))
    if said & {"email", "e-mail", "mail"}:
        return fake.email()
    if said & {"phone", "mobile", "telephone"}:
        # a fictional number (555-0100 to 555-0199, as the built-in catalog's): a random one could be someone's
        return f"({fake.random_int(2, 9)}{fake.numerify('##')}) 555-01{fake.numerify('##')}"
    if words & {"date", "day"}:
        day = fake.date_between_dates(date(2026, 5, 1), date(2026, 8, 31))
        return f"{day.strftime('%B')} {_ordinal(day.day)}"
    if words & {"time", "hour"}:
        hour, minute = fake.random_int(7, 21), fake.random_element([0, 15, 30, 45])
        return f"{hour % 12 or 12}:{minute:02d} {'am' if hour < 12 else 'pm'}"
    if words & {"rent"}:
        return f"${fake.random_int(9, 40) * 100:,}"
    if words & {"amount", "price", "fare", "cost", "total", "balance", "fee"}:
        return f"${fake.random_int(12, 480)}"
    if words & {"rating"}:
        return f"{fake.random_int(30, 50) / 10:.1f}"
    if words & {"duration", "wait"}:
        return f"{fake.random_int(3, 45)} minutes"
    if words & {"temperature"}:
        return f"{fake.random_int(40, 95)} degrees"
    if words & {"humidity", "precipitation"}:
        return f"{fake.random_int(5, 95)}%"
    if words & {"wind"}:
        return f"{fake.random_int(2, 25)} mph"
    if words & {"address", "street", "location"}:
        return fake.street_address()
    if words & {"station"}:
        return f"{_real_city(fake)} Station"
    if words & {"airport"}:
        return f"{_real_city(fake)} Airport"
    if words & {"venue", "stadium", "theater", "theatre"}:
        return fake.random_element(_VENUE_FRAMES).format(last=fake.last_name(), city=_real_city(fake))
    if words & {"city", "town", "from", "to", "origin", "destination"}:
        return _real_city(fake)
    if words & {"branch"}:
        return f"{_real_city(fake)} Branch"
    if words & {"pet", "dog", "cat"}:
        return fake.first_name()
    if words & {"title", "book", "song", "movie", "album"}:  # not Faker's catch phrases ("Front-Line Object-Oriented Alliance")
        frame = fake.random_element(_TITLE_FRAMES)
        return frame.format(last=fake.last_name(), first=fake.first_name(), city=_real_city(fake))
    if words & {"car", "vehicle"}:
        return fake.random_element(_CAR_MODELS)
    if words & {"attraction", "landmark", "sight"}:
        return fake.random_element(_ATTRACTION_FRAMES).format(last=fake.last_name(), city=_real_city(fake))
    if words & {"account", "tracking", "id", "number", "code", "reference", "confirmation"}:
        return fake.bothify("??-#####", letters="ABCDEFGHJKLMNPRSTUVWXYZ")
    if said & {"person", "contact", "recipient", "receiver", "author", "member", "customer", "owner", "passenger",
               "attendee", "doctor", "user", "who", "friend"}:
        return fake.name()
    if words & {"name", "salon", "groomer", "company", "business", "restaurant", "hotel", "store", "shop", "gym"}:
        # Not Faker's "Norman, Hahn and Newton": in a list it reads as several ("2 groomers: Norman, Hahn and Newton
        # and Smith Ltd").
        return next(c for c in iter(fake.company, None) if "," not in c and " and " not in c)
    return fake.word().capitalize()


def synthetic_pool(name: str, type_: str, size: int = POOL_SIZE, minimum: float | None = None,
                   maximum: float | None = None, description: str = "", pattern: str | None = None) -> list[str]:
    """Realistic values for a slot with none, from its JSON Schema (type, pattern, minimum/maximum) and its name and
    description, drawn with Faker seeded by the slot's name (the same catalog always gives the same pool).

    >>> synthetic_pool("party_size", "integer", minimum=2, maximum=4)
    ['2', '3', '4']
    >>> all(re.fullmatch(r"^1Z[0-9A-Z]{16}$", v) for v in synthetic_pool("tracking_number", "string", 3, pattern="^1Z[0-9A-Z]{16}$"))
    True
    >>> synthetic_pool("recipient_email", "string", 2) == synthetic_pool("recipient_email", "string", 2)
    True
    """
    if type_ == "boolean":
        return ["True", "False"]
    fake = Faker("en_US")
    fake.seed_instance(int.from_bytes(hashlib.blake2b(f"{name}\x1f{description}".encode(), digest_size=8).digest(), "big"))
    if type_ in ("integer", "number"):
        amount = _matching(name, _VAGUE[4:5]) is not None
        base = [15, 20, 25, 30, 40, 45, 60, 75, 85, 90, 120, 150, 180, 200, 250, 320] if amount else [1, 2, 3, 4, 5, 6, 7, 8]
        lo = minimum if minimum is not None else float("-inf")
        hi = maximum if maximum is not None else float("inf")
        nums = [n for n in base if lo <= n <= hi]
        if len(nums) < 3 and type_ == "number" and minimum is not None and maximum is not None:
            nums = sorted({round(fake.pyfloat(min_value=minimum, max_value=maximum), 1) for _ in range(size)})
            nums = [n for n in nums if lo <= n <= hi]
        if not nums and minimum is not None:
            start = int(minimum) if float(minimum).is_integer() else int(minimum) + 1
            nums = [n for n in range(start, start + size) if n <= hi]
        if not nums:
            raise CatalogError(f"slot {name!r} allows no value between {minimum} and {maximum}; fix its minimum/maximum")
        return [str(n) for n in nums[:size]]
    words = set(_words(name))
    pool: list[str] = []
    for _ in range(size * 4):
        value = (_from_pattern(fake, pattern) if pattern else None) or _fake_value(fake, words, description)
        if value not in pool:
            pool.append(value)
        if len(pool) == size:
            break
    return pool


def _generic_vague(name: str, type_: str) -> list[str]:
    return [] if type_ == "boolean" else list(_matching(name, _VAGUE) or [])


def _generic_invalid(enum: list[str], name: str = "") -> list[str]:
    """Values the slot does not take that a user might plausibly ask for (none that is, or contains, an option)."""
    low = [v.lower() for v in enum]
    candidates = _matching(name, _INVALID_BY_KIND) or _INVALID
    return [bad for bad in candidates if not any(v in bad.lower() or bad.lower() in v for v in low)] or \
        [bad for bad in _INVALID if not any(v in bad or bad in v for v in low)]


def _mention(name: str) -> str | None:
    """How a user says the slot's value; None lets the phrasing say it with the slot's label ("member phone: ...")."""
    return _matching(name, _MENTIONS)


def _infer_type(values: list[str]) -> str:
    if values and all(v in ("True", "False") for v in values):
        return "boolean"
    if values and all(_INT_RE.match(v) for v in values):
        return "integer"
    return "string"


def _typed(type_: str, value: Any) -> Any:
    """An SGD/JSON default in the slot's type ("1" -> 1 for an integer slot)."""
    if value is None:
        return None
    try:
        if type_ == "integer":
            return int(value)
        if type_ == "number":
            return float(value)
    except (TypeError, ValueError):
        return value
    if type_ == "boolean" and isinstance(value, str):
        return value.lower() == "true"
    return value


def _unique(values: list[Any]) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values if v is not None and str(v) != _DONTCARE))


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    message = e["msg"].removeprefix("Value error, ")  # our validators' messages are whole sentences already
    where = ".".join(str(p) for p in e["loc"])
    return f"{message} at {where}" if where else message


def _catalog(domains: list[Domain], source: str) -> Catalog:
    """A Catalog, with duplicate tool names reported as one sentence that names them."""
    owner: dict[str, str] = {}
    for domain in domains:
        for tool in domain.tools:
            if tool.name in owner:
                raise CatalogError(
                    f"catalog {source!r} defines tool {tool.name!r} twice (domains {owner[tool.name]!r} and "
                    f"{domain.name!r}); rename one so tool names are unique"
                )
            owner[tool.name] = domain.name
    if not domains:
        raise CatalogError(f"catalog {source!r} defines no domains; add at least one tool")
    try:
        return Catalog(domains=domains)
    except ValidationError as e:
        raise CatalogError(f"catalog {source!r} is invalid: {_first_error(e)}") from None


# --------------------------------------------------------------------------------------------------- dispatch


def _is_openai_tool(item: Any) -> bool:
    return isinstance(item, dict) and (
        item.get("type") == "function" or isinstance(item.get("function"), dict) or ("name" in item and "parameters" in item)
    )


def _is_domain(item: Any) -> bool:
    return isinstance(item, dict) and "slots" in item and "tools" in item


def from_json(data: Any, *, source: str, slot_values: dict | None = None) -> Catalog:
    """A catalog from parsed JSON, whatever its shape (see the module docstring)."""
    if isinstance(data, dict):
        if isinstance(data.get("domains"), list):
            return from_speakrl(data["domains"], source=source)
        if isinstance(data.get("tools"), list) and not _is_domain(data):
            return from_openai(data["tools"], source=source)
        if _is_domain(data):
            return from_speakrl([data], source=source)
        if "service_name" in data:
            return from_sgd([data], source=source, slot_values=slot_values)
    elif isinstance(data, list) and data:
        if all(isinstance(s, dict) and "service_name" in s for s in data):
            return from_sgd(data, source=source, slot_values=slot_values)
        if all(_is_openai_tool(t) for t in data):
            return from_openai(data, source=source)
        if all(_is_domain(d) for d in data):
            return from_speakrl(data, source=source)
    raise CatalogError(
        f"catalog {source!r} has an unrecognized shape; expected a speakrl catalog ({{\"domains\": [...]}}), "
        "an OpenAI tools list ([{\"type\": \"function\", \"function\": {...}}]) or an SGD schema.json (a list of services)"
    )


def from_speakrl(domains: list[Any], *, source: str) -> Catalog:
    parsed = []
    for i, raw in enumerate(domains):
        name = raw.get("name", f"#{i}") if isinstance(raw, dict) else f"#{i}"
        try:
            parsed.append(Domain.model_validate(raw))
        except ValidationError as e:
            raise CatalogError(f"domain {name!r} in catalog {source!r} is invalid: {_first_error(e)}") from None
    return _catalog(parsed, source)


# --------------------------------------------------------------------------------------------------------- SGD


def _sibling_slot_values(source: str) -> dict | None:
    """`train_slot_values.json` beside `train_schema.json` (or `slot_values.json` beside `schema.json`)."""
    path = Path(source)
    if not path.name.endswith("schema.json"):
        return None
    candidate = path.with_name(path.name[: -len("schema.json")] + "slot_values.json")
    if not candidate.is_file():
        return None
    try:
        values = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CatalogError(f"slot values file {str(candidate)!r} cannot be read ({e})") from None
    logger.info("using SGD slot values from %s", candidate)
    return values if isinstance(values, dict) else None


def _sgd_tool_names(services: list[dict]) -> dict[tuple[str, str], str]:
    """(service, intent) -> a snake_case tool name unique across the catalog."""
    by_base: dict[str, list[str]] = defaultdict(list)
    for svc in services:
        for intent in svc.get("intents", []):
            by_base[snake(intent["name"])].append(svc["service_name"])
    names: dict[tuple[str, str], str] = {}
    for svc in services:
        for intent in svc.get("intents", []):
            base = snake(intent["name"])
            sharing = by_base[base]
            if len(sharing) == 1:
                names[(svc["service_name"], intent["name"])] = base
                continue
            numbers = [m.group(1) if (m := re.search(r"_(\d+)$", s)) else s for s in sharing]
            if len(set(numbers)) == len(numbers):
                suffix = numbers[sharing.index(svc["service_name"])]
            else:
                suffix = snake(svc["service_name"])
            names[(svc["service_name"], intent["name"])] = f"{base}_{snake(suffix)}"
    return names


def _sgd_entity(svc: dict, values: dict) -> str | None:
    categorical = {s["name"] for s in svc["slots"] if s.get("is_categorical")}
    candidates: list[str] = []
    for intent in svc["intents"]:
        if intent.get("is_transactional"):
            continue
        args = {*intent.get("required_slots", []), *intent.get("optional_slots", {})}
        for slot in intent.get("result_slots", []):
            if (slot == "title" or slot.endswith("_name")) and slot not in categorical and slot not in args:
                candidates.append(slot)
    booked = {s for i in svc["intents"] if i.get("is_transactional") for s in i.get("required_slots", [])}
    declared = {s["name"]: s for s in svc["slots"]}
    about = set(_words(f"{svc['service_name']} {svc.get('description', '')}"))
    # an incidental name (origin_station_name of a bus trip) is no entity: keep names a transaction needs, names
    # with known values, or names of what the service is about ("car" of "Car rental service")
    candidates = [
        s for s in dict.fromkeys(candidates)
        if s in booked or declared.get(s, {}).get("possible_values") or values.get(s)
        or {_words(s)[0], _words(s)[0] + "s"} & about
    ]
    if not candidates:
        return None
    # the entity a transaction needs (restaurant_name for ReserveRestaurant) beats an incidental name (theater_name)
    return max(candidates, key=lambda s: (s in booked, bool(values.get(s) or declared.get(s, {}).get("possible_values"))))


def from_sgd(services: list[dict], *, source: str, slot_values: dict | None = None) -> Catalog:
    if slot_values is None:
        slot_values = _sibling_slot_values(source) or {}
    tool_names = _sgd_tool_names(services)
    domains = []
    placeholders: list[str] = []
    for svc in services:
        try:
            domains.append(_sgd_domain(svc, tool_names, slot_values.get(svc["service_name"], {}) or {}, source, placeholders))
        except (KeyError, TypeError, AttributeError) as e:
            raise CatalogError(
                f"SGD service {svc.get('service_name', '?')!r} in {source!r} lacks a field ({e}); "
                "each service needs slots and intents as in SGD's schema.json"
            ) from None
    if placeholders:
        shown = ", ".join(placeholders[:6]) + (f" and {len(placeholders) - 6} more" if len(placeholders) > 6 else "")
        logger.warning("%d SGD slots with no values use synthesized values (Faker): %s", len(placeholders), shown)
    return _catalog(domains, source)


def _sgd_domain(svc: dict, tool_names: dict[tuple[str, str], str], values: dict, source: str,
                placeholders: list[str]) -> Domain:
    name = svc["service_name"]
    entity_slot = _sgd_entity(svc, values)
    args = {s for i in svc["intents"] for s in [*i.get("required_slots", []), *i.get("optional_slots", {})]}
    # a result with no values too ("balance" of CheckBalance), or the lookup finds nothing to say
    results = {s for i in svc["intents"] for s in i.get("result_slots", [])}

    slots: list[SlotSpec] = []
    types: dict[str, str] = {}
    for raw in svc["slots"]:
        slot_name = raw["name"]
        possible = _unique(raw.get("possible_values", []))
        observed = _unique(values.get(slot_name, []))
        enum: list[str] | None = None
        if raw.get("is_categorical") and possible:
            type_ = _infer_type(possible)
            pool = possible if type_ != "string" else []
            enum = possible if type_ == "string" else None
        else:
            pool = _unique([*observed, *possible])
            type_ = _infer_type(pool)
        if not (enum or pool) and (slot_name in args or slot_name in results or slot_name == entity_slot):
            pool = synthetic_pool(slot_name, "string", ENTITY_POOL_SIZE if slot_name == entity_slot else POOL_SIZE,
                                  description=raw.get("description") or "")
            placeholders.append(f"{name}.{slot_name}")
        types[slot_name] = type_
        slots.append(SlotSpec(
            name=slot_name,
            description=raw.get("description") or _label(slot_name),
            type=type_,  # type: ignore[arg-type]
            enum=enum,
            values=[] if enum else pool,
            vague=_generic_vague(slot_name, type_),
            invalid=_generic_invalid(enum, slot_name) if enum else [],
            mention=_mention(slot_name),
        ))

    tools = []
    for intent in svc["intents"]:
        takes = {*intent.get("required_slots", []), *intent.get("optional_slots", {})}
        if intent.get("is_transactional"):
            kind = "action"
        elif entity_slot and entity_slot in intent.get("result_slots", []) and entity_slot not in takes:
            kind = "search"
        else:
            kind = "lookup"
        # "dontcare" (no preference) becomes a nullable optional parameter whose default is null
        optional = {
            s: None if d == _DONTCARE else _typed(types.get(s, "string"), d) for s, d in intent.get("optional_slots", {}).items()
        }
        tools.append(ToolDef(
            name=tool_names[(name, intent["name"])],
            description=intent.get("description") or _label(intent["name"]),
            kind=kind,  # type: ignore[arg-type]
            required=list(intent.get("required_slots", [])),
            optional=optional,
            result_slots=list(intent.get("result_slots", [])),
        ))

    attributes: list[str] = []
    if entity_slot:
        returned = [s for t in tools if t.kind == "search" for s in t.result_slots]
        attributes = list(dict.fromkeys([entity_slot, *returned]))
    try:
        return Domain(
            name=snake(name),
            description=svc.get("description") or _label(name),
            entity=(entity_slot.removesuffix("_name").replace("_", " ") if entity_slot else None),
            entity_slot=entity_slot,
            attributes=attributes,
            slots=slots,
            tools=tools,
            source="sgd",
        )
    except ValidationError as e:
        raise CatalogError(f"SGD service {name!r} in {source!r} is inconsistent: {_first_error(e)}") from None


# ------------------------------------------------------------------------------------------------------ OpenAI

_SEARCH_VERBS = {"search", "find", "list"}
_LOOKUP_VERBS = {"get", "check", "lookup", "look", "show", "fetch"}
_JSON_TYPES = {"string", "integer", "number", "boolean"}


def tool_kind(name: str) -> str:
    """Kind of a tool from the verb its name starts with.

    >>> tool_kind("search_hotels"), tool_kind("getWeather"), tool_kind("book_table")
    ('search', 'lookup', 'action')
    """
    words = _words(snake(name))
    verb = words[0] if words else ""
    return "search" if verb in _SEARCH_VERBS else "lookup" if verb in _LOOKUP_VERBS else "action"


def _property_type(tool: str, slot: str, prop: dict) -> str:
    type_ = prop.get("type")
    if isinstance(type_, list):
        non_null = [t for t in type_ if t != "null"]
        type_ = non_null[0] if len(non_null) == 1 else type_
    if type_ is None and "enum" in prop:
        values = prop["enum"]
        type_ = "integer" if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values) else "string"
    if type_ not in _JSON_TYPES:
        raise CatalogError(
            f"tool {tool!r} parameter {slot!r} has type {type_!r}; speakrl tools take string, integer, number or "
            "boolean parameters, so flatten or remove it"
        )
    return type_


def _function_of(item: dict, i: int, source: str) -> dict:
    fn = item.get("function", item)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise CatalogError(f"tool #{i} in {source!r} has no function name; each tool needs \"function\": {{\"name\": ...}}")
    return fn


def from_openai(items: list[Any], *, source: str) -> Catalog:
    default_domain = snake(Path(source).stem) or "tools"
    grouped: dict[str, list[dict]] = defaultdict(list)
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not _is_openai_tool(item):
            raise CatalogError(f"tool #{i} in {source!r} is not an OpenAI tool; expected {{\"type\": \"function\", \"function\": {{...}}}}")
        fn = _function_of(item, i, source)
        if fn["name"] in seen:
            raise CatalogError(f"tool {fn['name']!r} is defined twice in {source!r}; tool names must be unique, so rename or remove one")
        seen.add(fn["name"])
        hint = item.get("domain")
        if hint is not None and (not isinstance(hint, str) or not snake(hint)):
            raise CatalogError(f"tool {fn['name']!r} in {source!r} has domain {hint!r}; the domain hint must be a non-empty name")
        grouped[snake(hint) if hint else default_domain].append(fn)
    return _catalog([_openai_domain(name, fns, source) for name, fns in grouped.items()], source)


def _openai_domain(name: str, functions: list[dict], source: str) -> Domain:
    props: dict[str, dict] = {}
    types: dict[str, str] = {}
    owner: dict[str, str] = {}
    tools: list[ToolDef] = []
    for fn in functions:
        tool = fn["name"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        try:
            jsonschema.Draft202012Validator.check_schema(params)
        except jsonschema.SchemaError as e:
            where = "/".join(str(p) for p in e.path) or "top level"
            raise CatalogError(
                f"tool {tool!r} has parameters that are not a valid JSON Schema ({e.message} at {where}); fix its \"parameters\""
            ) from None
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise CatalogError(f"tool {tool!r} has parameters of type {params.get('type')!r}; parameters must be a JSON Schema object")
        properties = params.get("properties", {})
        required = list(params.get("required", []))
        missing = [r for r in required if r not in properties]
        if missing:
            raise CatalogError(f"tool {tool!r} requires parameter {missing[0]!r}, which is not in its properties; add it or drop it from \"required\"")
        optional: dict[str, Any] = {}
        dropped: list[str] = []
        for slot, prop in properties.items():
            if not isinstance(prop, dict):
                raise CatalogError(f"tool {tool!r} parameter {slot!r} is not a JSON Schema object; describe it as {{\"type\": ...}}")
            type_ = _property_type(tool, slot, prop)
            if slot in types and types[slot] != type_:
                raise CatalogError(
                    f"parameter {slot!r} is {types[slot]!r} in tool {owner[slot]!r} but {type_!r} in tool {tool!r}; "
                    "give a shared parameter one type or rename one"
                )
            if slot in props and "enum" in prop and "enum" in props[slot] and prop["enum"] != props[slot]["enum"]:
                raise CatalogError(
                    f"parameter {slot!r} has different enums in tools {owner[slot]!r} and {tool!r}; "
                    "use one list of values or rename one"
                )
            types[slot] = type_
            owner.setdefault(slot, tool)
            if slot not in required and prop.get("default") is None:
                # no default: what the tool does without it is unknown, so it is left out (see the module docstring)
                dropped.append(slot)
                continue
            merged = props.setdefault(slot, {})
            for key in ("description", "enum", "minimum", "maximum", "format", "pattern"):
                if key in prop and key not in merged:
                    merged[key] = prop[key]
            merged.setdefault("examples", [])
            merged["examples"] += [*prop.get("examples", []), *([prop["default"]] if prop.get("default") is not None else [])]
            if slot not in required:
                optional[slot] = _typed(type_, prop["default"])
        if dropped:
            logger.info("tool %s: optional parameters without a default are left out: %s", tool, ", ".join(dropped))
        tools.append(ToolDef(
            name=tool,
            description=fn.get("description") or _label(tool),
            kind=tool_kind(tool),  # type: ignore[arg-type]
            required=required,
            optional=optional,
        ))

    entity_slot = _openai_entity(tools, types)
    slots = []
    for slot, prop in props.items():
        type_ = types[slot]
        enum_raw = prop.get("enum")
        enum = [str(v) for v in enum_raw] if enum_raw and type_ == "string" else None
        pool = _unique(enum_raw) if enum_raw and not enum else _unique(prop["examples"])
        # what the slot holds, for vague phrasings and placeholders: its name, plus a JSON Schema format ("date")
        kind = f"{slot} {prop['format']}" if isinstance(prop.get("format"), str) else slot
        if not enum and not pool:
            size = ENTITY_POOL_SIZE if slot == entity_slot else POOL_SIZE
            pool = synthetic_pool(kind, type_, size, prop.get("minimum"), prop.get("maximum"),
                                  description=prop.get("description") or "", pattern=prop.get("pattern"))
            logger.info("parameter %s has no enum or examples; using synthetic values (%s, ...)", slot, pool[0])
        slots.append(SlotSpec(
            name=slot,
            description=prop.get("description") or _label(slot),
            type=type_,  # type: ignore[arg-type]
            enum=enum,
            values=[] if enum else pool,
            vague=_generic_vague(kind, type_),
            invalid=_generic_invalid(enum, slot) if enum else [],
            mention=_mention(kind),
        ))

    attributes: list[str] = []
    if entity_slot:
        searched = [s for t in tools if t.kind == "search" for s in t.slots]
        attributes = list(dict.fromkeys([entity_slot, *searched]))
        for t in tools:
            if t.kind == "search":
                t.result_slots = attributes
            elif entity_slot in t.slots:
                t.result_slots = list(dict.fromkeys([*t.slots, *attributes]))
    elif any(t.kind == "search" for t in tools):
        logger.warning("domain %s has search tools but no entity slot (a *_name/*_id/title parameter); searches return no rows", name)
    try:
        return Domain(
            name=name,
            # what the tools do, not where they came from: prompts show it, and a file name means nothing to a user
            description="Tools to " + "; ".join(t.description[:1].lower() + t.description[1:].rstrip(".") for t in tools),
            entity=(re.sub(r"_?(name|title|id)$", "", entity_slot).replace("_", " ") or entity_slot) if entity_slot else None,
            entity_slot=entity_slot,
            attributes=attributes,
            slots=slots,
            tools=tools,
            source="openai",
        )
    except ValidationError as e:
        raise CatalogError(f"tools of domain {name!r} in {source!r} are inconsistent: {_first_error(e)}") from None


def _openai_entity(tools: list[ToolDef], types: dict[str, str]) -> str | None:
    """The slot naming an entity: required by a non-search tool, taken by no search tool, named like an identifier."""
    if not any(t.kind == "search" for t in tools):
        return None
    searched = {s for t in tools if t.kind == "search" for s in t.slots}
    uses = Counter(s for t in tools if t.kind != "search" for s in t.required)
    named = [
        s for s in uses
        if s not in searched and types.get(s) == "string" and re.search(r"(^|_)(name|title|id)$", s)
    ]
    return max(named, key=lambda s: uses[s]) if named else None
