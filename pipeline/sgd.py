"""SpeakER-SGD: the human-written dialogues of the Schema-Guided Dialogue corpus (Rastogi et al., 2020) as
contract rows (`Dialogue`), labelled from SGD's annotations, then checked by the same validators as generated rows.

How a dialogue maps onto the contract:

- messages: a system message (the generator's, naming the dialogue's services); each USER turn verbatim; for each
  SYSTEM turn, first one assistant `tool_calls` message per frame with a `service_call` (the intent's tool name as
  the SGD schema importer names it, arguments typed by the schema: "2" -> 2 for an integer slot), then a `tool`
  message with its `service_results`, then the system utterance as the assistant's text. `reasoning_content` stays
  empty: SGD has no reasoning, and text derived from the acts would be our words, not the annotators'.
- tool results, in the simulator's shape (`pipeline/catalog/sim.py`): searches and lookups
  `{"count": n, "results": [...]}`, transactions `{"status": "confirmed", **result}` or `{"status": "failed"}`
  when SGD's backend returned nothing (NOTIFY_FAILURE), typed like the arguments.
- labels, from the acts only: a turn with REQUEST acts -> `clarify` with exactly the requested slots; CONFIRM acts
  -> `clarify` of kind `confirm` with the confirmed slots; a call -> `tool_call`; anything else -> `answer`.
- informs: the values the user gave to categorical slots (SGD annotates them with INFORM acts and no span: the
  user said "economical", the act says price_range=moderate), with the user turn; grounding accepts them there.
- `goal`: the final call's arguments. `ambiguities`: one `missing_slot` per slot the assistant REQUESTed (its
  candidates are the values the question offered); a dialogue without REQUEST is a control.
- tools: every intent of every service of the dialogue, as OpenAI specs. Optional slots whose SGD default is
  "dontcare" stay in the spec without a default (the catalog makes them nullable with a null default, see
  `pipeline/catalog/importers.py`): SGD's calls carry them when the user states a preference ("cheap" -> price_range).

A dialogue that cannot be converted (a value that does not fit its slot's type, a call to an intent its service
does not have) becomes a Rejection with its reason; a file that is not SGD's layout stops the import with one
sentence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from datetime import date
from functools import lru_cache
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema

from speakrl.pipeline.catalog import load_catalog
from speakrl.pipeline.catalog.importers import snake
from speakrl.pipeline.catalog.sim import argument_error
from speakrl.pipeline.catalog.specs import coerce, slot_schema
from speakrl.pipeline.checks import normalize
from speakrl.pipeline.errors import CatalogError, SourceError
from speakrl.pipeline.stages.dialogues import system_prompt as offline_system_prompt
from speakrl.schemas.catalog import Catalog, Domain, SlotSpec, ToolDef
from speakrl.schemas.dialogue import (
    Ambiguity, Dialogue, FunctionCall, FunctionSpec, Inform, Message, Provenance, Rejection, ToolCall, ToolSpec,
    TurnLabel,
)

logger = logging.getLogger(__name__)

# SGD's split directories, and the names the published dataset gives them.
SPLITS = {"train": "train", "dev": "validation", "test": "test"}
_DONTCARE = "dontcare"
_FILE = re.compile(r"dialogues_\d+\.json")
# Every SGD dialogue takes place on Friday 2019-03-01: the corpus's relative days ("tomorrow", "next friday")
# resolve against it, so the system message states it (a model cannot turn "tomorrow" into a date otherwise).
SGD_TODAY = date(2019, 3, 1)


def published_split(row_id: str) -> str:
    """The published split of a SpeakER-SGD row, from the SGD split its id names ("sgd-dev-1_00000" -> validation).

    >>> published_split("sgd-dev-1_00000"), published_split("sgd-train-12_00011")
    ('validation', 'train')
    """
    _, split, _ = row_id.split("-", 2)
    return SPLITS[split]


@dataclass
class Service:
    """An SGD service as the importer needs it: its catalog domain, its tools by intent, and their specs."""

    name: str
    domain: Domain
    tools: dict[str, ToolDef]  # SGD intent name -> catalog tool
    specs: dict[str, ToolSpec]  # tool name -> OpenAI spec (with the "dontcare" slots, see the module docstring)
    categorical: frozenset[str] = frozenset()  # slots SGD annotates by value, without a span in the utterance


def _spec(domain: Domain, tool: ToolDef, intent: dict) -> ToolSpec:
    properties = {name: slot_schema(domain.slot(name)) for name in tool.required}
    for name, default in intent.get("optional_slots", {}).items():
        if default == _DONTCARE:
            properties[name] = slot_schema(domain.slot(name))
        else:
            properties[name] = slot_schema(domain.slot(name), tool.optional[name], with_default=True)
    parameters = {"type": "object", "properties": properties, "required": list(tool.required), "additionalProperties": False}
    return ToolSpec(function=FunctionSpec(name=tool.name, description=tool.description, parameters=parameters))


def services_of(schema: list[dict], catalog: Catalog) -> dict[str, Service]:
    """Each service of an SGD schema, matched to the catalog the SGD importer made of the same schema."""
    out = {}
    for svc in schema:
        domain = catalog.domain(snake(svc["service_name"]))
        # the importer keeps intents in order, one tool each, so the i-th tool is the i-th intent
        tools = {intent["name"]: tool for intent, tool in zip(svc["intents"], domain.tools)}
        specs = {tools[i["name"]].name: _spec(domain, tools[i["name"]], i) for i in svc["intents"]}
        categorical = frozenset(s["name"] for s in svc.get("slots", []) if s.get("is_categorical"))
        out[svc["service_name"]] = Service(svc["service_name"], domain, tools, specs, categorical)
    return out


def load_schema(path: Path) -> tuple[dict[str, Service], Catalog]:
    """The services of an SGD `schema.json` (one sentence if it is not one)."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"SGD schema {str(path)!r} cannot be read ({e}); pass SGD's schema.json with --schema") from None
    if not (isinstance(schema, list) and schema and all(isinstance(s, dict) and "service_name" in s for s in schema)):
        raise SourceError(f"{str(path)!r} is not an SGD schema (a list of services with service_name); pass SGD's schema.json with --schema")
    # The catalog is needed for tool names and slot types only: rows carry SGD's own values, so the importer's
    # warning about placeholder value pools does not apply here.
    importer_log = logging.getLogger("speakrl.pipeline.catalog.importers")
    level = importer_log.level
    importer_log.setLevel(logging.ERROR)
    try:
        catalog = load_catalog(str(path))
    except CatalogError as e:
        raise SourceError(f"SGD schema {str(path)!r} cannot be imported: {e}") from None
    finally:
        importer_log.setLevel(level)
    return services_of(schema, catalog), catalog


