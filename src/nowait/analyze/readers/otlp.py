"""OTLP trace files with Anthropic GenAI spans from the anthropic SDK itself, OTel semconv,
OpenLLMetry, OpenInference or Logfire: JSON (the File Exporter / Collector `file` format, one
`TracesData` per line, gzip or not) and protobuf (the Collector's `format: proto`: each
`TracesData` after its length, 4 bytes big-endian).

A span's workload and trigger come from its trace: the resource (k8s CronJob, `faas.trigger`,
`service.name`) and its ancestors (an HTTP SERVER span, a queue CONSUMER span). Only a SERVER
span's `http.route` names a workload: the SDK's CLIENT span says `http.route=/v1/messages`,
the API's path, which says nothing about the application.

**One call, one record.** The anthropic SDK (≥ 2.x) traces itself (scope
`com.anthropic.sdk.python`, span `anthropic.messages.create`), so a team that also installed
OpenLLMetry, OpenInference or Logfire has two sibling spans for every call. Spans are one call
when they share a parent, come from different producers, and either carry the same
`gen_ai.response.id` or (when one lacks it) ask the same model over overlapping times. Their
evidence is merged into one record:

- tokens: Anthropic's own usage object wins (Logfire's `gen_ai.usage.raw`, exact with the TTL
  split), then the SDK's span (the API's counts, input inclusive of cache, TTL split in
  `anthropic.usage.cache_creation.*`), then the instrumentation's (OpenLLMetry counts one
  output token more on streamed calls);
- streaming and time to first chunk: the SDK's span (it sets `gen_ai.request.stream` if and
  only if the call streamed; OpenLLMetry records nothing for `messages.stream()`);
- the stop reason and service tier: the SDK's (the API's values);
- user, session, feature, workflow and tags: whichever span has them (the instrumentation's).

The same span twice (same `traceId` and `spanId`: collector retries, overlapping exports, the
same file given twice) is counted once.

Speed: lines are decoded with msgspec into typed structs that keep only what the analysis
reads, and a span's attributes are decoded only when a byte search finds a key the analysis
reads. A large file is cut at line ends into chunks that worker processes decode on every core
(an uncompressed file: each reads its own byte range). A chunk settles the calls whose
ancestors it holds (siblings merged, context applied); this process holds them one chunk more
for a sibling exported in the next batch, and keeps the rest until their ancestors come.
Span contexts are kept for a window of the file, and taken spans by hash: memory stays flat.
"""

from __future__ import annotations

import base64
import gc
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import msgspec

from nowait.analyze.readers import (
    EARLIEST,
    LATEST,
    MAGIC,
    RECORD_ERRORS,
    BadRecords,
    compression_of,
    number,
    open_input,
    seconds,
    stored_tell,
)
from nowait.analyze.records import Record, split_input

SERVER, CLIENT, CONSUMER = 2, 3, 5
# OTLP JSON may spell the span kind as its enum name, and ConsoleSpanExporter as `SpanKind.X`.
KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
LLM_OPERATIONS = {"chat", "text_completion", "completion"}
SDK_SCOPE = "com.anthropic.sdk.python"  # the SDK's own spans (…python.bedrock etc. too)
# Logfire counts cache tokens inside gen_ai.usage.input_tokens from v4.31.0 (pydantic/logfire
# #1812, 2026-03-27); before it, input_tokens was Anthropic's own, uncached count.
LOGFIRE_INCLUSIVE_FROM = (4, 31, 0)
# OpenInference names the span after the SDK method: `messages.stream` streamed.
STREAM_SPANS = {"messages.stream", "Messages.stream", "beta.messages.stream"}
PROVIDER_KEYS = frozenset(("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"))
# Attributes of any span that say what started the work (kept for every span of a file).
CONTEXT_KEYS = frozenset(
    (
        "http.route",
        "url.path",
        "messaging.system",
        "messaging.destination.name",
        "faas.trigger",
        "faas.cron",
        "user.id",
        "session.id",
    )
)
# The keys as they appear in the JSON text, to find the spans worth decoding.
PROVIDER_NEEDLE = re.compile(
    b'"(' + b"|".join(re.escape(k.encode()) for k in PROVIDER_KEYS) + b')"'
)
ANY_NEEDLE = re.compile(
    b'"(' + b"|".join(re.escape(k.encode()) for k in PROVIDER_KEYS | CONTEXT_KEYS) + b')"'
)
RESOURCE_KEYS = frozenset(
    ("service.name", "k8s.cronjob.name", "k8s.job.name", "faas.trigger", "faas.cron")
)
# Waiting calls are looked at every this many spans (see `_State`); span contexts are kept
# for CONTEXT_SWEEPS sweeps (a trace's spans are exported close together), so memory stays
# flat whatever the file's size.
SWEEP_EVERY = 50_000
CONTEXT_SWEEPS = 4
CHUNK_BYTES = 8 << 20  # a chunk of lines decoded at once (by a worker for large files)
PARALLEL_FROM = 32 << 20  # smaller files are decoded in this process: no start-up to pay
EARLIEST_NS, LATEST_NS = (int(moment.timestamp()) * 10**9 for moment in (EARLIEST, LATEST))
PROTO_MAGIC = 0x0A  # TracesData field 1 (resource_spans), length-delimited
# What decoding a malformed line raises: msgspec's own errors (a wrong shape is its
# ValidationError, with the path to the value), and RecursionError for JSON nested too deep.
DECODE_ERRORS = (msgspec.DecodeError, RecursionError)
# What turning a decoded span into a record raises on malformed values: a bad record.
SPAN_ERRORS = (*RECORD_ERRORS, *DECODE_ERRORS)

