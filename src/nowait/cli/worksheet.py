"""`nowait worksheet`: sort hand-described workloads and price the move."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nowait.cli import PricesOption, app, stdout
from nowait.cli.options import load, prices_file
from nowait.errors import InputError
from nowait.files import check_output_file, path_kind


@app.command("worksheet")
def worksheet_command(
    file: Annotated[
        Path | None, typer.Argument(help="Worksheet TOML (see --template).", show_default=False)
    ] = None,
    template: Annotated[
        bool, typer.Option("--template", help="Write a commented starter worksheet to FILE.")
    ] = False,
    output_format: Annotated[
        str, typer.Option("--format", help="table or json.", metavar="FORMAT")
    ] = "table",
    prices: PricesOption = None,
) -> None:
    """Classify workloads as realtime, batch, split or review, and price the move."""
    from nowait.cli.plan import history_of
    from nowait.present import tables as render
    from nowait.present.cacheplan import workload_plans_json, workload_plans_table
    from nowait.route.cacheforecast import worksheet_plans
    from nowait.sort import pricing, worksheet

    if template:
        _write_template(file)
        return
    if file is None:
        raise InputError("missing worksheet file", expected="nowait worksheet FILE (or --template)")
    if output_format not in ("table", "json"):
        raise InputError(f"got {output_format!r}", field="--format", expected="table or json")
    table = pricing.load_table(prices_file(prices))
    result = worksheet.evaluate(worksheet.read_worksheet(file), table)
    plans = worksheet_plans(result, table, history_of(load(None, {})))
    if output_format == "json":
        out = {**render.worksheet_json(result), "cache_planning": workload_plans_json(plans)}
        typer.echo(json.dumps(out, indent=2))
    else:
        stdout().print(render.worksheet_table(result))
        if plans:
            stdout().print(workload_plans_table(plans, "cacheable_share, else cache_share"))


def _write_template(file: Path | None) -> None:
    from nowait.sort import worksheet

    text = worksheet.template_text()
    if file is None:
        typer.echo(text, nl=False)
        return
    check_output_file(file, "FILE")
    if path_kind(file, "FILE") == "file":
        raise InputError("already exists; not overwriting", file=file)
    file.write_text(text, "utf-8")
    typer.echo(f"wrote {file}: edit it, then run `nowait worksheet {file}`", err=True)
