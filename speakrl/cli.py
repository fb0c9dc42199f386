"""The `speakrl` command line: mounts each sub-command module's app, and turns every failure into one sentence."""

from __future__ import annotations

import logging
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

import typer
from rich.console import Console
from rich.markup import escape

from speakrl import __version__
from speakrl.pipeline import cli as generate_cli
from speakrl.pipeline import import_cli, publish_cli
from speakrl.pipeline.errors import SpeakrlError
from speakrl.training import cli as training_cli

app = typer.Typer(
    name="speakrl",
    help="Generate SpeakER, publish it to the Hugging Face Hub, and train agents that ask before they act.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(generate_cli.app)  # run, scenarios, dialogues, validate
app.add_typer(publish_cli.app)  # publish
app.add_typer(import_cli.app)  # import sgd
app.add_typer(training_cli.app)  # train, eval
console = Console(stderr=True)

# The packages a bug report needs the versions of (`speakrl env`), in the order a reader looks for them.
ENV_PACKAGES = ("datasets", "huggingface_hub", "pyarrow", "polars", "pydantic", "openai", "aiohttp", "jinja2",
                "typer", "torch", "transformers", "trl", "accelerate", "peft", "vllm", "deepspeed")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"speakrl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v: INFO, -vv: DEBUG and tracebacks)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
    version_: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """Generate SpeakER, publish it to the Hugging Face Hub, and train agents that ask before they act."""
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def package_versions() -> dict[str, str]:
    """speakrl's, Python's and the platform's versions, then each of `ENV_PACKAGES` ("not installed" if absent)."""
    found = {"speakrl": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in ENV_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


@app.command("env")
def env_command() -> None:
    """Print the versions of speakrl and of the libraries it runs on, for bug reports."""
    typer.echo("\nCopy-paste the following information when you open an issue:\n")
    for name, value in package_versions().items():
        typer.echo(f"- {name}: {value}")
    typer.echo("")


def main() -> None:
    """Entry point: user errors become one sentence on stderr and exit code 2, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        # standalone mode: click shows usage errors (bad flag value, unknown option or command) as one line, exit 2.
        app(prog_name="speakrl")
    except SpeakrlError as e:
        if logging.getLogger().isEnabledFor(logging.DEBUG):  # -vv: the traceback, for a bug report
            raise
        console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)  # brackets in messages are text
        sys.exit(2)


if __name__ == "__main__":
    main()
