"""The `nowait` console script. It imports the CLI inside its own guard, so Ctrl-C while the
CLI and a command's libraries are still loading (the SDK, DuckDB: a second or more) prints one
line and exits 130, as Ctrl-C inside a command does (`nowait.cli.main`)."""

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
