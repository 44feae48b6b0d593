"""Request validation in two layers, as the API does it.

Schema errors (wrong types, missing fields, parameters the API version removed) reject the
whole call with a 400 whose message carries a dotted path. Semantic errors (unknown model,
`max_tokens` beyond the model) are found while a request runs: a 404/400 in real time, an
`errored` line in a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nowait.emulator.apierror import ApiError, invalid
from nowait.emulator.config import API_VERSIONS
from nowait.limits import CUSTOM_ID_MAX_LENGTH, CUSTOM_ID_PATTERN

REMOVED_IN_2026 = ("temperature", "top_p", "top_k")
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a body may have (the API publishes no figure; real
requests, tool schemas included, stay far below it)."""
OPTIONAL_OBJECTS = ("metadata", "thinking", "cache_control", "output_config", "output_format")
MAX_OUTPUT_TOKENS = 128_000
BATCH_MAX_OUTPUT_TOKENS_BETA = 300_000
ROLES = ("user", "assistant")


def check_version(version: str | None) -> str:
    if not version:
        raise invalid("anthropic-version: header is required")
    if version not in API_VERSIONS:
        raise invalid(f"anthropic-version: unknown version {version!r}")
    return version


def check_message_params(
    params: Any, *, version: str, path: str = "", streaming_allowed: bool = True
) -> dict[str, Any]:
    """Schema-check one Messages body; returns it as a dict or raises a 400."""
    if not isinstance(params, dict):
        raise invalid(f"{path or 'body'}: Input should be a valid dictionary")
    p = path + "." if path else ""
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise invalid(
            f"{p}model: Field required"
            if model is None
            else f"{p}model: Input should be a valid string"
        )
    max_tokens = params.get("max_tokens")
    if max_tokens is None:
        raise invalid(f"{p}max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise invalid(f"{p}max_tokens: Input should be a non-negative integer")
    _check_messages(params.get("messages"), p)
    _check_system(params.get("system"), p)
    stops = params.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise invalid(f"{p}stop_sequences: Input should be a valid list of strings")
    stream = params.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid(f"{p}stream: Input should be a valid boolean")
    if stream and not streaming_allowed:
        raise invalid(f"{p}stream: streaming is not supported in batch requests")
    for name in OPTIONAL_OBJECTS:
        if params.get(name) is not None and not isinstance(params[name], dict):
            raise invalid(f"{p}{name}: Input should be a valid dictionary")
    _check_output_format(params, p)
    if version == "2026-10-21":
        for name in REMOVED_IN_2026:
            if name in params:
                raise invalid(f"{p}{name}: Extra inputs are not permitted")
    _check_tools(params.get("tools"), params.get("tool_choice"), p)
    return params


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Reject a body nested deeper than `limit` (walked without recursion, so any depth the
    JSON parser accepted is safe to check)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        if children and depth > limit:
            raise invalid(f"body: nested deeper than {limit} levels of arrays and objects")
        stack.extend((child, depth + 1) for child in children)


def _check_tools(tools: Any, choice: Any, p: str) -> None:
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid(f"{p}tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            where = f"{p}tools.{i}"
            if not isinstance(tool, dict):
                raise invalid(f"{where}: Input should be a valid dictionary")
            if "name" in tool and (not isinstance(tool["name"], str) or not tool["name"]):
                raise invalid(f"{where}.name: Input should be a non-empty string")
            if "input_schema" in tool and not isinstance(tool["input_schema"], dict):
                raise invalid(f"{where}.input_schema: Input should be a valid dictionary")
    if choice is None:
        return
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise invalid(f"{p}tool_choice: Input should be an object with a string `type`")
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        raise invalid(f"{p}tool_choice.name: Field required")


def _check_output_format(params: dict[str, Any], p: str) -> None:
    """`output_config.format` (and the beta's top-level `output_format`): a JSON schema."""
    config = params.get("output_config") or {}
    for where, fmt in (
        (f"{p}output_config.format", config.get("format")),
        (f"{p}output_format", params.get("output_format")),
    ):
        if fmt is None:
            continue
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
            raise invalid(f"{where}.type: Input should be 'json_schema'")
        if not isinstance(fmt.get("schema"), dict):
            raise invalid(f"{where}.schema: Input should be a valid dictionary")


def _check_messages(messages: Any, p: str) -> None:
    if messages is None:
        raise invalid(f"{p}messages: Field required")
    if not isinstance(messages, list):
        raise invalid(f"{p}messages: Input should be a valid list")
    for i, message in enumerate(messages):
        where = f"{p}messages.{i}"
        if not isinstance(message, Mapping):
            raise invalid(f"{where}: Input should be a valid dictionary")
        if message.get("role") not in (*ROLES, "system"):
            raise invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise invalid(f"{where}.content: Input should be a valid string or list of blocks")
        for j, block in enumerate(content):
            if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
                raise invalid(f"{where}.content.{j}.type: Field required")
            if block["type"] == "text" and not isinstance(block.get("text"), str):
                raise invalid(f"{where}.content.{j}.text: Input should be a valid string")


def _check_system(system: Any, p: str) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid(f"{p}system: Input should be a valid string or list of text blocks")
    for i, block in enumerate(system):
        if not isinstance(block, Mapping) or block.get("type") != "text":
            raise invalid(f"{p}system.{i}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            raise invalid(f"{p}system.{i}.text: Input should be a valid string")


def semantic_error(
    params: Mapping[str, Any], *, models: frozenset[str], batch: bool, betas: frozenset[str]
) -> ApiError | None:
    """The error a request meets once it runs, or None."""
    model = str(params["model"])
    if model not in models:
        return ApiError(404, f"model: {model}")
    if not params.get("messages"):
        return invalid("messages: at least one message is required")
    max_tokens = int(params["max_tokens"])
    limit = MAX_OUTPUT_TOKENS
    if batch and "output-300k-2026-03-24" in betas:
        limit = BATCH_MAX_OUTPUT_TOKENS_BETA
    if max_tokens > limit:
        return invalid(
            f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed for {model}"
        )
    if batch and max_tokens == 0:
        return invalid(
            "max_tokens: must be at least 1 in a batch (cache pre-warming is not supported)"
        )
    return None


def check_batch_requests(requests: Any, max_requests: int) -> list[dict[str, Any]]:
    """Shape, count and custom_id rules of a batch create body."""
    if not isinstance(requests, list):
        raise invalid(
            "requests: Field required"
            if requests is None
            else "requests: Input should be a valid list"
        )
    if not requests:
        raise invalid("requests: List should have at least 1 item after validation, not 0")
    if len(requests) > max_requests:
        raise invalid(
            "requests: List should have at most "
            f"{max_requests} items after validation, not {len(requests)}"
        )
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise invalid(f"requests.{i}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        where = f"requests.{i}.custom_id"
        if not isinstance(custom_id, str):
            raise invalid(
                f"{where}: Field required"
                if custom_id is None
                else f"{where}: Input should be a valid string"
            )
        if not custom_id:
            raise invalid(f"{where}: String should have at least 1 character")
        if len(custom_id) > CUSTOM_ID_MAX_LENGTH:
            raise invalid(f"{where}: String should have at most {CUSTOM_ID_MAX_LENGTH} characters")
        if not CUSTOM_ID_PATTERN.fullmatch(custom_id):  # match() lets "a\n" through
            raise invalid(f"{where}: String should match pattern '{CUSTOM_ID_PATTERN.pattern}'")
        if custom_id in seen:
            raise invalid(
                f"{where}: Duplicate custom_id {custom_id!r}; "
                "custom_id values must be unique within a batch"
            )
        seen.add(custom_id)
        if "params" not in item:
            raise invalid(f"requests.{i}.params: Field required")
    return requests
