"""Optional export of a finished run to an OpenTelemetry collector (OTLP/HTTP, protobuf).

Off unless ``WORKBENCH_OTLP_ENDPOINT`` is set; then ``core.tracing`` calls ``export_trace`` when a
trajectory ends, so a team can also read runs in Phoenix, Langfuse or Jaeger. Spans follow the
OpenTelemetry GenAI semantic conventions: an ``attempt`` (one provider call) is a ``chat`` client
span, an ``agent`` span is ``invoke_agent``, a ``tool`` span is ``execute_tool``; the other kinds
(stage, routing, budget, cache, error) are internal spans named as we name them. The trajectory
itself is the root span, and spans without a parent hang under it.

Ids are derived, not random, so exporting the same run twice gives the same trace and spans:
our trace ids are uuid4 hex (already a valid 128-bit OTel trace id), span ids are used as they
are when they are 16 hex digits, and anything else is hashed.

Prompts and outputs are decrypted and sent only with ``WORKBENCH_OTLP_INCLUDE_CONTENT=true``;
by default a collector receives metadata only (timings, tokens, cost, models, statuses).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue
from sqlalchemy import Engine, select

from core import crypto
from core.db import session_scope
from core.errors import NotFoundError, WorkbenchError
from core.models import Trajectory, TrajectoryEvent
from core.settings import Settings

SERVICE_NAME = "opusblocks-workbench"
SCOPE_NAME = "core.otel_export"
EXPORT_TIMEOUT_S = 5.0
"""How long one export may wait for the collector, seconds (it runs at the end of a run)."""

OPERATIONS = {"attempt": "chat", "agent": "invoke_agent", "tool": "execute_tool"}
"""gen_ai.operation.name by our span kind; kinds not listed are not GenAI operations."""

INPUT_KEYS = ("messages", "prompt", "input", "system", "user", "request", "arguments")
OUTPUT_KEYS = ("output", "response", "completion", "answer", "result", "text")
"""Where the sealed content of a span keeps what went in and what came out (the first key found)."""

_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class OtlpExportError(WorkbenchError):
    """The collector at WORKBENCH_OTLP_ENDPOINT did not take the spans (down, refused, or too slow)."""


def export_trace(engine: Engine, *, tenant_id: int, trace_id: str, settings: Settings) -> None:
    """Send one run and its spans to ``settings.otlp_endpoint``; nothing at all when it is unset."""
    if not settings.otlp_endpoint:
        return
    ring = crypto.key_ring(settings) if settings.otlp_include_content else None
    with session_scope(engine) as session:
        run = session.scalar(
            select(Trajectory).where(Trajectory.tenant_id == tenant_id, Trajectory.trace_id == trace_id)
        )
        if run is None:
            raise NotFoundError(f"No trajectory '{trace_id}' in tenant {tenant_id} to export.")
        events = list(
            session.scalars(
                select(TrajectoryEvent)
                .where(TrajectoryEvent.tenant_id == tenant_id, TrajectoryEvent.trace_id == trace_id)
                .order_by(TrajectoryEvent.started_at, TrajectoryEvent.id)
            )
        )
        spans = build_spans(run, events, ring=ring)
    exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, timeout=EXPORT_TIMEOUT_S)
    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()
    if result is not SpanExportResult.SUCCESS:
        raise OtlpExportError(
            f"The OTLP collector at {settings.otlp_endpoint} did not accept trace {trace_id}. Check that it is "
            "running and that WORKBENCH_OTLP_ENDPOINT is its traces URL (e.g. http://localhost:4318/v1/traces), "
            "or unset it to stop exporting."
        )


def otel_trace_id(trace_id: str) -> int:
    """The 128-bit OTel trace id of one of our trace ids (the same every time)."""
    if _HEX32.match(trace_id) and int(trace_id, 16):
        return int(trace_id, 16)
    return int.from_bytes(hashlib.sha256(f"trace:{trace_id}".encode()).digest()[:16], "big") or 1


def otel_span_id(trace_id: str, span_id: str) -> int:
    """The 64-bit OTel span id of one of our span ids within its trace (the same every time)."""
    if _HEX16.match(span_id) and int(span_id, 16):
        return int(span_id, 16)
    return int.from_bytes(hashlib.sha256(f"span:{trace_id}:{span_id}".encode()).digest()[:8], "big") or 1


def build_spans(
    run: Trajectory, events: Sequence[TrajectoryEvent], *, ring: crypto.KeyRing | None
) -> list[ReadableSpan]:
    """The run and its events as finished SDK spans; content opened with ``ring`` when one is given."""
    ids = _PlannedIds(otel_trace_id(run.trace_id))
    provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE_NAME, "opusblocks.tenant_id": run.tenant_id}),
        id_generator=ids,
        shutdown_on_exit=False,
    )
    collected = _Collect()
    provider.add_span_processor(collected)
    tracer = provider.get_tracer(SCOPE_NAME)

    root_id = otel_span_id(run.trace_id, "run")
    known = {e.span_id for e in events}
    run_start = _ns(run.started_at)
    ends = [_ns(e.started_at) + int((e.duration_ms or 0.0) * 1e6) for e in events]
    if run.ended_at is not None:
        run_end = _ns(run.ended_at)
    elif run.duration_ms is not None:
        run_end = run_start + int(run.duration_ms * 1e6)
    else:
        run_end = max([run_start, *ends])

    with ids.next(root_id):
        root = tracer.start_span(f"opusblocks.{run.kind}", start_time=run_start, attributes=_run_attributes(run))
    if run.status == "error":
        root.set_status(Status(StatusCode.ERROR, run.error_class or "error"))
    root.end(end_time=max(run_end, run_start))

    for event, end in zip(events, ends, strict=True):
        parent_id = root_id
        if event.parent_span_id and event.parent_span_id in known:
            parent_id = otel_span_id(run.trace_id, event.parent_span_id)
        parent = SpanContext(ids.trace_id, parent_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        context = trace_api.set_span_in_context(NonRecordingSpan(parent))
        attributes = _event_attributes(event)
        if ring is not None and event.content is not None:
            attributes.update(_content_attributes(event, ring))
        with ids.next(otel_span_id(run.trace_id, event.span_id)):
            span = tracer.start_span(
                _span_name(event),
                context=context,
                kind=SpanKind.CLIENT if event.kind == "attempt" else SpanKind.INTERNAL,
                start_time=_ns(event.started_at),
                attributes=attributes,
            )
        if event.status == "error":
            span.set_status(Status(StatusCode.ERROR, event.error_class or "error"))
        span.end(end_time=end)
    provider.shutdown()
    return collected.spans


class _PlannedIds(IdGenerator):
    """Hands the SDK the ids we derived, one span at a time, instead of random ones."""

    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id
        self._span_id: int | None = None

    @contextmanager
    def next(self, span_id: int) -> Iterator[None]:
        self._span_id = span_id
        try:
            yield
        finally:
            self._span_id = None

    def generate_span_id(self) -> int:
        if self._span_id is None:
            raise RuntimeError("a span was started without a planned id")
        return self._span_id

    def generate_trace_id(self) -> int:
        return self.trace_id


class _Collect(SpanProcessor):
    """Keeps ended spans so they go to the collector in one request (and its result can be checked)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _ns(moment: datetime) -> int:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return (aware - _EPOCH) // timedelta(microseconds=1) * 1000


