"""`speakrl run|scenarios|dialogues|validate`: the generation commands (mounted by `speakrl.cli`)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from speakrl.pipeline.errors import ConfigError

app = typer.Typer()
console = Console(stderr=True)


def _progress_columns():
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn())


def _summary(run_dir: Path, stats: dict, seconds: float | None) -> None:
    """The run's counts; `seconds` is None when this invocation found the run finished and did nothing."""
    from rich.table import Table

    table = Table(title=f"SpeakER run: {run_dir}", show_header=True, header_style="bold")
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    generated = stats["generated"] or 1
    table.add_row("generated", str(stats["generated"]), "")
    table.add_row("accepted", f"[green]{stats['accepted']}", f"{stats['accepted'] / generated:.1%}")
    table.add_row("rejected", f"[red]{stats['rejected']}", f"{stats['rejected'] / generated:.1%}")
    for key, value in stats.items():
        if key.startswith("dropped_"):
            table.add_row(f"  {key}", str(value), f"{value / generated:.1%}")
    accepted = stats["accepted"] or 1
    for kind, value in stats.get("by_ambiguity", {}).items():
        table.add_row(f"ambiguity: {kind}", str(value), f"{value / accepted:.1%}")
    table.add_row("domains", str(len(stats.get("by_domain", {}))), "")
    table.add_row("mean turns", str(stats.get("mean_turns", "")), "")
    if seconds is None:
        table.add_row("seconds", "0", "finished earlier: nothing to do")
    else:
        table.add_row("seconds", f"{seconds:.1f}", f"{stats['accepted'] / max(seconds, 1e-9):.0f} accepted/s")
    Console().print(table)


def _run_stages(stage: str, config: Path | None, dry_run: bool, overrides: dict) -> None:
    """Load the config, run `stage` (and what it needs) with progress bars, print the summary."""
    from speakrl.pipeline import runner

    cfg = runner.load_config(str(config) if config else None, overrides)
    uses_llm = cfg.dialogues.backend == "openai" or cfg.validate_.judge
    if dry_run:
        if not uses_llm:
            raise ConfigError("--dry-run estimates LLM requests; this run uses no LLM (add --backend openai)")
        from speakrl.pipeline.stages import llm_dialogues

        Console().print_json(json.dumps(llm_dialogues.dry_run(cfg, Path(cfg.out) / "cache")))
        return
    ctx = runner.open_run(cfg)
    try:
        _run_opened(stage, cfg, ctx, uses_llm)
    finally:
        ctx.release()


def _run_opened(stage: str, cfg: Any, ctx: Any, uses_llm: bool) -> None:
    """`stage` on the opened (and locked) run directory."""
    import time

    from speakrl.pipeline import runner

    if stage == "run" and runner.outputs_unchanged(ctx.dir, runner.read_manifest(ctx)):  # nothing to do: no LLM client, no bars
        _summary(ctx.dir, json.loads((ctx.dir / "stats.json").read_text()), None)
        return
    from rich.progress import Progress

    llm = None
    if uses_llm:
        if runner.worker_count(cfg, uses_llm) > 1 and cfg.n > cfg.shard_size:  # the workers' fork server imports meanwhile
            runner.llm_workers_context(start=True)
        from speakrl.pipeline.llm import LLM

        llm = LLM.from_config(cfg, Path(cfg.out) / "cache")
    start = time.perf_counter()
    with Progress(*_progress_columns(), console=console, transient=False) as bar:
        tasks: dict[str, int] = {}
        stop = threading.Event()
        stats_thread = None
        if llm is not None:  # live LLM counters, refreshed while a shard's requests are in flight
            llm_task = bar.add_task("llm", total=None)

            def show_llm_stats() -> None:
                s = llm.snapshot()  # this process's and its worker processes' counters
                cost = "n/a" if s["cost"] is None else f"${s['cost']:.4f}"
                bar.update(llm_task, description=(
                    f"llm done {s['done']} failed {s['failed']} cached {s['cached']} in flight {s['in_flight']} "
                    f"| {s['requests_per_minute']} req/min {s['tokens_per_minute']} tok/min | cost {cost}"))

            def keep_showing_llm_stats() -> None:
                while not stop.wait(1.0):
                    show_llm_stats()

            stats_thread = threading.Thread(target=keep_showing_llm_stats, daemon=True)
            stats_thread.start()

        def progress(name: str, rows: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=cfg.n)
            bar.advance(tasks[name], rows)

        def before_build() -> None:
            # The rows are final: stop this process's other threads (the LLM client's, the live counters, the
            # display's refresh), so the dataset build forks its workers instead of spawning them (runner.generate).
            stop.set()
            if stats_thread is not None:
                stats_thread.join()
            if llm is not None:
                show_llm_stats()  # the final counts: the workers have published theirs
                llm.close()
            bar.stop()
            console.print("dataset: building the Hub layout (parquet, decision points, card) ...")

        try:
            if stage == "run":
                run_dir = runner.generate(cfg, progress, llm, ctx, before_build)
            else:
                runner.run_shards(ctx, stage, progress, llm)
                if stage == "validate":
                    runner.finalize(ctx)
                run_dir = ctx.dir
        finally:
            stop.set()
            if llm is not None:
                llm.close()
                runner.record_usage(ctx)  # every invocation's spend, from the run's usage ledger
    stats_path = run_dir / "stats.json"
    if stage in ("run", "validate") and stats_path.exists():
        _summary(run_dir, json.loads(stats_path.read_text()), time.perf_counter() - start)
    else:
        console.print(f"{stage}: done -> {run_dir}")


