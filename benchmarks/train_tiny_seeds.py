"""`train_tiny` over several seeds: each seed's SFT and SFT+GRPO figures, and GRPO against SFT on every seed's test
dialogues pooled (a paired bootstrap over the dialogues of all the seeds: each seed generates its own data, so the
pool is several independent replications of the whole recipe, where one test split cannot tell GRPO from SFT).

    python benchmarks/train_tiny.py --out outputs/tiny-s0 --seed 0    # and --seed 1, 2, ...
    python benchmarks/train_tiny_seeds.py outputs/tiny-s*/bench.json

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from speakrl.training.evaluate import clarify_counts, f1_interval, f1_score

SHOWN = ("clarify_f1", "p_ask_auc", "task_completion", "avg_turns", "forced_call_right_tool", "forced_call_argument_f1")


def pooled_f1(dialogues: list) -> float:
    """Clarify F1 over every turn of `dialogues` (each a list of (needed, asked) pairs)."""
    return f1_score(*clarify_counts([turn for dialogue in dialogues for turn in dialogue]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", help="bench.json files written by benchmarks/train_tiny.py")
    args = parser.parse_args()
    seeds, sft, grpo = [], [], []
    for path in args.reports:
        report = json.loads(Path(path).read_text())
        results = report["results"]
        ids = sorted(results["sft"]["decisions"])
        sft += [results["sft"]["decisions"][i] for i in ids]
        grpo += [results["sft+grpo"]["decisions"][i] for i in ids]
        seeds.append({
            "report": path,
            "test_dialogues": len(ids),
            **{f"{policy}_{k}": results[policy].get(k) for policy in ("sft", "sft+grpo") for k in SHOWN},
            "grpo_vs_sft": report["grpo_vs_sft"],
            "total_s": report["timings"]["total_s"],
        })
    differences = [s["grpo_vs_sft"]["clarify_f1_difference"] for s in seeds]
    print(json.dumps({
        "seeds": seeds,
        "pooled": {
            "test_dialogues": len(sft),
            "sft_clarify_f1": round(pooled_f1(sft), 4),
            "sft+grpo_clarify_f1": round(pooled_f1(grpo), 4),
            "clarify_f1_difference": round(pooled_f1(grpo) - pooled_f1(sft), 4),
            "ci95": f1_interval(grpo, baseline=sft),
        },
        "difference_per_seed": {"values": differences, "mean": round(statistics.mean(differences), 4),
                                "positive": sum(d > 0 for d in differences)},
    }, indent=2))


if __name__ == "__main__":
    main()
