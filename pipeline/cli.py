"""The `speakrl` command line."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from pipeline.errors import SpeakrlError

app = typer.Typer(
    name="speakrl",
    help="Generate SpeakER, publish it to the Hugging Face Hub, and train agents that ask before they act.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


# --- subcommands registered by other modules ---
# (each line imports a module whose functions are registered on `app` with @app.command)
# --- end of subcommands ---


def main() -> None:
    """Entry point: user errors become one sentence on stderr and exit code 2, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(standalone_mode=False)
    except SpeakrlError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
        sys.exit(2)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(2)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        raise
