"""Validate stage: per-row checks, then exact and near-duplicate removal.

A check returns None when the dialogue passes, else "code: detail" — a snake_case code (counted as
`dropped_<code>`) and a sentence a person can read. Rejected rows are kept with their reason.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from speakrl.pipeline.catalog.sim import Simulator
from speakrl.pipeline.checks import (
    call_matches, mentioned, normalize, question_targets, reference_date, ungrounded_args,
)
from speakrl.pipeline.decision_points import tool_defaults
from speakrl.schemas.catalog import Catalog, SlotSpec
from speakrl.schemas.dialogue import Dialogue, Rejection

if TYPE_CHECKING:
    from datasketch import MinHash

logger = logging.getLogger(__name__)


@dataclass
class Context:
    """What the checks need besides the dialogue."""

    catalog: Catalog
    sim: Simulator
    slots: dict[str, dict[str, SlotSpec]] = field(default_factory=dict)  # domain -> slot name -> spec

    @classmethod
    def build(cls, catalog: Catalog, sim: Simulator | None = None) -> Context:
        slots = {d.name: {s.name: s for s in d.slots} for d in catalog.domains}
        return cls(catalog, sim or Simulator(catalog), slots)


Check = Callable[[Dialogue, Context], "str | None"]


def _call_indices(d: Dialogue) -> list[int]:
    return [i for i, m in enumerate(d.messages) if m.role == "assistant" and m.tool_calls]


def _user_texts(d: Dialogue, before: int) -> list[str]:
    return [m.content or "" for m in d.messages[:before] if m.role == "user"]


def labels_consistent(d: Dialogue, ctx: Context) -> str | None:
    """Every assistant turn has one label whose act matches the message."""
    assistant = [i for i, m in enumerate(d.messages) if m.role == "assistant"]
    if [lab.message_index for lab in d.labels] != assistant:
        return "label_mismatch: the labels do not cover exactly the assistant turns"
    for lab in d.labels:
        m = d.messages[lab.message_index]
        if (lab.act == "tool_call") != bool(m.tool_calls):
            return f"label_mismatch: turn {lab.message_index} is labelled {lab.act} but {'has' if m.tool_calls else 'has no'} tool call"
        if lab.act != "tool_call" and not (m.content or "").strip():
            return f"label_mismatch: {lab.act} turn {lab.message_index} has no text"
    if d.labels and d.labels[-1].act != "answer":
        return "label_mismatch: the dialogue does not end with an answer"
    return None


def gold_calls_match(d: Dialogue, ctx: Context) -> str | None:
    """The gold calls are exactly the calls the assistant made, in order."""
    made = [m.tool_calls[0].function for m in d.messages if m.role == "assistant" and m.tool_calls]
    if made != d.gold_calls:
        return "gold_mismatch: gold_calls differ from the tool calls in the messages"
    return None


def arguments_valid(d: Dialogue, ctx: Context) -> str | None:
    """Every call names a tool of the dialogue and its arguments satisfy the tool's JSON Schema."""
    names = {t.name for t in d.tools}
    for call in d.gold_calls:
        if call.name not in names:
            return f"invalid_arguments: {call.name} is not one of the dialogue's tools"
        try:
            args = json.loads(call.arguments)
        except json.JSONDecodeError:
            return f"invalid_arguments: the arguments of {call.name} are not JSON"
        error = ctx.sim.argument_error(call.name, args)
        if error:
            return f"invalid_arguments: {call.name}: {error}"
    return None


def execution_consistent(d: Dialogue, ctx: Context) -> str | None:
    """Replaying each call against the simulated backend gives the tool result recorded in the dialogue."""
    for i in _call_indices(d):
        call = d.messages[i].tool_calls[0]
        result = next((m for m in d.messages[i + 1:] if m.role == "tool" and m.tool_call_id == call.id), None)
        if result is None:
            return f"execution_mismatch: call {call.id} has no tool result"
        replay = ctx.sim.execute(call.function.name, json.loads(call.function.arguments))
        if json.loads(result.content or "null") != json.loads(json.dumps(replay)):
            return f"execution_mismatch: replaying {call.function.name} gives a different result"
        if "error" in replay:
            return f"tool_error: {call.function.name} failed: {replay['error']}"
    return None


