"""Agreement of `question_targets` with the gold target slots of generated clarification questions.

Every clarify turn of a freshly generated SpeakER run is checked against all the slots of the dialogue's tools (what
the clarify reward, turn efficiency, eval and the user simulator pass), the way training reads them:

    python benchmarks/question_targets.py --n 2000      # prints JSON: agreement, and the disagreeing shapes

Offline, deterministic by seed, about a second per thousand dialogues.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="scenarios to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=15, help="disagreeing questions to print")
    args = parser.parse_args()

    from speakrl.pipeline.checks import question_targets
    from speakrl.pipeline.runner import generate
    from speakrl.schemas.config import RunConfig
    from speakrl.training.data import decision_rows, load_dialogues
    from speakrl.training.rewards import slot_specs

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = generate(RunConfig(n=args.n, seed=args.seed, out=f"{tmp}/run"))
        dialogues = [d for split in load_dialogues(str(run_dir)).values() for d in split]
    rows = [r for r in decision_rows(dialogues) if r["act"] == "clarify"]
    agree, shapes, examples = 0, Counter(), []
    for r in rows:
        gold, got = set(r["target_slots"]), question_targets(r["gold_content"], slot_specs(r["slots"]))
        if gold == got:
            agree += 1
            continue
        kind = "extra" if got > gold else "missing" if got < gold else "different"
        shapes[kind] += 1
        if len(examples) < args.show:
            examples.append({"question": r["gold_content"], "gold": sorted(gold), "detected": sorted(got)})
    print(json.dumps({
        "dialogues": len(dialogues),
        "gold_questions": len(rows),
        "agreement": round(agree / len(rows), 4) if rows else None,
        "disagreements": dict(shapes),
        "examples": examples,
    }, indent=1))


if __name__ == "__main__":
    main()