# ---------------------------------------------------------------------------------------------------- reading


def split_dirs(path: Path) -> list[tuple[str, Path]]:
    """(SGD split, directory) pairs: `path` itself when it holds dialogue files, else its train/dev/test folders."""
    if not path.is_dir():
        raise SourceError(f"SGD directory {str(path)!r} does not exist; pass a folder of SGD dialogues_*.json files")
    if any(_FILE.fullmatch(p.name) for p in path.iterdir()):
        split = path.name if path.name in SPLITS else "train"
        if path.name not in SPLITS:
            logger.warning("%s is not named train, dev or test; its dialogues go to the train split", path)
        return [(split, path)]
    found = [(s, path / s) for s in SPLITS if (path / s).is_dir() and any(_FILE.fullmatch(p.name) for p in (path / s).iterdir())]
    if not found:
        raise SourceError(f"{str(path)!r} holds no SGD dialogues_*.json files (nor train/, dev/ or test/ folders with them)")
    return found


def read_dialogues(directory: Path) -> Iterator[tuple[str, dict]]:
    """(file name, raw dialogue) of every dialogues_*.json file in `directory`, in file order."""
    for path in sorted(p for p in directory.iterdir() if _FILE.fullmatch(p.name)):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SourceError(f"SGD file {str(path)!r} is not valid JSON ({e}); replace it with SGD's original") from None
        if not isinstance(data, list):
            raise SourceError(f"SGD file {str(path)!r} is not a list of dialogues; replace it with SGD's original")
        for i, raw in enumerate(data):
            if not (isinstance(raw, dict) and isinstance(raw.get("dialogue_id"), str) and isinstance(raw.get("turns"), list)
                    and isinstance(raw.get("services"), list)):
                raise SourceError(f"dialogue #{i} of {str(path)!r} lacks dialogue_id, services or turns; replace the file with SGD's original")
            yield path.name, raw


