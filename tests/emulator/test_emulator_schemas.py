"""The fake model's tool calls and structured answers satisfy the request's JSON schemas; a
stream the client closes early stops."""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import anthropic
import jsonschema
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.emulator.schemagen import instance

MODEL = "claude-sonnet-5-5"
SCHEMAS: dict[str, dict[str, Any]] = {
    "weather": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City and country"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location", "unit"],
        "additionalProperties": False,
    },
    "order": {
        "type": "object",
        "properties": {
            "order_id": {"type": "integer", "minimum": 1000, "maximum": 9999},
            "lines": {
                "type": "array",
                "minItems": 2,
                "maxItems": 4,
                "items": {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string", "minLength": 8, "maxLength": 12},
                        "qty": {"type": "integer", "exclusiveMinimum": 0, "multipleOf": 2},
                        "price": {"type": "number", "minimum": 0.5, "exclusiveMaximum": 3},
                    },
                    "required": ["sku", "qty", "price"],
                },
            },
            "gift": {"type": ["boolean", "null"]},
            "placed": {"type": "string", "format": "date-time"},
            "contact": {"type": "string", "format": "email"},
            "ref": {"type": "string", "format": "uuid"},
            "code": {"type": "string", "pattern": "^[0-9]+$"},
        },
        "required": ["order_id", "lines", "gift", "placed", "contact", "ref", "code"],
    },
    "refs_and_unions": {
        "type": "object",
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["name", "children"],
            }
        },
        "properties": {
            "tree": {"$ref": "#/$defs/node"},
            "either": {"anyOf": [{"type": "integer", "minimum": 5}, {"type": "string"}]},
            "fixed": {"const": "v1"},
            "both": {
                "allOf": [
                    {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
                ]
            },
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "minItems": 2,
            },
            "tags": {
                "type": "array",
                "items": {"enum": ["x", "y", "z"]},
                "minItems": 3,
                "uniqueItems": True,
            },
        },
        "required": ["tree", "either", "fixed", "both", "pair", "tags"],
    },
}


def validate(schema: dict[str, Any], value: Any) -> None:
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(value)


def forced(schema: dict[str, Any], choice: dict[str, Any] | None = None) -> dict[str, Any]:
    tools = [
        {"name": "other", "description": "Unused", "input_schema": {"type": "object"}},
        {"name": "act", "description": "Do it", "input_schema": schema},
    ]
    return {
        "model": MODEL,
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "Go."}],
        "tools": tools,
        "tool_choice": choice or {"type": "tool", "name": "act"},
    }


@pytest.mark.parametrize("name", SCHEMAS)
def test_forced_tool_input_satisfies_its_schema(
    sdk_for: Any, emulator_server: Any, name: str
) -> None:
    sdk = sdk_for(emulator_server)
    reply = sdk.messages.create(**forced(SCHEMAS[name]))
    [call] = reply.content
    assert call.type == "tool_use" and call.name == "act" and reply.stop_reason == "tool_use"
    validate(SCHEMAS[name], call.input)
    with sdk.messages.stream(**forced(SCHEMAS[name])) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].input == call.input  # same request, same answer


def test_any_lets_the_model_choose_a_tool_and_fill_it(sdk_for: Any, emulator_server: Any) -> None:
    sdk = sdk_for(emulator_server)
    chosen = set()
    for i in range(12):
        request = forced(SCHEMAS["weather"], {"type": "any"})
        request["messages"] = [{"role": "user", "content": f"Question {i}"}]
        [call] = sdk.messages.create(**request).content
        chosen.add(call.name)
        schema = SCHEMAS["weather"] if call.name == "act" else {"type": "object"}
        validate(schema, call.input)
    assert chosen == {"act", "other"}


def test_batch_tool_calls_and_structured_answers_satisfy_their_schemas(
    sdk_for: Any, fake_clock: FakeClock
) -> None:
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(60)), fake_clock) as server:
        sdk = sdk_for(server)
        structured = {
            "model": MODEL,
            "max_tokens": 2000,
            "messages": [{"role": "user", "content": "Order?"}],
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMAS["order"]}},
        }
        requests = [
            {"custom_id": "tool", "params": forced(SCHEMAS["order"])},
            {"custom_id": "json", "params": structured},
        ]
        batch = sdk.messages.batches.create(requests=requests)
        fake_clock.advance(61)
        lines = {line.custom_id: line.result for line in sdk.messages.batches.results(batch.id)}
    validate(SCHEMAS["order"], lines["tool"].message.content[0].input)
    validate(SCHEMAS["order"], json.loads(lines["json"].message.content[0].text))


class Ticket(pydantic.BaseModel):
    ticket_id: int
    category: str
    urgent: bool
    tags: list[str]


def test_structured_output_parses_with_the_sdk(sdk_for: Any, emulator_server: Any) -> None:
    sdk = sdk_for(emulator_server)
    parsed = sdk.messages.parse(
        model=MODEL,
        max_tokens=500,
        messages=[{"role": "user", "content": "Classify ticket 7."}],
        output_format=Ticket,
    )
    assert isinstance(parsed.parsed_output, Ticket)
    beta = sdk.beta.messages.create(
        model=MODEL,
        max_tokens=500,
        messages=[{"role": "user", "content": "Weather?"}],
        extra_body={"output_format": {"type": "json_schema", "schema": SCHEMAS["weather"]}},
    )
    validate(SCHEMAS["weather"], json.loads(beta.content[0].text))
    cut = sdk.messages.create(
        model=MODEL,
        max_tokens=3,
        messages=[{"role": "user", "content": "Order?"}],
        output_config={"format": {"type": "json_schema", "schema": SCHEMAS["order"]}},
    )
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3


