"""Malformed requests of every kind, sent over HTTP to a real `nowait emulator` process: each
answer is a 4xx with the API's error envelope (never a 500, never a hang), the process's
memory comes back to where it started, and a valid request still works after each phase."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround

MODEL = "claude-sonnet-5-5"
VALID = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
VERSIONS = ("2023-06-01", "2026-10-21")
HEADERS = {"x-api-key": "k", "content-type": "application/json"}
MISSING = object()
ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "not_found_error",
    "request_too_large",
}


def deep(levels: int) -> Any:
    value: Any = "x"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


# Each field's malformed values. "schema" ones are rejected wherever params are checked (a batch
# create included); "semantic" ones only where the request runs (a batch would error the line).
SCHEMA_MUTATIONS: dict[str, list[Any]] = {
    "model": [MISSING, None, 1, [], {}, "", True],
    "max_tokens": [MISSING, None, -1, "16", 1.5, True, [], {}],
    "messages": [
        MISSING,
        None,
        {},
        "hi",
        [1],
        [None],
        [{"role": "bot", "content": "x"}],
        [{"role": "user"}],
        [{"role": "user", "content": 1}],
        [{"role": "user", "content": [1]}],
        [{"role": "user", "content": [{"text": "x"}]}],
        [{"role": "user", "content": [{"type": "text", "text": 1}]}],
        [{"role": "user", "content": [{"type": "text"}]}],
        [{"role": "user", "content": [{"type": "text", "text": "x", "k": deep(900)}]}],
    ],
    "system": [1, {}, [None], ["x"], [{"type": "image"}], [{"type": "text", "text": 1}], True],
    "stream": ["x", 1, [], {}, "true", 0],
    "tools": [
        {},
        "x",
        1,
        [None],
        [1],
        ["x"],
        [{"name": 1}],
        [{"name": ""}],
        [{"name": "t", "input_schema": "x"}],
        [{"name": "t", "input_schema": deep(900)}],
        [{"name": "t", "input_schema": deep(65)}],
    ],
    "tool_choice": ["auto", 1, [], {}, {"type": 1}, {"type": "tool"}, {"type": "tool", "name": 1}],
    "stop_sequences": ["x", [1], {}, [None]],
    "metadata": ["x", 1, [], deep(200)],
    "thinking": ["x", 1, []],
    "cache_control": ["x", []],
    "output_config": [
        "x",
        {"format": "x"},
        {"format": {"type": "xml", "schema": {}}},
        {"format": {"type": "json_schema"}},
        {"format": {"type": "json_schema", "schema": "x"}},
    ],
    "output_format": ["x", {"type": "json_schema", "schema": 1}],
}
SEMANTIC_MUTATIONS: dict[str, list[Any]] = {
    "model": ["claude-imaginary-9"],
    "messages": [[]],
    "max_tokens": [10**30, 128_001],
}
BATCH_BODIES: list[Any] = [
    None,
    [],
    "x",
    {},
    {"requests": None},
    {"requests": "x"},
    {"requests": []},
    {"requests": [1]},
    {"requests": [{"params": VALID}]},
    *(
        {"requests": [{"custom_id": cid, "params": VALID}]}
        for cid in ["a\n", "", "x" * 65, 1, None, "a b", "é", "a/b", "\na", "a\r\n", ["a"]]
    ),
    {"requests": [{"custom_id": "a", "params": VALID}, {"custom_id": "a", "params": VALID}]},
    {"requests": [{"custom_id": "a"}]},
    {"requests": [{"custom_id": "a", "params": None}]},
    {"requests": [{"custom_id": "a", "params": {**VALID, "stream": True}}]},
    {"requests": [{"custom_id": "a", "params": VALID}], "k": deep(900)},
]
RAW_BODIES = [
    b"",
    b"{",
    b"\xff\xfe",
    b"null",
    b"[]",
    b'"x"',
    b"1e999999",
    b"NaN",
    b"[" * 100_000,
    b'{"model": "' + b"x" * 1000,
    b'{"max_tokens": ' + b"9" * 5000 + b"}",
    json.dumps(deep(900)).encode(),
]
BAD_LIMITS = ["²", "٣", "0", "1001", "-1", "1.5", "", "x", "9" * 30, "1 ", "0x10"]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None


def mutated(field: str, value: Any) -> dict[str, Any]:
    params = dict(VALID)
    if value is MISSING:
        del params[field]
    else:
        params[field] = value
    return params


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def params_calls() -> Iterator[tuple[Call, str]]:
    for version in VERSIONS:
        headers = {"anthropic-version": version}
        for field, values in SCHEMA_MUTATIONS.items():
            for value in values:
                params = mutated(field, value)
                yield Call("POST", "/v1/messages", body(params), headers=headers), "schema"
                batch = {"requests": [{"custom_id": "r", "params": params}]}
                yield Call("POST", "/v1/messages/batches", body(batch), headers=headers), "schema"
                if field != "max_tokens":  # count_tokens does not take max_tokens
                    call = Call("POST", "/v1/messages/count_tokens", body(params), headers=headers)
                    yield call, "schema"
        for field, values in SEMANTIC_MUTATIONS.items():
            for value in values:
                yield (
                    Call("POST", "/v1/messages", body(mutated(field, value)), headers=headers),
                    "semantic",
                )
    for name in ("temperature", "top_p", "top_k"):
        removed = {**VALID, name: 1}
        later = {"anthropic-version": "2026-10-21"}
        yield Call("POST", "/v1/messages", body(removed), headers=later), "version"
        batch = {"requests": [{"custom_id": "r", "params": removed}]}
        yield Call("POST", "/v1/messages/batches", body(batch), headers=later), "version"


def shape_calls() -> Iterator[tuple[Call, str]]:
    for value in BATCH_BODIES:
        yield Call("POST", "/v1/messages/batches", body(value)), "batch"
    for raw in RAW_BODIES:
        for path in ("/v1/messages", "/v1/messages/batches", "/v1/messages/count_tokens"):
            yield Call("POST", path, raw), "raw"


def query_calls() -> Iterator[tuple[Call, str]]:
    for path in ("/v1/messages/batches", "/v1/models"):
        for limit in BAD_LIMITS:
            yield Call("GET", path, params={"limit": limit}), "query"
        for cursor in ("after_id", "before_id"):
            yield Call("GET", path, params={cursor: ""}), "query"
            yield Call("GET", path, params={cursor: "made-up"}), "query"
    for lifecycle in ("bogus", "", "ACTIVE"):
        yield Call("GET", "/v1/models", params={"lifecycle[]": lifecycle}), "query"
    for method, path in [
        ("GET", "/v1/models/claude-imaginary-9"),
        ("GET", "/v1/messages/batches/msgbatch_nope"),
        ("POST", "/v1/messages/batches/msgbatch_nope/cancel"),
        ("DELETE", "/v1/messages/batches/msgbatch_nope"),
        ("GET", "/v1/messages/batches/msgbatch_nope/results"),
        ("GET", "/v1/nope"),
        ("GET", "/v2/messages"),
        ("GET", "/v1/messages"),
        ("PUT", "/v1/messages/batches"),
        ("DELETE", "/v1/models"),
        ("PATCH", "/v1/models/claude-haiku-5-5"),
    ]:
        yield Call(method, path, body(VALID) if method == "POST" else None), "path"
    for headers in (
        {"x-api-key": ""},
        {"x-api-key": "", "authorization": "Basic a2V5"},
        {"x-api-key": "", "authorization": "Bearer"},
        {"anthropic-version": "2099-01-01"},
        {"anthropic-version": ""},
        {"anthropic-version": "2023-06-01, 2026-10-21"},
    ):
        yield Call("POST", "/v1/messages", body(VALID), headers=headers), "headers"


def check_error(response: httpx2.Response) -> None:
    where = f"{response.request.method} {response.request.url}"
    assert 400 <= response.status_code < 500, f"{where}: {response.status_code} {response.text}"
    envelope = response.json()
    assert envelope["type"] == "error", where
    assert envelope["error"]["type"] in ERROR_TYPES, f"{where}: {envelope}"
    assert isinstance(envelope["error"]["message"], str) and envelope["error"]["message"]
    assert envelope["request_id"] == response.headers["request-id"]
    assert envelope["request_id"].startswith("req_")


def send(client: httpx2.Client, call: Call) -> httpx2.Response:
    headers = {**HEADERS, "anthropic-version": "2023-06-01", **(call.headers or {})}
    headers = {k: v for k, v in headers.items() if v or k == "anthropic-version"}
    return client.request(
        call.method, call.path, content=call.body, params=call.params, headers=headers
    )


def declared_too_large(base_url: str) -> bytes:
    """Headers that announce 300 MB, a few bytes of body, then wait: the answer must come
    without the rest."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(
            b"POST /v1/messages/batches HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\n"
            b"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
            b"content-length: 300000000\r\n\r\n" + b'{"requests": [' + b" " * 1000
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = raw.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def still_works(client: httpx2.Client) -> None:
    reply = send(client, Call("POST", "/v1/messages", body(VALID)))
    assert reply.status_code == 200 and reply.json()["content"], reply.text
    listed = send(client, Call("GET", "/v1/models", params={"limit": "3"}))
    assert listed.status_code == 200 and len(listed.json()["data"]) == 3


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["model", "max_tokens", "messages", "system", "tools", "stream", "x"]),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@pytest.mark.slow
def test_malformed_requests_get_4xx_envelopes_and_leave_memory_flat(
    emulator_process: Any,
) -> None:
    kinds: Counter[str] = Counter()
    with emulator_process() as emulator, httpx2.Client(base_url=emulator.base_url) as client:
        # Warm up every path once (lazy imports, caches), then take the baseline.
        still_works(client)
        for phase in (params_calls, shape_calls, query_calls):
            for call, _ in list(phase())[:40]:
                send(client, call)
        declared_too_large(emulator.base_url)
        start = emulator.rss_bytes()

        for phase in (params_calls, shape_calls, query_calls):
            for call, kind in phase():
                check_error(send(client, call))
                kinds[kind] += 1
            still_works(client)

        for _ in range(20):
            began = time.monotonic()
            answer = declared_too_large(emulator.base_url)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            envelope = json.loads(answer.partition(b"\r\n\r\n")[2])
            assert envelope["error"]["type"] == "request_too_large"
            assert envelope["request_id"].startswith("req_")
            assert time.monotonic() - began < 5
            kinds["413"] += 1
        still_works(client)

        @settings(max_examples=150, derandomize=True, database=None, deadline=None)
        @given(JSON_VALUES, st.sampled_from(["/v1/messages", "/v1/messages/count_tokens"]))
        def junk(value: Any, path: str) -> None:
            check_error(send(client, Call("POST", path, body(value))))
            kinds["generated"] += 1

        junk()
        still_works(client)
        end = emulator.rss_bytes()
        log = emulator.log_text()

    total = sum(kinds.values())
    print(
        f"{total} malformed requests {dict(kinds)}; RSS {start / 2**20:.1f} → {end / 2**20:.1f} MiB"
    )
    assert total >= 500, kinds
    assert end <= start * 1.2, f"RSS {start / 2**20:.1f} MiB → {end / 2**20:.1f} MiB"
    assert "Traceback" not in log and "failed (" not in log, log[-3000:]


