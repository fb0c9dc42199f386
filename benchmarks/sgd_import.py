"""SpeakER-SGD as the outside test of the validators and of `question_targets`.

Imports SGD dialogue files (`speakrl import sgd`), then reports: how many dialogues the unchanged validators accept,
every rejection reason with its count and one example (dialogue id, reason, and the first user turn), and how
often `question_targets` on the human REQUEST questions names the requested slots: exactly, for three sets of
candidate slots (`SCOPES`; the first, all slots of the dialogue's services, is the figure reported since the first
round); all of them and at least one (what the `asks_when_needed` validator needs), over the first set; the slots it
misses or adds most; and its disagreements by kind, with examples.

    python benchmarks/sgd_import.py SGD_DIR [--schema schema.json]
    python benchmarks/sgd_import.py path/to/sgd/train --schema data/sgd/train_schema.json   # your copy of the SGD corpus

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from speakrl.pipeline import sgd
from speakrl.pipeline.checks import _cue_pattern, normalize, question_targets, slot_cues
from speakrl.pipeline.io import read_jsonl
from speakrl.schemas.catalog import SlotSpec
from speakrl.schemas.dialogue import Dialogue, Rejection


def _next_call_parameters(d: Dialogue, index: int) -> set[str] | None:
    """Parameter names of the tool the dialogue calls next after message `index` (None when it calls none)."""
    specs = {t.name: t for t in d.tools}
    for m in d.messages[index + 1:]:
        for call in m.tool_calls or []:
            if call.function.name in specs:
                return set(specs[call.function.name].function.parameters.get("properties", {}))
    return None


# Which slots `question_targets` chooses among: all slots of the dialogue's services (tool arguments and result
# fields alike); the arguments of the dialogue's tools, as the rewards and the user simulator pass them; the
# arguments of the tool the dialogue calls next, the context in which a reader of the question knows what it is for.
SCOPES = ("service_slots", "tool_parameters", "next_call_parameters")


def question_agreement(dialogues: list[Dialogue], schema: Path, show: int = 5) -> dict:
    """`question_targets` against each REQUEST turn's slots, for each scope of candidate slots, and the disagreements
    of the first scope by kind: a requested slot the question names by none of its cues (the words do not ask it:
    a vague "What are you interested in?", or SGD's paraphrase dropped it), one that only the next call's tool
    settles (the same words ask different slots for different intents), and the rest."""
    services, _ = sgd.load_schema(schema)
    slots = sgd.domain_slots(services, dialogues)
    n = 0
    exact: Counter[str] = Counter()
    covers = any_hit = 0
    missed: Counter[str] = Counter()
    added: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    examples: dict[str, list[dict]] = {}
    for d in dialogues:
        params = {p for t in d.tools for p in t.function.parameters.get("properties", {})}
        for lab in d.labels:
            if lab.kind != "request":
                continue
            question = d.messages[lab.message_index].content or ""
            domain = slots[d.domain]
            following = _next_call_parameters(d, lab.message_index) or params
            candidates = {"service_slots": list(domain.values()),
                          "tool_parameters": [s for name, s in domain.items() if name in params],
                          "next_call_parameters": [s for name, s in domain.items() if name in following]}
            want = set(lab.target_slots)
            got = {scope: question_targets(question, candidates[scope]) for scope in SCOPES}
            n += 1
            exact.update(scope for scope in SCOPES if got[scope] == want)
            first = got[SCOPES[0]]
            covers += want <= first
            any_hit += bool(first & want)
            if first == want:
                continue
            for s in want - first:
                missed[s] += 1
            for s in first - want:
                added[s] += 1
            if any(not slot_cues(domain[s]) & _said_cues(question, domain[s]) for s in want - first if s in domain):
                kind = "requested_slot_not_named"
            elif got["next_call_parameters"] == want:
                kind = "settled_by_the_next_call"
            else:
                kind = "other"
            kinds[kind] += 1
            examples.setdefault(kind, [])
            if len(examples[kind]) < show:
                examples[kind].append({"id": d.id, "question": question, "requested": sorted(want), "detected": sorted(first)})
    return {
        "request_turns": n,
        "exact": {scope: round(exact[scope] / max(n, 1), 4) for scope in SCOPES},
        "names_all_requested": round(covers / max(n, 1), 4),
        "names_one_requested": round(any_hit / max(n, 1), 4),
        "disagreements": dict(kinds.most_common()),
        "missed": dict(missed.most_common(10)),
        "added": dict(added.most_common(10)),
        "examples": examples,
    }


def _said_cues(question: str, slot: SlotSpec) -> set[str]:
    """The cues of `slot` that occur in the question, whatever their role in it."""
    text = normalize(question)
    return {cue for cue in slot_cues(slot) if _cue_pattern(cue).search(text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sgd_dir", type=Path)
    parser.add_argument("--schema", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.perf_counter()
        stats = sgd.import_corpus(args.sgd_dir, out, args.schema)
        seconds = time.perf_counter() - start
        rejected = list(read_jsonl(out / "rejected.jsonl", Rejection))
        reasons: dict[str, dict] = {}
        for r in rejected:
            entry = reasons.setdefault(r.check, {"count": 0, "example": None})
            entry["count"] += 1
            if entry["example"] is None:
                first_user = next((m["content"] for m in (r.row or {}).get("messages", []) if m["role"] == "user"), None)
                entry["example"] = {"id": r.id, "reason": r.reason, "first_user_turn": first_user}
        # every dialogue, accepted or not, for question_targets: the REQUEST turns are the same either way
        converted = list(read_jsonl(out / "accepted.jsonl", Dialogue))
        converted += [Dialogue.model_validate(r.row) for r in rejected if r.stage == "validate"]
        schema = args.schema or sgd.split_dirs(args.sgd_dir)[0][1] / "schema.json"
        print(json.dumps({
            "sgd_dir": str(args.sgd_dir),
            "generated": stats["generated"],
            "accepted": stats["accepted"],
            "accepted_share": round(stats["accepted"] / max(stats["generated"], 1), 4),
            "rejections": dict(sorted(reasons.items(), key=lambda kv: -kv[1]["count"])),
            "question_targets": question_agreement(converted, schema),
            "seconds": round(seconds, 2),
        }, indent=2))


if __name__ == "__main__":
    main()
