"""Fuzz: a malformed settings file (`--config FILE`, or nowait.toml in the home) is refused
naming the file and line: no NaN rate, no 400-digit duration, no `concurrency = true`."""

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
from hypothesis import given
from hypothesis import strategies as st
from tomlkit_cases import broken_toml

from nowait.settings import load_settings

GOOD = """\
# nowait settings
log_level = "INFO"
log_format = "text"

[poll]
first = "10s"
factor = 1.5
longest = 120

[capacity]
requests_per_minute = 50
input_tokens_per_minute = 50000.0
concurrency = 8
seconds_per_request = 20

[guard]
margin = "10m"
cancel_latency = "2m"
min_batch_chance = 0.2

[retry]
max_attempts = 5
base_delay = "2s"
max_delay = "10m"
"""
DURATION = ['"soon"', "-1", '"99999999999d"', "1e308", '"9' + "9" * 400 + 's"', '"401d"',
            "true", "[]", '"1e999"', '"nan"', '"-5m"']  # fmt: skip
RATE = ["0", "-1", '"x"', "1e308", "true", "[]", "1e20", '"nan"', '"inf"']
WRONG: dict[str, list[str]] = {
    "log_level": ['"LOUD"', "5", "true", "[]"],
    "log_format": ['"xml"', "5"],
    "first": [*DURATION, "0"],
    "factor": ["0.5", '"x"', "1e308", "true", "1000"],
    "longest": [*DURATION, "0"],
    "requests_per_minute": RATE,
    "input_tokens_per_minute": RATE,
    "concurrency": ["0", "1.5", "1000000", '"x"', "true", "-3"],
    "seconds_per_request": RATE,
    "margin": DURATION,
    "cancel_latency": DURATION,
    "min_batch_chance": ["2", "-1", '"x"', "true", '"nan"'],
    "max_attempts": ["0", "10000", "1.5", "true", '"x"'],
    "base_delay": DURATION,
    "max_delay": DURATION,
}
WHOLE = [("guard = 5\n", 1), ("zz_unknown = 1\n", 1), ("[guard]\nzz = 1\n", 2),
         ("[capacity]\nconcurrency = true\n", 2), ("poll.first = 'x'\n", 1)]  # fmt: skip


@st.composite
def config_files(draw: st.DrawFn) -> tuple[bytes, int | None]:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(undecodable(GOOD.encode()))
    if kind == 1:
        text, line = draw(st.sampled_from(WHOLE))
        return text.encode(), line
    return draw(broken_toml(GOOD, WRONG))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-fuzz")


def test_the_good_file_is_read(folder: Path) -> None:
    path = folder / "good.toml"
    path.write_text(GOOD)
    settings = load_settings({}, config=path)
    assert settings.capacity.concurrency == 8 and settings.poll.longest.total_seconds() == 120


@FUZZ
@given(case=config_files())
def test_the_reader_refuses_every_malformed_config(
    case: tuple[bytes, int | None], folder: Path
) -> None:
    data, line = case
    path = folder / "nowait.toml"
    path.write_bytes(data)
    assert_names(refused(lambda: load_settings({}, config=path)), path, line)


@CLI_FUZZ
@given(case=config_files(), in_home=st.booleans())
def test_config_refuses_it_with_exit_2(
    case: tuple[bytes, int | None], in_home: bool, folder: Path
) -> None:
    """`nowait config --config FILE`, or the home's nowait.toml: exit 2 naming the file and
    line; nothing else written."""
    data, line = case
    home = Path(os.environ["NOWAIT_HOME"])
    path = home / "nowait.toml" if in_home else folder / "cli.toml"
    path.write_bytes(data)
    before = files_in(folder) | files_in(home)
    result = run_cli("config") if in_home else run_cli("config", "--config", str(path))
    path.unlink()
    assert_refused(result, path, line)
    assert files_in(folder) | files_in(home) == before - {path}