def _proposed_texts(d: Dialogue, before: int) -> list[str]:
    """Assistant turns before `before` that put values to the user: read back to confirm, or offered from a result."""
    return [d.messages[lab.message_index].content or "" for lab in d.labels
            if lab.kind in ("confirm", "offer") and lab.message_index < before]


def _said_as_alias(d: Dialogue, value: object, user_texts: list[str]) -> bool:
    return any(mentioned(words, user_texts) for words in d.aliases.get(str(value), ()))


def _informed(d: Dialogue, slot: str, value: object, before: int) -> bool:
    """Human annotation (`d.informs`) says a user turn before `before` gave `slot` this value. Not for yes/no slots:
    the user names a preference to ask for it, and SGD reads some into turns that do not ("a meal and a drink" ->
    serves_alcohol=True), so a yes/no value stays grounded only by its words (`flag_phrases`)."""
    if isinstance(value, bool):
        return False
    return any(
        i.slot == slot and normalize(i.value) == normalize(value) and i.message_index < before
        and 0 <= i.message_index < len(d.messages) and d.messages[i.message_index].role == "user"
        for i in d.informs
    )


def grounded(d: Dialogue, ctx: Context) -> str | None:
    """Every argument value of every call was said by the user before the call (or in the words `d.aliases` gives
    for it), or was put to the user in a confirmation or an offer they took, or is the tool's declared default.
    Dates may be said relative to the dialogue's date (`reference_date` of its system message).
    A value of a closed-set slot that the user expressed in other words ("economical" for price_range=moderate) is
    grounded when human annotation names the user turn that gave it (`d.informs`, from SGD's INFORM acts); our
    generator's rows have no annotation, so for them this adds nothing."""
    today = reference_date(d.messages[0].content if d.messages and d.messages[0].role == "system" else None)
    for i in _call_indices(d):
        call = d.messages[i].tool_calls[0].function
        users = _user_texts(d, i)
        bad = ungrounded_args(call.args(), users + _proposed_texts(d, i), tool_defaults(d.tools, call.name), today)
        bad = [slot for slot in bad
               if not (_said_as_alias(d, call.args()[slot], users) or _informed(d, slot, call.args()[slot], i))]
        if bad:
            value = call.args()[bad[0]]
            return f"ungrounded_value: {call.name} uses {bad[0]}={value!r}, which the user never gave"
    return None


def asks_when_needed(d: Dialogue, ctx: Context) -> str | None:
    """A clarify turn iff an ambiguity is unresolved, about that slot, before the call that needs it."""
    # a confirmation reads given values back before acting; it resolves no ambiguity, so it is not judged here
    clarify = [lab for lab in d.labels if lab.act == "clarify" and lab.kind != "confirm"]
    if is_unsupported(d):
        return "asked_unsupported: no tool can do the request, yet the assistant asked a question" if clarify else None
    if not d.ambiguities:
        return "asked_in_control: the request needed no clarification but the assistant asked" if clarify else None
    ambiguous = {a.slot for a in d.ambiguities}
    slots = ctx.slots.get(d.domain, {})
    for lab in clarify:
        wrong = [s for s in lab.target_slots if s not in ambiguous]
        if wrong or not lab.target_slots:
            return f"asked_wrong_slot: turn {lab.message_index} asks about {wrong or 'nothing'} instead of {sorted(ambiguous)}"
        asked = question_targets(d.messages[lab.message_index].content or "", [slots[s] for s in lab.target_slots if s in slots])
        if not asked:
            return f"question_off_target: turn {lab.message_index} does not mention {lab.target_slots}"
    final = _call_indices(d)[-1] if _call_indices(d) else len(d.messages)
    asked_before = {s for lab in clarify if lab.message_index < final for s in lab.target_slots}
    never = sorted(ambiguous - asked_before)
    if never:
        return f"never_asked: the assistant acted without asking about {never}"
    return None


def is_unsupported(d: Dialogue) -> bool:
    return any(a.type == "unsupported" for a in d.ambiguities)


