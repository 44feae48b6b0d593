"""Property: whatever is malformed in a requests file, `nowait run` exits 2 naming the file and
line, shows no traceback, queues nothing, and leaves the store usable. The CLI runs in-process
(its real entry point and error boundary), one store for every example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nowait.clock import SystemClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.store import BatchState
from nowait.store.sqlite import SQLiteStore
from router_helpers import ask

BAD = "__BAD__"
"""Stands where a malformed value goes; replaced in the serialized line by raw bytes, so the
line can hold what `json.dumps` would never write (NaN, lone surrogates, bad UTF-8)."""

LOCATIONS: dict[str, list[bytes]] = {  # where a value goes, and values of the wrong type there
    "params.model": [b"5", b"null", b"[]", b"{}", b"true", b'""'],
    "params.max_tokens": [b'"8"', b"8.5", b"-1", b"0", b"true", b"null", b"[]", b"{}"],
    "params.messages": [b'"hi"', b"{}", b"[]", b"5", b'[{"role": "robot", "content": "x"}]'],
    "params.system": [b"5", b"true", b"{}"],
    "params.metadata.user_id": [b"5", b"[]", b"true", b"{}"],
    "params.stop_sequences": [b'"x"', b"5", b"[1]", b"{}"],
    "params.stream": [b"true", b'"yes"'],
    "key": [b"5", b'""', b"[]", b"true"],
    "awaited": [b'"yes"', b"1", b"null"],
    "deadline": [b'"soon"', b"5", b'"2030-01-01T00:00:00"'],
    "workload": [b"5", b"[]", b"true"],
}
ANYWHERE = [*LOCATIONS, "params.extra_body.x", "params.messages.0.content"]
GOOD_PARAMS = {**ask(0), "metadata": {"user_id": "u"}, "stop_sequences": ["END"]}


def entry_with(location: str, key: str) -> dict[str, Any]:
    """A good entry with BAD at `location`."""
    entry: dict[str, Any] = {"key": key, "params": json.loads(json.dumps(GOOD_PARAMS))}
    parts = location.split(".")
    node = entry
    for part in parts[:-1]:
        if part == "extra_body":
            node = node.setdefault(part, {})
        else:
            node = node[int(part)] if part.isdigit() else node[part]  # type: ignore[index]
    node[parts[-1]] = BAD
    return entry


def placed(location: str, raw: bytes, key: str) -> bytes:
    return json.dumps(entry_with(location, key)).encode().replace(f'"{BAD}"'.encode(), raw)


def good_line(key: str) -> bytes:
    return json.dumps({"key": key, "params": GOOD_PARAMS}).encode()


nonfinite = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1E400"])
huge_int = st.integers(19, 6000).map(lambda n: b"9" * n)
lone_surrogate = st.integers(0xD800, 0xDFFF).map(lambda c: f'"a\\u{c:04x}b"'.encode())
bad_utf8 = st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xf8\x88"])
deep = st.integers(101, 4000).map(lambda n: b"[" * n + b"]" * n)


@st.composite
def wrong_type(draw: st.DrawFn, key: str) -> bytes:
    location = draw(st.sampled_from(sorted(LOCATIONS)))
    return placed(location, draw(st.sampled_from(LOCATIONS[location])), key)


@st.composite
def unknown_key(draw: st.DrawFn, key: str) -> bytes:
    name = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
    if draw(st.booleans()) and name not in {"key", "params", "deadline", "awaited", "workload"}:
        return json.dumps({"key": key, "params": GOOD_PARAMS, name: 1}).encode()
    return json.dumps({"key": key, "params": {**GOOD_PARAMS, "zz_" + name: 1}}).encode()


@st.composite
def bad_value(draw: st.DrawFn, key: str) -> bytes:
    """A value strict JSON cannot carry, or nowait refuses, anywhere in the line."""
    raw = draw(st.one_of(
        nonfinite, huge_int, lone_surrogate, deep, bad_utf8.map(lambda b: b'"x' + b + b'y"')
    ))  # fmt: skip
    return placed(draw(st.sampled_from(ANYWHERE)), raw, key)


@st.composite
def duplicate_key(draw: st.DrawFn, key: str) -> bytes:
    field = draw(st.sampled_from([b'"key": ', b'"model": ', b'"role": ']))
    return good_line(key).replace(field, field + b'"x", ' + field, 1)


@st.composite
def not_an_object(draw: st.DrawFn, key: str) -> bytes:
    line = good_line(key)
    return draw(st.one_of(
        st.integers(1, len(line) - 1).map(lambda cut: line[:cut]),  # torn: never valid JSON
        st.sampled_from([b"[]", b"5", b"null", b'"params"', b"{}", b"{'key': 1}", b"{,}"]),
    ))  # fmt: skip


def bad_lines(key: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        wrong_type(key), unknown_key(key), bad_value(key), duplicate_key(key), not_an_object(key)
    )


@st.composite
def files(draw: st.DrawFn) -> tuple[bytes, int]:
    """A requests file with at least one malformed line; returns it and its first bad line."""
    lines, first_bad = [], 0
    for number in range(1, draw(st.integers(1, 5)) + 1):
        bad = draw(st.booleans()) or (number == 1 and draw(st.booleans()))
        lines.append(draw(bad_lines(f"k{number}")) if bad else good_line(f"k{number}"))
        first_bad = first_bad or (number if bad else 0)
    if not first_bad:
        lines.append(draw(bad_lines(f"k{len(lines) + 1}")))
        first_bad = len(lines)
    return b"\n".join(lines) + b"\n", first_bad


HUGE = json.dumps({"key": "big", "params": {**ask(0), "system": "x" * 50_000_000}}).encode()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("malformed-home")


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(case=(HUGE + b"\n", 1))  # one 50 MB line: above the API's 32 MB request limit
@given(case=files())
def test_a_malformed_file_is_refused_whole_with_its_line(
    case: tuple[bytes, int], home: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    text, first_bad = case
    requests = home / "requests.jsonl"
    requests.write_bytes(text)
    result = cli(
        "run", str(requests), "--home", str(home), "--base-url", "http://127.0.0.1:9",
        "--out", str(home / "out.jsonl"),
    )  # fmt: skip
    assert result.code == 2, result.err
    assert f"requests.jsonl:{first_bad}: " in result.err, result.err
    assert "Traceback" not in result.err and result.err.startswith("nowait: error: ")
    store = SQLiteStore(home / "nowait.db")  # still a usable store, and empty
    assert store.job_counts() == {} and store.batches(*BatchState) == []
    store.close()


def test_the_store_takes_good_work_after_every_refusal(
    home: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs after the property (same module, same store): status reads it, run uses it."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    assert json.loads(cli("status", "--home", str(home), "--json").out)["jobs"] == {}
    requests = home / "good.jsonl"
    requests.write_bytes(good_line("fine") + b"\n")
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(0.1)), SystemClock()) as server:
        done = cli("run", str(requests), "--home", str(home), "--out", str(home / "out.jsonl"),
                   "--base-url", server.base_url, "--poll", "0.1")  # fmt: skip
    assert done.code == 0, done.err
    assert json.loads(cli("status", "--home", str(home), "--json").out)["jobs"] == {"delivered": 1}
