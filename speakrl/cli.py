"""The `speakrl` command line: mounts each sub-command module's app, and turns every failure into one sentence."""

from __future__ import annotations

import errno
import logging
import platform
import signal
import sys
import threading
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
    # show_default: every option with a real default shows it; those that fall back to a config show it as text.
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)


def _flags_take_no_value() -> None:
    """typer 0.29's rich help prints a `<bool>` placeholder after every flag (`--dry-run <bool>`), as if it took a
    value: show no type for flags and counters (-v, -vv)."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if self.is_flag or self.count else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value()
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
    from speakrl.pipeline.secrets import install_log_filter

    install_log_filter()  # keys and tokens never reach a log line


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


# Exit codes: 0 done, 1 an unexpected error (a bug: please report it with -vv), 2 bad input or usage (a flag, config,
# catalog, run directory; also click's usage errors), 3 the machine refused (disk full, permissions, a file in the
# way), 130 interrupted (Ctrl-C or SIGTERM). Every one of them is one sentence on stderr, never a traceback unless -vv.
EXIT_BUG, EXIT_INPUT, EXIT_SYSTEM = 1, 2, 3

_ERRNO_HINTS = {
    errno.ENOSPC: "no space left on the device{where}; free some space and run the same command again (finished work is kept)",
    errno.EDQUOT: "the disk quota is exceeded{where}; free some space and run the same command again (finished work is kept)",
    errno.EACCES: "permission denied{where}; choose a path you can write to or fix its permissions",
    errno.EPERM: "operation not permitted{where}; choose a path you can write to or fix its permissions",
    errno.EROFS: "the file system is read-only{where}; choose another path",
    errno.ENOTDIR: "a file is in the way{where}: a directory was expected; choose another path or move the file",
    errno.EISDIR: "{path} is a directory, not a file; pass a file",
    errno.ENOENT: "{path} does not exist; check the path",
    errno.ENAMETOOLONG: "a path is too long{where}; choose a shorter one",
}


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind a failure, if any (libraries wrap them)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def error_sentence(exc: BaseException) -> tuple[str, int]:
    """The one sentence and exit code a failure is shown as."""
    from speakrl.pipeline.secrets import scrub

    if isinstance(exc, SpeakrlError):
        return scrub(str(exc)), EXIT_INPUT
    os_error = _os_error(exc)
    if os_error is None and "disk is full" in str(exc):  # sqlite's (the response cache) word for ENOSPC
        os_error = OSError(errno.ENOSPC, "No space left on device")
    if os_error is not None:
        path = os_error.filename
        where = f" ({str(path)!r})" if path else ""
        template = _ERRNO_HINTS.get(os_error.errno or 0)
        if template is None or ("{path}" in template and not path):
            text = f"{os_error.strerror or os_error}{where}; check the path and the disk, then run the same command again"
        else:
            text = template.format(where=where, path=repr(str(path)))
        return scrub(text), EXIT_SYSTEM
    if isinstance(exc, UnicodeDecodeError):
        return ("an input file is not UTF-8 text (a byte at position "
                f"{exc.start} cannot be decoded); save it as UTF-8 and try again"), EXIT_INPUT
    text = " ".join(str(exc).split())[:200]
    return scrub(f"unexpected {type(exc).__name__}: {text}; re-run with -vv for the traceback and report it"), EXIT_BUG


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C (exit 130), so temp dirs are removed, locks released and workers stopped on the way.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    console.print("[red]terminated:[/red] finished work is kept; run the same command again to resume", highlight=False,
                  soft_wrap=True)
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: every failure becomes one sentence on stderr with a documented exit code, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        # standalone mode: click shows usage errors (bad flag value, unknown option or command) as one line, exit 2.
        app(prog_name="speakrl")
    except Exception as e:  # noqa: BLE001 - the one error path of the CLI
        if logging.getLogger().isEnabledFor(logging.DEBUG):  # -vv: the traceback, for a bug report
            raise
        text, code = error_sentence(e)
        # One line, never wrapped by rich (a terminal wraps it; a log keeps it whole). Brackets in messages are text.
        console.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
