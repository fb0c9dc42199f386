"""`speakrl import sgd`: human dialogues from other corpora as a run directory (mounted by `speakrl.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer()
import_app = typer.Typer(help="Turn another corpus's dialogues into a SpeakER run directory.", no_args_is_help=True)
app.add_typer(import_app, name="import")
console = Console(stderr=True)


@import_app.command("sgd")
def import_sgd(
    sgd_dir: Path = typer.Argument(..., help="SGD dialogues: a folder of dialogues_*.json files, or the corpus root with train/, dev/, test/."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (accepted.jsonl, rejected.jsonl, stats.json, dataset/)."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="SGD schema.json; default: the schema.json beside each split's dialogues."),
) -> None:
    """Convert Schema-Guided Dialogue files into SpeakER-SGD rows, checked by the same validators as generated rows."""
    from speakrl.pipeline import sgd
    from speakrl.pipeline.cli import _summary

    import time

    from speakrl.pipeline.runner import lock_run_dir

    start = time.perf_counter()
    lock = lock_run_dir(out) if out.is_dir() else None  # one process per run directory, as for `speakrl run`
    try:
        stats = sgd.import_corpus(sgd_dir, out, schema)
    finally:
        if lock is not None:
            lock.release()
    _summary(out, stats, time.perf_counter() - start)
