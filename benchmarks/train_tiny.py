"""Base → (pretrain) → SFT → SFT+GRPO with the `tiny-cpu` recipe on a freshly generated SpeakER, evaluated on the held-out test
split. Prints the evaluation table for the three models and the reward curve; writes everything as JSON.

    python benchmarks/train_tiny.py --out outputs/bench-tiny            # one command, prints JSON; target <= 15 min on 2 cores
    python benchmarks/train_tiny.py --n 120 --sft-epochs 1 --grpo-steps 4 --eval-limit 10  # smoke run

stdout is the JSON summary alone (`| jq .table`); the trainers' logs and the rich table go to stderr.

The baselines (always-act, always-ask, oracle) are scored by the same harness on the same test split, so each number
has its floor and ceiling beside it. The numbers are what a 2.4M-parameter model learns in minutes on a CPU; they show
the pipeline works end to end and which way each stage moves the metrics, not what a real model reaches.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    # The trainers print their per-step logs to stdout; they go to stderr so stdout is the JSON summary alone.
    with contextlib.redirect_stdout(sys.stderr):
        report, path = run()
    print(json.dumps(report, indent=1))
    print(f"full report: {path}", file=sys.stderr)


def run() -> tuple[dict, Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bench-tiny")
    parser.add_argument("--n", type=int, default=600, help="scenarios to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft-epochs", type=float, default=None, help="override the recipe's SFT epochs")
    parser.add_argument("--grpo-steps", type=int, default=None, help="override the recipe's GRPO max_steps")
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate only the first N test dialogues")
    parser.add_argument("--set", action="append", default=[], help="recipe override KEY=VALUE (repeatable)")
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from speakrl.pipeline.runner import generate
    from speakrl.schemas.config import RunConfig
    from speakrl.training.config import load_recipe
    from speakrl.training.evaluate import BASELINES, BaselinePolicy, LocalPolicy, evaluate, f1_interval, metrics_table
    from speakrl.training.train import reward_curve, train

    console = Console(stderr=True)
    out = Path(args.out)
    timings: dict[str, float] = {}
    started, load_before = time.time(), os.getloadavg()
    t = time.time()
    run_dir = Path(generate(RunConfig(n=args.n, seed=args.seed, out=str(out / "run"))))
    timings["generate_s"] = round(time.time() - t, 1)

    overrides = list(args.set)
    if args.sft_epochs is not None:
        overrides.append(f"sft.num_train_epochs={args.sft_epochs}")
    cfg, model_args = load_recipe("tiny-cpu", output_dir=str(out / "model"), max_steps=args.grpo_steps, overrides=overrides)
    t = time.time()
    summary = train(cfg, model_args, str(run_dir))
    timings["train_s"] = round(time.time() - t, 1)
    timings["pretrain_s"], timings["sft_s"], timings["grpo_s"] = (summary.get(f"{stage}_seconds") for stage in ("pretrain", "sft", "grpo"))

    results = {}
    for name in BASELINES:
        results[name] = evaluate(BaselinePolicy(name), str(run_dir), "test", max_turns=cfg.eval_max_turns, limit=args.eval_limit)
    for name, path in (("base", summary["base"]), ("sft", summary["sft"]), ("sft+grpo", summary["grpo"])):
        t = time.time()
        policy = LocalPolicy(path, cfg.protocol, max_new_tokens=cfg.eval_max_new_tokens, batch_size=32)
        results[name] = evaluate(policy, str(run_dir), "test", max_turns=cfg.eval_max_turns, limit=args.eval_limit)
        timings[f"eval_{name}_s"] = round(time.time() - t, 1)

    timings["total_s"] = round(time.time() - started, 1)
    history = json.loads((Path(summary["grpo"]) / "log_history.json").read_text())
    curve = reward_curve(history)
    rewards = curve["reward"]
    k = max(1, len(rewards) // 5)

    def first_last(values: list) -> list:
        """Mean of the first and of the last fifth of the steps (None where a reward did not apply)."""
        head, tail = [v for v in values[:k] if v is not None], [v for v in values[-k:] if v is not None]
        return [round(sum(head) / len(head), 4) if head else None, round(sum(tail) / len(tail), 4) if tail else None]
    # GRPO against its own warm start on the same dialogues: the F1 difference and its paired bootstrap interval.
    sft_decisions, grpo_decisions = results["sft"]["decisions"], results["sft+grpo"]["decisions"]
    ids = sorted(sft_decisions)
    grpo_vs_sft = {
        "clarify_f1_difference": round(results["sft+grpo"]["clarify_f1"] - results["sft"]["clarify_f1"], 4),
        "ci95": f1_interval([grpo_decisions[i] for i in ids], baseline=[sft_decisions[i] for i in ids]),
    }
    report = {
        "recipe": "tiny-cpu",
        "n_scenarios": args.n,
        "torch_threads": torch.get_num_threads(),
        "sft_epochs": cfg.sft.get("num_train_epochs"),
        "grpo_steps": cfg.max_steps,
        "grpo_vs_sft": grpo_vs_sft,
        "results": results,
        "reward_curve": {
            "first_steps_mean": round(sum(rewards[:k]) / k, 4) if rewards else None,
            "last_steps_mean": round(sum(rewards[-k:]) / k, 4) if rewards else None,
            # Which reward moved: each one's mean over the first and the last fifth of the steps.
            "per_reward_first_last": {key.split("/")[1]: first_last(v) for key, v in curve.items() if key.startswith("rewards/")},
            "frac_reward_zero_std_mean": round(sum(x or 0 for x in curve["frac_reward_zero_std"]) / max(1, len(rewards)), 4),
            "json": summary.get("reward_curve_json"),
            "png": summary.get("reward_curve_png"),
            "reward": rewards,
        },
        "timings": timings,
        # Other work on the machine inflates the timings: the 1-minute load average when the run started and ended.
        "load_average_start_end": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
    }
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    console.print(metrics_table(results, title=f"SpeakER test split — tiny-cpu ({results['base']['dialogues']} dialogues)"))
    headline = ("clarify_f1", "clarify_f1_ci95", "p_ask_auc", "clarify_precision", "clarify_recall", "task_completion", "avg_turns",
                "tool_call_exact_match", "forced_call_right_tool", "forced_call_argument_f1", "forced_call_values_in_context",
                "format_score")
    summary_table = {name: {k: m.get(k) for k in headline} for name, m in results.items()}
    summary_report = {**{k: v for k, v in report.items() if k not in ("results", "reward_curve")},
                      "table": summary_table,
                      "reward_curve": {k: v for k, v in report["reward_curve"].items() if k != "reward"}}
    return summary_report, out / "bench.json"


if __name__ == "__main__":
    main()
