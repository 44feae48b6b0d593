"""The command line: parse, call the library, render. `main` is the one error boundary.

Each area's commands live in a module of this package (`cli/prices.py`, ...) that adds them to
`app`; `_register_commands` imports them. Commands raise `NowaitError`s; `main` turns those into
a message on stderr and an exit code (2 for bad input), never a traceback.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer._click import exceptions as click_exc

from nowait.errors import NowaitError

if TYPE_CHECKING:
    from rich.console import Console

    from nowait.route.worker import Checkpoint

app = typer.Typer(
    name="nowait",
    help="Find the Claude work nobody is waiting for, and run it at batch price.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: the rich panels show every flag as taking a value (`--json <bool>`).
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

PricesOption = Annotated[
    Path | None,
    typer.Option(
        "--prices",
        help="A TOML price file overriding or adding models (env NOWAIT_PRICES).",
        show_default=False,
    ),
]


def stdout() -> Console:
    """Console for results; wide enough for tables when piped."""
    from rich.console import Console

    console = Console(soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    return console


def _print_version(value: bool) -> None:
    if value:
        from nowait import __version__

        typer.echo(f"nowait {__version__}")
        raise typer.Exit(0)


@app.callback()
def _group(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Find the Claude work nobody is waiting for, and run it at batch price."""


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    print(f"nowait: warning: {message}", file=sys.stderr)


# The module that adds each command. Only the one named on the command line is imported, so a
# command starts without the libraries of the others (anthropic, duckdb, uvicorn).
COMMAND_MODULES = {
    "analyze": "analyze",
    "collect": "handoff",
    "config": "config",
    "demo": "demo",
    "emulator": "emulator",
    "plan": "plan",
    "prices": "prices",
    "results": "router",
    "run": "router",
    "simulate": "simulate",
    "status": "router",
    "submit": "handoff",
    "worker": "router",
    "worksheet": "worksheet",
}


def _register_commands(argv: list[str] | None = None) -> None:
    """Import the module of the command in `argv`, or every command module (for help, or a
    name that is no command: the usage error then lists them all); each adds its commands."""
    command = next((a for a in argv or [] if not a.startswith("-")), None)
    modules = (
        {COMMAND_MODULES[command]}
        if command in COMMAND_MODULES
        else sorted(set(COMMAND_MODULES.values()))
    )
    for module in modules:
        importlib.import_module(f"nowait.cli.{module}")


INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)


@dataclass(frozen=True)
class Injected:
    """What a program embedding the CLI hands the commands (`ctx.obj`): the route side's
    checkpoint hook, e.g. `nowait.testing.crash_at` in the crash tests. None: the default."""

    checkpoint: Checkpoint | None = None


def main(argv: list[str] | None = None, *, checkpoint: Checkpoint | None = None) -> None:
    """Run the CLI; every nowait error becomes a clear message and an exit code, no traceback.

    `checkpoint` reaches the `Router` of `run` and `worker` unchanged: the same code path
    users run, with a test's hook installed."""
    from nowait.sort.pricing import UnknownModelWarning

    warnings.showwarning = _show_warning
    warnings.filterwarnings("default", category=UnknownModelWarning)
    _register_commands(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=argv, standalone_mode=False, prog_name="nowait", obj=Injected(checkpoint))
    except click_exc.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click_exc.ClickException as exc:  # usage errors: already worded for people
        exc.show()
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("nowait: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except NowaitError as exc:
        print(f"nowait: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    if result == INTERRUPTED:  # typer turns Ctrl-C inside a command into this exit code
        print("nowait: interrupted", file=sys.stderr)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
