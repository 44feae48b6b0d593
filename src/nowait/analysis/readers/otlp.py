"""OTLP JSON trace files (the File Exporter / Collector `file` format: one `TracesData` per
line) with Anthropic GenAI spans from OTel semconv, OpenLLMetry, OpenInference or Logfire.

A span's workload and trigger come from its trace: the resource (k8s CronJob, `faas.trigger`,
`service.name`) and its ancestors (an HTTP SERVER span, a queue CONSUMER span). Spans of one
file are held until the file ends, since OTLP does not order them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nowait.analysis.readers import BadRecords, json_objects, number
from nowait.analysis.records import Record, split_input

SERVER, CONSUMER = 2, 5
LLM_OPERATIONS = {"chat", "text_completion", "completion"}


def attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if isinstance(item, dict) and "key" in item:
            out[str(item["key"])] = any_value(item.get("value"))
    return out


def any_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    for kind in ("stringValue", "boolValue", "doubleValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return attributes((value["kvlistValue"] or {}).get("values"))
    return None


@dataclass
class _Context:
    parent: str | None
    kind: int
    attrs: dict[str, Any]


def read_otlp(path: Path, bad: BadRecords) -> Iterator[Record]:
    contexts: dict[tuple[str, str], _Context] = {}
    pending: list[tuple[Record, str, str | None, dict[str, Any]]] = []
    for line, document in json_objects(path, bad):
        if not isinstance(document, dict) or "resourceSpans" not in document:
            bad.add(path, line, "not an OTLP TracesData object (expected resourceSpans)")
            continue
        for resource_spans in document.get("resourceSpans") or []:
            resource = attributes((resource_spans.get("resource") or {}).get("attributes"))
            for scope_spans in resource_spans.get("scopeSpans") or []:
                scope = scope_spans.get("scope") or {}
                producer = f"{scope.get('name', '')}@{scope.get('version', '')}"
                for span in scope_spans.get("spans") or []:
                    try:
                        found = _span(path, line, span, resource, producer, contexts)
                    except (ValueError, TypeError, KeyError) as exc:
                        bad.add(path, line, f"span {span.get('spanId', '?')}: {exc}")
                        continue
                    if found is not None:
                        pending.append(found)
    for record, trace, parent, resource in pending:
        _apply_context(record, _ancestors(contexts, trace, parent), resource)
        yield record


def _span(
    path: Path,
    line: int,
    span: dict[str, Any],
    resource: dict[str, Any],
    producer: str,
    contexts: dict[tuple[str, str], _Context],
) -> tuple[Record, str, str | None, dict[str, Any]] | None:
    attrs = attributes(span.get("attributes"))
    trace, span_id = str(span.get("traceId", "")), str(span.get("spanId", ""))
    parent = span.get("parentSpanId") or None
    contexts[(trace, span_id)] = _Context(parent, int(span.get("kind") or 0), _context_attrs(attrs))
    if not _is_anthropic_llm(attrs):
        return None
    start = _time(span.get("startTimeUnixNano"))
    record = Record(
        source="otlp",
        producer=producer,
        record_id=str(attrs.get("gen_ai.response.id") or span_id),
        start_time=start,
        end_time=_time(span.get("endTimeUnixNano")) if span.get("endTimeUnixNano") else None,
        model=str(
            _first(
                attrs,
                "gen_ai.response.model",
                "gen_ai.request.model",
                "llm.model_name",
                "llm.response.model_name",
            )
            or "unknown"
        ),
        trace_id=trace,
        file=str(path),
        line=line,
    )
    _tokens(record, attrs, producer)
    _interaction(record, attrs)
    record.service = resource.get("service.name")
    return record, trace, parent, resource


def _first(attrs: dict[str, Any], *names: str) -> Any:
    for name in names:
        if attrs.get(name) not in (None, ""):
            return attrs[name]
    return None


def _is_anthropic_llm(attrs: dict[str, Any]) -> bool:
    provider = str(
        _first(attrs, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system") or ""
    )
    if provider.lower() != "anthropic":
        return False
    operation = _first(attrs, "gen_ai.operation.name", "llm.request.type")
    return operation in LLM_OPERATIONS or attrs.get("openinference.span.kind") == "LLM"


def _tokens(record: Record, attrs: dict[str, Any], producer: str) -> None:
    raw = attrs.get("gen_ai.usage.raw")
    if isinstance(raw, str):
        raw = json.loads(raw)
    if isinstance(raw, dict):  # Logfire keeps Anthropic's own usage object: exact, TTL split
        creation = raw.get("cache_creation") or {}
        record.input_uncached = number(raw.get("input_tokens"))
        record.cache_read = number(raw.get("cache_read_input_tokens"))
        record.cache_write_5m = number(
            creation.get("ephemeral_5m_input_tokens", raw.get("cache_creation_input_tokens"))
        )
        record.cache_write_1h = number(creation.get("ephemeral_1h_input_tokens"))
        record.output_tokens = number(raw.get("output_tokens"))
        record.service_tier = raw.get("service_tier")
        record.token_rule = "anthropic usage object"
        return
    read = number(
        _first(
            attrs,
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
        )
    )
    write = number(
        _first(
            attrs,
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
            "llm.token_count.prompt_details.cache_write",
        )
    )
    reported = number(
        _first(
            attrs,
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
        )
    )
    # Logfire counted cache inside input only from pydantic/logfire#1812; decide from the numbers.
    includes = None if producer.startswith("logfire@") else True
    record.input_uncached, rule = split_input(reported, read, write, includes_cache=includes)
    record.cache_read, record.cache_write_5m = read, write
    record.output_tokens = number(
        _first(
            attrs,
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
        )
    )
    record.token_rule = rule + (", cache-write TTL unknown: priced as 5m" if write else "")


def _interaction(record: Record, attrs: dict[str, Any]) -> None:
    stream = _first(attrs, "gen_ai.request.stream", "gen_ai.is_streaming", "llm.is_streaming")
    if stream is None and isinstance(attrs.get("llm.invocation_parameters"), str):
        stream = json.loads(attrs["llm.invocation_parameters"]).get("stream")
    ttft = attrs.get("gen_ai.response.time_to_first_chunk")
    record.ttft_s = float(ttft) if ttft is not None else None
    if stream is None and ttft is not None:
        stream = True  # a first chunk was timed: it streamed
    if stream is None and not record.producer.startswith("logfire@"):
        stream = False  # semconv: "if unset, the request is assumed to be non-streaming"
    record.stream = bool(stream) if stream is not None else None
    props = "traceloop.association.properties."
    record.user_id = _first(attrs, "user.id", props + "user_id", "enduser.id")
    record.session_id = _first(attrs, "session.id", "gen_ai.conversation.id", props + "session_id")
    record.feature = _first(attrs, props + "feature", "feature")
    record.workflow = _first(attrs, "traceloop.workflow.name", "langfuse.trace.name")
    tags = attrs.get("tag.tags")
    record.tags = ",".join(map(str, tags)) if isinstance(tags, list) else tags
    reasons = attrs.get("gen_ai.response.finish_reasons")
    record.finish_reason = reasons[0] if isinstance(reasons, list) and reasons else None


def _context_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "http.route",
        "url.path",
        "messaging.system",
        "messaging.destination.name",
        "faas.trigger",
        "user.id",
        "session.id",
    )
    return {k: attrs[k] for k in keep if k in attrs}


def _ancestors(
    contexts: dict[tuple[str, str], _Context], trace: str, parent: str | None
) -> list[_Context]:
    chain: list[_Context] = []
    seen: set[str] = set()
    while parent and parent not in seen and len(chain) < 64:
        seen.add(parent)
        context = contexts.get((trace, parent))
        if context is None:
            break
        chain.append(context)
        parent = context.parent
    return chain


def _apply_context(record: Record, ancestors: list[_Context], resource: dict[str, Any]) -> None:
    if (
        resource.get("k8s.cronjob.name")
        or resource.get("faas.trigger") == "timer"
        or resource.get("faas.cron")
    ):
        record.trigger = "cron"
        record.workflow = record.workflow or resource.get("k8s.cronjob.name")
        return
    for context in ancestors:
        if context.kind == CONSUMER or "messaging.system" in context.attrs:
            record.trigger = "queue"
            return
        if context.kind == SERVER or "http.route" in context.attrs:
            record.trigger = "http"
            record.http_route = context.attrs.get("http.route") or context.attrs.get("url.path")
            record.user_id = record.user_id or context.attrs.get("user.id")
            return
    trigger = resource.get("faas.trigger")
    if trigger == "http":
        record.trigger = "http"
    elif trigger in ("pubsub", "datasource"):
        record.trigger = "queue"
    elif resource.get("k8s.job.name"):
        record.trigger = "script"


def _time(value: Any) -> datetime:
    nanos = int(value)
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)
