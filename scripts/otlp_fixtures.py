"""Regenerate the OTLP fixtures of tests/analysis/samples/ from real instrumentation.

The official `anthropic` SDK (which traces itself: scope `com.anthropic.sdk.python`) calls
nowait's emulator over HTTP; `opentelemetry-instrumentation-anthropic` (OpenLLMetry) wraps the
same client in the second run; the OpenTelemetry SDK's OTLP JSON file exporter writes the
spans. The same calls are exported twice:

    otlp-sdk.jsonl              the SDK's own spans only (one producer)
    otlp-sdk-openllmetry.jsonl  the SDK's spans and OpenLLMetry's siblings (two producers)
    otlp-sdk-openllmetry.binpb  the second export as the Collector's file exporter writes it
                                with `format: proto` (4-byte big-endian length + TracesData)

Three services, each with its own resource, make three workloads: a web app whose SERVER
spans (`POST /chat` streams, `POST /summaries` does not) hold the calls, a queue worker
(CONSUMER spans) and a k8s CronJob.

    .venv/bin/pip install opentelemetry-sdk opentelemetry-instrumentation-anthropic \
        opentelemetry-exporter-otlp-json-file opentelemetry-exporter-otlp-proto-common
    .venv/bin/python scripts/otlp_fixtures.py [tests/analysis/samples]
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anthropic
from opentelemetry.exporter.otlp.json.file import FileSpanExporter
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from nowait.emulator import EmulatorServer

MODEL = "claude-sonnet-4-5"
SERVICES = {
    "support-web": {"service.name": "support-web", "k8s.deployment.name": "support-web"},
    "ticket-worker": {"service.name": "ticket-worker", "k8s.deployment.name": "ticket-worker"},
    "digest": {"service.name": "digest", "k8s.cronjob.name": "nightly-digest"},
}


class _Collect(SpanExporter):
    """Keeps the finished spans, for the protobuf copy of the export."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _ask(client: anthropic.Anthropic, text: str, *, stream: bool, ttl: str = "5m") -> None:
    """One call with a long cached system prompt: the first writes the cache, later ones read."""
    system = [
        {
            "type": "text",
            "text": f"You answer for the {ttl} desk. " + "Be brief, exact and kind. " * 400,
            "cache_control": {"type": "ephemeral", "ttl": ttl},
        }
    ]
    params = {
        "model": MODEL,
        "max_tokens": 400,
        "system": system,
        "messages": [{"role": "user", "content": text * 20}],
    }
    if stream:
        with client.messages.stream(**params) as events:  # type: ignore[arg-type]
            events.get_final_message()
    else:
        client.messages.create(**params)  # type: ignore[arg-type]


def _web(client: anthropic.Anthropic, provider: TracerProvider) -> None:
    tracer = provider.get_tracer("opentelemetry.instrumentation.fastapi", "0.55b0")
    for n in range(3):
        attrs = {"http.route": "/chat", "http.request.method": "POST", "user.id": f"u{n}"}
        with tracer.start_as_current_span("POST /chat", kind=SpanKind.SERVER, attributes=attrs):
            _ask(client, f"help me with order {n}", stream=True)
    for n in range(2):
        attrs = {"http.route": "/summaries", "http.request.method": "POST"}
        with tracer.start_as_current_span(
            "POST /summaries", kind=SpanKind.SERVER, attributes=attrs
        ):
            _ask(client, f"summarise document {n}", stream=False)


def _worker(client: anthropic.Anthropic, provider: TracerProvider) -> None:
    tracer = provider.get_tracer("opentelemetry.instrumentation.boto3sqs", "0.55b0")
    for n in range(2):
        attrs = {"messaging.system": "aws_sqs", "messaging.destination.name": "tickets"}
        with tracer.start_as_current_span(
            "tickets process", kind=SpanKind.CONSUMER, attributes=attrs
        ):
            _ask(client, f"triage ticket {n}", stream=False)


def _cron(client: anthropic.Anthropic, provider: TracerProvider) -> None:
    tracer = provider.get_tracer("digest", "1.0")
    with tracer.start_as_current_span("nightly digest"):
        for n in range(2):
            _ask(client, f"digest part {n}", stream=False, ttl="1h")


RUNS: dict[str, Callable[[anthropic.Anthropic, TracerProvider], None]] = {
    "support-web": _web,
    "ticket-worker": _worker,
    "digest": _cron,
}


def export(base_url: str, *, openllmetry: bool) -> tuple[str, list[ReadableSpan]]:
    """Run every service's calls once; the OTLP JSON lines and the spans."""
    out, kept = io.StringIO(), _Collect()
    for service, run in RUNS.items():
        provider = TracerProvider(resource=Resource.create(SERVICES[service]))
        provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(stream=out)))
        provider.add_span_processor(SimpleSpanProcessor(kept))
        client = anthropic.Anthropic(
            api_key="sk-ant-fixture",
            base_url=base_url,
            max_retries=0,
            open_telemetry={"tracer_provider": provider},
        )
        instrumentor = AnthropicInstrumentor()
        if openllmetry:
            instrumentor.instrument(tracer_provider=provider)
        try:
            run(client, provider)
        finally:
            if openllmetry:
                instrumentor.uninstrument()
            provider.shutdown()
    return out.getvalue(), kept.spans


def proto_file(spans: Sequence[ReadableSpan]) -> bytes:
    """What the Collector's file exporter writes with `format: proto`: each TracesData
    (wire-compatible with ExportTraceServiceRequest) after its length, 4 bytes big-endian."""
    message = encode_spans(spans).SerializeToString()
    return struct.pack(">I", len(message)) + message


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/analysis/samples")
    os.environ["TRACELOOP_TRACE_CONTENT"] = "false"  # no prompts in the fixtures: small files
    with EmulatorServer() as server:  # a fresh emulator each: the same cache writes and reads
        alone, _ = export(server.base_url, openllmetry=False)
    with EmulatorServer() as server:
        both, spans = export(server.base_url, openllmetry=True)
    (target / "otlp-sdk.jsonl").write_text(alone)
    (target / "otlp-sdk-openllmetry.jsonl").write_text(both)
    (target / "otlp-sdk-openllmetry.binpb").write_bytes(proto_file(spans))
    for name in ("otlp-sdk.jsonl", "otlp-sdk-openllmetry.jsonl", "otlp-sdk-openllmetry.binpb"):
        print(f"{target / name}: {(target / name).stat().st_size} bytes")
    scopes = {
        s["scope"]["name"]
        for line in both.splitlines()
        for r in json.loads(line)["resourceSpans"]
        for s in r["scopeSpans"]
    }
    print("scopes:", ", ".join(sorted(scopes)))


if __name__ == "__main__":
    main()
