"""Realism of generated dialogues: the share of accepted dialogues with each defect a careful reader flags
(`speakrl.pipeline.quality`), and distinct-2 over a fixed-size sample of user turns.

Runs `speakrl run --n N` on the built-in catalog, on an OpenAI tools file of domains the project has never seen
(tests/data/unseen_tools.json) and on SGD schemas of services outside SGD's train split
(tests/data/sgd_unseen_schema.json: Messaging_1, Payment_1, Trains_1).

    python benchmarks/realism.py --n 2000
Prints one JSON object. `--sgd-dialogues DIR` also measures distinct-2 of human SGD user turns the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

from speakrl.pipeline.io import read_jsonl
from speakrl.pipeline.quality import DETECTORS, defects, distinct_n
from speakrl.pipeline.runner import generate
from speakrl.schemas import Dialogue, RunConfig

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = {
    "builtin": "builtin",
    "openai_unseen": str(ROOT / "tests" / "data" / "unseen_tools.json"),
    "sgd_unseen": str(ROOT / "tests" / "data" / "sgd_unseen_schema.json"),
}
TURNS = 1720


def sample_turns(texts: list[str], k: int = TURNS, seed: int = 0) -> list[str]:
    """A fixed-size random sample, so distinct-2 compares equal sample sizes."""
    return random.Random(seed).sample(texts, min(k, len(texts)))


def measure(catalog: str, n: int, seed: int, tmp: Path) -> dict:
    run_dir = generate(RunConfig(n=n, seed=seed, out=str(tmp / Path(catalog).stem), catalog=catalog, workers=1))
    rows = list(read_jsonl(run_dir / "accepted.jsonl", Dialogue))
    stats = json.loads((run_dir / "stats.json").read_text())
    counts: Counter[str] = Counter()
    for d in rows:
        counts.update(defects(d))
    users = [m.content or "" for d in rows for m in d.messages if m.role == "user"]
    turns = sample_turns(users)
    return {
        "accepted": len(rows),
        "rejected": stats["rejected"],
        "defect_share": {name: round(counts[name] / max(1, len(rows)), 4) for name in DETECTORS},
        "distinct_2_user_turns": round(distinct_n(turns), 3),
        "user_turns_sampled": len(turns),
        "ambiguity_types": stats.get("by_ambiguity", stats.get("ambiguity")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catalogs", nargs="+", default=list(CATALOGS), choices=list(CATALOGS))
    parser.add_argument("--sgd-dialogues", type=Path, help="a folder of SGD dialogues_*.json (human reference)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    results: dict = {"n": args.n, "seed": args.seed, "catalogs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.catalogs:
            results["catalogs"][name] = measure(CATALOGS[name], args.n, args.seed, Path(tmp))
    if args.sgd_dialogues:
        users = [t["utterance"] for f in sorted(args.sgd_dialogues.glob("dialogues_*.json"))
                 for d in json.loads(f.read_text()) for t in d["turns"] if t["speaker"] == "USER"]
        results["sgd_human_distinct_2"] = round(distinct_n(sample_turns(users)), 3)
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
