"""Publish stage: accepted dialogues → leak-free splits → typed parquet + dataset card, in the Hub repo layout.

`build_dataset_dir(run_dir, out_dir)` writes, locally, exactly what `pipeline.hub.push` uploads:

    README.md                                        dataset card (YAML metadata + prose, prompts/dataset_card.md.j2)
    assets/distributions.png                         act mix per turn, questions per dialogue, splits, rejections
    data/default/{train,validation,test,test_ood}-00000-of-0000N.parquet      one row per accepted dialogue
    data/decision_points/{train,validation,test,test_ood}-*.parquet           one row per assistant turn
    data/rejected/train-00000-of-00001.parquet       rejected rows with their reasons

Splits are made over *groups*: dialogues that share a scenario, a goal (same domain, tool and arguments) or are
near-duplicates (MinHash over their text) are joined into one group first, and a group goes to one split only, so
nothing the model saw in training reappears in evaluation. `test_ood` holds out whole domains (by default one
domain picked by the seed) and, optionally, tools; it measures generalization to tools never trained on. Decision
points follow their dialogue's split.

The `tools` column is ONE JSON string per row: the list of OpenAI function specs (`[{"type": "function",
"function": {"name", "description", "parameters"}}]`). TRL's SFTTrainer decodes it itself
(`json.loads(tools) if isinstance(tools, str)`) and passes the list to `apply_chat_template(tools=...)`; elsewhere
call `json.loads(row["tools"])`. A struct column cannot hold it: every tool has different JSON-Schema
parameters, and Arrow would merge them into one struct padded with nulls that chat templates would render.
For the same reason `goal`, `defaults`, the calls in `gold_calls`/`gold_call` (`arguments` as in the OpenAI API)
and the rejected `row` are JSON strings.

`messages`, `prompt` and `completion` are lists of chat messages, each stored with the `datasets.Json` feature
(datasets >= 4.7) so that it holds exactly the fields it uses: templates test `'tool_calls' in message`, take
`message.tool_calls | length`, and `items`/`tojson` the tool-call `arguments`, so unused fields are left out (not
null), `content` is always a string ("" on a tool-call turn) and `arguments` is a JSON object. A struct column
would pad every message with nulls; that broke 42 of the 59 tool-capable templates TRL bundles, and a JSON-string
`arguments` made Qwen2.5's double-encode (see `benchmarks/chat_templates.py` and tests/pipeline/stages/
test_chat_templates.py). The data contract (`schemas/dialogue.py`) keeps OpenAI's shape; `chat_message` and
`contract_message` convert at this boundary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import os
import re
import shutil
import sys
import tempfile
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from speakrl.pipeline.decision_points import DecisionPoint, decision_points
from speakrl.pipeline.errors import PublishError, RunDirError
from speakrl.pipeline.io import atomic_write_text, json_text, read_jsonl, release_freed_memory
from speakrl.pipeline.stages import validate
from speakrl.schemas.dialogue import Dialogue, Message, Rejection

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test", "test_ood")
# SpeakER-SGD (`speakrl publish RUN --sgd SGD_RUN`): config -> the config whose rows and features it has
SGD_CONFIGS = {"sgd": "default", "sgd_decision_points": "decision_points"}
CONFIGS = ("default", "decision_points", "rejected", *SGD_CONFIGS)
FIGURE_PATH = "assets/distributions.png"
_SHARD_NAME = re.compile(r"(train|validation|test|test_ood)-\d{5}-of-\d{5}\.parquet")
ROWS_PER_SHARD = 50_000  # ~250 MB of parquet at ~5 kB a dialogue; the Hub viewer prefers shards under 500 MB
PAPER_CITATION = """@article{acikgoz2025speakrl,
  title   = {SpeakRL: Synergizing Reasoning, Speaking, and Acting in Language Models with Reinforcement Learning},
  author  = {Acikgoz, Emre Can and Oh, Jinoh and Hao, Jie and Jeon, Joo Hyuk and Ji, Heng and Hakkani-T{\\"u}r, Dilek
             and Tur, Gokhan and Li, Xiang and Ma, Chengyuan and Fan, Xing},
  journal = {arXiv preprint arXiv:2512.13159},
  year    = {2025}
}"""
SGD_CITATION = """@inproceedings{rastogi2020sgd,
  title     = {Towards Scalable Multi-domain Conversational Agents: The Schema-Guided Dialogue Dataset},
  author    = {Rastogi, Abhinav and Zang, Xiaoxue and Sunkara, Srinivas and Gupta, Raghav and Khaitan, Pranav},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2020}
}"""


@dataclass
class PublishOptions:
    """How the run is split and described. Defaults suit a default `speakrl run`."""

    seed: int | None = None  # None: the run's seed from config.yaml
    validation_fraction: float = 0.1  # of the in-domain rows
    test_fraction: float = 0.1
    # Domains held out for test_ood. None: one domain picked by the seed when the catalog has 3+ domains;
    # []: no OOD split.
    ood_domains: list[str] | None = None
    ood_tools: list[str] = field(default_factory=list)  # also hold out every dialogue that calls one of these
    near_duplicate_threshold: float | None = None  # Jaccard over word 3-grams; None: the run's validate threshold
    num_perm: int = 64
    license: str | None = None  # None: cc-by-sa-4.0 if SGD-derived values were used, else cc-by-4.0
    pretty_name: str = "SpeakER"
    repo_id: str | None = None  # shown in the card's usage snippet; None: a placeholder
    figure: bool = True
    sgd_run: Path | str | None = None  # a `speakrl import sgd` run, published as the sgd configs (`add_sgd_configs`)

    def __post_init__(self) -> None:
        if not (0 <= self.validation_fraction < 1 and 0 <= self.test_fraction < 1):
            raise PublishError("validation and test fractions must be between 0 and 1")
        if self.validation_fraction + self.test_fraction >= 1:
            raise PublishError("validation and test fractions must leave some rows for train")


# --------------------------------------------------------------------------------------------------------------------
# Features and rows


def features() -> dict[str, Any]:
    """The explicit `datasets.Features` of each config (imported lazily: datasets is slow to import)."""
    from datasets import Features, Json, List, Value

    string, call = Value("string"), {"name": Value("string"), "arguments": Value("string")}
    message = Json()  # one chat message as chat templates expect it (see `chat_message`)
    default = Features(
        {
            "id": string,
            "scenario_id": string,
            "domain": string,
            "tools": string,  # JSON list of OpenAI tool specs (see module docstring)
            "messages": List(message),
            # Not `labels`: TRL's SFTTrainer takes a `labels` column for token labels.
            "turn_labels": List({"message_index": Value("int32"), "act": string, "target_slots": List(string), "kind": string}),
            "gold_calls": List(call),
            "goal": string,  # JSON object: every argument of the final call
            "ambiguities": List({"type": string, "slot": string, "detail": string, "candidates": List(string)}),
            "ambiguity_types": List(string),  # sorted types present; empty for controls
            "needs_clarification": Value("bool"),
            "outcome": string,
            "num_assistant_turns": Value("int32"),
            "num_clarifications": Value("int32"),
            "provenance": {
                "backend": string,
                "model": string,
                "prompt_hash": string,
                "seed": Value("int64"),
                "versions": string,  # JSON object: package -> version
                "usage": string,  # JSON object: token counts
            },
            "aliases": string,  # JSON object: value -> the user's own words for it (SGD's annotation; "no reminder" for "none")
            # user turn, slot, value: closed-set values the user gave in other words (SpeakER-SGD); [] elsewhere
            "informs": List({"message_index": Value("int32"), "slot": string, "value": string}),
        }
    )
    points = Features(
        {
            "id": string,
            "dialogue_id": string,
            "scenario_id": string,
            "domain": string,
            "turn": Value("int32"),
            "tools": string,
            "prompt": List(message),
            "completion": List(message),  # the gold assistant message: prompt-completion SFT as is
            "act": string,
            "target_slots": List(string),
            "kind": string,  # request | confirm | offer, or null (see TurnLabel.kind)
            "gold_call": call,
            "gold_content": string,
            "gold_reasoning": string,
            "needs_clarification": Value("bool"),
            "ambiguity_types": List(string),
            "goal": string,
            "defaults": string,  # JSON object: declared defaults of the gold call's tool
        }
    )
    rejected = Features(
        {
            "id": string,
            "stage": string,
            "check": string,
            "reason": string,
            "domain": string,
            "row": string,  # JSON of the rejected row, when there is one
            "raw": string,  # raw model output, when the failure came from an LLM
        }
    )
    return {"default": default, "decision_points": points, "rejected": rejected,
            **{name: {"default": default, "decision_points": points}[like] for name, like in SGD_CONFIGS.items()}}


def chat_message(message: Message | dict[str, Any]) -> dict[str, Any]:
    """A contract message in the shape chat templates expect: unused fields left out (templates test
    `'tool_calls' in message` or take `length` of it), tool-call arguments a JSON object (templates `tojson` or
    `items` them); `content` always present ("" on a tool-call turn). Inverse of `contract_message`.

    >>> m = Message(role="assistant", tool_calls=[{"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}])
    >>> chat_message(m)
    {'role': 'assistant', 'tool_calls': [{'id': 'c1', 'type': 'function', 'function': {'name': 'f', 'arguments': {'a': 1}}}], 'content': ''}
    """
    dump = message.model_dump(mode="json") if isinstance(message, Message) else message
    out = {k: v for k, v in dump.items() if v is not None}
    out.setdefault("content", "")  # a tool-call turn has no text; templates read `message.content` regardless
    if "tool_calls" in out:
        out["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                             for c in out["tool_calls"]]
    return out


def contract_message(message: dict[str, Any]) -> dict[str, Any]:
    """A published message back into the data contract's shape (arguments as the JSON string the generator wrote).

    >>> contract_message({"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}]})
    {'role': 'assistant', 'content': None, 'tool_calls': [{'id': 'c1', 'function': {'name': 'f', 'arguments': '{"a": 1}'}}]}
    """
    if not message.get("tool_calls"):
        return message
    calls = [{**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
             for c in message["tool_calls"]]
    return {**message, "content": message.get("content") or None, "tool_calls": calls}


def dialogue_row(d: Dialogue) -> dict[str, Any]:
    """A Dialogue as a row of the `default` config."""
    dump = d.model_dump(mode="json")
    return {
        "id": d.id,
        "scenario_id": d.scenario_id,
        "domain": d.domain,
        "tools": json_text(dump["tools"]),
        "messages": [chat_message(m) for m in dump["messages"]],
        "turn_labels": dump["labels"],
        "gold_calls": dump["gold_calls"],
        "goal": json_text(d.goal),
        "ambiguities": dump["ambiguities"],
        "ambiguity_types": sorted({a.type for a in d.ambiguities}),
        "needs_clarification": d.needs_clarification,
        "outcome": d.outcome,
        "num_assistant_turns": sum(m.role == "assistant" for m in d.messages),
        "num_clarifications": sum(label.act == "clarify" for label in d.labels),
        "provenance": {**dump["provenance"], "versions": json_text(d.provenance.versions), "usage": json_text(d.provenance.usage)},
        "aliases": json_text(d.aliases),
        "informs": dump["informs"],
    }


def dialogue_from_row(row: dict[str, Any]) -> Dialogue:
    """Inverse of `dialogue_row`: a published row back into the data contract (derived columns are dropped)."""
    prov = row["provenance"]
    return Dialogue.model_validate(
        {
            "id": row["id"],
            "scenario_id": row["scenario_id"],
            "domain": row["domain"],
            "tools": json.loads(row["tools"]),
            "messages": [contract_message(m) for m in row["messages"]],
            "labels": row["turn_labels"],
            "gold_calls": row["gold_calls"],
            "goal": json.loads(row["goal"]),
            "ambiguities": row["ambiguities"],
            "needs_clarification": row["needs_clarification"],
            "outcome": row["outcome"],
            "provenance": {**prov, "versions": json.loads(prov["versions"]), "usage": json.loads(prov["usage"])},
            "aliases": json.loads(row.get("aliases") or "{}"),
            "informs": row.get("informs") or [],
        }
    )


def decision_point_row(p: DecisionPoint, tools_json: str | None = None, messages: bool = True) -> dict[str, Any]:
    """A DecisionPoint as a row of the `decision_points` config (`tools_json`: the dialogue's, already encoded;
    `messages=False`: without `prompt` and `completion`, which the caller has)."""
    exclude = ({"tools"} if tools_json is not None else set()) | (set() if messages else {"prompt", "completion"})
    dump = p.model_dump(mode="json", exclude=exclude or None)
    return {
        **dump,
        **({"prompt": [chat_message(m) for m in dump["prompt"]],
            "completion": [chat_message(m) for m in dump["completion"]]} if messages else {}),
        "tools": tools_json if tools_json is not None else json_text(dump["tools"]),
        "goal": json_text(p.goal),
        "defaults": json_text(p.defaults),
    }


def rejection_row(r: Rejection) -> dict[str, Any]:
    """A Rejection as a row of the `rejected` config."""
    domain = r.row.get("domain") if isinstance(r.row, dict) and isinstance(r.row.get("domain"), str) else None
    return {
        "id": r.id,
        "stage": r.stage,
        "check": r.check,
        "reason": r.reason,
        "domain": domain,
        "row": None if r.row is None else json_text(r.row),
        "raw": r.raw,
    }


# --------------------------------------------------------------------------------------------------------------------
# Leak-free splits


@dataclass(slots=True)
class Entry:
    """What splitting and the card need of one dialogue, without the dialogue. Publishing holds these, as the columns
    of an `Entries`, and streams the rows themselves."""

    id: str
    scenario_id: str
    domain: str
    tools_called: tuple[str, ...]
    goal_key: int  # 64-bit hash of (domain, tool, arguments): equal goals, equal keys
    # The MinHash of the validate stage's shingles, as uint32s (its values are below 2**32); or, in a build, the
    # row's number in the build's `MinHashFile` (256 bytes a row that then stay on disk).
    hashvalues: bytes | int
    ambiguity_types: tuple[str, ...]
    assistant_turns: int
    clarifications: int
    acts: tuple[str, ...]
    n_points: int
    backend: str
    model: str | None
    chars: int  # its messages and tool specs as JSON text: what a chat template renders, less the template's own


_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}  # few distinct tuples (acts, tools, types), shared by every entry


def row_chars(row: dict[str, Any]) -> int:
    """Characters of an encoded `default` row's messages and tool specs (`Entry.chars`)."""
    return sum(map(len, row["messages"])) + len(row["tools"])


def _entries_of(dialogues: Sequence[Dialogue], num_perm: int, rows: Sequence[dict[str, Any]] | None = None) -> list[Entry]:
    """The dialogues' Entries; `rows`: their `encoded_rows` rows, when made already. The MinHash is of the same text
    and shingles as the validate stage's dedup: one definition of "near-duplicate"."""
    if not dialogues:
        return []
    rows = rows if rows is not None else [encoded_row(d) for d in dialogues]
    values = validate.MinHasher(num_perm).hashvalues([validate.dialogue_text(d) for d in dialogues])
    return [entry(d, v.tobytes(), row_chars(row)) for d, v, row in zip(dialogues, values, rows)]


def entry(d: Dialogue, hashvalues: bytes, chars: int) -> Entry:
    """`d`'s Entry; `hashvalues`: its MinHash values as uint32 bytes; `chars`: its `row_chars`."""
    # Repeated names and tuples are shared and the goal kept as a hash.
    intern = sys.intern

    def shared(values: Iterable[str]) -> tuple[str, ...]:
        names = tuple(intern(v) for v in values)
        return _TUPLES.setdefault(names, names)

    return Entry(
        id=d.id,
        scenario_id=d.scenario_id,
        domain=intern(d.domain),
        tools_called=shared(c.name for c in d.gold_calls),
        goal_key=validate.hash64(_goal_key(d).encode()),
        hashvalues=hashvalues,
        ambiguity_types=shared(sorted({a.type for a in d.ambiguities})),
        assistant_turns=sum(m.role == "assistant" for m in d.messages),
        clarifications=sum(lab.act == "clarify" for lab in d.labels),
        acts=shared(lab.act for lab in d.labels),
        n_points=len(d.labels),
        backend=intern(d.provenance.backend),
        model=intern(d.provenance.model) if d.provenance.model else None,
        chars=chars,
    )


class MinHashFile:
    """The MinHash values of a build's rows, `num_perm` uint32s a row, read by row number: they stay on disk (a
    memory map would count them in the process's resident memory)."""

    def __init__(self, path: Path, num_perm: int):
        self.file, self.width, self.num_perm = open(path, "rb"), 4 * num_perm, num_perm

    def __len__(self) -> int:
        return os.fstat(self.file.fileno()).st_size // self.width

    def __getitem__(self, row: int) -> np.ndarray:
        return np.frombuffer(os.pread(self.file.fileno(), self.width, row * self.width), dtype=np.uint32)

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a (rows, num_perm) array."""
        data = os.pread(self.file.fileno(), self.width * (stop - start), start * self.width)
        return np.frombuffer(data, dtype=np.uint32).reshape(-1, self.num_perm)

    def close(self) -> None:
        self.file.close()


class Entries:
    """The Entries of many dialogues as columns of numpy arrays, a few dozen bytes a row (a list of `Entry` objects
    costs ~300): a build holds these for every accepted row, so its memory stays nearly flat with run size.

    Repeated values (domains, tuples of tool names, of ambiguity types and of acts, backends, models) are codes into
    `values`; the scenario and goal are kept as 64-bit leak keys; the MinHash values are rows of `minhashes`, an
    array or a `MinHashFile` that keeps them on disk. Indexing or iterating gives `Entry` objects."""

    CODED = ("domain", "tools_called", "ambiguity_types", "acts", "backend", "model")

    def __init__(self, base: dict[str, np.ndarray], values: dict[str, list], minhashes: np.ndarray | MinHashFile,
                 index: np.ndarray | None = None):
        # A subset (`take`) keeps the positions of its rows in `base` instead of copies of every column.
        self.base, self.values, self.minhashes, self.index = base, values, minhashes, index
        self.columns = _Columns(base, index)

    def __len__(self) -> int:
        return len(self.base["id"]) if self.index is None else len(self.index)

    def __getitem__(self, i: int) -> Entry:
        c, v = self.base, self.values
        i = i if self.index is None else int(self.index[i])
        row = int(c["minhash_row"][i])
        return Entry(
            id=c["id"][i].decode(), scenario_id=c["scenario_id"][i].decode(), domain=v["domain"][c["domain"][i]],
            tools_called=v["tools_called"][c["tools_called"][i]], goal_key=int(c["goal_key"][i]),
            hashvalues=row if isinstance(self.minhashes, MinHashFile) else self.minhashes[row].tobytes(),
            ambiguity_types=v["ambiguity_types"][c["ambiguity_types"][i]], assistant_turns=int(c["assistant_turns"][i]),
            clarifications=int(c["clarifications"][i]), acts=v["acts"][c["acts"][i]], n_points=int(c["n_points"][i]),
            backend=v["backend"][c["backend"][i]], model=v["model"][c["model"][i]], chars=int(c["chars"][i]),
        )

    def __iter__(self) -> Iterator[Entry]:
        return (self[i] for i in range(len(self)))

    def id(self, i: int) -> str:
        return self.base["id"][i if self.index is None else self.index[i]].decode()

    def take(self, index: np.ndarray) -> Entries:
        """The rows at `index` (positions), sharing this one's columns, values and MinHash store."""
        return Entries(self.base, self.values, self.minhashes, index if self.index is None else self.index[index])

    def positions(self) -> np.ndarray:
        """The positions of the rows in `base`."""
        return np.arange(len(self)) if self.index is None else self.index

    def decoded(self, name: str) -> list:
        """One of the coded columns, one value per row."""
        return [self.values[name][c] for c in self.columns[name].tolist()]

    def distinct(self, name: str) -> set:
        """The values of a coded column that some row has."""
        return {self.values[name][c] for c in np.unique(self.columns[name]).tolist()}

    def mask(self, name: str, keep: Callable[[Any], bool]) -> np.ndarray:
        """Rows whose value of a coded column passes `keep`."""
        codes = [c for c, value in enumerate(self.values[name]) if keep(value)]
        return np.isin(self.columns[name], codes)

    def minhash(self, i: int) -> np.ndarray:
        return self.minhashes[int(self.base["minhash_row"][i if self.index is None else self.index[i]])]

    def band_hashes(self, bands: list[slice], b: int, chunk: int = 8_192) -> np.ndarray:
        """uint64, a row each: a 64-bit hash of each row's MinHash values in band `b` of `bands` (equal bands, equal
        hashes; a shared hash is then checked value by value). The store is read 8,192 rows at a time (a larger read
        buffer stays under glibc's mmap threshold and is kept) and one band is hashed per call: 16 bytes a row while
        it runs, not the values."""
        band, total = bands[b], len(self.minhashes)
        hashes = np.empty(total, dtype=np.uint64)
        for start in range(0, total, chunk):
            stop = min(total, start + chunk)
            block = self.minhashes.block(start, stop) if isinstance(self.minhashes, MinHashFile) else self.minhashes[start:stop]
            h = np.full(stop - start, 0xCBF29CE484222325 ^ b, dtype=np.uint64)  # FNV-1a over the band's values
            for col in block[:, band].T:
                h = (h ^ col.astype(np.uint64)) * np.uint64(0x100000001B3)
            hashes[start:stop] = h
        return hashes[self.columns["minhash_row"]]


class _Columns(Mapping):
    """The columns of an `Entries`: its base columns, or their rows at `index` (taken when read)."""

    def __init__(self, base: dict[str, np.ndarray], index: np.ndarray | None):
        self.base, self.index = base, index

    def __getitem__(self, name: str) -> np.ndarray:
        return self.base[name] if self.index is None else self.base[name][self.index]

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


class _EntriesBuilder:
    """Entries appended in pieces (a part's rows at a time), then `build` into one `Entries`."""

    def __init__(self, num_perm: int):
        self.num_perm = num_perm
        self.pieces: list[dict[str, np.ndarray]] = []
        self.codes: dict[str, dict[Any, int]] = {name: {} for name in Entries.CODED}
        self.minhashes: list[np.ndarray] = []  # MinHash values given as bytes, kept in memory
        self.in_memory = 0

    def extend(self, entries: Sequence[Entry]) -> None:
        n = len(entries)

        def code(name: str) -> np.ndarray:
            codes = self.codes[name]
            return np.fromiter((codes.setdefault(getattr(e, name), len(codes)) for e in entries), dtype=np.int32, count=n)

        def count(name: str) -> np.ndarray:
            return np.fromiter((getattr(e, name) for e in entries), dtype=np.int32, count=n)

        in_memory = [e.hashvalues for e in entries if isinstance(e.hashvalues, bytes)]
        if in_memory:
            if len(in_memory) != n:
                raise ValueError("entries mix MinHash values and row numbers")  # a programming error
            self.minhashes.append(np.frombuffer(b"".join(in_memory), dtype=np.uint32).reshape(n, self.num_perm))
            rows = np.arange(self.in_memory, self.in_memory + n, dtype=np.int64)
            self.in_memory += n
        else:
            rows = np.fromiter((e.hashvalues for e in entries), dtype=np.int64, count=n)
        self.pieces.append({
            "id": np.array([e.id.encode() for e in entries], dtype="S") if n else np.empty(0, dtype="S1"),
            "scenario_id": np.array([e.scenario_id.encode() for e in entries], dtype="S") if n else np.empty(0, dtype="S1"),
            "scenario_key": np.fromiter((_scenario_key(e.scenario_id) for e in entries), dtype=np.uint64, count=n),
            "goal_key": np.fromiter((e.goal_key for e in entries), dtype=np.uint64, count=n),
            "minhash_row": rows,
            **{name: code(name) for name in Entries.CODED},
            **{name: count(name) for name in ("assistant_turns", "clarifications", "n_points", "chars")},
        })

    def build(self, store: MinHashFile | None = None) -> Entries:
        if not self.pieces:
            self.extend([])
        columns = {}
        for k in list(self.pieces[0]):  # a column at a time, each piece dropped once joined: no second copy of all
            columns[k] = _narrowest(np.concatenate([p.pop(k) for p in self.pieces]))
        self.pieces = []
        values = {name: list(codes) for name, codes in self.codes.items()}
        if self.in_memory or store is None:
            minhashes: Any = np.concatenate(self.minhashes) if self.minhashes else np.empty((0, self.num_perm), np.uint32)
        else:
            minhashes = store
        return Entries(columns, values, minhashes)


def _narrowest(column: np.ndarray) -> np.ndarray:
    """An int32/int64 column of codes, counts or row numbers in the smallest integer type that holds it (most fit in
    one byte: at a million rows that is ~30 MB less).

    >>> _narrowest(np.array([0, 3, 255], dtype=np.int32)).dtype, _narrowest(np.array([0, 70_000])).dtype
    (dtype('uint8'), dtype('uint32'))
    """
    if column.dtype not in (np.int32, np.int64) or not len(column) or column.min() < 0:
        return column
    return column.astype(np.min_scalar_type(int(column.max())), copy=False)


def _entries(rows: Sequence[Dialogue | Entry] | Entries, num_perm: int, store: MinHashFile | None = None) -> Entries:
    """`rows` as Entries (Dialogues are read into Entries; Entries whose MinHash values are row numbers are in `store`)."""
    if isinstance(rows, Entries):
        return rows
    dialogues = [r for r in rows if isinstance(r, Dialogue)]
    made = iter(_entries_of(dialogues, num_perm))
    builder = _EntriesBuilder(num_perm)
    builder.extend([r if isinstance(r, Entry) else next(made) for r in rows])
    return builder.build(store)


def _scenario_key(scenario_id: str) -> int:
    return validate.hash64(b"scenario:" + scenario_id.encode())


def _goal_key(d: Dialogue) -> str:
    tool = d.gold_calls[-1].name if d.gold_calls else ""
    return json_text([d.domain, tool, sorted(d.goal.items(), key=lambda kv: kv[0])])


def _pairs_sharing_a_band(entries: Entries, bands: list[slice]) -> list[tuple[int, int]]:
    """Index pairs (earlier, later) of rows whose MinHash values are equal in at least one band, in order of the
    later row, then the earlier."""
    pairs: set[tuple[int, int]] = set()
    for b, band in enumerate(bands):
        column = entries.band_hashes(bands, b)
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        same = np.flatnonzero(ordered[1:] == ordered[:-1])  # (rare) runs of rows with one hash
        if not len(same):
            continue
        starts = same[np.r_[True, same[1:] != same[:-1] + 1]]
        for start in starts.tolist():
            stop = start + 1
            while stop < len(ordered) and ordered[stop] == ordered[start]:
                stop += 1
            by_values: dict[bytes, list[int]] = defaultdict(list)  # the hash shared: the values decide
            for i in sorted(order[start:stop].tolist()):
                by_values[entries.minhash(i)[band].tobytes()].append(i)
            for rows in by_values.values():
                pairs.update((j, i) for n, i in enumerate(rows) for j in rows[:n])
    return sorted(pairs, key=lambda p: (p[1], p[0]))


def near_duplicate_pairs(rows: Sequence[Dialogue | Entry] | Entries, threshold: float, num_perm: int = 64,
                         store: MinHashFile | None = None) -> list[tuple[int, int]]:
    """Index pairs (earlier, later) whose word-3-gram Jaccard is at least `threshold`: rows sharing an LSH band
    (datasketch's bands for the threshold) are candidates, the MinHash estimate decides. `store`: where Entries
    whose `hashvalues` is a row number keep them."""
    entries = _entries(rows, num_perm, store)
    pairs = []
    for j, i in _pairs_sharing_a_band(entries, validate.lsh_bands(threshold, num_perm)):
        values = entries.minhash(i)
        if np.count_nonzero(values == entries.minhash(j)) / len(values) >= threshold:
            pairs.append((j, i))
    return pairs


def _first_with_same_key(keys: np.ndarray) -> np.ndarray:
    """For each row, the position of the first row with the same key: what np.unique's index and inverse give, in
    one stable sort and ~37 bytes a row at the peak instead of ~50.

    >>> _first_with_same_key(np.array([5, 3, 5, 3, 7], dtype=np.uint64)).tolist()
    [0, 1, 0, 1, 4]
    """
    order = np.argsort(keys, kind="stable")  # equal keys keep their row order: a run starts at its first row
    ordered = keys[order]
    starts = np.empty(len(keys), dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    del ordered
    run = np.cumsum(starts, dtype=np.int64 if len(keys) >= 2**31 else np.int32)
    run -= 1
    firsts = order[starts]
    del starts
    first = np.empty(len(keys), dtype=np.int64)
    first[order] = firsts[run]
    return first


def _group_labels(entries: Entries, threshold: float, num_perm: int) -> np.ndarray:
    """Each row's group (connected components of "same scenario", "same goal" and "near-duplicate"), numbered in
    order of the groups' first rows."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(entries)
    if not n:
        return np.empty(0, dtype=np.int64)
    heads, tails = [], []
    for key in ("scenario_key", "goal_key"):  # each row joined to the first row with its key (most have their own)
        first = _first_with_same_key(entries.columns[key])
        joined = np.flatnonzero(first != np.arange(n))
        heads.append(joined.astype(np.int32))
        tails.append(first[joined].astype(np.int32))
        del first
    pairs = np.array(near_duplicate_pairs(entries, threshold, num_perm), dtype=np.int32).reshape(-1, 2)
    heads.append(pairs[:, 0])
    tails.append(pairs[:, 1])
    heads, tails = np.concatenate(heads), np.concatenate(tails)
    graph = coo_matrix((np.ones(len(heads), dtype=np.int8), (heads, tails)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    del graph, heads, tails
    if labels[0] == 0 and not (np.diff(np.maximum.accumulate(labels)) > 1).any():
        return labels  # already numbered in order of first rows
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def leakage_groups(rows: Sequence[Dialogue | Entry] | Entries, threshold: float, num_perm: int = 64,
                   store: MinHashFile | None = None) -> list[list[int]]:
    """Connected components of "same scenario", "same goal" and "near-duplicate": each must stay in one split."""
    labels = _group_labels(_entries(rows, num_perm, store), threshold, num_perm)
    groups: list[list[int]] = [[] for _ in range(int(labels.max()) + 1 if len(labels) else 0)]
    for i, g in enumerate(labels.tolist()):
        groups[g].append(i)
    return groups


def default_ood_domains(domains: Iterable[str], seed: int) -> list[str]:
    """One domain, picked by the seed, when there are at least three (else holding one out leaves too little).

    >>> default_ood_domains(["a", "b", "c"], seed=0) == default_ood_domains(["c", "b", "a"], seed=0)
    True
    >>> default_ood_domains(["a", "b"], seed=0)
    []
    """
    names = sorted(set(domains))
    if len(names) < 3:
        return []
    return [random.Random(seed).choice(names)]


@dataclass
class SplitResult:
    splits: dict[str, Any]  # the rows given to assign_splits (Dialogues or Entries: a list or an Entries), by split
    ood_domains: list[str]
    ood_tools: list[str]
    dropped: Any  # in-domain rows tied (near-duplicate) to a held-out row: in no split
    threshold: float
    codes: np.ndarray | None = None  # each given row's split (its index in SPLITS, -1: dropped), in the given order


def _picked(rows: Sequence | Entries, index: np.ndarray) -> Any:
    """The given rows at `index`: an Entries if they were one, else a list."""
    return rows.take(index) if isinstance(rows, Entries) else [rows[i] for i in index.tolist()]


def assign_splits(dialogues: Sequence[Dialogue | Entry] | Entries, options: PublishOptions, seed: int, threshold: float,
                  store: MinHashFile | None = None) -> SplitResult:
    """Deterministic, leak-free train / validation / test / test_ood, over Dialogues or their Entries."""
    given = _entries(dialogues, options.num_perm, store)
    known = given.distinct("domain")
    ood_domains = default_ood_domains(known, seed) if options.ood_domains is None else list(options.ood_domains)
    ood_tools = list(options.ood_tools)
    unknown = sorted(set(ood_domains) - known)
    if unknown:
        raise PublishError(f"held-out domain(s) {unknown} have no accepted dialogue; choose among {sorted(known)}")

    # Sort first so the input order (shard order, worker interleaving) cannot change the result. Rows are handled
    # as columns by their position in this order (no per-row Python objects: at a million rows each costs ~100 MB).
    order = np.argsort(given.columns["id"], kind="stable")
    entries = given.take(order)
    held = entries.mask("domain", lambda d: d in ood_domains) | \
        entries.mask("tools_called", lambda tools: any(name in ood_tools for name in tools))
    labels = _group_labels(entries, threshold, options.num_perm)
    n_groups = int(labels.max()) + 1 if len(labels) else 0
    ood_group = np.bincount(labels, weights=held, minlength=n_groups) > 0
    split_of = np.full(len(entries), -1, dtype=np.int8)  # each row's split, in id order (-1: dropped)
    split_of[held] = SPLITS.index("test_ood")
    dropped = ~held & ood_group[labels]
    if dropped.any():
        logger.warning("dropped %d in-domain dialogue(s) that near-duplicate a held-out one", int(dropped.sum()))
    if (ood_domains or ood_tools) and not held.any():
        raise PublishError("the out-of-domain split is empty; pick held-out domains or tools that have dialogues")
    in_domain = np.flatnonzero(~ood_group)  # groups, in order of their first row
    if not len(in_domain):
        raise PublishError("holding out those domains and tools leaves no dialogue for train; hold out fewer")

    # Walk the groups in a seeded order; validation and test take groups until they reach their share.
    # A group's first row (labels count up from 0 in row order) has its smallest id.
    first_row = np.flatnonzero(np.r_[True, labels[1:] > np.maximum.accumulate(labels)[:-1]])
    ids = entries.columns["id"]
    keys = np.empty(len(in_domain), dtype="S32")
    for k, i in enumerate(first_row[in_domain].tolist()):
        keys[k] = hashlib.sha256(b"%d:%s" % (seed, ids[i])).digest()
    del ids, first_row
    walk = in_domain[np.argsort(keys, kind="stable")]
    del keys
    sizes = np.bincount(labels, minlength=n_groups)
    total = int(sizes[in_domain].sum())
    targets = {"validation": round(total * options.validation_fraction), "test": round(total * options.test_fraction)}
    group_split = np.zeros(n_groups, dtype=np.int8)  # train
    filled = {"validation": 0, "test": 0}
    for g in walk.tolist():
        if all(filled[name] >= targets[name] for name in filled):
            break  # the rest is train
        for name in ("validation", "test"):
            if filled[name] < targets[name]:
                group_split[g] = SPLITS.index(name)
                filled[name] += int(sizes[g])
                break
    in_domain_rows = ~ood_group[labels]
    split_of[in_domain_rows] = group_split[labels[in_domain_rows]]
    codes = np.empty(len(entries), dtype=np.int8)
    codes[order] = split_of
    rows_of = {name: np.flatnonzero(split_of == n) for n, name in enumerate(SPLITS)}  # in id order
    check_no_leakage({name: entries.take(rows) for name, rows in rows_of.items()}, threshold, options.num_perm)
    return SplitResult({name: _picked(dialogues, order[rows]) for name, rows in rows_of.items()}, sorted(ood_domains),
                       sorted(ood_tools), _picked(dialogues, order[np.flatnonzero(dropped)]), threshold, codes)


def sgd_splits(rows: Sequence[Dialogue | Entry] | Entries, threshold: float) -> SplitResult:
    """SpeakER-SGD keeps SGD's own train/dev/test (dev -> validation), as papers on SGD report them: its dev and test
    splits hold services that train has none of, which is the out-of-domain test. No leakage check: the splits are SGD's."""
    from speakrl.pipeline.sgd import published_split

    ids = [r.id for r in rows] if not isinstance(rows, Entries) else [i.decode() for i in rows.columns["id"].tolist()]
    codes = np.array([SPLITS.index(published_split(i)) for i in ids], dtype=np.int8).reshape(-1)
    by_id = np.argsort(np.array([i.encode() for i in ids], dtype="S") if ids else np.empty(0, "S1"), kind="stable")
    splits = {name: _picked(rows, by_id[codes[by_id] == n]) for n, name in enumerate(SPLITS)}
    return SplitResult(splits, [], [], [], threshold, codes)


def _flat(splits: dict[str, Any], num_perm: int, store: MinHashFile | None) -> tuple[Entries, np.ndarray]:
    """The rows of every split as one Entries, and the split of each."""
    parts = list(splits.values())
    split_of = np.repeat(np.arange(len(parts), dtype=np.int8), [len(p) for p in parts])
    if parts and all(isinstance(p, Entries) for p in parts) and len({id(p.base) for p in parts}) == 1:
        first = parts[0]
        return Entries(first.base, first.values, first.minhashes, np.concatenate([p.positions() for p in parts])), split_of
    return _entries([r for p in parts for r in p], num_perm, store), split_of


def check_no_leakage(splits: dict[str, Any], threshold: float, num_perm: int = 64, store: MinHashFile | None = None) -> None:
    """Raise if any scenario, goal or near-duplicate appears in two splits."""
    flat, split_of = _flat(splits, num_perm, store)
    names = list(splits)
    first_split = {}
    for key in ("scenario_key", "goal_key"):  # the split of the first row with the same key, for each row
        first_split[key] = split_of[_first_with_same_key(flat.columns[key])]
    bad = np.flatnonzero((first_split["scenario_key"] != split_of) | (first_split["goal_key"] != split_of))
    if len(bad):
        i = int(bad[0])
        kind = "scenario_key" if first_split["scenario_key"][i] != split_of[i] else "goal_key"
        e = flat[i]
        what = f"scenario {e.scenario_id}" if kind == "scenario_key" else f"the goal of {e.id}"
        raise PublishError(f"split leakage: {what} appears in more than one split ({names[first_split[kind][i]]}, "
                           f"{names[split_of[i]]})")
    for i, j in near_duplicate_pairs(flat, threshold, num_perm):
        if split_of[i] != split_of[j]:
            raise PublishError(f"split leakage: {flat.id(i)} ({names[split_of[i]]}) and {flat.id(j)} "
                               f"({names[split_of[j]]}) are near-duplicates")

# --------------------------------------------------------------------------------------------------------------------
# Reading the run directory


@dataclass
class RunData:
    accepted: Entries  # what splits and the card need of each accepted dialogue; the rows are in `parts`, or streamed by iter_accepted
    rejected: Rejections
    config: dict[str, Any]
    manifest: dict[str, Any]
    stats: dict[str, Any]
    parts: list[Path] = field(default_factory=list)  # the accepted rows as storage-typed Arrow tables, in run order
    minhashes: MinHashFile | None = None  # where the accepted Entries' MinHash values are, when they are in `parts`


class Rejections:
    """The rejected rows of a run (`rejected.jsonl`, or none), read from the file when iterated, in id order: each
    holds a whole dialogue, and a large run's do not belong in memory. Counts by check are in `checks`."""

    def __init__(self, path: Path | None):
        self.path, self.checks = path, Counter()
        spans: list[tuple[str, int, int]] = []  # (id, offset, length) of each row
        if path is not None:
            with open(path, "rb") as f:
                offset = 0
                for line in f:
                    if line.strip():
                        row = Rejection.model_validate_json(line)  # a row that breaks the contract fails here
                        spans.append((row.id, offset, len(line)))
                        self.checks[row.check] += 1
                    offset += len(line)
        spans.sort(key=lambda span: span[0])
        self.spans = spans

    def __len__(self) -> int:
        return len(self.spans)

    def __iter__(self) -> Iterator[Rejection]:
        if not self.spans:
            return
        with open(self.path, "rb") as f:
            for _, offset, length in self.spans:
                f.seek(offset)
                yield Rejection.model_validate_json(f.read(length))


def iter_accepted(run_dir: Path) -> Iterator[Dialogue]:
    """The accepted dialogues of a run, streamed in run order."""
    return read_jsonl(Path(run_dir) / "accepted.jsonl", Dialogue)


PART_BYTES = 4 << 20  # accepted.jsonl is encoded in pieces of ~4 MB (~800 dialogues): small enough to spread over cores


def _pieces(path: Path, size: int) -> list[tuple[int, int]]:
    """Byte ranges of `path` that start and end at line boundaries, each about `size` bytes."""
    total = path.stat().st_size
    bounds = [0]
    with open(path, "rb") as f:
        while bounds[-1] < total:
            f.seek(min(total, bounds[-1] + size))
            f.readline()  # to the end of the line the cut falls in
            bounds.append(min(total, f.tell()))
    return list(zip(bounds, bounds[1:]))


def encode_part(path: Path, start: int, stop: int, num_perm: int, out: Path | None) -> list[Entry]:
    """The accepted dialogues in bytes [start, stop) of `path`: their Entries, and (when `out` is given) their
    `default` and `decision_points` rows as storage-typed Arrow tables in the Arrow file `out`.

    Runs in a worker process: the per-row work of a build (parsing, MinHash, row encoding) spread over the cores."""
    import pyarrow as pa

    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(stop - start)
    try:
        dialogues = [Dialogue.model_validate_json(line) for line in data.splitlines() if line.strip()]
    except ValueError as e:  # pydantic ValidationError and JSON errors are ValueErrors
        raise PublishError(f"{str(path.parent)!r} holds rows that do not match the data contract "
                           f"({str(e).splitlines()[0]})") from None
    encoded = [encoded_rows(d) for d in dialogues] if out is not None else None  # rows only when they are written
    entries = _entries_of(dialogues, num_perm, [row for row, _ in encoded] if encoded is not None else None)
    if encoded is not None:
        # The MinHash values go to disk beside the rows; each Entry keeps its row number in the part instead.
        out.with_suffix(".minhash").write_bytes(b"".join(e.hashvalues for e in entries))
        for i, e in enumerate(entries):
            e.hashvalues = i
        feats = features()
        default_rows = [row for row, _ in encoded]
        point_rows = [point for _, points in encoded for point in points]
        with pa.OSFile(str(out), "wb") as sink:
            for name, rows in (("default", default_rows), ("decision_points", point_rows)):
                table = storage_table(rows, feats[name], encoded=True)
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
    return entries


def read_part(path: Path) -> tuple[Any, Any]:
    """The (`default`, `decision_points`) tables `encode_part` wrote."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        default = pa.ipc.open_stream(source).read_all()
        points = pa.ipc.open_stream(source).read_all()
    return default, points


def _pool(workers: int) -> Any:
    """A process pool; forked (cheap: the modules are loaded) unless other threads run, which a fork could deadlock."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def _encoded(pool: Any, jobs: list[tuple], window: int) -> Iterator[list[Entry]]:
    """`encode_part` of each job, run in `pool`, in order; at most `window` jobs ahead, each result dropped once
    used (the Entries of every part held at once, as Python objects, cost ~0.35 KB a row)."""
    pending: deque[Any] = deque()
    for job in jobs:
        pending.append(pool.submit(encode_part, *job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def require_run(run_dir: Path) -> None:
    """Raise the error that says why `run_dir` is not a finished run's directory, if it is not."""
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {str(run_dir)!r} does not exist")
    if not (run_dir / "accepted.jsonl").is_file():
        raise PublishError(f"{str(run_dir)!r} has no accepted.jsonl; run `speakrl run` first")


def read_run(run_dir: Path, num_perm: int = 64, parts: Path | None = None, pool: Any = None) -> RunData:
    """Entries of the accepted rows, the rejected rows, config, manifest and stats of a run directory. With `parts`
    (a directory), the accepted rows are also encoded there as Arrow tables, one file per piece of accepted.jsonl;
    with `pool`, the pieces are encoded in its processes."""
    import yaml

    run_dir = Path(run_dir)
    require_run(run_dir)
    accepted_path = run_dir / "accepted.jsonl"
    pieces = _pieces(accepted_path, PART_BYTES)
    outs = [None if parts is None else parts / f"part-{i:06d}.arrow" for i in range(len(pieces))]
    jobs = [(accepted_path, start, stop, num_perm, out) for (start, stop), out in zip(pieces, outs)]
    if pool is None or len(jobs) < 2:
        results = (encode_part(*job) for job in jobs)
    else:
        results = _encoded(pool, jobs, window=2 * (os.cpu_count() or 1))
    builder, n = _EntriesBuilder(num_perm), 0
    minhashes = None if parts is None else open(parts / "minhashes.u32", "wb")
    try:
        for out, entries in zip(outs, results):
            if out is not None:  # one file of every row's MinHash values, in run order, for `MinHashFile`
                for e in entries:
                    e.hashvalues += n
                minhash_part = out.with_suffix(".minhash")
                minhashes.write(minhash_part.read_bytes())
                minhash_part.unlink()
            builder.extend(entries)
            n += len(entries)
    finally:
        if minhashes is not None:
            minhashes.close()
    store = None if parts is None else MinHashFile(parts / "minhashes.u32", num_perm)
    accepted = builder.build(store)
    del builder
    try:
        rejected_path = run_dir / "rejected.jsonl"
        rejected = Rejections(rejected_path if rejected_path.is_file() else None)
    except ValueError as e:  # pydantic ValidationError and JSON errors are ValueErrors
        raise PublishError(f"{str(run_dir)!r} holds rows that do not match the data contract ({str(e).splitlines()[0]})") from None
    if not len(accepted):
        if store is not None:
            store.close()
        raise PublishError(f"{str(run_dir)!r} has no accepted dialogues; there is nothing to publish")

    def load(name: str, parse: Any) -> dict[str, Any]:
        path = run_dir / name
        if not path.is_file():
            return {}
        try:
            loaded = parse(path.read_text(encoding="utf-8")) or {}
        except (ValueError, yaml.YAMLError) as e:  # UnicodeDecodeError is a ValueError
            raise PublishError(f"{name} in {str(run_dir)!r} cannot be read ({' '.join(str(e).split())[:120]}); "
                               "restore it or run `speakrl run` again") from None
        if not isinstance(loaded, dict):
            raise PublishError(f"{name} in {str(run_dir)!r} is not a mapping; restore it or run `speakrl run` again")
        return loaded

    return RunData(accepted, rejected, load("config.yaml", yaml.safe_load), load("manifest.json", json.loads),
                   load("stats.json", json.loads), [p for p in outs if p is not None], store)


# --------------------------------------------------------------------------------------------------------------------
# Statistics, figure and card


def size_category(n: int) -> str:
    """The Hub's size_categories bucket.

    >>> size_category(999), size_category(1000), size_category(25_000)
    ('n<1K', '1K<n<10K', '10K<n<100K')
    """
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if n < bound), "1B<n<10B")


def _table(counter: Counter, total: int) -> list[dict[str, Any]]:
    return [{"name": k, "count": v, "share": f"{100 * v / total:.1f}%" if total else "-"} for k, v in
            sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))]


def _in_order(values: np.ndarray) -> list[tuple[Any, int]]:
    """(value, count) of each distinct value, in order of first appearance (as a Counter fills)."""
    distinct, first, counts = np.unique(values, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return list(zip(distinct[order].tolist(), counts[order].tolist()))


def statistics(split: SplitResult, rejected: Rejections | list[Rejection], n_points: int, num_perm: int = 64) -> dict[str, Any]:
    rows, split_of = _flat({name: split.splits[name] for name in SPLITS}, num_perm, None)
    cols, values = rows.columns, rows.values
    n = len(rows)
    domains = Counter({values["domain"][c]: k for c, k in _in_order(cols["domain"])})
    kinds = values["ambiguity_types"]
    type_counts = _in_order(cols["ambiguity_types"])
    types: Counter[str] = Counter()
    for c, k in type_counts:
        for t in kinds[c] or ["none (control)"]:
            types[t] += k
    turns = Counter(dict(_in_order(cols["assistant_turns"])))
    clarifications = Counter(dict(_in_order(cols["clarifications"])))
    act_counts = [(values["acts"][c], k) for c, k in _in_order(cols["acts"])]
    acts: Counter[str] = Counter()
    for seq, k in act_counts:
        for act in seq:
            acts[act] += k
    checks = rejected.checks if isinstance(rejected, Rejections) else Counter(r.check for r in rejected)
    generated = n + len(split.dropped) + len(rejected)
    by_split = {name: Counter({values["domain"][c]: k for c, k in _in_order(cols["domain"][split_of == s])})
                for s, name in enumerate(SPLITS)}
    by_position: list[Counter[str]] = [Counter() for _ in range(max((len(seq) for seq, _ in act_counts), default=0))]
    for seq, k in act_counts:  # in order of first appearance, as rows would fill them
        for i, act in enumerate(seq):
            by_position[i][act] += k
    ambiguous = np.isin(cols["ambiguity_types"], [c for c, kind in enumerate(kinds) if kind])
    return {
        "n": n,
        "n_points": n_points,
        "n_rejected": len(rejected),
        "generated": generated,
        "pass_rate": f"{100 * (n + len(split.dropped)) / generated:.1f}%" if generated else "-",
        "domains": _table(domains, n),
        "domain_split": {k: {s: by_split[s][k] for s in SPLITS} for k in domains},
        "n_dropped": len(split.dropped),
        "ambiguity_types": _table(types, n),
        "turns": [{"name": k, "count": v} for k, v in sorted(turns.items())],
        "clarifications": [{"name": k, "count": v} for k, v in sorted(clarifications.items())],
        "acts": _table(acts, sum(acts.values())),
        "rejections": _table(checks, generated),
        "controls": int(n - ambiguous.sum()),
        "longest_row_chars": int(cols["chars"].max()) if n else 0,
        "median_row_chars": int(np.median(cols["chars"])) if n else 0,
        # For the figure: what the tables above do not show.
        "acts_by_position": [dict(c) for c in by_position],
        "clarifications_by_kind": {
            kind: dict(_in_order(cols["clarifications"][ambiguous == is_ambiguous]))
            for kind, is_ambiguous in (("control", False), ("ambiguous", True))
        },
        "split_sizes": {name: len(split.splits[name]) for name in SPLITS},
    }


ACT_COLORS = {"clarify": "#DD8452", "tool_call": "#4C72B0", "answer": "#55A868"}


def render_figure(stats: dict[str, Any], path: Path) -> None:
    """One PNG of what the card's tables cannot show: the act mix at each assistant-turn position, clarification
    questions per dialogue for controls vs ambiguous dialogues, split sizes (test_ood apart), rejection reasons."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.4))
    by_position = stats["acts_by_position"]
    positions = [str(i + 1) for i in range(len(by_position))]
    bottom = [0.0] * len(by_position)
    for act, color in ACT_COLORS.items():
        share = [row.get(act, 0) / max(1, sum(row.values())) for row in by_position]
        axes[0].bar(positions, share, bottom=bottom, color=color, label=act)
        bottom = [b + v for b, v in zip(bottom, share)]
    for x, row in zip(positions, by_position):
        axes[0].text(x, 1.01, f"n={sum(row.values())}", ha="center", fontsize=7)
    axes[0].set_ylim(0, 1.22)
    axes[0].set_title("Assistant act by turn position")
    axes[0].set_xlabel("assistant turn")
    axes[0].set_ylabel("share of dialogues reaching the turn")
    axes[0].legend(fontsize=8, ncol=3, loc="upper center")

    kinds = stats["clarifications_by_kind"]
    counts = sorted({k for by in kinds.values() for k in by})
    width = 0.4
    for offset, (kind, color) in zip((-width / 2, width / 2), (("control", "#8172B3"), ("ambiguous", "#DD8452"))):
        axes[1].bar([c + offset for c in counts], [kinds[kind].get(c, 0) for c in counts], width, color=color, label=kind)
    axes[1].set_xticks(counts)
    axes[1].set_title("Clarification questions per dialogue")
    axes[1].set_xlabel("questions")
    axes[1].set_ylabel("dialogues")
    axes[1].legend(fontsize=8)

    names = list(stats["split_sizes"])
    axes[2].bar(names, [stats["split_sizes"][n] for n in names],
                color=["#4C72B0" if n != "test_ood" else "#C44E52" for n in names])
    axes[2].set_title("Dialogues per split (test_ood: held-out domains/tools)")
    axes[2].set_ylabel("dialogues")

    rejections = stats["rejections"]
    if rejections:
        axes[3].barh([r["name"] for r in rejections][::-1], [r["count"] for r in rejections][::-1], color="#937860")
        axes[3].set_xlabel("dialogues rejected")
    else:
        axes[3].text(0.5, 0.5, "no dialogue rejected", ha="center", va="center")
        axes[3].set_axis_off()
    axes[3].set_title(f"Rejection reasons ({stats['n_rejected']} of {stats['generated']} generated)")
    fig.suptitle(f"SpeakER: {stats['n']} dialogues, {stats['n_points']} decision points")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # No timestamp or version metadata, so re-publishing the same run writes the same bytes.
    fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)


_PATH_KEYS = ("out", "catalog", "slot_values")


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run config as it can be shown and as it was used: file paths reduced to their file name (no local
    directory names), credentials out of the endpoint URL, and no endpoint settings for an offline run.

    >>> public_config({"out": "/home/me/outputs/run1", "catalog": "builtin", "n": 5})
    {'out': 'run1', 'catalog': 'builtin', 'n': 5}
    >>> public_config({"endpoint": {"base_url": "https://me:secret@host:8000/v1?key=abc"}})["endpoint"]
    {'base_url': 'https://host:8000/v1'}
    >>> public_config({"endpoint": {"model": "gpt-4o-mini"}, "scenarios": {"backend": "offline", "mode": "paraphrase"},
    ...                "dialogues": {"backend": "offline", "mode": "paraphrase"}})  # an offline run used no model
    {'scenarios': {'backend': 'offline'}, 'dialogues': {'backend': 'offline'}}
    """
    shown = dict(config)
    stages = [shown.get(name) for name in ("scenarios", "dialogues")]
    judged = bool((shown.get("validate") or {}).get("judge"))
    if not judged and all(isinstance(st, dict) and st.get("backend", "offline") == "offline" for st in stages):
        # An offline run uses no endpoint, model, mode or budget: listing their defaults would claim it did.
        for key in ("endpoint", "max_cost"):
            shown.pop(key, None)
        for name in ("scenarios", "dialogues"):
            shown[name] = {"backend": "offline"}
    for key in _PATH_KEYS:
        value = shown.get(key)
        if isinstance(value, str) and ("/" in value or "\\" in value):
            shown[key] = re.split(r"[\\/]", value.rstrip("/\\"))[-1]
    endpoint = shown.get("endpoint")
    if isinstance(endpoint, dict) and isinstance(endpoint.get("base_url"), str):
        # Credentials can hide in a URL (user:secret@host, ?api-key=...): keep scheme, host and path only.
        url = urlsplit(endpoint["base_url"])
        host = (url.hostname or "") + (f":{url.port}" if url.port else "")
        shown["endpoint"] = {**endpoint, "base_url": urlunsplit((url.scheme, host, url.path, "", ""))}
    return shown


def uses_sgd(config: dict[str, Any], dialogues: Sequence[Dialogue] | Entries) -> bool:
    """Whether SGD-derived slot values or schemas may be in the data (then CC BY-SA 4.0 applies)."""
    if config.get("slot_values") or config.get("source") == "sgd":
        return True
    catalog = str(config.get("catalog", "builtin"))
    if catalog != "builtin":
        try:
            from speakrl.pipeline.catalog import load_catalog

            return any("sgd" in d.source.lower() for d in load_catalog(catalog).domains)
        except Exception:  # noqa: BLE001 - the catalog file may be gone; assume the stricter license
            return True
    from speakrl.pipeline.catalog import builtin_domains

    used = dialogues.distinct("domain") if isinstance(dialogues, Entries) else {d.domain for d in dialogues}
    return any("sgd" in d.source.lower() for d in builtin_domains() if d.name in used)


def card_metadata(
    configs: dict[str, dict[str, int]],
    sizes: dict[str, dict[str, tuple[int, int]]],
    feats: dict[str, Any],
    license_id: str | list[str],
    n: int,
    pretty_name: str,
) -> Any:
    """Hub YAML metadata: license, language, tasks, size, tags, and each config's data_files, features and splits."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        pretty_name=pretty_name,
        license=license_id,
        language=["en"],
        task_categories=["text-generation"],
        size_categories=[size_category(n)],
        tags=["synthetic", "tool-use", "function-calling", "clarification", "task-oriented-dialogue",
              "conversational", "reinforcement-learning", "speakrl"],
    )
    MetadataConfigs(
        {
            name: {
                "data_files": [{"split": split, "path": f"data/{name}/{split}-*"} for split in counts],
                **({"default": True} if name == "default" else {}),
            }
            for name, counts in configs.items()
        }
    ).to_dataset_card_data(data)
    infos = {}
    for name, counts in configs.items():
        splits = SplitDict()
        for split, rows in counts.items():
            splits.add(SplitInfo(name=split, num_bytes=sizes[name][split][0], num_examples=rows))
        infos[name] = DatasetInfo(
            features=feats[name],
            splits=splits,
            download_size=sum(p for _, p in sizes[name].values()),
            dataset_size=sum(a for a, _ in sizes[name].values()),
        )
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


def render_card(context: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("speakrl.prompts", ""), undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("dataset_card.md.j2").render(**context)


# --------------------------------------------------------------------------------------------------------------------
# The dataset directory


def storage_schema(schema: Any) -> Any:
    """`schema` with each extension type (the `Json` feature's `arrow.json`) replaced by its storage type."""
    import pyarrow as pa

    def storage(t: Any) -> Any:
        if isinstance(t, pa.BaseExtensionType):
            return storage(t.storage_type)
        if pa.types.is_list(t):
            return pa.list_(storage(t.value_type))
        if pa.types.is_large_list(t):
            return pa.large_list(storage(t.value_type))
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, storage(f.type), f.nullable) for f in t])
        return t

    return pa.schema([pa.field(f.name, storage(f.type), f.nullable) for f in schema], metadata=schema.metadata)


def storage_table(rows: list[dict[str, Any]], feats: Any, encoded: bool = False) -> Any:
    """Rows of one config as an Arrow table of its storage schema (`storage_schema`): lists of messages (the `Json`
    columns) become their JSON text here (or are already, if `encoded`), and Arrow builds the extension type only by
    casting from its storage type. (Not `Features.encode_example`: it walks every nested field of every row, which
    took most of the build time.)"""
    import pyarrow as pa
    from datasets import Json, List

    json_lists = [k for k, f in feats.items() if isinstance(f, List) and isinstance(f.feature, Json)]
    if any(isinstance(f, Json) for f in feats.values()):
        raise PublishError("storage_table encodes Json features only as lists of messages")  # a programming error
    if not encoded:
        rows = [{**row, **{k: [json_text(m) for m in row[k]] for k in json_lists}} for row in rows]
    return pa.Table.from_pylist(rows, schema=storage_schema(feats.arrow_schema))


def encoded_row(d: Dialogue) -> dict[str, Any]:
    """`dialogue_row(d)` with each message already the JSON text `storage_table(..., encoded=True)` takes."""
    row = dialogue_row(d)
    row["messages"] = [json_text(m) for m in row["messages"]]
    return row


def encoded_rows(d: Dialogue) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`dialogue_row(d)` and the `decision_point_row` of each of its decision points, with each message already the
    JSON text `storage_table(..., encoded=True)` takes. A decision point's prompt is the dialogue's messages before
    its turn: each message is encoded once, not once per later turn."""
    row = encoded_row(d)
    texts = row["messages"]
    points = []
    for p, label in zip(decision_points(d), d.labels):
        point = decision_point_row(p, row["tools"], messages=False)
        point["prompt"], point["completion"] = texts[: label.message_index], [texts[label.message_index]]
        points.append(point)
    return row, points


class ShardWriter:
    """Streams rows of one config and split into `<split>-0000i-of-0000N.parquet` shards of ROWS_PER_SHARD rows.

    `total` rows are announced up front, so shard names are final when written; each shard is written to a temp
    file and renamed when complete. Rows come one by one (`add`) or as storage-typed tables (`add_table`) and are
    written in row groups of BATCH rows either way; they are buffered in small batches only: memory does not grow
    with the run."""

    BATCH = 1_000

    def __init__(self, feats: Any, directory: Path, split: str, total: int):
        assert ROWS_PER_SHARD % self.BATCH == 0  # a shard ends where a row group does
        self.feats = feats
        self.schema = feats.arrow_schema  # includes the "huggingface" features metadata that datasets reads back
        self.directory, self.split = directory, split
        self.n_shards = max(1, -(-total // ROWS_PER_SHARD))
        self.shard, self.in_shard, self.rows, self.tables, self.pending = 0, 0, [], [], 0
        self.writer = self.tmp = None
        self.arrow_bytes = self.parquet_bytes = 0
        directory.mkdir(parents=True, exist_ok=True)

    def _name(self) -> str:
        return f"{self.split}-{self.shard:05d}-of-{self.n_shards:05d}.parquet"

    def _write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            self.tmp = self.directory / f".{self._name()}.tmp"
            self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        table = table.combine_chunks().cast(self.schema)
        self.writer.write_table(table)
        self.arrow_bytes += table.nbytes

    def _drain(self, everything: bool = False) -> None:
        """Write the buffered tables in row groups of BATCH rows (and the remainder, if `everything`)."""
        import pyarrow as pa

        if self.rows:
            self.tables.append(storage_table(self.rows, self.feats))
            self.rows = []
        if not self.tables or (self.pending < self.BATCH and not everything):
            return
        buffered = pa.concat_tables(self.tables)
        done = 0
        while self.pending - done >= self.BATCH or (everything and done < self.pending):
            size = min(self.BATCH, self.pending - done)
            self._write(buffered.slice(done, size))
            done += size
            self.in_shard += size
            if self.in_shard == ROWS_PER_SHARD and self.shard + 1 < self.n_shards:
                self._close_shard()
        self.tables = [buffered.slice(done)] if done < self.pending else []
        self.pending -= done

    def _close_shard(self) -> None:
        if self.writer is None:  # an empty split's one shard: a file with the schema and no rows
            self._write(storage_table([], self.feats))
        self.writer.close()
        final = self.directory / self._name()
        self.parquet_bytes += self.tmp.stat().st_size
        self.tmp.replace(final)
        self.writer, self.in_shard, self.shard = None, 0, self.shard + 1

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.pending += 1
        if len(self.rows) >= self.BATCH:
            self._drain()

    def add_table(self, table: Any) -> None:
        """Rows already in the storage schema (`storage_table`)."""
        if table.num_rows:
            if self.rows:
                self._drain()
            self.tables.append(table)
            self.pending += table.num_rows
            self._drain()

    def close(self) -> tuple[int, int]:
        """Finish the last shard; returns (Arrow bytes, parquet bytes), the card's num_bytes and download_size."""
        self._drain(everything=True)
        self._close_shard()
        return self.arrow_bytes, self.parquet_bytes


SGD_LICENSE = "cc-by-sa-4.0"  # SGD's license; an adaptation of it (SpeakER-SGD) is shared under the same terms


@dataclass
class SgdConfigs:
    """What `add_sgd_configs` wrote: rows per config and split, their (Arrow, parquet) bytes, and the import's numbers
    for the card."""

    counts: dict[str, dict[str, int]]
    sizes: dict[str, dict[str, tuple[int, int]]]
    n: int  # accepted SGD dialogues
    generated: int  # SGD dialogues read
    controls: int
    rejections: list[dict[str, Any]]


def add_sgd_configs(sgd_run: Path, data_dir: Path, feats: dict[str, Any], num_perm: int = 64) -> SgdConfigs:
    """Write the accepted rows of a `speakrl import sgd` run as the `sgd` and `sgd_decision_points` configs under
    `data_dir`: the rows and features of `default` and `decision_points`, in SGD's own splits (`sgd_splits`)."""
    run = read_run(sgd_run, num_perm)
    if run.config.get("source") != "sgd":
        raise PublishError(f"--sgd {str(sgd_run)!r} is not a `speakrl import sgd` run; import SGD with "
                           "`speakrl import sgd SGD_DIR --out DIR` and pass that DIR")
    split = sgd_splits(run.accepted, threshold=1.0)
    counts: dict[str, dict[str, int]] = {"sgd": {}, "sgd_decision_points": {}}
    for name in SPLITS:
        if split.splits[name]:
            counts["sgd"][name] = len(split.splits[name])
            counts["sgd_decision_points"][name] = int(split.splits[name].columns["n_points"].sum())
    writers = {(name, s): ShardWriter(feats[name], data_dir / name, s, total)
               for name, by_split in counts.items() for s, total in by_split.items()}
    where = {i.decode(): name for name in SPLITS for i in split.splits[name].columns["id"].tolist()}
    for d in iter_accepted(sgd_run):
        row = dialogue_row(d)
        writers["sgd", where[d.id]].add(row)
        for p in decision_points(d):
            writers["sgd_decision_points", where[d.id]].add(decision_point_row(p, row["tools"]))
    sizes: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for (name, s), writer in writers.items():
        sizes[name][s] = writer.close()
    reasons = run.rejected.checks
    generated = len(run.accepted) + len(run.rejected)
    controls = int(run.accepted.mask("ambiguity_types", lambda kinds: not kinds).sum())
    return SgdConfigs(counts, dict(sizes), len(run.accepted), generated, controls,
                      _table(reasons, generated))


def build_dataset_dir(run_dir: Path | str, out_dir: Path | str, options: PublishOptions | None = None) -> Path:
    """Write the Hub repo layout of a run to `out_dir` (replacing what a previous build left there); returns it.

    Deterministic: the same run and options give byte-identical files, which is what makes re-publishing a no-op.
    """
    options = options or PublishOptions()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    parts = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=PARTS_PREFIX))
    workers = os.cpu_count() or 1
    features()  # datasets and datasketch are imported once here, before the pool forks, rather than in each worker
    validate.MinHasher(options.num_perm)
    pool = _pool(workers) if workers > 1 and (run_dir / "accepted.jsonl").is_file() and \
        (run_dir / "accepted.jsonl").stat().st_size > PART_BYTES else None
    try:
        _build(run_dir, out_dir, options, parts, pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(parts, ignore_errors=True)
    return out_dir


PARTS_PREFIX = ".speakrl-parts-"  # the build's scratch directory beside out_dir (a killed build's is removed by the runner)


def _build(run_dir: Path, out_dir: Path, options: PublishOptions, parts: Path, pool: Any) -> None:
    run = read_run(run_dir, options.num_perm, parts, pool)
    try:
        _write(run, run_dir, out_dir, options, pool)
    finally:
        run.minhashes.close()


def _write(run: RunData, run_dir: Path, out_dir: Path, options: PublishOptions, pool: Any) -> None:
    import pyarrow as pa

    cfg = run.config
    seed = options.seed if options.seed is not None else int(cfg.get("seed", 0))
    validate_cfg = cfg.get("validate") or cfg.get("validate_") or {}
    threshold = options.near_duplicate_threshold or float(validate_cfg.get("near_duplicate_threshold", 0.9))
    imported = cfg.get("source") == "sgd"  # SpeakER-SGD (`speakrl import sgd`): SGD's own splits and card
    if options.sgd_run is not None and imported:
        raise PublishError(f"{str(run_dir)!r} is itself a `speakrl import sgd` run; publish it without --sgd")
    split = (sgd_splits(run.accepted, threshold) if imported
             else assign_splits(run.accepted, options, seed, threshold, run.minhashes))
    codes = split.codes  # the split of each accepted row in run order (-1: dropped), and of each decision point:
    point_codes = np.repeat(codes, run.accepted.columns["n_points"])

    # Row counts are known from the entries, so shard names ("-of-N") are final before anything is written.
    counts: dict[str, dict[str, int]] = {"default": {}, "decision_points": {}}
    for name in SPLITS:
        if split.splits[name]:  # an empty split is left out of the files and the card
            counts["default"][name] = len(split.splits[name])
            counts["decision_points"][name] = int(split.splits[name].columns["n_points"].sum())
    if run.rejected:
        counts["rejected"] = {"train": len(run.rejected)}
    n_points = sum(counts["decision_points"].values())
    stats = statistics(split, run.rejected, n_points, options.num_perm)
    figure = None
    if options.figure:  # drawn from the stats, in a worker while the rows are written
        drawn = pool.submit(render_figure, stats, out_dir / FIGURE_PATH) if pool is not None else None
        figure = FIGURE_PATH

    # Remove the shards of an earlier build, which could otherwise linger and be loaded with the new ones; only
    # files named like ours, so pointing --to-dir at the wrong directory cannot delete anyone's data.
    data_dir = out_dir / "data"
    for name in CONFIGS:
        for old in (data_dir / name).glob("*-of-*.parquet"):
            if _SHARD_NAME.fullmatch(old.name):
                old.unlink()
    feats = features()
    # The split pass's arrays are freed, but the allocator keeps them (~40 MB at 300k rows) unless told to give back.
    release_freed_memory()
    arrow_pool = pa.default_memory_pool()
    writers = {(name, s): ShardWriter(feats[name], data_dir / name, s, total)
               for name, by_split in counts.items() for s, total in by_split.items()}
    at = point_at = 0
    for part in run.parts:  # the encoded rows, part by part in run order: each split takes its rows by mask
        default, points = read_part(part)
        rows_codes, points_codes = codes[at: at + default.num_rows], point_codes[point_at: point_at + points.num_rows]
        at, point_at = at + default.num_rows, point_at + points.num_rows
        for n, name in enumerate(SPLITS):
            if name in counts["default"]:
                writers["default", name].add_table(default.filter(rows_codes == n))
                writers["decision_points", name].add_table(points.filter(points_codes == n))
        del default, points
        arrow_pool.release_unused()  # mimalloc keeps each part's freed buffers otherwise (~45 MB more at the peak)
    if run.rejected:
        for r in run.rejected:  # by id
            writers["rejected", "train"].add(rejection_row(r))
    sizes: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for (name, s), writer in writers.items():
        sizes[name][s] = writer.close()
    sgd_configs = add_sgd_configs(Path(options.sgd_run), data_dir, feats, options.num_perm) if options.sgd_run else None
    if sgd_configs:
        counts.update(sgd_configs.counts)
        sizes.update(sgd_configs.sizes)
    if options.figure:
        if pool is None:
            render_figure(stats, out_dir / FIGURE_PATH)
        else:
            drawn.result()

    sgd = uses_sgd(cfg, run.accepted)
    license_id = options.license or ("cc-by-sa-4.0" if sgd else "cc-by-4.0")
    pretty_name = "SpeakER-SGD" if imported and options.pretty_name == "SpeakER" else options.pretty_name
    # The Hub's metadata has one license list for the repo, none per config: list both; the card says which is which.
    licenses = [license_id, SGD_LICENSE] if sgd_configs and license_id != SGD_LICENSE else license_id
    metadata = card_metadata(counts, sizes, feats, licenses, stats["n"] + (sgd_configs.n if sgd_configs else 0), pretty_name)
    manifest = run.manifest
    import yaml

    card = render_card(
        {
            "card_data": metadata.to_yaml(),
            "pretty_name": pretty_name,
            "repo_id": options.repo_id or "<owner>/SpeakER",
            "counts": counts,
            "splits": SPLITS,
            "stats": stats,
            "ood_domains": split.ood_domains,
            "ood_tools": split.ood_tools,
            "threshold": split.threshold,
            "seed": seed,
            "validation_fraction": options.validation_fraction,
            "test_fraction": options.test_fraction,
            "config_yaml": yaml.safe_dump(public_config(cfg), sort_keys=True).strip() if cfg else "",
            "backends": sorted(run.accepted.distinct("backend")),
            "models": sorted(m for m in run.accepted.distinct("model") if m),
            "versions": manifest.get("versions") or {},
            "speakrl_version": manifest.get("speakrl_version"),
            "created": manifest.get("created"),
            "config_hash": manifest.get("config_hash"),
            "sgd": sgd,
            "sgd_import": imported,
            "license": license_id,
            "figure": figure,
            "citation": PAPER_CITATION,
            "sgd_citation": SGD_CITATION,
            "sgd_configs": sgd_configs,
        }
    )
    atomic_write_text(out_dir / "README.md", card)
    logger.info("dataset written to %s: %s", out_dir, counts)