# ---------------------------------------------------------------------------------------------------- converting


class Unconvertible(Exception):
    """A dialogue that does not fit its schema; becomes a Rejection (code, sentence)."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")


def _typed_value(domain: Domain, slot: str, value: Any) -> Any:
    try:
        spec = domain.slot(slot)
    except StopIteration:
        return value
    try:
        return coerce(spec, value)
    except (TypeError, ValueError):
        raise Unconvertible("bad_value", f"{domain.name}.{slot}={value!r} is not a {spec.type}") from None


def _typed(domain: Domain, values: dict[str, Any]) -> dict[str, Any]:
    return {k: _typed_value(domain, k, v) for k, v in values.items()}


def tool_result(tool: ToolDef, domain: Domain, results: list[dict]) -> dict[str, Any]:
    """SGD's `service_results` in the simulator's result shape (see the module docstring)."""
    rows = [_typed(domain, r) for r in results]
    if tool.kind == "action":
        return {"status": "confirmed", **rows[0]} if rows else {"status": "failed"}
    return {"count": len(rows), "results": rows}


def _acts(turn: dict) -> list[dict]:
    return [a for frame in turn["frames"] for a in frame.get("actions", [])]


def _label(turn: dict, index: int) -> TurnLabel:
    acts = _acts(turn)
    requested = list(dict.fromkeys(a["slot"] for a in acts if a["act"] == "REQUEST"))
    confirmed = list(dict.fromkeys(a["slot"] for a in acts if a["act"] == "CONFIRM"))
    if requested:
        return TurnLabel(message_index=index, act="clarify", target_slots=requested, kind="request")
    if confirmed:
        return TurnLabel(message_index=index, act="clarify", target_slots=confirmed, kind="confirm")
    if any(a["act"] == "OFFER" for a in acts):
        return TurnLabel(message_index=index, act="answer", kind="offer")
    return TurnLabel(message_index=index, act="answer")


def _aliases(turn: dict, into: dict[str, list[str]]) -> None:
    """The user's words for values they gave in other words: SGD's INFORM values whose canonical form differs."""
    for a in _acts(turn):
        if a["act"] == "INFORM":
            for said, canonical in zip(a.get("values", []), a.get("canonical_values", [])):
                if normalize(said) != normalize(canonical) and said not in into.setdefault(canonical, []):
                    into[canonical].append(said)


def _informs(turn: dict, index: int, services: dict[str, Service], into: list[Inform]) -> None:
    """The values the user turn at `index` gave to categorical slots, as SGD's INFORM acts state them: the human
    label that the user expressed the value, in words no span points at ("economical" -> price_range=moderate)."""
    for frame in turn["frames"]:
        categorical = services[frame["service"]].categorical if frame.get("service") in services else frozenset()
        for a in frame.get("actions", []):
            if a["act"] == "INFORM" and a["slot"] in categorical:
                for value in a.get("canonical_values", []):
                    if value != _DONTCARE:
                        into.append(Inform(message_index=index, slot=a["slot"], value=str(value)))


def system_prompt(domains: list[Domain]) -> str:
    """The offline rows' system message, with SGD's reference date (SGD records no time of day)."""
    return offline_system_prompt(domains[0] if domains else None, SGD_TODAY.isoformat())


def convert(raw: dict, split: str, services: dict[str, Service], versions: dict[str, str] | None = None) -> Dialogue:
    """One SGD dialogue as a contract row (raises Unconvertible when it does not fit the schema)."""
    missing = [s for s in raw["services"] if s not in services]
    if missing:
        raise Unconvertible("unknown_service", f"service {missing[0]!r} is not in the schema")
    used = [services[s] for s in raw["services"]]
    messages = [Message(role="system", content=system_prompt([s.domain for s in used]))]
    labels: list[TurnLabel] = []
    calls: list[FunctionCall] = []
    ambiguities: dict[str, Ambiguity] = {}
    aliases: dict[str, list[str]] = {}
    informs: list[Inform] = []
    for turn in raw["turns"]:
        if turn.get("speaker") == "USER":
            messages.append(Message(role="user", content=turn["utterance"]))
            _aliases(turn, aliases)
            _informs(turn, len(messages) - 1, services, informs)
            continue
        for frame in turn["frames"]:
            if "service_call" not in frame:
                continue
            if frame["service"] not in services:
                raise Unconvertible("unknown_service", f"service {frame['service']!r} is not in the schema")
            service = services[frame["service"]]
            method = frame["service_call"]["method"]
            if method not in service.tools:
                raise Unconvertible("unknown_intent", f"{frame['service']} has no intent {method!r}")
            tool = service.tools[method]
            call = FunctionCall(name=tool.name, arguments=json.dumps(
                _typed(service.domain, frame["service_call"]["parameters"]), ensure_ascii=False))
            call_id = f"call_{len(calls)}"
            labels.append(TurnLabel(message_index=len(messages), act="tool_call"))
            messages.append(Message(role="assistant", tool_calls=[ToolCall(id=call_id, function=call)]))
            result = tool_result(tool, service.domain, frame.get("service_results") or [])
            messages.append(Message(role="tool", content=json.dumps(result, ensure_ascii=False), tool_call_id=call_id, name=tool.name))
            calls.append(call)
        label = _label(turn, len(messages))
        if label.kind == "request":
            for a in _acts(turn):
                if a["act"] == "REQUEST":
                    ambiguities.setdefault(a["slot"], Ambiguity(
                        type="missing_slot", slot=a["slot"], detail="not given before the assistant asked for it",
                        candidates=list(a.get("values", []))))
        labels.append(label)
        messages.append(Message(role="assistant", content=turn["utterance"]))
    final = calls[-1] if calls else None
    failed = bool(final) and json.loads(messages[_last_tool(messages)].content or "{}").get("status") == "failed"
    return Dialogue(
        id=f"sgd-{split}-{raw['dialogue_id']}",
        scenario_id=f"sgd-{split}-{raw['dialogue_id']}",
        domain="+".join(s.domain.name for s in used),
        tools=[spec for s in used for spec in s.specs.values()],
        messages=messages,
        labels=labels,
        gold_calls=calls,
        goal=final.args() if final else {},
        ambiguities=list(ambiguities.values()),
        needs_clarification=bool(ambiguities),
        outcome="failed" if failed or not final else "completed",
        provenance=Provenance(backend="sgd", model=None, seed=0, versions=versions or {}),
        aliases=aliases,
        informs=informs,
    )


def _last_tool(messages: list[Message]) -> int:
    return max(i for i, m in enumerate(messages) if m.role == "tool")


# ---------------------------------------------------------------------------------------------------- validating


def _call_key(name: str, args: dict[str, Any]) -> str:
    return name + json.dumps(args, sort_keys=True, ensure_ascii=False)


@lru_cache(maxsize=None)
def _validator(parameters_json: str) -> Any:
    return fastjsonschema.compile(json.loads(parameters_json))


class RecordedTools:
    """SGD's backend as the corpus recorded it for one dialogue, in the simulator's interface (`argument_error`,
    `execute`), so `validate.execution_consistent` runs unchanged: the n-th replay of a call (tool and arguments)
    returns what SGD's file records for the n-th such call in the raw dialogue (read from SGD's frames, not from the
    converted row, so a row whose tool message is not SGD's result fails). Recordings are per dialogue and per
    occurrence: SGD's backend was sampled per call, so the same call made twice in one dialogue can have different
    results (1_00107: 10 restaurants, then 9), and each is checked against its own recording. Build one instance
    per replay of a dialogue (`check` does)."""

    def __init__(self, raw: dict, services: dict[str, Service], tools: list[ToolSpec]):
        self.recorded: dict[str, list[Any]] = {}
        self._replays: dict[str, int] = {}  # replays so far, per call key
        self._validators = {spec.name: _validator(json.dumps(spec.function.parameters, sort_keys=True)) for spec in tools}
        for turn in raw["turns"]:
            for frame in turn.get("frames", []):
                if "service_call" in frame and frame.get("service") in services:
                    service = services[frame["service"]]
                    tool = service.tools.get(frame["service_call"]["method"])
                    if tool is not None:
                        key = _call_key(tool.name, _typed(service.domain, frame["service_call"]["parameters"]))
                        self.recorded.setdefault(key, []).append(
                            tool_result(tool, service.domain, frame.get("service_results") or []))

    def argument_error(self, tool_name: str, args: Any) -> str | None:
        return argument_error(self._validators, tool_name, args)

    def execute(self, tool_name: str, args: dict[str, Any]) -> dict[str, Any]:
        key = _call_key(tool_name, args)  # before validating: fastjsonschema fills declared defaults into `args`
        error = self.argument_error(tool_name, args)
        if error:
            return {"error": error}
        recordings = self.recorded.get(key)
        if not recordings:
            return {"error": "SGD recorded no result for this call"}
        n = self._replays.get(key, 0)
        self._replays[key] = n + 1
        return recordings[min(n, len(recordings) - 1)]  # a replay past the recordings repeats the last one


def domain_slots(services: dict[str, Service], dialogues: Iterable[Dialogue]) -> dict[str, dict[str, SlotSpec]]:
    """The validators' `Context.slots` for SGD rows: the slots of each dialogue's services under its domain name
    ("restaurants_1", or "hotels_2+restaurants_1" when it spans two)."""
    by_domain = {s.domain.name: s.domain for s in services.values()}
    slots: dict[str, dict[str, SlotSpec]] = {}
    for d in dialogues:
        if d.domain not in slots:
            slots[d.domain] = {s.name: s for name in reversed(d.domain.split("+")) for s in by_domain[name].slots}
    return slots


def check(d: Dialogue, raw: dict, services: dict[str, Service], catalog: Catalog,
          slots: dict[str, dict[str, SlotSpec]]) -> str | None:
    """Every validator of `pipeline/stages/validate.py`, unchanged, with SGD's recorded backend for the raw dialogue
    `raw` in place of the simulator: the first failing check's reason, or None."""
    from speakrl.pipeline.stages import validate

    backend = RecordedTools(raw, services, d.tools)
    return validate.check(d, validate.Context(catalog, backend, slots))  # type: ignore[arg-type]