# ---- typed decoding: only the fields the analysis reads --------------------------------------


class _KeyValue(msgspec.Struct, gc=False):
    key: str
    value: dict[str, Any] | None = None  # the AnyValue: one of its kinds, set


class _Span(msgspec.Struct, gc=False):
    traceId: str = ""
    spanId: str = ""
    parentSpanId: str | None = None
    name: str = ""
    kind: int | str | None = None
    startTimeUnixNano: int | str = 0
    endTimeUnixNano: int | str | None = None
    # Left undecoded: most spans are not LLM spans and carry no context, and a byte search
    # tells which are (see `_scan_span`).
    attributes: msgspec.Raw = msgspec.Raw(b"[]")


class _Scope(msgspec.Struct, gc=False):
    name: str = ""
    version: str = ""


class _ScopeSpans(msgspec.Struct, gc=False):
    scope: _Scope | None = None
    spans: list[_Span] = []


class _Resource(msgspec.Struct, gc=False):
    attributes: list[_KeyValue] = []


class _ResourceSpans(msgspec.Struct, gc=False):
    resource: _Resource | None = None
    scopeSpans: list[_ScopeSpans] = []


class _TracesData(msgspec.Struct, gc=False):
    resourceSpans: list[_ResourceSpans] | None = None


_LINE = msgspec.json.Decoder(_TracesData)
_ATTRIBUTES = msgspec.json.Decoder(list[_KeyValue])
_DOCUMENT = msgspec.json.Decoder(_TracesData | list[_TracesData])


def any_value(value: Any) -> Any:
    """An OTLP AnyValue (decoded JSON) as a Python value."""
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


def attributes(items: Any) -> dict[str, Any]:
    return {
        str(item["key"]): any_value(item.get("value"))
        for item in items or ()
        if isinstance(item, dict) and "key" in item
    }


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


# ---- what a chunk of the file yields ----------------------------------------------------------


class _Context(NamedTuple):
    """A span as its descendants see it: its parent, kind and the attributes that say what
    started the work (None when it has none). A tuple: cheap to send and to keep."""

    parent: str | None
    kind: int
    attrs: dict[str, Any] | None


@dataclass(slots=True)
class _Call:
    """One LLM span, before its siblings and ancestors are known."""

    record: Record
    trace: str
    span_id: str
    parent: str | None
    start_ns: int
    end_ns: int
    response_id: str | None
    resource: dict[str, Any]
    sdk: bool  # the anthropic SDK's own span
    says_stream: bool  # the producer sets gen_ai.request.stream iff the call streamed
    exact_usage: bool  # Anthropic's own usage object, TTL split included
    stop_reason: str | None = None
    keys: tuple[str, ...] = ()  # trace + span id of each span merged into this call
    producers: frozenset[str] = frozenset()  # scope@version of each span merged into it


_Group = tuple[str, str | None]  # (trace, parent): the siblings that may be one call
_Piece = Any  # what a worker is given: the bytes of whole lines, or where they are in the file


@dataclass(slots=True)
class _Chunk:
    contexts: list[tuple[str, _Context]] = field(default_factory=list)  # (trace+span, context)
    calls: list[_Call] = field(default_factory=list)  # waiting for spans of other chunks
    settled: list[_Call] = field(default_factory=list)  # merged, with their context
    says_stream: set[str] = field(default_factory=set)  # producers that set the stream flag
    bad: list[tuple[int, str]] = field(default_factory=list)
    spans: int = 0
    size: int = 0  # bytes of the file this chunk covers
    lines: int = 0  # the chunk's lines, to number the next chunk's
    stored: int = 0  # bytes of the file on disk it covers (compressed, if it is)


def _kv(items: list[_KeyValue], keys: frozenset[str]) -> dict[str, Any]:
    return {kv.key: _plain(kv.value) for kv in items if kv.key in keys}