def declines_unsupported(d: Dialogue, ctx: Context) -> str | None:
    """An unsupported request is declined: the needed tool is not offered, no tool is called, one answer is given."""
    if not is_unsupported(d):
        return None
    if d.gold_calls:
        return f"acted_on_unsupported: no offered tool can do the request, yet the assistant called {d.gold_calls[0].name}"
    offered = {t.name for t in d.tools}
    withheld = {a.detail for a in d.ambiguities if a.type == "unsupported"}
    if not offered or any(name not in offered for a in d.ambiguities for name in a.candidates):
        return "unsupported_mismatch: the tools offered differ from the ones the scenario lists as possible"
    if [lab.act for lab in d.labels] != ["answer"] or not withheld:
        return "unsupported_mismatch: an unsupported request gets exactly one answer turn"
    return None


def reaches_goal(d: Dialogue, ctx: Context) -> str | None:
    """The final call is the hidden goal (an unsupported request has none: `declines_unsupported` checks it)."""
    if is_unsupported(d):
        return None
    if not d.gold_calls:
        return "goal_mismatch: no tool was called"
    final = d.gold_calls[-1]
    if not call_matches(final.name, final.args(), final.name, d.goal, tool_defaults(d.tools, final.name)):
        return f"goal_mismatch: the final {final.name} call differs from the user's goal"
    return None


CHECKS: list[Check] = [labels_consistent, gold_calls_match, arguments_valid, execution_consistent, grounded,
                       asks_when_needed, declines_unsupported, reaches_goal]


def check(d: Dialogue, ctx: Context) -> str | None:
    """The first failing check's reason, or None."""
    for fn in CHECKS:
        reason = fn(d, ctx)
        if reason:
            return reason
    return None


def rejection(d: Dialogue | dict, stage: str, reason: str, raw: str | None = None) -> Rejection:
    code, _, detail = reason.partition(": ")
    row = d.model_dump(mode="json") if isinstance(d, Dialogue) else d
    return Rejection(id=str(row.get("id", "?")), stage=stage, check=code, reason=detail or code, row=row, raw=raw)


def run(dialogues: Iterable[Dialogue], ctx: Context) -> Iterator[Dialogue | Rejection]:
    """Per-row checks: each dialogue comes out as itself or as a Rejection."""
    for d in dialogues:
        reason = check(d, ctx)
        yield d if reason is None else rejection(d, "validate", reason)


# --- duplicates ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def dialogue_text(row: Dialogue | dict) -> str:
    """What two dialogues must share to be duplicates: the user's words and the calls made.

    `row` is a Dialogue or its JSON form (the dedup pass reads rows as JSON, publishing as Dialogues)."""
    if isinstance(row, Dialogue):
        users = [m.content or "" for m in row.messages if m.role == "user"]
        calls = [(c.name, c.arguments) for c in row.gold_calls]
    else:
        users = [m.get("content") or "" for m in row["messages"] if m["role"] == "user"]
        calls = [(c["name"], c["arguments"]) for c in row["gold_calls"]]
    return " ".join(users).lower() + " || " + " ".join(name + args for name, args in calls)


def shingles(text: str, n: int = 3) -> set[bytes]:
    """The word n-grams of `text`; one (maybe empty) for a text of fewer than n words."""
    words = _WORD.findall(text.lower())
    return {" ".join(words[i: i + n]).encode() for i in range(max(1, len(words) - n + 1))}


