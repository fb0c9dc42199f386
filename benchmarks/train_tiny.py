"""Base → SFT → SFT+GRPO with the `tiny-cpu` recipe on a freshly generated SpeakER, evaluated on the held-out test
split. Prints the evaluation table for the three models and the reward curve; writes everything as JSON.

    python benchmarks/train_tiny.py --out outputs/bench-tiny            # ~20 min on 2 CPU cores
    python benchmarks/train_tiny.py --n 120 --sft-epochs 1 --grpo-steps 4  # smoke run

The numbers are what a ~1M-parameter model learns in minutes on a CPU; they show the pipeline works end to end and
which way each stage moves the metrics, not what a real model reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bench-tiny")
    parser.add_argument("--n", type=int, default=300, help="scenarios to generate")
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
    from speakrl.training.evaluate import LocalPolicy, evaluate, metrics_table
    from speakrl.training.train import reward_curve, train

    console = Console()
    out = Path(args.out)
    timings: dict[str, float] = {}
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
    timings["sft_s"], timings["grpo_s"] = summary.get("sft_seconds"), summary.get("grpo_seconds")

    results = {}
    for name, path in (("base", summary["base"]), ("sft", summary["sft"]), ("sft+grpo", summary["grpo"])):
        t = time.time()
        policy = LocalPolicy(path, cfg.protocol, max_new_tokens=cfg.eval_max_new_tokens, batch_size=32)
        results[name] = evaluate(policy, str(run_dir), "test", max_turns=cfg.eval_max_turns, limit=args.eval_limit)
        timings[f"eval_{name}_s"] = round(time.time() - t, 1)

    history = json.loads((Path(summary["grpo"]) / "log_history.json").read_text())
    curve = reward_curve(history)
    rewards = curve["reward"]
    k = max(1, len(rewards) // 5)
    report = {
        "recipe": "tiny-cpu",
        "n_scenarios": args.n,
        "torch_threads": torch.get_num_threads(),
        "sft_epochs": cfg.sft.get("num_train_epochs"),
        "grpo_steps": cfg.max_steps,
        "results": results,
        "reward_curve": {
            "first_steps_mean": round(sum(rewards[:k]) / k, 4) if rewards else None,
            "last_steps_mean": round(sum(rewards[-k:]) / k, 4) if rewards else None,
            "frac_reward_zero_std_mean": round(sum(x or 0 for x in curve["frac_reward_zero_std"]) / max(1, len(rewards)), 4),
            "json": summary.get("reward_curve_json"),
            "png": summary.get("reward_curve_png"),
            "reward": rewards,
        },
        "timings": timings,
    }
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    console.print(metrics_table(results, title=f"SpeakER test split — tiny-cpu ({results['base']['dialogues']} dialogues)"))
    print(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=1))
    print(f"full report: {out / 'bench.json'}")


if __name__ == "__main__":
    main()
