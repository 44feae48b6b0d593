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

from nowait.analyze.readers import BadRecords, json_objects, number
from nowait.analyze.records import Record, split_input

SERVER, CONSUMER = 2, 5
# OTLP JSON may spell the span kind as its enum name, and ConsoleSpanExporter as `SpanKind.X`.
KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
LLM_OPERATIONS = {"chat", "text_completion", "completion"}
# Logfire counts cache tokens inside gen_ai.usage.input_tokens from v4.31.0 (pydantic/logfire
# #1812, 2026-03-27); before it, input_tokens was Anthropic's own, uncached count.
LOGFIRE_INCLUSIVE_FROM = (4, 31, 0)
# OpenInference names the span after the SDK method: `messages.stream` streamed.
STREAM_SPANS = {"messages.stream", "Messages.stream", "beta.messages.stream"}


PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
# Attributes of any span that say what started the work (kept for every span of a file).
CONTEXT_KEYS = (
    "http.route",
    "url.path",
    "messaging.system",
    "messaging.destination.name",
    "faas.trigger",
    "faas.cron",
    "user.id",
    "session.id",
)
# Resolved records leave the reader every this many pending ones (see `read_otlp`).
SWEEP_EVERY = 5000


def _raw(items: Any) -> dict[str, Any]:
    """key → OTLP AnyValue, not yet converted (most spans need only a few of their values)."""
    return {
        str(item["key"]): item.get("value")
        for item in items or ()
        if isinstance(item, dict) and "key" in item
    }


def attributes(items: Any) -> dict[str, Any]:
    return {key: any_value(value) for key, value in _raw(items).items()}


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


@dataclass(slots=True)
class _Context:
    parent: str | None
    kind: int
    attrs: dict[str, Any]


def span_kind(value: Any) -> int:
    """The span kind as its OTLP enum number, from a number or a name (`SPAN_KIND_SERVER`,
    `SERVER`, `SpanKind.SERVER`); 0 (unspecified) when absent."""
    if value in (None, ""):
        return 0
    if isinstance(value, str) and not value.isdigit():
        name = value.rsplit(".", 1)[-1].upper().removeprefix("SPAN_KIND_")
        if name not in KINDS and name != "UNSPECIFIED":
            raise ValueError(f"unknown span kind {value!r}")
        return KINDS.get(name, 0)
    return int(value)


_Pending = tuple[Record, str, str, dict[str, Any]]  # record, trace id, span id, resource


def read_otlp(path: Path, bad: BadRecords) -> Iterator[Record]:
    """OTLP does not order spans, so an LLM span waits for its ancestors: it leaves as soon as
    its chain reaches the trace's root (and its streaming is decided), else at the end of the
    file. Only a small context (parent, kind, a few attributes) is kept per span."""
    contexts: dict[tuple[str, str], _Context] = {}
    pending: list[_Pending] = []
    sweep_at = SWEEP_EVERY
    # Producers that set gen_ai.request.stream (semconv ≥ 1.41) set it "if and only if the
    # request is streaming": on their other spans, its absence means not streamed.
    says_stream: set[str] = set()
    for line, resource, producer, span in _spans(path, bad):
        try:
            found = _span(path, line, span, resource, producer, contexts)
        except (ValueError, TypeError, KeyError) as exc:
            bad.add(path, line, f"span {span.get('spanId', '?')}: {exc}")
            continue
        if found is not None:
            pending.append(found)
            if found[0].extras.pop("says_stream", None):
                says_stream.add(producer)
        if len(pending) >= sweep_at:
            waiting: list[_Pending] = []
            for item in pending:
                if _finish(item, contexts, says_stream, final=False):
                    yield item[0]
                else:
                    waiting.append(item)
            pending = waiting
            sweep_at = len(pending) + SWEEP_EVERY
    for item in pending:
        _finish(item, contexts, says_stream, final=True)
        yield item[0]


def _spans(
    path: Path, bad: BadRecords
) -> Iterator[tuple[int, dict[str, Any], str, dict[str, Any]]]:
    """(line, resource attributes, producer `scope@version`, span) for every span of a file."""
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
                    if isinstance(span, dict):
                        yield line, resource, producer, span
                    else:
                        bad.add(path, line, "a span that is not an object")