def import_split(split: str, directory: Path, schema: Path, dedup: Any,
                 versions: dict[str, str]) -> Iterator[Dialogue | Rejection]:
    """Convert and validate one split's dialogues, streamed in file order: each comes out as an accepted Dialogue
    or as a Rejection with its reason."""
    from speakrl.pipeline.stages import validate

    services, catalog = load_schema(schema)
    slots: dict[str, dict[str, SlotSpec]] = {}
    for file_name, raw in read_dialogues(directory):
        try:
            d = convert(raw, split, services, versions)
        except Unconvertible as e:
            code, _, reason = str(e).partition(": ")
            yield Rejection(id=f"sgd-{split}-{raw['dialogue_id']}", stage="import", check=code,
                            reason=f"{reason} ({file_name})", row=raw)
            continue
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # a turn or frame without SGD's fields
            raise SourceError(f"dialogue {raw['dialogue_id']!r} of {file_name!r} in {str(directory)!r} is malformed "
                              f"({type(e).__name__}: {e}); replace the file with SGD's original") from None
        if d.domain not in slots:
            slots.update(domain_slots(services, [d]))
        reason = check(d, raw, services, catalog, slots)
        if reason:
            yield validate.rejection(d, "validate", reason)
            continue
        duplicate = dedup.reason(d.id, validate.dialogue_text(d))
        yield validate.rejection(d, "dedup", duplicate) if duplicate else d