class MinHasher:
    """MinHash of a dialogue's shingles, with the permutations drawn once rather than per dialogue."""

    def __init__(self, num_perm: int = 64):
        from datasketch import MinHash  # here, at first use: datasketch imports scipy (~0.5 s)

        first = MinHash(num_perm=num_perm, seed=1)
        self.new = MinHash
        self.num_perm, self.scheme, self.permutations = num_perm, first.scheme, first.permutations

    def __call__(self, text: str) -> MinHash:
        mh = self.new(num_perm=self.num_perm, seed=1, permutations=self.permutations, scheme=self.scheme)
        mh.update_batch(list(shingles(text)))
        return mh

    def hashvalues(self, texts: Sequence[str]) -> np.ndarray:
        """The MinHash values of each text, a uint32 row each: `self(text).hashvalues`, computed for all the texts
        at once (per text, datasketch's numpy work costs more than the hashing)."""
        from datasketch.hashfunc import sha1_hash32  # datasketch's default hash function, as `self(text)` uses

        groups = [shingles(text) for text in texts]
        if self.scheme not in ("affine32", "legacy") or not groups:  # a scheme this does not know: one at a time
            return np.array([self(text).hashvalues for text in texts], dtype=np.uint32).reshape(-1, self.num_perm)
        sizes = np.fromiter((len(g) for g in groups), dtype=np.int64, count=len(groups))  # >= 1: see `shingles`
        hashes = np.fromiter((sha1_hash32(s) for g in groups for s in g), dtype=np.uint64, count=int(sizes.sum()))
        a, b = self.permutations
        if self.scheme == "affine32":  # MurmurHash3's finalizer, then a * h + b in uint32 (it wraps: mod 2**32)
            from datasketch.minhash import _fmix

            permuted = _fmix(hashes.astype(np.uint32)[:, None], 32) * a + b
        else:  # (a * h + b) mod the Mersenne prime 2**61 - 1, kept to 32 bits
            permuted = ((hashes[:, None] * a + b) % np.uint64((1 << 61) - 1)) & np.uint64((1 << 32) - 1)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return np.minimum.reduceat(permuted, starts, axis=0).astype(np.uint32)


class HashIndex:
    """64-bit keys, each with a small int (the row that first had it), in ~12 bytes a key.

    New keys go to a dict; every `MERGE` keys it is merged into sorted numpy arrays. A dict of Python ints
    costs ~100 bytes a key and bytes keys more, which at a million rows is gigabytes; this stays tens of MB."""

    MERGE = 1 << 16

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.uint64)
        self.values = np.empty(0, dtype=np.uint32)  # rows and split numbers: below 2**32
        self.recent: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.keys) + len(self.recent)

    def get(self, key: int) -> int | None:
        value = self.recent.get(key)
        if value is not None or not len(self.keys):
            return value
        at = int(np.searchsorted(self.keys, np.uint64(key)))
        return int(self.values[at]) if at < len(self.keys) and int(self.keys[at]) == key else None

    def add(self, key: int, value: int) -> None:
        """Remember `key` -> `value` unless `key` is known already (the first value is kept)."""
        if not 0 <= value < 1 << 32:
            raise ValueError(f"HashIndex values are below 2**32, not {value}")  # a programming error
        if self.get(key) is None:
            self.recent[key] = value
            if len(self.recent) >= self.MERGE:
                self._merge()

    def _merge(self) -> None:
        # Inserted where they sort (no sort of the whole index): the merge needs one new copy, not several.
        n = len(self.recent)
        keys = np.fromiter(self.recent.keys(), dtype=np.uint64, count=n)
        order = np.argsort(keys)
        keys, values = keys[order], np.fromiter(self.recent.values(), dtype=np.uint32, count=n)[order]
        at = np.searchsorted(self.keys, keys)
        self.keys, self.values, self.recent = np.insert(self.keys, at, keys), np.insert(self.values, at, values), {}


def hash64(data: bytes) -> int:
    """A 64-bit hash of `data` (blake2b)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def lsh_bands(threshold: float, num_perm: int) -> list[slice]:
    """The band slices of the MinHash that datasketch's LSH would use for `threshold` (rows that share any band
    are candidates): the same candidates, without datasketch's index, whose memory grows ~2 KB a row."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return [slice(i * lsh.r, (i + 1) * lsh.r) for i in range(lsh.b)]


def band_keys(hashvalues: np.ndarray, bands: list[slice]) -> list[int]:
    """One 64-bit key per band of a MinHash's hash values, distinct per band."""
    values = np.asarray(hashvalues, dtype=np.uint32)  # MinHash values are below 2**32: one byte form everywhere
    return [hash64(i.to_bytes(2, "little") + values[band].tobytes()) for i, band in enumerate(bands)]


class _Ids:
    """A growing list of ids in a few bytes each (a list of str costs ~70 bytes an id): full pieces are numpy
    byte strings."""

    PIECE = 1 << 16

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []
        self.recent: list[bytes] = []

    def __len__(self) -> int:
        return self.PIECE * len(self.pieces) + len(self.recent)

    def __getitem__(self, i: int) -> str:
        piece, at = divmod(i, self.PIECE)
        return (self.pieces[piece][at] if piece < len(self.pieces) else self.recent[at]).decode()

    def append(self, row_id: str) -> None:
        self.recent.append(row_id.encode())
        if len(self.recent) == self.PIECE:
            self.pieces.append(np.array(self.recent, dtype="S"))
            self.recent = []


