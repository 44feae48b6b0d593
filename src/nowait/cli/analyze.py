"""`nowait analyze`: find the batchable work inside a real-time bill, from existing logs."""

from __future__ import annotations

import json
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer

from nowait.analyze.detect import FORMATS
from nowait.analyze.records import GROUP_BY
from nowait.cli import PricesOption, app, stdout
from nowait.cli.options import prices_file
from nowait.errors import InputError


@app.command("analyze")
def analyze_command(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Log files (OTLP, LiteLLM, Langfuse, Admin API usage, nowait); .gz accepted."
        ),
    ],
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help=f"Force the format: {', '.join(FORMATS)}.")
    ] = None,
    group_by: Annotated[
        str | None, typer.Option("--group-by", help=f"Workload key: {', '.join(GROUP_BY)}.")
    ] = None,
    cache_share: Annotated[
        str | None,
        typer.Option(
            "--cache-share", help="Share of prompts served from cache after the move, e.g. 0.6."
        ),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Count malformed records and go on.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    prices: PricesOption = None,
) -> None:
    """Sort the workloads in your logs and price moving what nobody waits for to batch."""
    # DuckDB loads here, not when `nowait --help` lists this command.
    from nowait.analyze.engine import connect, load
    from nowait.analyze.readers import BadRecords
    from nowait.analyze.report import build_report
    from nowait.present.analysis import report_html, report_json, report_terminal
    from nowait.present.progress import progress
    from nowait.sort.pricing import load_table

    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", field="--format", expected=", ".join(FORMATS))
    if group_by is not None and group_by not in GROUP_BY:
        raise InputError(
            f"unknown key {group_by!r}", field="--group-by", expected=", ".join(GROUP_BY)
        )
    share = _share(cache_share)
    bad = BadRecords(skip=skip_bad)
    con = connect()
    if not json_out and sys.stderr.isatty():  # bytes within each file; nothing when piped
        with progress("bytes read", total=sum(map(_size, files))) as bar:
            done = {"file": 0}

            def read(n: int) -> None:
                done["file"] += n
                bar.advance(n)

            def finished(path: Path) -> None:  # readers that do not report within a file
                bar.advance(max(0, _size(path) - done["file"]))
                done["file"] = 0

            loaded = load(con, files, fmt=fmt, bad=bad, on_file=finished, on_bytes=read)
    else:
        with progress("files", total=len(files), enabled=not json_out) as bar:
            loaded = load(con, files, fmt=fmt, bad=bad, on_file=lambda _: bar.advance())
    for path, count in loaded.items():
        if count == 0:
            typer.echo(f"nowait: warning: 0 records in {path}", err=True)
    report = build_report(
        con, bad=bad, group_by=group_by, cache_share=share, table=load_table(prices_file(prices))
    )
    if report.records == 0:
        raise InputError("no Claude calls found in these files", file=", ".join(map(str, files)))
    if html is not None:
        html.write_text(report_html(report), encoding="utf-8")
    if json_out:
        typer.echo(json.dumps(report_json(report), indent=2))
    else:
        stdout().print(report_terminal(report))
    if html is not None:
        typer.echo(f"HTML report written to {html}", err=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # a file that cannot be read: the reader says so


def _share(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not Decimal(0) <= value <= Decimal(1):
        raise InputError(f"got {text!r}", field="--cache-share", expected="a share between 0 and 1")
    return value