def _plain(value: dict[str, Any] | None) -> Any:
    """An AnyValue as decoded JSON, as a Python value (the fast path of `any_value`)."""
    for kind, item in (value or {}).items():
        if kind == "intValue":
            return int(item)
        if kind in ("arrayValue", "kvlistValue"):
            return any_value(value)
        return item
    return None


def _scan_lines(text: bytes, path: str) -> _Chunk:
    """Decode a chunk of whole JSON lines (numbered from 1). Runs in a worker process for
    large files."""
    chunk = _Chunk(size=len(text), lines=text.count(b"\n"))
    for number_, line in enumerate(text.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            document = _LINE.decode(line)
        except msgspec.ValidationError as exc:
            chunk.bad.append((number_, f"not an OTLP TracesData object ({exc})"))
            continue
        except DECODE_ERRORS as exc:
            chunk.bad.append((number_, f"not valid JSON ({_reason(exc)})"))
            continue
        _scan_document(document, number_, path, chunk)
    return _settle(chunk)


def _scan_document(document: _TracesData, line: int, path: str, chunk: _Chunk) -> None:
    if document.resourceSpans is None:
        chunk.bad.append((line, "not an OTLP TracesData object (expected resourceSpans)"))
        return
    for resource_spans in document.resourceSpans:
        resource_items = resource_spans.resource.attributes if resource_spans.resource else []
        try:
            resource = _texts(_kv(resource_items, RESOURCE_KEYS))
        except SPAN_ERRORS as exc:
            chunk.bad.append((line, f"resource: {_reason(exc)}"))
            continue
        for scope_spans in resource_spans.scopeSpans:
            scope = scope_spans.scope or _Scope()
            producer = f"{scope.name}@{scope.version}"
            sdk = scope.name.startswith(SDK_SCOPE)
            for span in scope_spans.spans:
                chunk.spans += 1
                try:
                    _scan_span(span, resource, producer, sdk, line, path, chunk)
                except SPAN_ERRORS as exc:
                    chunk.bad.append((line, f"span {span.spanId[:32] or '?'}: {_reason(exc)}"))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc) or type(exc).__name__


def _scan_span(
    span: _Span,
    resource: dict[str, Any],
    producer: str,
    sdk: bool,
    line: int,
    path: str,
    chunk: _Chunk,
) -> None:
    trace, span_id = _hex_id(span.traceId), _hex_id(span.spanId)
    parent = _hex_id(span.parentSpanId) if span.parentSpanId else None
    kind = span_kind(span.kind)
    raw = bytes(span.attributes)
    if PROVIDER_NEEDLE.search(raw) is None:
        items = _ATTRIBUTES.decode(raw) if ANY_NEEDLE.search(raw) else []
        context = _texts(_kv(items, CONTEXT_KEYS)) if items else None
        chunk.contexts.append((trace + span_id, _Context(parent, kind, context or None)))
        return
    # Each AnyValue's one value, as it is: ints stay decimal strings (`number` reads them) and
    # arrays stay {"values": [...]} (`_listed` reads them) — a hot loop, kept in C.
    attrs = {kv.key: v for kv in _ATTRIBUTES.decode(raw) if kv.value for v in kv.value.values()}
    context = _texts({key: attrs[key] for key in CONTEXT_KEYS & attrs.keys()})
    chunk.contexts.append((trace + span_id, _Context(parent, kind, context or None)))
    if not _is_anthropic_llm(attrs):
        return
    response_id = _text(attrs.get("gen_ai.response.id"), "gen_ai.response.id") or None
    start_ns = _nanos(span.startTimeUnixNano, "startTimeUnixNano")
    end_ns = _nanos(span.endTimeUnixNano, "endTimeUnixNano") if span.endTimeUnixNano else start_ns
    record = Record(
        source="otlp",
        producer=producer,
        record_id=response_id or span_id,
        start_time=_time(start_ns),
        end_time=_time(end_ns) if span.endTimeUnixNano else None,
        model=_first_text(
            attrs,
            "gen_ai.response.model",
            "gen_ai.request.model",
            "llm.model_name",
            "llm.response.model_name",
        )
        or "unknown",
        trace_id=trace,
        file=path,
        line=line,
        service=resource.get("service.name"),
    )
    exact = _tokens(record, attrs, producer)
    _interaction(record, attrs, span.name)
    chunk.calls.append(
        _Call(
            record,
            trace,
            span_id,
            parent,
            start_ns,
            end_ns,
            response_id,
            resource,
            sdk,
            "gen_ai.request.stream" in attrs or sdk,
            exact,
            _first_text(attrs, "anthropic.message.stop_reason"),
            (trace + span_id,),
            frozenset((producer,)),
        )
    )
    if "gen_ai.request.stream" in attrs or sdk:
        chunk.says_stream.add(producer)


