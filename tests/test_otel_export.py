"""OTLP export against a real HTTP server that receives and decodes what a collector would get."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from sqlalchemy import Engine

from core import crypto, db, tracing
from core.models import Trajectory, TrajectoryEvent
from core.otel_export import OtlpExportError, export_trace
from core.settings import Settings, get_settings, reset_settings
from core.tenancy import Identity, bootstrap
from tests.ui_helpers import seed_drafted

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@dataclass
class Collector:
    """What a collector received: one decoded request per POST, with its path and content type."""

    url: str
    status: int = 200
    requests: list[tuple[str, str, ExportTraceServiceRequest]] = field(default_factory=list)

    def spans(self) -> list[ProtoSpan]:
        return [
            span
            for _path, _type, request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


@pytest.fixture
def collector() -> Iterator[Collector]:
    received = Collector(url="")

    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.requests.append((self.path, self.headers["Content-Type"], request))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(received.status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    yield received
    server.shutdown()
    server.server_close()


def settings(**update: Any) -> Settings:
    return get_settings().model_copy(update=update)


def seed_run(engine: Engine) -> tuple[Identity, str, dict[str, str]]:
    """A drafted paragraph's run: a stage, the Writer agent, its provider attempt, a routing decision."""
    trace_id = uuid.uuid4().hex
    ids = {name: uuid.uuid4().hex[:16] for name in ("stage", "writer", "attempt", "routing")}
    ring = crypto.key_ring(get_settings())
    with db.session_scope(engine) as s:
        ident = bootstrap(s)
        s.add(
            Trajectory(
                trace_id=trace_id,
                tenant_id=ident.tenant_id,
                kind="paragraph",
                status="ok",
                paragraph_id=7,
                calls=1,
                input_tokens=300,
                output_tokens=80,
                cost_usd=0.0021,
                started_at=START,
                ended_at=START + timedelta(milliseconds=900),
                duration_ms=900.0,
            )
        )

        def event(key: str, parent: str | None, kind: str, at_ms: float, ms: float, **extra: Any) -> None:
            content = extra.pop("content", None)
            sealed = None
            if content is not None:
                sealed = ring.seal_json(content, aad=crypto.span_aad(ident.tenant_id, trace_id, ids[key]))
            s.add(
                TrajectoryEvent(
                    tenant_id=ident.tenant_id,
                    trace_id=trace_id,
                    span_id=ids[key],
                    parent_span_id=ids[parent] if parent else None,
                    kind=kind,
                    started_at=START + timedelta(milliseconds=at_ms),
                    duration_ms=ms,
                    content=sealed.blob if sealed else None,
                    key_id=sealed.key_id if sealed else None,
                    **extra,
                )
            )

        event("stage", None, "stage", 0, 880, name="draft")
        event(
            "routing",
            "writer",
            "routing",
            11,
            0,
            name="route writer",
            agent="writer",
            provider="openai",
            model="gpt-test",
            attributes={"tier": "simple"},
        )
        event(
            "writer",
            "stage",
            "agent",
            10,
            700,
            name="writer",
            agent="writer",
            prompt_version="writer@v1",
            content={"prompt": "Write about biochar and nitrate leaching."},
        )
        event(
            "attempt",
            "writer",
            "attempt",
            12,
            650,
            name="writer attempt 1",
            agent="writer",
            provider="openai",
            model="gpt-test",
            prompt_version="writer@v1",
            input_tokens=300,
            output_tokens=80,
            cost_usd=0.0021,
            status="error",
            error_class="InvalidJsonError",
            content={"prompt": "Write about biochar.", "output": '{"sentences": []}'},
        )
    return ident, trace_id, ids


def attrs(span: ProtoSpan) -> dict[str, Any]:
    def value(v: AnyValue) -> Any:
        return getattr(v, v.WhichOneof("value") or "string_value")

    return {kv.key: value(kv.value) for kv in span.attributes}


