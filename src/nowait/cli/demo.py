"""`nowait demo`: the whole story on the embedded defaults, no API key needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nowait import render, worksheet
from nowait.cli import app, stdout


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Directory for the demo's files.")] = Path(
        "nowait-demo"
    ),
) -> None:
    """Sort the bundled example workloads and show what moving them saves."""
    console = stdout()
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / "worksheet.toml"
    sheet.write_text(worksheet.template_text(), "utf-8")
    console.rule("1. Sort: the bundled worksheet")
    console.print(f"Workloads described by hand in {sheet} (`nowait worksheet {sheet}`):\n")
    console.print(render.worksheet_table(worksheet.evaluate(worksheet.read_worksheet(sheet))))
