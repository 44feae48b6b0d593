"""The command line: parse, call the library, render. `main` is the one error boundary."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer._click import exceptions as click_exc

from nowait import pricing
from nowait.errors import NowaitError

app = typer.Typer(
    name="nowait",
    help="Find the Claude work nobody is waiting for, and run it at batch price.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PricesOption = Annotated[
    Path | None,
    typer.Option(
        "--prices",
        envvar="NOWAIT_PRICES",
        help="A TOML price file overriding or adding models (env NOWAIT_PRICES).",
        show_default=False,
    ),
]


def stdout() -> Console:
    """Console for results; wide enough for tables when piped."""
    console = Console(soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    return console


@app.callback()
def _group() -> None:
    """Find the Claude work nobody is waiting for, and run it at batch price."""


@app.command("prices")
def prices_command(
    prices: PricesOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the price table with its date."""
    from nowait import render

    table = pricing.load_table(prices)
    if json_out:
        import json

        rows = {
            "as_of": table.as_of.isoformat(),
            "currency": table.currency,
            "batch_discount": str(table.batch_discount),
            "models": {
                p.model: {i: str(getattr(p.rates, i)) for i in pricing.ITEMS} for p in table
            },
        }
        typer.echo(json.dumps(rows, indent=2))
        return
    stdout().print(render.prices_table(table))


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    print(f"nowait: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every nowait error becomes a clear message and an exit code, no traceback."""
    warnings.showwarning = _show_warning
    try:
        result = app(args=argv, standalone_mode=False, prog_name="nowait")
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
        sys.exit(130)
    except NowaitError as exc:
        print(f"nowait: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