def run_default(field: str) -> str:
    """RunConfig's default for a dotted field, as `--help` shows it: flags left unset fall back to the config file,
    then to these.

    >>> run_default("n"), run_default("endpoint.base_url"), run_default("max_cost")
    ('1000', 'https://api.openai.com/v1', 'none')
    """
    from speakrl.schemas.config import RunConfig

    value: object = RunConfig()
    for part in field.split("."):
        value = getattr(value, part)
    return "none" if value is None else str(value)


def _stage_command(stage: str, doc: str):
    def command(
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML run config; flags override it."),
        n: Optional[int] = typer.Option(None, "--n", help="Number of scenarios to generate.", show_default=run_default("n")),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed: same seed, same rows.", show_default=run_default("seed")),
        out: Optional[Path] = typer.Option(None, "--out", help="Run directory (resumed if it exists).", show_default=run_default("out")),
        catalog: Optional[str] = typer.Option(None, "--catalog", help="'builtin', an OpenAI tools JSON file or an SGD schema.json.",
                                              show_default=run_default("catalog")),
        slot_values: Optional[str] = typer.Option(None, "--slot-values", help="SGD slot values JSON to enrich value pools.",
                                                  show_default=run_default("slot_values")),
        workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes (0 = one per core); LLM runs split the endpoint limits between them.",
                                              show_default=run_default("workers")),
        shard_size: Optional[int] = typer.Option(None, "--shard-size", help="Scenarios per shard (the unit of resume).",
                                                 show_default=run_default("shard_size")),
        backend: Optional[str] = typer.Option(None, "--backend", help="Dialogue backend: offline or openai.",
                                              show_default=run_default("dialogues.backend")),
        mode: Optional[str] = typer.Option(None, "--mode", help="LLM mode: paraphrase or full.", show_default=run_default("dialogues.mode")),
        # The openai SDK's own variable: a flag, then $OPENAI_BASE_URL, override the config file.
        base_url: Optional[str] = typer.Option(None, "--base-url", envvar="OPENAI_BASE_URL", help="OpenAI-compatible endpoint URL.",
                                               show_default=run_default("endpoint.base_url")),
        model: Optional[str] = typer.Option(None, "--model", help="Model name at the endpoint.", show_default=run_default("endpoint.model")),
        api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable holding the API key (read, never stored).",
                                                  show_default=run_default("endpoint.api_key_env")),
        max_cost: Optional[float] = typer.Option(None, "--max-cost", help="Stop cleanly once this many USD are spent.",
                                                 show_default=run_default("max_cost")),
        dry_run: bool = typer.Option(False, "--dry-run", help="Estimate LLM requests, tokens and cost; send nothing."),
    ) -> None:
        _run_stages(stage, config, dry_run, {
            "n": n, "seed": seed, "out": str(out) if out else None, "catalog": catalog, "slot_values": slot_values,
            "workers": workers, "shard_size": shard_size, "dialogues.backend": backend, "dialogues.mode": mode,
            "endpoint.base_url": base_url, "endpoint.model": model, "endpoint.api_key_env": api_key_env,
            "max_cost": max_cost,
        })

    command.__doc__ = doc
    return command


app.command("run")(_stage_command("run", "Run every stage: scenarios -> dialogues -> validate -> local dataset."))
app.command("scenarios")(_stage_command("scenarios", "Sample tools and hidden goals, and inject ambiguities."))
app.command("dialogues")(_stage_command("dialogues", "Play each scenario out between the user simulator and the assistant."))
app.command("validate")(_stage_command("validate", "Check every dialogue, remove duplicates, write accepted/rejected rows and stats."))
