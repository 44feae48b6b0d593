"""Small OTLP JSON lines built in tests: one `TracesData` per line, spans with attributes."""

from __future__ import annotations

import json


def attr(key: str, value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def otlp_line(
    spans: list[dict[str, object]],
    *,
    resource: dict[str, object] | None = None,
    scope: tuple[str, str] = ("opentelemetry.instrumentation.anthropic", "0.40.14"),
) -> str:
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [attr(k, v) for k, v in (resource or {}).items()]},
        "scopeSpans": [{"scope": {"name": scope[0], "version": scope[1]}, "spans": spans}],
    }]})  # fmt: skip


def span(
    span_id: str, attrs: dict[str, object], *, parent: str | None = None, kind: object = 3,
    name: str = "anthropic.chat", trace: str = "ab" * 16, at: int = 1795140900,
) -> dict[str, object]:  # fmt: skip
    out: dict[str, object] = {
        "traceId": trace, "spanId": span_id, "name": name, "kind": kind,
        "startTimeUnixNano": str(at * 10**9), "endTimeUnixNano": str((at + 4) * 10**9),
        "attributes": [attr(k, v) for k, v in attrs.items()],
    }  # fmt: skip
    if parent:
        out["parentSpanId"] = parent
    return out


LEGACY = {
    "gen_ai.system": "Anthropic", "llm.request.type": "chat",
    "gen_ai.request.model": "claude-sonnet-4-6", "gen_ai.usage.prompt_tokens": 5000,
    "gen_ai.usage.completion_tokens": 120, "gen_ai.usage.cache_read_input_tokens": 3000,
    "gen_ai.usage.cache_creation_input_tokens": 1500, "llm.usage.total_tokens": 5120,
}  # fmt: skip