def _finish(
    item: _Pending, contexts: dict[tuple[str, str], _Context], says_stream: set[str], *, final: bool
) -> bool:
    """Apply the trace context to a pending record, if it is complete (or `final`)."""
    record, trace, span_id, resource = item
    if record.stream is None and record.producer in says_stream:
        record.stream = False
    chain, complete = _ancestors(contexts, trace, span_id)
    if not final and not (complete and record.stream is not None):
        return False
    _apply_context(record, chain, resource)
    return True


def _span(
    path: Path,
    line: int,
    span: dict[str, Any],
    resource: dict[str, Any],
    producer: str,
    contexts: dict[tuple[str, str], _Context],
) -> tuple[Record, str, str, dict[str, Any]] | None:
    raw = _raw(span.get("attributes"))
    trace, span_id = str(span.get("traceId", "")), str(span.get("spanId", ""))
    parent = span.get("parentSpanId") or None
    context = {key: any_value(raw[key]) for key in CONTEXT_KEYS if key in raw}
    contexts[(trace, span_id)] = _Context(parent, span_kind(span.get("kind")), context)
    if not any(key in raw for key in PROVIDER_KEYS):
        return None
    attrs = {key: any_value(value) for key, value in raw.items()}
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
    _interaction(record, attrs, str(span.get("name") or ""))
    record.service = resource.get("service.name")
    return record, trace, span_id, resource


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
    includes = _logfire_includes_cache(producer) if producer.startswith("logfire@") else True
    record.input_uncached, rule = split_input(reported, read, write, includes_cache=includes)
    if producer.startswith("logfire@") and includes is not None:
        rule += f" (logfire {'≥' if includes else '<'} 4.31, pydantic/logfire#1812)"
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


def _logfire_includes_cache(producer: str) -> bool | None:
    """Whether this Logfire version counted cache tokens inside input; None if the version
    cannot be read (then the numbers decide)."""
    version = producer.partition("@")[2]
    parts = version.split(".")[:3]
    if not parts or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts) >= LOGFIRE_INCLUSIVE_FROM


def _interaction(record: Record, attrs: dict[str, Any], name: str) -> None:
    """Streaming is None (unknown) unless the producer says: OpenLLMetry sets is_streaming from
    the `stream` kwarg only, so a `messages.stream()` call carries nothing."""
    stream = _first(attrs, "gen_ai.request.stream", "gen_ai.is_streaming", "llm.is_streaming")
    if "gen_ai.request.stream" in attrs:
        record.extras["says_stream"] = "1"
    if stream is None and isinstance(attrs.get("llm.invocation_parameters"), str):
        stream = json.loads(attrs["llm.invocation_parameters"]).get("stream")
    if stream is None and name in STREAM_SPANS:
        stream = True
    ttft = attrs.get("gen_ai.response.time_to_first_chunk")
    record.ttft_s = float(ttft) if ttft is not None else None
    if stream is None and ttft is not None:
        stream = True  # a first chunk was timed: it streamed
    if isinstance(stream, str):
        stream = stream.lower() == "true"
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


def _ancestors(
    contexts: dict[tuple[str, str], _Context], trace: str, span_id: str
) -> tuple[list[_Context], bool]:
    """The span's own context, then its parent's, up to the root as far as the file has it so
    far; and whether the chain is complete (it reached a span without a parent)."""
    chain: list[_Context] = []
    seen: set[str] = set()
    parent: str | None = span_id
    while parent and parent not in seen and len(chain) < 64:
        seen.add(parent)
        context = contexts.get((trace, parent))
        if context is None:
            return chain, False
        chain.append(context)
        parent = context.parent
    return chain, True


def _apply_context(record: Record, ancestors: list[_Context], resource: dict[str, Any]) -> None:
    """The trigger: the resource first (a CronJob pod runs nothing else), then the nearest
    span of the chain (the LLM span itself, then its ancestors) that says what started it."""
    if (
        resource.get("k8s.cronjob.name")
        or resource.get("faas.trigger") == "timer"
        or resource.get("faas.cron")
    ):
        record.trigger = "cron"
        record.workflow = record.workflow or resource.get("k8s.cronjob.name")
        return
    for context in ancestors:
        faas = context.attrs.get("faas.trigger")
        if faas == "timer" or "faas.cron" in context.attrs:
            record.trigger = "cron"
            return
        if faas in ("pubsub", "datasource"):
            record.trigger = "queue"
            return
        if context.kind == CONSUMER or "messaging.system" in context.attrs:
            record.trigger = "queue"
            return
        if context.kind == SERVER or "http.route" in context.attrs or faas == "http":
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