def _inputs_hash(splits: list[tuple[str, Path]], schemas: dict[str, Path]) -> str:
    """What the import read, as "sgd-" + a hash of each split's schema and dialogue files (names and sizes)."""
    digest = hashlib.sha256()
    for split, directory in splits:
        digest.update(split.encode() + schemas[split].read_bytes())
        for path in sorted(p for p in directory.iterdir() if _FILE.fullmatch(p.name)):
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return "sgd-" + digest.hexdigest()[:16]


def import_corpus(path: Path, out: Path, schema: Path | None = None, threshold: float = 0.9, num_perm: int = 64) -> dict[str, Any]:
    """`speakrl import sgd`: SGD dialogues under `path` -> a run directory laid out like `speakrl run`'s
    (config.yaml, manifest.json, accepted.jsonl, rejected.jsonl, stats.json, dataset/); returns the stats."""
    import yaml

    from speakrl.pipeline import runner
    from speakrl.pipeline.io import atomic_write_text, build_dir_atomically, dump_row
    from speakrl.pipeline.stages import publish, validate
    from speakrl.schemas.manifest import Manifest, StageRecord

    splits = split_dirs(path)
    schemas = {}
    for split, directory in splits:
        chosen = schema or directory / "schema.json"
        if not chosen.is_file():
            raise SourceError(f"no schema for the SGD dialogues in {str(directory)!r}; pass SGD's schema.json with --schema")
        schemas[split] = chosen
    manifest_path = out / "manifest.json"
    if manifest_path.is_file() and not json.loads(manifest_path.read_text(encoding="utf-8")).get("config_hash", "").startswith("sgd-"):
        raise SourceError(f"{str(out)!r} holds a `speakrl run` run; import SGD into a new --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SourceError(f"cannot write to output directory {str(out)!r} ({e.strerror}); choose another --out") from None
    start = time.perf_counter()
    versions = runner.versions()
    dedup = validate.Deduplicator(threshold, num_perm)
    generated, tally, rejected_counts = 0, runner.Tally(), Counter()  # counters, not a record per row
    # streamed: the full corpus (~23,000 dialogues with their results) would not fit in memory as objects
    tmp = {name: out / f".{name}.jsonl.tmp" for name in ("accepted", "rejected")}
    try:
        with open(tmp["accepted"], "w", encoding="utf-8") as acc, open(tmp["rejected"], "w", encoding="utf-8") as rej:
            for split, directory in splits:
                before = generated
                for row in import_split(split, directory, schemas[split], dedup, versions):
                    generated += 1
                    if isinstance(row, Rejection):
                        rejected_counts[row.check] += 1
                        rej.write(dump_row(row) + "\n")
                    else:
                        acc.write(dump_row(row) + "\n")
                        tally.add(runner.summary_record(row.model_dump(mode="json")))
                logger.info("SGD %s: %d dialogues", split, generated - before)
    except BaseException:
        for path in tmp.values():
            path.unlink(missing_ok=True)
        raise
    for name, path in tmp.items():
        os.replace(path, out / f"{name}.jsonl")
    config = {"source": "sgd", "sgd_splits": [s for s, _ in splits], "catalog": str(schemas[splits[0][0]]),
              "out": str(out), "seed": 0, "n": generated,
              "validate": {"near_duplicate_threshold": threshold, "num_perm": num_perm}}
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    stats = tally.stats(rejected_counts, generated)
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2))
    manifest = Manifest(speakrl_version=versions["speakrl"], created=runner._now(), seed=0, n=generated,
                        config_hash=_inputs_hash(splits, schemas), versions=versions,
                        stages={"import": StageRecord(status="done", seconds=round(time.perf_counter() - start, 3))},
                        counts={k: v for k, v in stats.items() if isinstance(v, int)})
    atomic_write_text(out / "manifest.json", manifest.model_dump_json(indent=2))
    if tally.n:
        build_dir_atomically(out / "dataset", lambda staging: publish.build_dataset_dir(out, staging))  # all or nothing
    else:
        logger.warning("no SGD dialogue was accepted; %s has no dataset/ (see rejected.jsonl)", out)
    return stats