def _span_name(event: TrajectoryEvent) -> str:
    # GenAI convention: "{operation} {model|agent|tool}"; other kinds keep our name.
    operation = OPERATIONS.get(event.kind)
    if operation == "chat" and event.model:
        return f"chat {event.model}"
    if operation == "invoke_agent":
        return f"invoke_agent {event.agent or event.name}"
    if operation == "execute_tool":
        return f"execute_tool {event.name}"
    return event.name


def _run_attributes(run: Trajectory) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "opusblocks.trace_id": run.trace_id,
        "opusblocks.run.kind": run.kind,
        "opusblocks.run.status": run.status,
        "opusblocks.run.calls": run.calls,
        "opusblocks.run.errors": run.errors,
        # Totals under our own names: gen_ai.usage.* on the root would be counted twice by
        # backends that add up the usage of every span.
        "opusblocks.run.input_tokens": run.input_tokens,
        "opusblocks.run.output_tokens": run.output_tokens,
    }
    for name in ("paragraph_id", "manuscript_id", "document_id", "version_id"):
        value = getattr(run, name)
        if value is not None:
            attributes[f"opusblocks.{name}"] = int(value)
    if run.cost_usd is not None:
        attributes["opusblocks.run.cost_usd"] = float(run.cost_usd)
    if run.error_class:
        attributes["error.type"] = run.error_class
    return attributes