def test_spans_reach_the_collector_with_genai_attributes_and_parents(clean_db: Engine, collector: Collector) -> None:
    ident, trace_id, ids = seed_run(clean_db)
    export_trace(clean_db, tenant_id=ident.tenant_id, trace_id=trace_id, settings=settings(otlp_endpoint=collector.url))

    assert len(collector.requests) == 1, "one request per run"
    path, content_type, request = collector.requests[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    resource = {kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "opusblocks-workbench"

    spans = {span.name: span for span in collector.spans()}
    assert set(spans) == {"opusblocks.paragraph", "draft", "route writer", "invoke_agent writer", "chat gpt-test"}
    assert {span.trace_id.hex() for span in spans.values()} == {trace_id}, "our uuid hex is the OTel trace id"

    root, stage = spans["opusblocks.paragraph"], spans["draft"]
    agent, chat = spans["invoke_agent writer"], spans["chat gpt-test"]
    assert root.parent_span_id == b""
    assert stage.parent_span_id == root.span_id
    assert spans["route writer"].parent_span_id == agent.span_id
    assert agent.parent_span_id == stage.span_id and agent.span_id.hex() == ids["writer"]
    assert chat.parent_span_id == agent.span_id and chat.span_id.hex() == ids["attempt"]

    started = int(START.timestamp() * 1e9)
    assert (root.start_time_unix_nano, root.end_time_unix_nano) == (started, started + 900_000_000)
    assert (chat.start_time_unix_nano, chat.end_time_unix_nano) == (started + 12_000_000, started + 662_000_000)

    assert chat.kind == ProtoSpan.SPAN_KIND_CLIENT
    assert chat.status.code == ProtoStatus.STATUS_CODE_ERROR
    chat_attrs = attrs(chat)
    assert chat_attrs["gen_ai.operation.name"] == "chat"
    assert chat_attrs["gen_ai.provider.name"] == "openai" and chat_attrs["gen_ai.system"] == "openai"
    assert chat_attrs["gen_ai.request.model"] == "gpt-test"
    assert chat_attrs["gen_ai.agent.name"] == "writer"
    assert (chat_attrs["gen_ai.usage.input_tokens"], chat_attrs["gen_ai.usage.output_tokens"]) == (300, 80)
    assert chat_attrs["error.type"] == "InvalidJsonError"
    assert chat_attrs["opusblocks.prompt.version"] == "writer@v1"
    assert chat_attrs["opusblocks.cost_usd"] == pytest.approx(0.0021)
    assert attrs(agent)["gen_ai.operation.name"] == "invoke_agent"
    route = attrs(spans["route writer"])
    assert route["opusblocks.tier"] == "simple" and route["opusblocks.request.model"] == "gpt-test"
    assert not any(key.startswith("gen_ai.") for key in route), "a routing decision is not a model call"
    assert attrs(root)["opusblocks.paragraph_id"] == 7

    # Content stays home unless asked for.
    everything = [attrs(span) for span in spans.values()]
    assert not any(
        key.startswith(("gen_ai.input", "gen_ai.output", "opusblocks.content")) for a in everything for key in a
    )
    assert not any("biochar" in str(v) for a in everything for v in a.values())


def test_content_is_sent_only_when_asked_and_export_is_repeatable(clean_db: Engine, collector: Collector) -> None:
    ident, trace_id, _ids = seed_run(clean_db)
    asked = settings(otlp_endpoint=collector.url, otlp_include_content=True)
    export_trace(clean_db, tenant_id=ident.tenant_id, trace_id=trace_id, settings=asked)
    spans = {span.name: attrs(span) for span in collector.spans()}
    assert "Write about biochar and nitrate leaching." in spans["invoke_agent writer"]["gen_ai.input.messages"]
    assert '"role": "user"' in spans["invoke_agent writer"]["gen_ai.input.messages"]
    assert "sentences" in spans["chat gpt-test"]["gen_ai.output.messages"]

    # The same run exported again is the same trace with the same span ids (a collector de-duplicates).
    first = sorted((s.trace_id, s.span_id) for s in collector.spans())
    export_trace(clean_db, tenant_id=ident.tenant_id, trace_id=trace_id, settings=asked)
    second = sorted((s.trace_id, s.span_id) for s in collector.requests[1][2].resource_spans[0].scope_spans[0].spans)
    assert first == second


def test_nothing_is_sent_when_no_endpoint_is_set(clean_db: Engine, collector: Collector) -> None:
    ident, trace_id, _ids = seed_run(clean_db)
    unset = settings(otlp_endpoint=None, otlp_include_content=True)
    assert get_settings().otlp_endpoint is None, "off by default"
    export_trace(clean_db, tenant_id=ident.tenant_id, trace_id=trace_id, settings=unset)
    assert collector.requests == []


def test_a_collector_that_refuses_gives_an_actionable_error(clean_db: Engine, collector: Collector) -> None:
    ident, trace_id, _ids = seed_run(clean_db)
    collector.status = 400
    with pytest.raises(OtlpExportError, match="WORKBENCH_OTLP_ENDPOINT"):
        export_trace(
            clean_db, tenant_id=ident.tenant_id, trace_id=trace_id, settings=settings(otlp_endpoint=collector.url)
        )


def test_a_real_draft_is_exported_when_its_run_ends(
    clean_db: Engine, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # core.tracing calls export_trace as each run finishes, with the process settings.
    monkeypatch.setenv("WORKBENCH_OTLP_ENDPOINT", collector.url)
    reset_settings()
    try:
        seeded = seed_drafted(clean_db)
        tracing.flush_exports()  # exports run on their own thread, off the job's
    finally:
        monkeypatch.delenv("WORKBENCH_OTLP_ENDPOINT")
        reset_settings()
    roots = {span.name for span in collector.spans() if span.parent_span_id == b""}
    assert {"opusblocks.ingest", "opusblocks.paragraph"} <= roots
    writer = [attrs(s) for s in collector.spans() if s.name == "invoke_agent writer"]
    assert writer and writer[0]["gen_ai.usage.output_tokens"] > 0
    paragraph = next(attrs(s) for s in collector.spans() if s.name == "opusblocks.paragraph")
    assert paragraph["opusblocks.version_id"] == seeded.version_id
    assert not any("gen_ai.input.messages" in attrs(s) for s in collector.spans()), "content is off by default"
