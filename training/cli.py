"""`speakrl train` and `speakrl eval`. torch, transformers and TRL are imported inside the commands, so the rest of
the CLI works without the `train` extra."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console

from speakrl.pipeline.errors import TrainingError

logger = logging.getLogger(__name__)
app = typer.Typer()
console = Console(stderr=True)


def _need_training_extra() -> None:
    try:
        import torch  # noqa: F401
        import trl  # noqa: F401
    except ImportError:
        raise TrainingError("training needs torch and TRL, which the train extra of speakrl installs") from None

@app.command("train")
def train_command(
    recipe: str = typer.Option(..., "--recipe", help="Recipe name (tiny-cpu, qwen3-1.7b, multi-gpu) or a YAML path."),
    dataset: str = typer.Option(..., "--dataset", help="Run directory, local dataset directory, or Hub dataset id."),
    config: str | None = typer.Option(None, "--config", help="Config of the dataset to train on (sgd: SpeakER-SGD).", show_default="default"),
    output_dir: Path = typer.Option(..., "--output-dir", help="Where checkpoints, logs and the reward curve go."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, max=10_000_000, help="GRPO steps.", show_default="the recipe's"),
    model: str | None = typer.Option(None, "--model", help="Model path or Hub id.", show_default="the recipe's model_name_or_path"),
    protocol: str | None = typer.Option(None, "--protocol", help="speakrl or native.", show_default="the recipe's"),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a recipe setting: KEY=VALUE (sft.KEY for the warm start, pretrain.KEY for pretraining)."),
) -> None:
    """Train on SpeakER with TRL: SFT warm start, then GRPO with the recipe's rewards."""
    _check_output_dir(output_dir)
    _need_training_extra()
    from speakrl.training.config import load_recipe
    from speakrl.training.train import train

    overrides = list(set_ or [])
    if model:
        overrides.append(f"model_name_or_path={model}")
    if protocol:
        overrides.append(f"protocol={protocol}")
    cfg, model_args = load_recipe(recipe, output_dir=str(output_dir), max_steps=max_steps, overrides=overrides)
    summary = train(cfg, model_args, dataset, config)
    console.print(f"trained: {summary['final']}")
    if "reward_curve_png" in summary:
        console.print(f"reward curve: {summary['reward_curve_json']} and {summary['reward_curve_png']}")


@app.command("eval")
def eval_command(
    model: str = typer.Option(..., "--model", help="Checkpoint directory, or the model name served at --base-url."),
    dataset: str | None = typer.Option(None, "--dataset", help="Run directory, local dataset directory, or Hub dataset id."),
    benchmark: str | None = typer.Option(None, "--benchmark", help="A peer benchmark instead of a dataset: when2call, bfcl-irrelevance, bfcl-live-simple, bfcl-miss-param."),
    benchmark_dir: Path | None = typer.Option(None, "--benchmark-dir", help="Benchmark data directory (default: the repository's data/benchmarks)."),
    split: str = typer.Option("test", "--split", help="Split to evaluate."),
    config: str | None = typer.Option(None, "--config", help="Config of the dataset (sgd: SpeakER-SGD).", show_default="default"),
    base_url: str | None = typer.Option(None, "--base-url", envvar="OPENAI_BASE_URL", help="OpenAI-compatible endpoint; the model is then an API model."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key."),
    protocol: str | None = typer.Option(None, "--protocol", help="speakrl or native.", show_default="speakrl for checkpoints trained here, native for API models"),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="Where eval JSON goes.", show_default="the checkpoint dir, or outputs/eval/MODEL"),
    catalog: str | None = typer.Option(None, "--catalog", help="Catalog that runs the tools.", show_default="the run's, else builtin"),
    max_turns: int = typer.Option(8, "--max-turns", min=1, max=1000, help="Turn limit of an episode."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1, help="Token limit of one turn.", show_default="128 for checkpoints, 512 for API models"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate only the first N dialogues.", show_default="all"),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=4096, help="Parallel requests to the endpoint."),
) -> None:
    """Evaluate a checkpoint or an API model: task completion, turns, clarification precision/recall, tool calls."""
    from rich.console import Console

    from speakrl.training.protocols import PROTOCOLS

    if protocol is not None and protocol not in PROTOCOLS:
        raise TrainingError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if output_dir is not None:
        _check_output_dir(output_dir)
    if (dataset is None) == (benchmark is None):
        raise TrainingError("pass either --dataset (a SpeakER dataset) or --benchmark (a peer benchmark), not both or neither")
    items = None
    if benchmark:
        from speakrl.training.benchmarks import load_benchmark

        items = load_benchmark(benchmark, benchmark_dir, limit)  # bad name or missing data fails before a model loads
    if base_url:
        from speakrl.schemas.config import check_url

        try:
            check_url(base_url)
        except ValueError as e:
            raise TrainingError(f"--base-url {e}; pass the endpoint's http(s) URL") from None
        from speakrl.training.evaluate import ApiPolicy

        policy = ApiPolicy(base_url, model, protocol or "native", api_key_env, max_new_tokens or 512, concurrency)
        out = output_dir or Path("outputs") / "eval" / model.replace("/", "__")
    else:
        _need_training_extra()
        if not (Path(model) / "config.json").is_file():
            raise TrainingError(f"model path {model!r} does not exist or is not a checkpoint directory (no config.json); pass --base-url for an API model")
        from speakrl.training.evaluate import LocalPolicy

        policy = LocalPolicy(model, protocol or _trained_protocol(Path(model)), max_new_tokens or 128)
        out = output_dir or Path(model)
    from speakrl.pipeline.io import atomic_write_text
    from speakrl.training.evaluate import BASELINES, BaselinePolicy, evaluate, metrics_table

    # The trivial policies go beside the model in every table, so each number has its floor and ceiling.
    if items is not None:
        from speakrl.training.benchmarks import benchmark_metrics, metrics_rows

        results = {name: benchmark_metrics(p, benchmark, items) for name, p in [(model, policy), *((b, BaselinePolicy(b)) for b in BASELINES)]}
        table = metrics_table(results, title=f"{benchmark} ({len(items)} items)", rows=metrics_rows(results))
        path = out / f"eval_{benchmark}.json"
    else:
        results = {name: evaluate(p, dataset, split, catalog, max_turns, limit, config) for name, p in [(model, policy), *((b, BaselinePolicy(b)) for b in BASELINES)]}
        table = metrics_table(results, title=f"SpeakER {split}")
        path = out / f"eval_{split}.json"
    metrics = {**results[model], "model": model, "baselines": {b: results[b] for b in BASELINES}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(metrics, indent=1))
    Console().print(table)
    console.print(f"metrics: {path}")


def _check_output_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise TrainingError(f"--output-dir {str(path)!r} is a file; pass a directory (it is created if missing)")


def _trained_protocol(model_dir: Path) -> str:
    """The protocol a checkpoint was trained with (its speakrl.json, or train_summary.json next to it), else speakrl."""
    for candidate in (model_dir / "speakrl.json", model_dir / "train_summary.json", model_dir.parent / "train_summary.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8")).get("protocol", "speakrl")
    return "speakrl"
