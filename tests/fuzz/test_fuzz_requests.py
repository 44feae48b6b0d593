"""Fuzz: a malformed requests file (`nowait run FILE`) is refused whole, naming the file and
the first bad line, and nothing is queued. The reader is the CLI's own line check
(`_check_all`: the file's lines through the router's door, `check_request`, with no store);
a sample goes through `nowait run` in-process, which then touches no store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fuzzkit import (
    CLI_FUZZ,
    FUZZ,
    assert_names,
    assert_refused,
    bad_json_value,
    refused,
    run_cli,
    undecodable,
)
from hypothesis import example, given
from hypothesis import strategies as st

from nowait.cli.router import _check_all
from nowait.clock import SystemClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from router_helpers import ask

WRONG: dict[str, list[str]] = {  # a field, and values of the wrong type or out of range there
    "key": ["5", '""', "[]", "true"],
    "params": ["5", "[]", '"x"', "null"],
    "params.model": ["5", "null", "[]", "true", '""'],
    "params.max_tokens": ['"8"', "8.5", "-1", "0", "true", "null", "1e30", "1" + "0" * 30],
    "params.messages": ['"hi"', "{}", "[]", "5", '[{"role": "robot", "content": "x"}]'],
    "params.system": ["5", "true", "{}"],
    "params.metadata": ["5", '"x"', '{"user_id": 5}'],
    "params.stop_sequences": ['"x"', "5", "[1]"],
    "params.stream": ["true", '"yes"'],
    "params.temperature": ["0.5"],  # gone from the SDK's 2.13 types
    "awaited": ['"yes"', "1", "null"],
    "deadline": [
        '"soon"', "5", '"2030-01-01T00:00:00"', '"99999999999d"', '"9' + "9" * 400 + 's"',
        '"0001-01-01T00:00:00+05:00"', '"9999-12-31T23:59:59-05:00"', '"1970-01-01T00:00:00Z"',
    ],
    "workload": ["5", "[]", "true"],
    "zz_unknown": ["1"],
}  # fmt: skip
PLACES = ["key", "params.model", "params.max_tokens", "params.messages.0.content", "deadline",
          "params.metadata.user_id", "params.extra_body.x", "workload"]  # fmt: skip
MARK = "__BAD__"


def good_entry(number: int) -> dict[str, Any]:
    return {"key": f"k{number}", "params": ask(number), "deadline": "6h"}


def with_raw(entry: dict[str, Any], place: str, raw: str) -> str:
    """`entry` as a JSON line with the raw JSON text `raw` at dotted `place`."""
    node: Any = json.loads(json.dumps(entry))
    *parents, name = place.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[int(name) if name.isdigit() else name] = MARK
    return json.dumps(node).replace(f'"{MARK}"', raw)


@st.composite
def bad_line(draw: st.DrawFn, number: int) -> str:
    entry, family = good_entry(number), draw(st.sampled_from(["wrong", "value", "torn", "other"]))
    if family == "wrong":
        place = draw(st.sampled_from(sorted(WRONG)))
        return with_raw(entry, place, draw(st.sampled_from(WRONG[place])))
    if family == "value":
        return with_raw(entry, draw(st.sampled_from(PLACES)), draw(bad_json_value))
    line = json.dumps(entry)
    if family == "torn":  # cut inside the line: never a whole JSON object
        return line[: draw(st.integers(1, len(line) - 1))]
    return draw(st.sampled_from([
        "[]", "5", "null", '"params"', "{}", "{'key': 1}", "{,}", line.replace("{", "{{", 1),
        line.replace('"key": ', '"key": "x", "key": ', 1),  # a duplicate key
        line.replace('"role": ', '"role": "x", "role": ', 1),
    ]))  # fmt: skip


@st.composite
def requests_files(draw: st.DrawFn) -> tuple[bytes, int]:
    """A requests file of good lines with one bad one (a line, or bad bytes); its line."""
    count = draw(st.integers(1, 4))
    lines = [json.dumps(good_entry(n)) for n in range(1, count + 1)]
    if draw(st.integers(0, 3)) == 0:
        return draw(undecodable("\n".join(lines).encode() + b"\n"))
    bad = draw(st.integers(1, count))
    lines[bad - 1] = draw(bad_line(bad))
    return "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n", bad


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("requests-fuzz")


HUGE = json.dumps({"key": "big", "params": {**ask(0), "system": "x" * 50_000_000}}).encode()


@FUZZ
@example(case=(HUGE + b"\n", 1))  # one 50 MB line: above the API's 32 MB request limit
@given(case=requests_files())
def test_the_reader_refuses_every_malformed_file(case: tuple[bytes, int], folder: Path) -> None:
    data, line = case
    path = folder / "requests.jsonl"
    path.write_bytes(data)
    error = refused(lambda: _check_all(path, None))
    assert_names(error, path, line)


@CLI_FUZZ
@example(case=(b"", None))
@example(case=(b"\n  \n\n", None))
@example(case=(b"\xef\xbb\xbf\n", None))
@given(case=requests_files())
def test_run_refuses_it_with_exit_2(
    case: tuple[bytes, int | None], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 2 naming the file and line (an empty file: "0 requests"), and no store touched:
    the home holds no database."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    data, line = case
    path, home = folder / "cli.jsonl", folder / "home"
    path.write_bytes(data)
    result = run_cli("run", str(path), "--home", str(home), "--out", str(folder / "out.jsonl"),
                     "--base-url", "http://127.0.0.1:9")  # fmt: skip
    if line is None:
        assert result.code == 2 and "0 requests" in result.err, result.err
    else:
        assert_refused(result, path, line)
    assert not (home / "nowait.db").exists()
    assert not (folder / "out.jsonl").exists()


def test_the_store_takes_good_work_after_every_refusal(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the refusals above (same home), `status` finds no store and a good file runs."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    home, path, out = folder / "home", folder / "good.jsonl", folder / "good-out.jsonl"
    assert run_cli("status", "--home", str(home), "--json").code == 2  # nothing made it
    path.write_text(json.dumps(good_entry(1)) + "\n")
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(0.1)), SystemClock()) as server:
        done = run_cli("run", str(path), "--home", str(home), "--out", str(out),
                       "--base-url", server.base_url, "--poll", "0.1")  # fmt: skip
    assert done.code == 0, done.err
    status = json.loads(run_cli("status", "--home", str(home), "--json").out)
    assert status["jobs"] == {"delivered": 1}
