"""The `nowait` console script, a module of its own outside the `nowait` package: importing
the package (and a command's libraries: the SDK, DuckDB, a second or more on a cold start)
happens inside its guard, so Ctrl-C at any moment of start-up prints one line and exits 130,
as Ctrl-C inside a command does (`nowait.cli.main`). Only the interpreter's own start comes
before it."""

from __future__ import annotations

import sys

INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)


def main() -> None:
    try:
        from nowait.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        print("nowait: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