def test_a_streamed_body_over_the_limit_is_a_413(fake_clock: FakeClock) -> None:
    with EmulatorServer(EmulatorConfig(max_messages_bytes=1000), fake_clock) as server:
        chunks = (b" " * 100 for _ in range(50))  # no Content-Length: chunked, 5,000 bytes
        headers = {**HEADERS, "anthropic-version": "2023-06-01"}
        with httpx2.Client(base_url=server.base_url) as client:
            response = client.post("/v1/messages", content=chunks, headers=headers)
            assert response.status_code == 413
            assert response.json()["error"]["type"] == "request_too_large"
            assert send(client, Call("POST", "/v1/messages", body(VALID))).status_code == 200


# ---- odd but well-formed requests: any answer but a 500 -------------------------------------
TEXT = st.text(max_size=12)
SCHEMA_LIKE = st.dictionaries(
    st.sampled_from(["type", "properties", "required", "items", "enum", "$ref", "anyOf", "x"]),
    JSON_VALUES,
    max_size=4,
)
CACHE = st.none() | st.dictionaries(st.sampled_from(["type", "ttl"]), JSON_VALUES, max_size=2)
BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "document", "tool_result", "tool_use", "x"])},
    optional={"text": TEXT, "source": JSON_VALUES, "content": JSON_VALUES, "cache_control": CACHE},
).filter(lambda b: b["type"] != "text" or "text" in b)
ODD_FIELDS = {
    "max_tokens": st.integers(0, 3000),
    "messages": st.lists(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "assistant"]),
                "content": TEXT | st.lists(BLOCK, max_size=3),
            }
        ),
        min_size=1,
        max_size=3,
    ),
    "system": TEXT
    | st.lists(
        st.fixed_dictionaries(
            {"type": st.just("text"), "text": TEXT}, optional={"cache_control": CACHE}
        ),
        max_size=2,
    ),
    "tools": st.lists(
        st.fixed_dictionaries(
            {"name": st.text(min_size=1, max_size=6)},
            optional={"input_schema": SCHEMA_LIKE, "cache_control": CACHE, "type": TEXT},
        ),
        max_size=3,
    ),
    "tool_choice": st.fixed_dictionaries(
        {"type": st.sampled_from(["auto", "any", "tool", "none", "x"])}, optional={"name": TEXT}
    ),
    "stop_sequences": st.lists(TEXT, max_size=3),
    "cache_control": CACHE,
    "output_config": st.fixed_dictionaries(
        {},
        optional={
            "format": st.fixed_dictionaries(
                {"type": st.just("json_schema"), "schema": SCHEMA_LIKE}
            ),
            "effort": JSON_VALUES,
        },
    ),
    "metadata": st.dictionaries(TEXT, JSON_VALUES, max_size=2),
}
ODD_PARAMS = st.fixed_dictionaries(
    {"model": st.just(MODEL)},
    optional=ODD_FIELDS,
).map(lambda p: {**VALID, **p})


