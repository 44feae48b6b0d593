"""Fuzz: a malformed simulator trace (`nowait simulate TRACE`) is refused naming the file and
the first bad line: no NaN deadline, no t of 1e308, no token count past any context."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fuzzkit import (
    CLI_FUZZ,
    FUZZ,
    assert_names,
    assert_refused,
    bad_json_value,
    files_in,
    refused,
    run_cli,
    undecodable,
)
from hypothesis import example, given
from hypothesis import strategies as st

from nowait.simulate.trace import read_trace

WRONG: dict[str, list[str]] = {
    "t": ["-1", "1e308", "4e7", '"1"', "true", "null", "[]"],
    "model": ["5", '""', "null", "[]", "{}"],
    "input_tokens": ["-1", "1.5", '"5"', "true", "null", "100000000", "1" + "0" * 18],
    "output_tokens": ["-3", "2.0", "false", "{}"],
    "awaited": ['"yes"', "1", "null", '"false"'],
    "deadline": ["0", "-5", "1e308", "3.5e7", '"5"', "true", "[]", '"NaN"'],
}


def good_row(number: int) -> dict[str, Any]:
    return {"t": number * 1.5, "model": "claude-haiku-5-5", "input_tokens": 900,
            "output_tokens": 120, "awaited": number % 2 == 0, "deadline": 3600.0}  # fmt: skip


def with_raw(row: dict[str, Any], field: str, raw: str) -> str:
    return json.dumps({**row, field: "__BAD__"}).replace('"__BAD__"', raw)


@st.composite
def bad_line(draw: st.DrawFn, number: int) -> str:
    row, family = good_row(number), draw(st.sampled_from(["wrong", "value", "torn", "other"]))
    if family == "wrong":
        field = draw(st.sampled_from(sorted(WRONG)))
        return with_raw(row, field, draw(st.sampled_from(WRONG[field])))
    if family == "value":  # refused wherever it stands, even under a field the trace ignores
        field = draw(st.sampled_from([*WRONG, "note"]))
        return with_raw(row, field, draw(bad_json_value))
    line = json.dumps(row)
    if family == "torn":
        return line[: draw(st.integers(1, len(line) - 1))]
    return draw(st.sampled_from(["[]", "5", "null", '"t"', "{}", line.replace("{", "{{", 1),
                                 line.replace('"t": ', '"t": 1, "t": ', 1)]))  # fmt: skip


@st.composite
def traces(draw: st.DrawFn) -> tuple[bytes, int]:
    count = draw(st.integers(1, 5))
    lines = [json.dumps(good_row(n)) for n in range(1, count + 1)]
    if draw(st.integers(0, 3)) == 0:
        return draw(undecodable("\n".join(lines).encode() + b"\n"))
    bad = draw(st.integers(1, count))
    lines[bad - 1] = draw(bad_line(bad))
    return "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n", bad


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trace-fuzz")


@FUZZ
@given(case=traces())
def test_the_reader_refuses_every_malformed_trace(case: tuple[bytes, int], folder: Path) -> None:
    data, line = case
    path = folder / "trace.jsonl"
    path.write_bytes(data)
    assert_names(refused(lambda: read_trace(path)), path, line)


@CLI_FUZZ
@example(case=(b"", None))
@example(case=(b"\n\n", None))
@given(case=traces())
def test_simulate_refuses_it_with_exit_2(case: tuple[bytes, int | None], folder: Path) -> None:
    """Exit 2 naming the file and line (an empty trace: "0 requests", not a table of zeros);
    the home is not touched."""
    data, line = case
    path = folder / "cli.jsonl"
    path.write_bytes(data)
    home = Path(os.environ["NOWAIT_HOME"])
    before = files_in(folder) | files_in(home)
    result = run_cli("simulate", str(path))
    if line is None:
        assert result.code == 2 and "0 requests in the trace" in result.err, result.err
    else:
        assert_refused(result, path, line)
    assert files_in(folder) | files_in(home) == before
