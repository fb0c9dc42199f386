"""Tool catalogs: the built-in one (schemas/tools/*.json), OpenAI tools JSON files and SGD schemas."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from speakrl.pipeline.errors import CatalogError
from speakrl.schemas.catalog import Catalog, Domain, check_generation


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    message = e["msg"].removeprefix("Value error, ")  # our validators' messages are whole sentences already
    where = ".".join(str(p) for p in e["loc"])
    return f"{message} at {where}" if where else message


def builtin_domains() -> list[Domain]:
    files = sorted(p for p in resources.files("speakrl.schemas").joinpath("tools").iterdir() if p.name.endswith(".json"))
    return [widen_pools(Domain.model_validate_json(p.read_text(encoding="utf-8"))) for p in files]


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def widen_pools(domain: Domain) -> Domain:
    """Every calendar day between a date slot's earliest and latest listed value, and every clock time (on the
    quarter hour, or every 5 minutes when the list has such times) between a time slot's first and last, so a run
    does not repeat the same seven dates and times; the catalog's span (and so its order: pickups before returns)
    is kept. Slots with relative values ("today", "now") keep their list.

    >>> d = Domain.model_validate({"name": "x", "description": "", "slots": [
    ...     {"name": "day", "description": "", "values": ["June 28th", "July 2nd"]},
    ...     {"name": "time", "description": "", "values": ["9:00 am", "10:00 am"]}], "tools": [
    ...     {"name": "t", "description": "", "kind": "action", "required": ["day", "time"]}]})
    >>> widen_pools(d).slot("day").values, widen_pools(d).slot("time").values
    (['June 28th', 'June 29th', 'June 30th', 'July 1st', 'July 2nd'], ['9:00 am', '9:15 am', '9:30 am', '9:45 am', '10:00 am'])
    """
    from datetime import timedelta

    from speakrl.pipeline.quality import parse_date, parse_time

    slots = []
    for slot in domain.slots:
        values = list(slot.values)
        if slot.enum or len(values) < 2 or slot.type != "string":
            slots.append(slot)
            continue
        days = [parse_date(v, None) for v in values]
        times = [parse_time(v) if re.fullmatch(r"\d{1,2}:\d{2} [ap]m", v) else None for v in values]
        if all(days) and all(re.fullmatch(r"[A-Z][a-z]+ \d{1,2}(st|nd|rd|th)", v) for v in values):
            for i in range(1, len(days)):  # a list that runs into the next year ("November 1st" ... "February 1st")
                while days[i] < days[i - 1]:
                    days[i] = days[i].replace(year=days[i].year + 1)
            first, last = min(days), max(days)
            wide = [first + timedelta(days=i) for i in range((last - first).days + 1)]
            values = [f"{d.strftime('%B')} {_ordinal(d.day)}" for d in wide]
        elif all(times):
            minutes = [h * 60 + m for h, m in times]
            step = 15 if all(m % 15 == 0 for m in minutes) else 5
            values = [f"{(t // 60) % 12 or 12}:{t % 60:02d} {'am' if t < 720 else 'pm'}"
                      for t in range(min(minutes), max(minutes) + 1, step)]
        slots.append(slot.model_copy(update={"values": values}) if values != slot.values else slot)
    return domain.model_copy(update={"slots": slots})


def load_catalog(source: str = "builtin", slot_values: str | None = None) -> Catalog:
    """Load a catalog to generate from: "builtin", a speakrl catalog JSON, an OpenAI tools JSON file, or an SGD
    schema.json."""
    catalog = _load_catalog(source, slot_values)
    try:
        check_generation(catalog)
    except ValueError as e:
        raise CatalogError(f"catalog {source!r} cannot generate scenarios: {e}") from None
    return catalog


def _load_catalog(source: str, slot_values: str | None) -> Catalog:
    try:
        if source == "builtin":
            return Catalog(domains=builtin_domains())
        from speakrl.pipeline.catalog import importers  # local: importers use this module's helpers

        path = Path(source)
        if not path.is_file():
            raise CatalogError(f"catalog file {source!r} does not exist; pass 'builtin' or a path to a tools JSON or SGD schema.json")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CatalogError(f"catalog {source!r} is not valid JSON ({e}); fix the file or pass another --catalog") from None
        except OSError as e:
            raise CatalogError(f"catalog {source!r} cannot be read ({e.strerror}); check the path and its permissions") from None
        values = None
        if slot_values:
            try:
                values = json.loads(Path(slot_values).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                raise CatalogError(f"slot values file {slot_values!r} cannot be read as UTF-8 JSON "
                                   f"({_shape_error(e)})") from None
            if not isinstance(values, dict):
                raise CatalogError(f"slot values file {slot_values!r} must hold a JSON object of slot values")
        try:
            return importers.from_json(data, source=source, slot_values=values)
        except (AttributeError, TypeError, KeyError, IndexError) as e:
            # An input of the wrong shape ("parameters": true, an intent given as a string) reached an importer.
            raise CatalogError(f"catalog {source!r} does not have the expected shape ({_shape_error(e)}); see the "
                               "README for the OpenAI tools and SGD schema formats") from None
    except ValidationError as e:
        raise CatalogError(f"catalog {source!r} is invalid: {_first_error(e)}") from None


def _shape_error(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"a required field {e.args[0]!r} is missing"
    return " ".join(str(e).split())[:120] or type(e).__name__