def test_odd_but_well_formed_requests_never_get_a_500(fake_clock: FakeClock) -> None:
    config = EmulatorConfig(turnaround=Turnaround(10))
    with (
        EmulatorServer(config, fake_clock) as server,
        httpx2.Client(base_url=server.base_url) as client,
    ):

        @settings(max_examples=200, derandomize=True, database=None, deadline=None)
        @given(ODD_PARAMS, st.booleans())
        def odd(params: dict[str, Any], stream: bool) -> None:
            reply = send(client, Call("POST", "/v1/messages", body({**params, "stream": stream})))
            assert reply.status_code < 500, reply.text
            if reply.status_code == 200 and stream:
                assert b"event: message_stop" in reply.content
            counted = send(client, Call("POST", "/v1/messages/count_tokens", body(params)))
            assert counted.status_code < 500, counted.text
            batch = {"requests": [{"custom_id": "odd", "params": params}]}
            created = send(client, Call("POST", "/v1/messages/batches", body(batch)))
            assert created.status_code < 500, created.text
            if created.status_code == 200:
                fake_clock.advance(11)
                path = f"/v1/messages/batches/{created.json()['id']}/results"
                results = send(client, Call("GET", path))
                assert results.status_code == 200
                [line] = results.text.splitlines()
                assert json.loads(line)["custom_id"] == "odd"

        odd()
