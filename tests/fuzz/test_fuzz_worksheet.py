"""Fuzz: a malformed worksheet (`nowait worksheet FILE`) is refused naming the file and line:
`workload = [1, 2]`, wrong types, counts past a trillion, durations past 400 days, bad bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fuzzkit import (
    CLI_FUZZ,
    FUZZ,
    assert_names,
    assert_refused,
    files_in,
    refused,
    run_cli,
    undecodable,
)
from hypothesis import example, given
from hypothesis import strategies as st
from tomlkit_cases import broken_toml

from nowait.sort.worksheet import evaluate, read_worksheet, template_text

COUNT = ["-1", "1.5", '"5"', "true", "10000000000000", "[]", "{}"]
SHARE = ["2", "-0.1", '"0.3"', "true", "[0.5]"]
WRONG: dict[str, list[str]] = {
    "name": ["5", '""', "[]", "true", '"  "'],
    "description": ["5", "[]", "true"],
    "model": ["5", '""', "[]", "true"],
    "requests_per_month": COUNT,
    "avg_input_tokens": COUNT,
    "avg_output_tokens": COUNT,
    "cache_share": SHARE,
    "cacheable_share": SHARE,
    "trigger": ['"never"', "5", "[]"],
    "waits": ['"robot"', "[]", "true"],
    "needed_within": ['"soon"', "5", '"99999999999d"', '"401d"', '"-1h"', "[]", "true"],
    "feeds_next_step": ['"yes"', "1", '"true"'],
}
WHOLE = [  # documents wrong as a whole, and the line that says so
    ("workload = [1, 2]\n", 1),
    ("workload = 5\n", 1),
    ("[[workload]]\nname = 5\n", 2),
    ('[[workload]]\nname = "a"\nmodel = "m"\n', 1),  # a field missing: its table's line
    ("# nothing but a comment\nzzz = 1\n", 2),
]
TEMPLATE = template_text()


@st.composite
def worksheets(draw: st.DrawFn) -> tuple[bytes, int | None]:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(undecodable(TEMPLATE.encode("ascii", "replace")))
    if kind == 1:
        text, line = draw(st.sampled_from(WHOLE))
        return text.encode(), line
    return draw(broken_toml(TEMPLATE, WRONG))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worksheet-fuzz")


@FUZZ
@given(case=worksheets())
def test_the_reader_refuses_every_malformed_worksheet(
    case: tuple[bytes, int | None], folder: Path
) -> None:
    data, line = case
    path = folder / "sheet.toml"
    path.write_bytes(data)
    assert_names(refused(lambda: evaluate(read_worksheet(path))), path, line)


@CLI_FUZZ
@example(case=(b"", 0))
@example(case=(b"# only comments\n", 0))
@given(case=worksheets())
def test_worksheet_refuses_it_with_exit_2(case: tuple[bytes, int | None], folder: Path) -> None:
    """Exit 2 naming the file and line (an empty worksheet: "no workloads", no table of
    zeros); the home is not touched."""
    data, line = case
    path = folder / "cli.toml"
    path.write_bytes(data)
    home = Path(os.environ["NOWAIT_HOME"])
    before = files_in(folder) | files_in(home)
    result = run_cli("worksheet", str(path))
    if line == 0:
        assert result.code == 2 and "no workloads" in result.err, result.err
    else:
        assert_refused(result, path, line)
    assert files_in(folder) | files_in(home) == before
