"""The effective settings for people (a table that reads in 80 columns) and machines (JSON)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from nowait.present.tables import FitTable
from nowait.settings import CONFIG_NAME, Row


def settings_table(rows: list[Row], file: Path | None) -> Table:
    """One line per setting: its key, value and source. The file and the environment names
    go in the caption, so the columns stay narrow."""
    table = FitTable(title="nowait settings (flags > environment > file > defaults)")
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("from", overflow="fold")
    for row in rows:
        source = str(row.source) if row.source.kind == "flag" else row.source.kind
        table.add_row(row.key, row.text, source)
    where = f"file: {file}" if file is not None else f"file: none (no {CONFIG_NAME} in home)"
    table.caption = (
        f"{where}\nenvironment: NOWAIT_ + the setting, dots as __ (NOWAIT_GUARD__MARGIN)"
    )
    return table


def settings_json(rows: list[Row]) -> dict[str, object]:
    """`{key: {value, source, env, flag}}`; durations as the file spells them (`10m`)."""
    return {
        row.key: {
            "value": row.value,
            "source": row.source.kind,
            "where": row.source.where or None,
            "env": row.env,
            "flag": row.flag,
        }
        for row in rows
    }
