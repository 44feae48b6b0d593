"""Fuzz: a malformed price file (`--prices FILE`, `NOWAIT_PRICES`) is refused naming the file
and line: `confirmed = "no"` is not a yes, "1e999999" is not a price, NaN is not a discount."""

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

from nowait.sort.pricing import load_table

GOOD = """\
# a price file: models added to or overriding the bundled table
as_of = 2026-11-24
batch_discount = "0.5"
priority_factor = "1.5"

[models."claude-test-1"]
input = "3"
output = "15"
cache_write_5m = "3.75"
cache_write_1h = "6"
cache_read = "0.30"
confirmed = true
note = "a model of the test"
aliases = ["test-1"]

[models.claude-test-2]
input = 1
output = 5.5
cache_write_5m = "1.25"
cache_write_1h = "2"
cache_read = "0.1"
"""
PRICE = ['"1e999999"', '"-0.5"', '"abc"', '"1e6"', "true", "[]", "{}", '"NaN"', '"sNaN"',
         '"Infinity"', '"-0.000001"', "-1", "1e300", '""', '"1,5"']  # fmt: skip
FACTOR = [*PRICE, '"1000"', "101"]
WRONG: dict[str, list[str]] = {
    "as_of": ['"2026-11-24"', "5", "2026-11-24T10:00:00", "true", "[]"],
    "batch_discount": FACTOR,
    "priority_factor": FACTOR,
    "input": PRICE,
    "output": PRICE,
    "cache_write_5m": PRICE,
    "cache_write_1h": PRICE,
    "cache_read": PRICE,
    "confirmed": ['"no"', '"yes"', "1", "0", '"true"', "[]"],
    "note": ["5", "[]", "true"],
    "aliases": ['"x"', "[1]", "5", '[["a"]]'],
}
WHOLE = [("models = 5\n", 1), ('as_of = 2026-11-24\nmodels = "x"\n', 2), ("zz_unknown = 1\n", 1),
         ('[models.x]\ninput = "1"\n', 1), ("[models]\nx = 5\n", 2)]  # fmt: skip


@st.composite
def price_files(draw: st.DrawFn) -> tuple[bytes, int | None]:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(undecodable(GOOD.encode()))
    if kind == 1:
        text, line = draw(st.sampled_from(WHOLE))
        return text.encode(), line
    return draw(broken_toml(GOOD, WRONG))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prices-fuzz")


def test_the_good_file_is_read(folder: Path) -> None:
    """The fuzz breaks a file that is read as written (so each case has exactly one fault)."""
    path = folder / "good.toml"
    path.write_text(GOOD)
    table = load_table(path)
    assert str(table.models["claude-test-1"].rates.output) == "15"
    assert table.models["claude-test-2"].confirmed is True
    assert table.lookup("test-1") is table.models["claude-test-1"]


@FUZZ
@given(case=price_files())
def test_the_reader_refuses_every_malformed_price_file(
    case: tuple[bytes, int | None], folder: Path
) -> None:
    data, line = case
    path = folder / "prices.toml"
    path.write_bytes(data)
    assert_names(refused(lambda: load_table(path)), path, line)


@CLI_FUZZ
@example(case=(b"", 0), by_env=False)
@example(case=(b"# nothing here\n\n", 0), by_env=True)
@given(case=price_files(), by_env=st.booleans())
def test_prices_refuses_it_with_exit_2(
    case: tuple[bytes, int | None], by_env: bool, folder: Path
) -> None:
    """`nowait prices --prices FILE` or with NOWAIT_PRICES=FILE: exit 2 naming the file and
    line; the home is not touched."""
    data, line = case
    path = folder / "cli.toml"
    path.write_bytes(data)
    home = Path(os.environ["NOWAIT_HOME"])
    before = files_in(folder) | files_in(home)
    if by_env:
        result = run_cli("prices", env={"NOWAIT_PRICES": str(path)})
    else:
        result = run_cli("prices", "--prices", str(path))
    if line == 0:  # an empty price file: an error, not silently the bundled table
        assert result.code == 2 and "no prices in the file" in result.err, result.err
    else:
        assert_refused(result, path, line)
    assert files_in(folder) | files_in(home) == before