def _hex_id(value: str) -> str:
    """Trace and span ids as hex; OTLP JSON says hex, but Tempo and plain protojson write
    base64 (24 or 12 characters)."""
    if len(value) in (24, 12) and not all(c in "0123456789abcdefABCDEF" for c in value):
        try:
            return base64.b64decode(value, validate=True).hex()
        except ValueError:
            return value
    return value


def _text(value: Any, key: str) -> Any:
    """A text attribute as a string (a number is written as one), or None when absent."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{key}: expected a string, got {type(value).__name__}")


def _texts(attrs: dict[str, Any]) -> dict[str, Any]:
    if all(type(value) is str for value in attrs.values()):
        return attrs  # the common case, kept cheap (a hot path)
    return {key: _text(value, key) for key, value in attrs.items()}


def _first_text(attrs: dict[str, Any], *names: str) -> str | None:
    """The first of the text attributes that is set (a hot path: no generator)."""
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value if type(value) is str else _text(value, name)
    return None


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


def _tokens(record: Record, attrs: dict[str, Any], producer: str) -> bool:
    """Fill the four input buckets and the output; True when they are Anthropic's own exact
    numbers (TTL split included)."""
    raw = attrs.get("gen_ai.usage.raw")
    if isinstance(raw, dict):  # a kvlistValue
        raw = any_value({"kvlistValue": raw})
    if isinstance(raw, str):
        raw = msgspec.json.decode(raw)
    if isinstance(raw, dict):  # Logfire keeps Anthropic's own usage object: exact, TTL split
        creation = raw.get("cache_creation") or {}
        record.input_uncached = number(raw.get("input_tokens"))
        record.cache_read = number(raw.get("cache_read_input_tokens"))
        record.cache_write_5m = number(
            creation.get("ephemeral_5m_input_tokens", raw.get("cache_creation_input_tokens"))
        )
        record.cache_write_1h = number(creation.get("ephemeral_1h_input_tokens"))
        record.output_tokens = number(raw.get("output_tokens"))
        record.service_tier = _text(raw.get("service_tier"), "gen_ai.usage.raw.service_tier")
        record.token_rule = "anthropic usage object"
        return True
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
            "gen_ai.usage.cache_write.input_tokens",  # the anthropic SDK's name
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
    logfire = producer.startswith("logfire@")
    includes = _logfire_includes_cache(producer) if logfire else True
    record.input_uncached, rule = split_input(reported, read, write, includes_cache=includes)
    if logfire and includes is not None:
        rule += f" (logfire {'≥' if includes else '<'} 4.31, pydantic/logfire#1812)"
    record.cache_read = read
    record.output_tokens = number(
        _first(
            attrs,
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
        )
    )
    record.service_tier = _first_text(attrs, "anthropic.response.service_tier")
    five = attrs.get("anthropic.usage.cache_creation.ephemeral_5m_input_tokens")
    hour = attrs.get("anthropic.usage.cache_creation.ephemeral_1h_input_tokens")
    if five is not None or hour is not None:  # the SDK's span: the API's TTL split
        record.cache_write_5m, record.cache_write_1h = number(five), number(hour)
        record.token_rule = rule + ", cache-write TTL from the SDK"
        return True
    record.cache_write_5m = write
    record.token_rule = rule + (", cache-write TTL unknown: priced as 5m" if write else "")
    return False


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
    if stream is None and isinstance(attrs.get("llm.invocation_parameters"), str):
        stream = msgspec.json.decode(attrs["llm.invocation_parameters"]).get("stream")
    if stream is None and name in STREAM_SPANS:
        stream = True
    ttft = attrs.get("gen_ai.response.time_to_first_chunk")
    record.ttft_s = seconds(ttft) if ttft is not None else None
    if stream is None and ttft is not None:
        stream = True  # a first chunk was timed: it streamed
    if isinstance(stream, str):
        stream = stream.lower() == "true"
    record.stream = bool(stream) if stream is not None else None
    props = "traceloop.association.properties."
    record.user_id = _first_text(attrs, "user.id", props + "user_id", "enduser.id")
    record.session_id = _first_text(
        attrs, "session.id", "gen_ai.conversation.id", props + "session_id"
    )
    record.feature = _first_text(attrs, props + "feature", "feature")
    record.workflow = _first_text(attrs, "traceloop.workflow.name", "langfuse.trace.name")
    tags = _listed(attrs.get("tag.tags"))
    record.tags = ",".join(map(str, tags)) if isinstance(tags, list) else _text(tags, "tag.tags")
    reasons = _listed(attrs.get("gen_ai.response.finish_reasons"))
    reason = reasons[0] if isinstance(reasons, list) and reasons else None
    record.finish_reason = _first_text(attrs, "anthropic.message.stop_reason") or _text(
        reason, "gen_ai.response.finish_reasons"
    )


def _listed(value: Any) -> Any:
    """An arrayValue's values as a list; anything else as it is."""
    return any_value({"arrayValue": value}) if isinstance(value, dict) else value


