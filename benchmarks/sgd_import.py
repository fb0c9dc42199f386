"""SpeakER-SGD as the outside test of the validators and of `question_targets`.

Imports SGD dialogue files (`speakrl import sgd`), then reports: how many dialogues the unchanged validators accept,
every rejection reason with its count and one example (dialogue id, reason, and the first user turn), and how
often `question_targets` on the human REQUEST questions names the requested slots (exactly; all of them; at least
one, which is what the `asks_when_needed` validator needs), with the slots it misses or adds most.

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
from speakrl.pipeline.checks import question_targets
from speakrl.pipeline.io import read_jsonl
from speakrl.schemas.dialogue import Dialogue, Rejection


def question_agreement(dialogues: list[Dialogue], schema: Path) -> dict:
    """`question_targets` over all slots of the dialogue's services, against each REQUEST turn's slots."""
    services, _ = sgd.load_schema(schema)
    slots = sgd.domain_slots(services, dialogues)
    n = exact = covers = any_hit = 0
    missed: Counter[str] = Counter()
    added: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for d in dialogues:
        for lab in d.labels:
            if lab.kind != "request":
                continue
            question = d.messages[lab.message_index].content or ""
            got, want = question_targets(question, slots[d.domain].values()), set(lab.target_slots)
            n += 1
            exact += got == want
            covers += want <= got
            any_hit += bool(got & want)
            for s in want - got:
                missed[s] += 1
                examples.setdefault(f"missed {s}", question)
            for s in got - want:
                added[s] += 1
                examples.setdefault(f"added {s}", question)
    return {
        "request_turns": n,
        "exact": round(exact / max(n, 1), 4),
        "names_all_requested": round(covers / max(n, 1), 4),
        "names_one_requested": round(any_hit / max(n, 1), 4),
        "missed": dict(missed.most_common(10)),
        "added": dict(added.most_common(10)),
        "examples": examples,
    }


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