class Deduplicator:
    """Exact duplicates by content hash; near duplicates by MinHash LSH over word 3-gram shingles.

    The first occurrence (in run order) is kept, so the result does not depend on how the run was sharded. The
    index holds 64-bit hashes in sorted arrays (`HashIndex`) and the kept rows' ids, so it stays small at a
    million rows.
    """

    def __init__(self, threshold: float = 0.9, num_perm: int = 64):
        self.threshold, self.num_perm = threshold, num_perm
        self.exact = HashIndex()
        self.near = HashIndex()  # band key -> the kept row that first had it
        self.kept = _Ids()  # ids of kept rows, by their order: what a near-duplicate is reported against
        self._hashing: tuple[MinHasher, list[slice]] | None = None  # made on first use: datasketch imports scipy

    @property
    def minhash(self) -> MinHasher:
        return self._hasher()[0]

    def _hasher(self) -> tuple[MinHasher, list[slice]]:
        if self._hashing is None:
            self._hashing = MinHasher(self.num_perm), lsh_bands(self.threshold, self.num_perm)
        return self._hashing

    def keys(self, text: str) -> list[int]:
        """The 64-bit keys deduplication compares for a `dialogue_text`: its exact digest, then one per LSH band.
        Workers compute them as shards finish (`dedup_keys`), so the ordered pass only looks them up."""
        minhash, bands = self._hasher()
        return [hash64(text.encode()), *band_keys(minhash(text).hashvalues, bands)]

    def reason(self, row_id: str, text: str | None, keys: Sequence[int] | None = None) -> str | None:
        """Why the dialogue `row_id` with this `dialogue_text` (or these `keys` of it, and then `text` may be None) is
        a duplicate of an earlier one, or None."""
        digest, *keys = self.keys(text) if keys is None else [int(k) for k in keys]
        if self.exact.get(digest) is not None:
            return "duplicate: the same dialogue text appears earlier in the run"
        self.exact.add(digest, 0)
        for key in keys:  # bands in order: the reported row does not depend on hashing order
            earlier = self.near.get(key)
            if earlier is not None:
                return f"near_duplicate: too similar to {self.kept[earlier]}"
        for key in keys:
            self.near.add(key, len(self.kept))
        self.kept.append(row_id)
        return None


def deduplicate(rows: Iterable[Dialogue | dict], dedup: Deduplicator,
                keys: Iterable[Sequence[int]] | None = None) -> Iterator[Dialogue | dict | Rejection]:
    """Drop exact and near duplicates of earlier rows; rows may be Dialogues or their JSON form. `keys`: each row's
    `Deduplicator.keys`, when they were computed already (else they are computed here)."""
    for row, row_keys in zip(rows, keys if keys is not None else itertools.repeat(None)):
        row_id = row.id if isinstance(row, Dialogue) else row["id"]
        # the text only when there are no keys: joining a dialogue's words costs ~5% of a finalize pass that has them
        reason = dedup.reason(row_id, dialogue_text(row) if row_keys is None else None, row_keys)
        yield row if reason is None else rejection(row, "dedup", reason)


def dedup_keys(rows: Iterable[Dialogue | dict], threshold: float, num_perm: int, batch: int = 256) -> np.ndarray:
    """Each row's `Deduplicator.keys`, as a (rows, 1 + bands) uint64 array. The MinHashes are computed `batch` rows
    at a time, as the rows arrive (in LLM runs, while later requests are in flight)."""
    keys: list[list[int]] = []
    rows, minhash, bands = iter(rows), None, None
    while texts := [dialogue_text(row) for row in itertools.islice(rows, batch)]:
        if minhash is None:  # at the first row, not before it: datasketch imports scipy
            minhash, bands = MinHasher(num_perm), lsh_bands(threshold, num_perm)
        keys += [[hash64(text.encode()), *band_keys(values, bands)] for text, values in zip(texts, minhash.hashvalues(texts))]
    return np.array(keys, dtype=np.uint64).reshape(-1, 1 + len(bands or lsh_bands(threshold, num_perm)))