def _nanos(value: int | str | None, field: str) -> int:
    """Nanoseconds since the epoch (a decimal string in OTLP JSON), checked plausible."""
    if type(value) is str and not (len(value) < 25 and value.isdigit() and value.isascii()):
        raise ValueError(f"{field}: {value[:30]!r} is not a time in nanoseconds")
    nanos = int(value or 0)
    if not EARLIEST_NS <= nanos < LATEST_NS:
        raise ValueError(f"{field}: {nanos} ns is not a plausible time (2020 to 2100)")
    return nanos


def _time(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


# ---- the file: chunks in, records out -----------------------------------------------------


def read_otlp(
    path: Path,
    bad: BadRecords,
    on_bytes: Callable[[int], None] | None = None,
    seen: set[int] | None = None,
) -> Iterator[Record]:
    """Every Anthropic call of an OTLP file, once. `on_bytes(n)` is told as each `n` bytes of
    the file (compressed, if it is) have been read; `seen`, shared by the files of one
    analysis, holds the spans already taken (overlapping exports count once)."""
    state = _State(set() if seen is None else seen)
    before = 0  # lines in the chunks before this one
    # The reader makes millions of small objects and no cycles: the cyclic collector would
    # spend more time walking them than the reading takes (measured: 2.6×), so it rests.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for chunk in _chunks(path, on_bytes):
            for line, message in chunk.bad:
                bad.add(path, before + line, message)
            for call in (*chunk.settled, *chunk.calls):
                call.record.line += before
            before += chunk.lines
            yield from state.add(chunk)
        yield from state.finish()
    finally:
        if collecting:
            gc.enable()


def _chunks(path: Path, on_bytes: Callable[[int], None] | None) -> Iterator[_Chunk]:
    """Chunks of the file, decoded; line numbers in each count from 1 (see `_State.add`)."""
    if is_proto(path):
        yield from _proto_chunks(path, on_bytes)
        return
    compressed = compression_of(path) != "none"
    with open_input(path) as binary:
        tell = stored_tell(binary)  # an archive: its compressed bytes, as the file's size
        head = binary.read(CHUNK_BYTES)
        first = head.lstrip()[:1]
        if first == b"[" or (first == b"{" and not _first_line_parses(head)):
            yield _document(head + binary.read(), str(path))  # one JSON document, pretty or not
            _report(on_bytes, tell, 0)
            return
        size = path.stat().st_size
        if size < PARALLEL_FROM:
            done = 0
            for piece in _line_pieces(head, binary):
                yield _scan_lines(piece, str(path))
                done = _report(on_bytes, tell, done)
            return
        if not compressed:  # not compressed: each worker reads its own part of the file
            yield from _parallel(_ranges(path, size), _scan_range, str(path), on_bytes)
            return
        done = 0  # compressed: this process reads, and the workers get the lines
        for chunk in _parallel(_line_pieces(head, binary), _scan_lines, str(path), None):
            yield chunk
            done = _report(on_bytes, tell, done)


def _parallel(
    pieces: Iterator[_Piece],
    scan: Callable[[_Piece, str], _Chunk],
    path: str,
    on_bytes: Callable[[int], None] | None,
) -> Iterator[_Chunk]:
    """Both cores decode chunks while this process links them; at most a few chunks are in
    flight, so memory stays bounded whatever the file's size."""
    workers = max(2, min(4, os.cpu_count() or 2))
    with ProcessPoolExecutor(workers, initializer=gc.disable) as pool:  # see read_otlp
        flight: list[Future[_Chunk]] = []
        for piece in pieces:
            flight.append(pool.submit(scan, piece, path))
            if len(flight) > workers + 1:
                yield _told(flight.pop(0).result(), on_bytes)
        for future in flight:
            yield _told(future.result(), on_bytes)


def _told(chunk: _Chunk, on_bytes: Callable[[int], None] | None) -> _Chunk:
    if on_bytes is not None:
        on_bytes(chunk.stored)
    return chunk


def _ranges(path: Path, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of chunks of whole lines: each ends just after a line end."""
    with path.open("rb") as raw:
        start = 0
        while start < size:
            raw.seek(min(start + CHUNK_BYTES, size))
            tail = raw.readline()  # to the end of the line the cut fell in
            end = min(raw.tell(), size) if tail else size
            yield start, end
            start = end


def _scan_range(span: tuple[int, int], path: str) -> _Chunk:
    """A worker reads its own part of an uncompressed file: nothing crosses a pipe."""
    start, end = span
    with open(path, "rb") as raw:
        raw.seek(start)
        chunk = _scan_lines(raw.read(end - start), path)
    chunk.stored = end - start
    return chunk


def _line_pieces(head: bytes, binary: IO[bytes]) -> Iterator[bytes]:
    """Chunks of whole lines."""
    rest = head
    while True:
        more = binary.read(CHUNK_BYTES)
        if not more:
            if rest:
                yield rest
            return
        cut = more.rfind(b"\n")
        if cut < 0:
            rest += more
            continue
        yield rest + more[: cut + 1]
        rest = more[cut + 1 :]


def _first_line_parses(head: bytes) -> bool:
    """Whether the first line is a line of JSON Lines rather than the start of a document
    spread over lines: it parses, or (a broken record) it is a whole object still."""
    first = head.split(b"\n", 1)[0]
    try:
        msgspec.json.decode(first)
    except DECODE_ERRORS:
        if b"\n" not in head:
            return True  # a long first line cut by the head: still JSON Lines
        return first.rstrip().endswith(b"}")  # a whole line that is a broken record
    return True


def _document(text: bytes, path: str) -> _Chunk:
    chunk = _Chunk(size=len(text))
    try:
        decoded = _DOCUMENT.decode(text)
    except DECODE_ERRORS as exc:
        chunk.bad.append((1, f"not an OTLP TracesData document ({_reason(exc)})"))
        return chunk
    for number_, document in enumerate(decoded if isinstance(decoded, list) else [decoded], 1):
        _scan_document(document, number_, path, chunk)
    return _settle(chunk)


def _report(on_bytes: Callable[[int], None] | None, position: Callable[[], int], done: int) -> int:
    if on_bytes is None:
        return done
    now = position()
    if now > done:
        on_bytes(now - done)
    return max(now, done)


# ---- protobuf (the Collector's file exporter, `format: proto`) -------------------------------


def is_proto(path: Path) -> bool:
    """4-byte big-endian length, then a TracesData (field 1, length-delimited). Not an
    archive: gzip's header (1f 8b, …, then the time it was made) can look like one."""
    try:
        with path.open("rb") as raw:
            head = raw.read(5)
    except OSError:
        return False
    # A text file starts with a printable character or white space, never another control
    # character (as a length's first byte: under 512 MB).
    if any(head.startswith(magic) for magic in MAGIC):
        return False
    return len(head) == 5 and head[4] == PROTO_MAGIC and head[0] < 0x20 and head[0] not in b"\t\n\r"


def _proto_chunks(path: Path, on_bytes: Callable[[int], None] | None) -> Iterator[_Chunk]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

    with path.open("rb") as raw:
        message = 0
        while header := raw.read(4):
            message += 1
            chunk = _Chunk(size=4)
            if len(header) < 4:
                chunk.bad.append((message, "a truncated length prefix"))
                yield chunk
                return
            size = int.from_bytes(header, "big")
            body = raw.read(size)
            chunk.size += len(body)
            if len(body) < size:
                chunk.bad.append((message, f"a truncated message ({len(body)} of {size} bytes)"))
                yield chunk
                return
            try:
                data = TracesData.FromString(body)
            except DecodeError as exc:
                chunk.bad.append((message, f"not an OTLP TracesData message ({exc})"))
            else:
                _scan_document(_from_proto(data), message, str(path), chunk)
            if on_bytes is not None:
                on_bytes(chunk.size)
            yield _settle(chunk)


def _from_proto(data: Any) -> _TracesData:
    """The protobuf message as the typed JSON structs (ids in hex, ints as ints)."""
    return _TracesData(
        [
            _ResourceSpans(
                _Resource(_proto_attrs(rs.resource.attributes)),
                [
                    _ScopeSpans(
                        _Scope(ss.scope.name, ss.scope.version),
                        [
                            _Span(
                                s.trace_id.hex(),
                                s.span_id.hex(),
                                s.parent_span_id.hex() or None,
                                s.name,
                                int(s.kind),
                                int(s.start_time_unix_nano),
                                int(s.end_time_unix_nano) or None,
                                msgspec.Raw(msgspec.json.encode(_proto_attrs(s.attributes))),
                            )
                            for s in ss.spans
                        ],
                    )
                    for ss in rs.scope_spans
                ],
            )
            for rs in data.resource_spans
        ]
    )


def _proto_attrs(items: Any) -> list[_KeyValue]:
    return [_KeyValue(kv.key, _proto_value(kv.value)) for kv in items]


def _proto_value(value: Any) -> dict[str, Any]:
    """A protobuf AnyValue as its OTLP JSON form (arrays of scalars; nothing deeper is read)."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return {"arrayValue": {"values": [_proto_value(v) for v in value.array_value.values]}}
    names = {
        "string_value": "stringValue",
        "bool_value": "boolValue",
        "int_value": "intValue",
        "double_value": "doubleValue",
    }
    return {names[which]: getattr(value, which)} if which in names else {}


# ---- linking spans to their ancestors and siblings -------------------------------------------


def _settle(chunk: _Chunk) -> _Chunk:
    """Merge and place the calls whose ancestors are all in this chunk (the common case: a
    trace's spans are exported together); the others wait for the rest of the file."""
    contexts = dict(chunk.contexts)
    groups: dict[_Group, list[_Call]] = {}
    taken: set[str] = set()
    for call in chunk.calls:
        if call.keys[0] not in taken:  # the same span twice in a chunk
            taken.add(call.keys[0])
            groups.setdefault((call.trace, call.parent), []).append(call)
    chunk.calls = []
    for (trace, parent), calls in groups.items():
        if not _complete(contexts, trace, parent):
            chunk.calls.extend(calls)
            continue
        for call in _merge(calls, chunk.says_stream):
            _apply_context(call.record, _chain(contexts, call), call.resource)
            chunk.settled.append(call)
    return chunk


def _chain(contexts: dict[str, _Context], call: _Call) -> list[_Context]:
    """The span's own context, then its parent's, up to the root as far as known."""
    chain: list[_Context] = []
    parent = call.span_id
    while parent and len(chain) < 64:
        context = contexts.get(call.trace + parent)
        if context is None:
            break
        chain.append(context)
        parent = context.parent or ""
    return chain


def _complete(contexts: dict[str, _Context], trace: str, parent: str | None) -> bool:
    """Whether every ancestor from `parent` up to the root is known."""
    steps = 0
    while parent and steps < 64:
        context = contexts.get(trace + parent)
        if context is None:
            return False
        parent, steps = context.parent, steps + 1
    return True


class _State:
    """The file so far: contexts for ancestors, calls waiting for siblings or ancestors.

    Calls settled in their chunk are held for one more chunk, in case a sibling was exported
    in the next batch; calls still missing an ancestor leave once it comes and a whole sweep
    has passed since their last sibling came (or at the end of the file)."""

    def __init__(self, seen: set[int]) -> None:
        self.contexts: dict[str, _Context] = {}
        self.recent: deque[tuple[int, list[str]]] = deque()  # (sweep, keys) of each chunk
        # hash of trace + span id of every LLM span taken (a 64-bit hash: two different spans
        # share one with a chance under 1e-6 in a file of 5 M calls)
        self.seen = seen
        self.groups: dict[_Group, list[_Call]] = {}
        self.waiting: dict[_Group, int] = {}  # group → sweep its last call came in
        self.held: dict[_Group, list[_Call]] = {}  # settled in the last chunk
        self.holding: dict[_Group, list[_Call]] = {}  # settled in this chunk
        self.sweep = 0
        self.spans_since = 0
        self.says_stream: set[str] = set()

    def add(self, chunk: _Chunk) -> Iterator[Record]:
        self.contexts.update(chunk.contexts)
        self.recent.append((self.sweep, [key for key, _ in chunk.contexts]))
        while self.recent and self.recent[0][0] < self.sweep - CONTEXT_SWEEPS:
            for key in self.recent.popleft()[1]:
                self.contexts.pop(key, None)
        self.says_stream |= chunk.says_stream
        for settled, calls in ((True, chunk.settled), (False, chunk.calls)):
            for call in calls:
                hashes = [hash(key) for key in call.keys]
                if not self.seen.isdisjoint(hashes):
                    continue  # the same span twice: a retried or overlapping export
                self.seen.update(hashes)
                self._place(call, settled=settled)
        yield from self._release(self.held)
        self.held, self.holding = self.holding, {}
        self.spans_since += chunk.spans
        if self.spans_since >= SWEEP_EVERY:
            self.spans_since = 0
            self.sweep += 1
            yield from self._emit(final=False)

    def _place(self, call: _Call, *, settled: bool) -> None:
        group = (call.trace, call.parent)
        if settled and group not in self.groups and group not in self.held:
            self.holding.setdefault(group, []).append(call)
            return
        waiting = self.groups.setdefault(group, [])
        waiting.extend(self.held.pop(group, []))
        waiting.extend(self.holding.pop(group, []))
        waiting.append(call)
        self.waiting[group] = self.sweep

    def _release(self, held: dict[_Group, list[_Call]]) -> Iterator[Record]:
        for calls in held.values():
            for call in calls:
                if call.record.stream is None and self.says_stream & call.producers:
                    call.record.stream = False
                yield call.record

    def finish(self) -> Iterator[Record]:
        yield from self._release(self.held)
        yield from self._release(self.holding)
        yield from self._emit(final=True)

    def _emit(self, *, final: bool) -> Iterator[Record]:
        for group in list(self.waiting):
            if not final and (
                self.waiting[group] >= self.sweep - 1 or not _complete(self.contexts, *group)
            ):
                continue
            del self.waiting[group]
            for call in _merge(self.groups.pop(group), self.says_stream):
                _apply_context(call.record, _chain(self.contexts, call), call.resource)
                yield call.record


def _merge(calls: list[_Call], says_stream: set[str]) -> list[_Call]:
    """Siblings that describe one call become one (the rule in the module docstring)."""
    calls.sort(key=lambda c: c.start_ns)
    merged: list[list[_Call]] = []
    for call in calls:
        for members in merged:
            if _same_call(members, call):
                members.append(call)
                break
        else:
            merged.append([call])
    out: list[_Call] = []
    for members in merged:
        for call in members:
            if call.record.stream is None and says_stream & call.producers:
                call.record.stream = False
        out.append(_one(members) if len(members) > 1 else members[0])
    return out


def _same_call(members: list[_Call], call: _Call) -> bool:
    first = members[0]
    if first.parent is None or any(m.producers & call.producers for m in members):
        return False  # one producer's spans are separate calls
    if first.response_id and call.response_id:
        return first.response_id == call.response_id
    overlap = call.start_ns <= max(m.end_ns for m in members) and call.end_ns >= first.start_ns
    return overlap and _family(first.record.model) == _family(call.record.model)


def _family(model: str) -> str:
    """A dated model id and its alias are the same model (`claude-x-4-5-20250929`)."""
    head, _, tail = model.rpartition("-")
    return head if tail.isdigit() and len(tail) == 8 else model


def _one(members: list[_Call]) -> _Call:
    sdk = next((m for m in members if m.sdk), None)
    tokens = next((m for m in members if m.exact_usage), sdk or members[0])
    base = tokens.record  # its tokens, and the rest filled from its siblings
    records = [m.record for m in members]
    for name in ("user_id", "session_id", "feature", "workflow", "tags", "finish_reason"):
        if getattr(base, name) is None:
            setattr(base, name, next((getattr(r, name) for r in records if getattr(r, name)), None))
    if sdk is not None:
        base.stream, base.ttft_s = sdk.record.stream, sdk.record.ttft_s
        base.service_tier = sdk.record.service_tier or base.service_tier
        base.finish_reason = sdk.stop_reason or base.finish_reason
    else:
        streams = [r.stream for r in records if r.stream is not None]
        base.stream = any(streams) if streams else None
        base.ttft_s = next((r.ttft_s for r in records if r.ttft_s is not None), None)
    tokens.producers = frozenset().union(*(m.producers for m in members))
    base.producer = "+".join(sorted(tokens.producers))
    base.token_rule += f" ({tokens.record.producer.partition('@')[0]} of {len(members)} spans)"
    base.start_time = min(r.start_time for r in records)
    base.record_id = next((m.response_id for m in members if m.response_id), base.record_id)
    tokens.keys = tuple(key for m in members for key in m.keys)
    tokens.response_id = next((m.response_id for m in members if m.response_id), None)
    if sdk is not None:  # what a later sibling would be merged by
        tokens.sdk, tokens.stop_reason = True, sdk.stop_reason
    return tokens


def _apply_context(record: Record, ancestors: list[_Context], resource: dict[str, Any]) -> None:
    """The trigger: the resource first (a CronJob pod runs nothing else), then the nearest
    span of the chain (the LLM span itself, then its ancestors) that says what started it.
    A route counts on a SERVER span (or one whose kind is not recorded), never on a CLIENT."""
    if (
        resource.get("k8s.cronjob.name")
        or resource.get("faas.trigger") == "timer"
        or resource.get("faas.cron")
    ):
        record.trigger = "cron"
        record.workflow = record.workflow or resource.get("k8s.cronjob.name")
        return
    for context in ancestors:
        attrs = context.attrs or {}
        faas = attrs.get("faas.trigger")
        if faas == "timer" or "faas.cron" in attrs:
            record.trigger = "cron"
            return
        if faas in ("pubsub", "datasource"):
            record.trigger = "queue"
            return
        if context.kind == CONSUMER or "messaging.system" in attrs:
            record.trigger = "queue"
            return
        server_side = context.kind in (SERVER, 0)
        if context.kind == SERVER or (server_side and "http.route" in attrs) or faas == "http":
            record.trigger = "http"
            record.http_route = attrs.get("http.route") or attrs.get("url.path")
            record.user_id = record.user_id or attrs.get("user.id")
            return
    trigger = resource.get("faas.trigger")
    if trigger == "http":
        record.trigger = "http"
    elif trigger in ("pubsub", "datasource"):
        record.trigger = "queue"
    elif resource.get("k8s.job.name"):
        record.trigger = "script"