def test_malformed_schemas_still_give_json() -> None:
    assert isinstance(instance({"foo": "bar"}, 1), str)
    value = instance(
        {"type": "object", "properties": {"location": "bar"}, "required": ["location"]}
    )
    assert set(value) == {"location"}
    assert instance({"$ref": "#/nowhere"}) is not None
    assert instance({"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]})
    assert instance(SCHEMAS["order"], b"seed") == instance(SCHEMAS["order"], b"seed")
    for cyclic in (
        {"anyOf": [{"$ref": "#"}]},
        {"allOf": [{"$ref": "#"}], "type": "object", "required": ["a"]},
        {"oneOf": [{"$ref": "#"}, {"type": "string"}], "type": "array", "minItems": 2},
        {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
        {
            "$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}, {"$ref": "#/$defs/a"}]}},
            "$ref": "#/$defs/a",
        },
    ):
        json.dumps(instance(cyclic))  # ends, and is JSON


# ---- generated schemas ------------------------------------------------------------------------
def _scalars() -> st.SearchStrategy[dict[str, Any]]:
    bounded_int = st.tuples(st.integers(-50, 50), st.integers(0, 40)).map(
        lambda t: {"type": "integer", "minimum": t[0], "maximum": t[0] + t[1]}
    )
    strings = st.tuples(st.integers(0, 6), st.integers(0, 10)).map(
        lambda t: {"type": "string", "minLength": t[0], "maxLength": t[0] + t[1]}
    )
    return st.one_of(
        bounded_int,
        strings,
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
        st.just({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
        st.lists(st.text(max_size=5), min_size=1, max_size=4, unique=True).map(
            lambda e: {"enum": e}
        ),
        st.sampled_from(["date", "date-time", "email", "uuid", "ipv4"]).map(
            lambda f: {"type": "string", "format": f}
        ),
    )


def _schemas() -> st.SearchStrategy[dict[str, Any]]:
    def extend(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        objects = st.dictionaries(
            st.text("abcdef", min_size=1, max_size=4), inner, max_size=4
        ).flatmap(
            lambda props: st.sets(st.sampled_from(sorted(props)) if props else st.nothing()).map(
                lambda req: {
                    "type": "object",
                    "properties": props,
                    "required": sorted(req),
                    "additionalProperties": False,
                }
            )
        )
        arrays = st.tuples(inner, st.integers(0, 3)).map(
            lambda t: {"type": "array", "items": t[0], "minItems": t[1], "maxItems": t[1] + 2}
        )
        unions = st.lists(inner, min_size=1, max_size=3).map(lambda b: {"anyOf": b})
        return st.one_of(objects, arrays, unions)

    return st.recursive(_scalars(), extend, max_leaves=12)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_schemas(), st.binary(max_size=8))
def test_generated_values_satisfy_generated_schemas(schema: dict[str, Any], seed: bytes) -> None:
    validate(schema, instance(schema, seed))


# ---- streams --------------------------------------------------------------------------------
def test_a_stream_closed_early_stops_writing(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    config = EmulatorConfig(output_tokens=(20_000, 20_000))  # 5,000 text deltas
    body = json.dumps(
        {
            "model": MODEL,
            "max_tokens": 20_000,
            "stream": True,
            "messages": [{"role": "user", "content": "Write a lot."}],
        }
    ).encode()
    request = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\n"
        b"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    caplog.set_level(logging.WARNING)
    with EmulatorServer(config, fake_clock) as server:
        for _ in range(3):
            with socket.create_connection((server.host, server.port)) as client:
                client.sendall(request)
                assert client.recv(4096).startswith(b"HTTP/1.1 200")
                client.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            time.sleep(0.3)  # the server notices, or would be writing to the dead socket now
        sdk = anthropic.Anthropic(base_url=server.base_url, api_key="k")
        assert sdk.messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ).content
        sdk.close()
    assert not [r for r in caplog.records if "socket.send() raised exception" in r.getMessage()]


ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "properties",
                    "required",
                    "items",
                    "prefixItems",
                    "enum",
                    "const",
                    "anyOf",
                    "oneOf",
                    "allOf",
                    "$ref",
                    "$defs",
                    "minItems",
                    "maxItems",
                    "minimum",
                    "maximum",
                    "exclusiveMinimum",
                    "exclusiveMaximum",
                    "multipleOf",
                    "minLength",
                    "maxLength",
                    "pattern",
                    "format",
                    "uniqueItems",
                    "x",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(ANY_JSON)
def test_any_json_as_a_schema_gives_a_value_and_never_raises(schema: Any) -> None:
    instance(schema, b"x")


def test_a_schema_asking_for_a_billion_items_is_cut_to_the_budget() -> None:
    huge = {"type": "array", "minItems": 1000, "items": {"type": "array", "minItems": 1000}}
    started = time.monotonic()
    value = instance({"type": "array", "minItems": 1000, "items": huge})
    assert time.monotonic() - started < 2
    assert len(json.dumps(value)) < 200_000