def _event_attributes(event: TrajectoryEvent) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "opusblocks.span.kind": event.kind,
        "opusblocks.span.name": event.name,
    }
    operation = OPERATIONS.get(event.kind)
    # gen_ai.* only on the GenAI operations: a backend that sees gen_ai.request.model on a routing
    # or cache span would count it as a model call. Those spans keep the model under our names.
    prefix = "gen_ai" if operation else "opusblocks"
    if operation:
        attributes["gen_ai.operation.name"] = operation
    if event.agent:
        attributes[f"{prefix}.agent.name"] = event.agent
    if event.provider:
        attributes[f"{prefix}.provider.name"] = event.provider
        if operation:
            attributes["gen_ai.system"] = event.provider  # the older name, still what several backends read
    if event.model:
        attributes[f"{prefix}.request.model"] = event.model
    if event.kind == "tool":
        attributes["gen_ai.tool.name"] = event.name
    # Usage only where tokens were counted (the agent call; attempts carry none), so backends
    # that add up span usage do not count a call twice.
    if operation and (event.input_tokens or event.output_tokens):
        attributes["gen_ai.usage.input_tokens"] = event.input_tokens
        attributes["gen_ai.usage.output_tokens"] = event.output_tokens
    if event.prompt_version:
        attributes["opusblocks.prompt.version"] = event.prompt_version
    if event.cost_usd is not None:
        attributes["opusblocks.cost_usd"] = float(event.cost_usd)
    if event.usage_event_id is not None:
        attributes["opusblocks.usage_event_id"] = event.usage_event_id
    if event.error_class:
        attributes["error.type"] = event.error_class
    for key, value in (event.attributes or {}).items():
        attributes[f"opusblocks.{key}"] = _attribute_value(value)
    return attributes


def _attribute_value(value: Any) -> AttributeValue:
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _content_attributes(event: TrajectoryEvent, ring: crypto.KeyRing) -> dict[str, AttributeValue]:
    if not event.key_id:
        return {"opusblocks.content_error": "stored without a key id"}
    try:
        content = ring.open_json(
            event.key_id, event.content or b"", aad=crypto.span_aad(event.tenant_id, event.trace_id, event.span_id)
        )
    except crypto.DecryptionError as exc:
        # The metadata still goes out; say why the content does not.
        return {"opusblocks.content_error": str(exc)}
    if event.kind == "tool":
        keys = ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result")
    else:
        keys = ("gen_ai.input.messages", "gen_ai.output.messages")
    if not isinstance(content, dict):
        return {keys[1]: _json(content if event.kind == "tool" else _messages("assistant", content))}
    found_in = next((content[k] for k in INPUT_KEYS if k in content), None)
    found_out = next((content[k] for k in OUTPUT_KEYS if k in content), None)
    attributes: dict[str, AttributeValue] = {}
    if found_in is None and found_out is None:
        attributes["opusblocks.content"] = _json(content)
    if found_in is not None:
        attributes[keys[0]] = _json(found_in if event.kind == "tool" else _messages("user", found_in))
    if found_out is not None:
        attributes[keys[1]] = _json(found_out if event.kind == "tool" else _messages("assistant", found_out))
    return attributes


def _messages(role: str, value: Any) -> Any:
    """GenAI message form (``[{"role", "parts": [{"type": "text", "content"}]}]``) unless it already is a list."""
    if isinstance(value, list):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return [{"role": role, "parts": [{"type": "text", "content": text}]}]


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
