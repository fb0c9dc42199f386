"""Tool catalogs: the built-in one (schemas/tools/*.json), OpenAI tools JSON files and SGD schemas."""

from __future__ import annotations

import json
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
    return [Domain.model_validate_json(p.read_text(encoding="utf-8")) for p in files]


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
