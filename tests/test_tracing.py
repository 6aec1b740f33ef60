"""Trajectories as they are written by real runs: the local provider, and the OpenAI SDK over HTTP
against the fake server (a retry, a tool call). Everything is read back from the database the
way the trajectory page and an auditor would: raw rows, then the sealed content opened with the
key ring.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, LargeBinary, String, Text, select, text
from sqlalchemy.types import JSON

from core import crypto, db, job_runner, jobs, tracing
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.errors import NoFactsError, NotAPdfError, ProviderRejectedError
from core.manuscripts import add_paragraph, create_manuscript
from core.models import Base, LlmUsageEvent, Trajectory, TrajectoryEvent
from core.pipeline import draft_paragraph
from core.settings import get_settings, reset_settings
from core.sources import add_source
from core.tenancy import Identity, bootstrap
from tests.fakellm import FakeLLM, Fault
from tests.test_gateway import use_provider
from tests.test_model_registry import register_models
from tests.ui_helpers import MakeApp

# The researcher's own working text lives here in the clear, by design (DESIGN.md, "Data").
DOMAIN_TABLES = {"documents", "chunks", "facts", "paragraphs", "paragraph_versions", "sentence_checks"}


@pytest.fixture(autouse=True)
def _settings_back() -> Iterator[None]:
    yield
    reset_settings()


def _paragraph(engine: Engine, identity: Identity, brief: str = DEMO_BRIEFS[0]) -> tuple[int, int]:
    with db.session_scope(engine) as s:
        manuscript = create_manuscript(s, tenant_id=identity.tenant_id, title="Traced", user_id=identity.user_id)
        paragraph = add_paragraph(s, tenant_id=identity.tenant_id, manuscript_id=manuscript.id, brief=brief)
        return manuscript.id, paragraph.id


def _ingest(engine: Engine, identity: Identity, manuscript_id: int, trace_id: str) -> int:
    filename, data = demo_pdfs()[0]
    with db.session_scope(engine) as s:
        result = add_source(
            s, identity=identity, manuscript_id=manuscript_id, filename=filename, data=data, trace_id=trace_id
        )
        return result.document.id


def _draft(engine: Engine, identity: Identity, paragraph_id: int, trace_id: str) -> int:
    with db.session_scope(engine) as s:
        version = draft_paragraph(
            s, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph_id, trace_id=trace_id
        )
        return version.id


def trajectory(engine: Engine, trace_id: str) -> Trajectory:
    with db.session_scope(engine) as s:
        row = s.get(Trajectory, trace_id)
        assert row is not None, f"no trajectory for {trace_id}"
        return row


def spans(engine: Engine, trace_id: str) -> list[TrajectoryEvent]:
    with db.session_scope(engine) as s:
        return list(
            s.scalars(select(TrajectoryEvent).where(TrajectoryEvent.trace_id == trace_id).order_by(TrajectoryEvent.id))
        )


def opened(span: TrajectoryEvent) -> Any:
    assert span.content is not None and span.key_id is not None
    ring = crypto.key_ring(get_settings())
    return ring.open_json(span.key_id, span.content, aad=crypto.span_aad(span.tenant_id, span.trace_id, span.span_id))


def leaves(value: Any) -> Iterator[str]:
    """Every string inside decrypted content (prompts split into their lines)."""
    if isinstance(value, str):
        yield from (line.strip() for line in value.splitlines())
    elif isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)


def raw_dump(engine: Engine) -> str:
    """Every text, JSON and binary column of every table but the domain ones, read with raw SQL."""
    parts: list[str] = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name in DOMAIN_TABLES:
                continue
            for column in table.columns:
                if isinstance(column.type, LargeBinary):
                    query = f"SELECT {column.name} FROM {table.name}"
                elif isinstance(column.type, String | Text | JSON):
                    query = f"SELECT CAST({column.name} AS TEXT) FROM {table.name}"
                else:
                    continue
                for (value,) in connection.execute(text(query)):
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value).decode("utf-8", errors="replace"))
                    elif value is not None:
                        parts.append(str(value))
    return "\n".join(parts)


# -- (a) no plaintext at rest, (b) spans that time and open ------------------------------------------------


def test_runs_leave_no_prompt_output_or_tool_result_in_the_clear(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    manuscript_id, paragraph_id = _paragraph(clean_db, identity)
    _ingest(clean_db, identity, manuscript_id, "ingest-local")
    _draft(clean_db, identity, paragraph_id, "draft-local")
    use_provider(monkeypatch, fake, "openai", WORKBENCH_RETRY_MAX_DELAY_S="0.01")
    fake.push(Fault.status(500))  # the Writer's first attempt fails and is retried
    _draft(clean_db, identity, paragraph_id, "draft-openai")
    assert any(r.body.get("messages", [{}])[-1].get("role") == "tool" for r in fake.requests)  # a real tool call

    content = [opened(s) for trace in ("ingest-local", "draft-local", "draft-openai") for s in spans(clean_db, trace)
               if s.content is not None]  # fmt: skip
    kinds = {s.kind for trace in ("draft-local", "draft-openai") for s in spans(clean_db, trace)}
    assert {"agent", "tool", "attempt"} <= kinds
    needles = {line for item in content for line in leaves(item) if len(line) >= 12}
    assert len(needles) > 20  # prompts, chunk text, sentences, verdict reasons, tool queries and results
    dump = raw_dump(clean_db)
    assert dump  # the scan did read the ledger, the spans, the cache and the tool calls
    leaked = sorted(n for n in needles if n in dump)
    assert leaked == [], f"plaintext found at rest: {leaked[:5]}"


def test_a_paragraph_run_is_one_trajectory_whose_spans_carry_timings_tokens_cost_and_open_to_their_content(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    manuscript_id, paragraph_id = _paragraph(clean_db, identity)
    _ingest(clean_db, identity, manuscript_id, "ingest")
    use_provider(monkeypatch, fake, "openai", WORKBENCH_RETRY_MAX_DELAY_S="0.01")
    fake.push(Fault.status(500))
    version_id = _draft(clean_db, identity, paragraph_id, "run-1")

    run = trajectory(clean_db, "run-1")
    assert (run.kind, run.status, run.error_class) == ("paragraph", "ok", None)
    assert (run.paragraph_id, run.manuscript_id, run.version_id) == (paragraph_id, manuscript_id, version_id)
    assert run.ended_at is not None and run.duration_ms is not None and run.duration_ms > 0
    with db.session_scope(clean_db) as s:
        usage = list(s.scalars(select(LlmUsageEvent).where(LlmUsageEvent.trace_id == "run-1")))
    assert run.calls == len(usage) and run.errors == 0
    assert run.input_tokens == sum(e.input_tokens for e in usage) > 0
    assert run.output_tokens == sum(e.output_tokens for e in usage) > 0
    assert float(run.cost_usd or 0) == pytest.approx(sum(float(e.cost_usd or 0) for e in usage)) and run.cost_usd

    rows = spans(clean_db, "run-1")
    by_id = {s.span_id: s for s in rows}
    stages = [s for s in rows if s.kind == "stage"]
    assert [s.name for s in stages] == ["write_draft", "verify", "save"]  # every sentence held: no repair
    assert all(s.parent_span_id is None and s.status == "ok" and s.duration_ms > 0 for s in stages)
    agents = [s for s in rows if s.kind == "agent"]
    assert len(agents) == len(usage)
    for agent in agents:
        event = next(e for e in usage if e.id == agent.usage_event_id)
        assert (agent.agent, agent.model, agent.provider) == (event.agent, event.model, "openai")
        assert (agent.input_tokens, agent.output_tokens) == (event.input_tokens, event.output_tokens)
        assert float(agent.cost_usd or 0) == pytest.approx(float(event.cost_usd or 0)) and agent.duration_ms > 0
        assert by_id[agent.parent_span_id or ""].kind == "stage"
        children = {s.kind for s in rows if s.parent_span_id == agent.span_id}
        assert {"routing", "cache", "budget", "attempt"} <= children

    [writer] = [a for a in agents if a.agent == "writer"]
    assert by_id[writer.parent_span_id or ""].name == "write_draft"
    content = opened(writer)
    with db.session_scope(clean_db) as s:
        from core.models import Paragraph

        brief = s.get(Paragraph, paragraph_id).brief  # type: ignore[union-attr]
    assert brief in content["prompt"] and content["input"]["brief"] == brief
    assert content["output"]["sentences"] and all(s["cites"] for s in content["output"]["sentences"])
    assert writer.attributes["retries"] == 1 and writer.attributes["cache_hit"] is False
    attempts = [s for s in rows if s.parent_span_id == writer.span_id and s.kind == "attempt"]
    assert [(a.name, a.status, a.error_class) for a in attempts] == [
        ("attempt 1", "error", "server_error"),
        ("attempt 2", "ok", None),
    ]
    assert attempts[0].attributes["wait_s"] is not None and attempts[0].started_at <= attempts[1].started_at
    assert "500" in opened(attempts[0])["message"] or opened(attempts[0])["message"]
    [tool] = [s for s in rows if s.parent_span_id == writer.span_id and s.kind == "tool"]
    tool_content = opened(tool)
    assert tool.name == "search_corpus" and tool_content["arguments"]["query"]
    assert tool_content["result"] and all(r["id"].startswith("F") for r in tool_content["result"])
    assert tool.attributes["results"] == len(tool_content["result"])
    [route] = [s for s in rows if s.parent_span_id == writer.span_id and s.kind == "routing"]
    assert route.attributes["tier"] and route.attributes["reason"] and route.content is None
    [budget] = [s for s in rows if s.parent_span_id == writer.span_id and s.kind == "budget"]
    assert budget.attributes["estimate"] > 0 and budget.attributes["stage_limit"] >= budget.attributes["estimate"]
    assert budget.attributes["paragraph_limit"] >= budget.attributes["paragraph_reserved"] > 0
    for verifier in (a for a in agents if a.agent == "verifier"):
        verdict = opened(verifier)["output"]
        assert verdict["verdict"] == "supported" and verdict["reason"]
    # metadata only in the clear: no attribute holds content
    assert brief not in json.dumps([s.attributes for s in rows])


def test_a_repeated_run_shows_cache_hits_that_cost_nothing(clean_db: Engine, identity: Identity) -> None:
    manuscript_id, paragraph_id = _paragraph(clean_db, identity)
    _ingest(clean_db, identity, manuscript_id, "ingest")
    _draft(clean_db, identity, paragraph_id, "first")
    _draft(clean_db, identity, paragraph_id, "again")
    agents = [s for s in spans(clean_db, "again") if s.kind == "agent"]
    assert agents and all(a.attributes["cache_hit"] and float(a.cost_usd or 0) == 0 for a in agents)
    caches = [s for s in spans(clean_db, "again") if s.kind == "cache"]
    assert {c.name for c in caches} == {"cache hit"}
    [writer] = [a for a in agents if a.agent == "writer"]
    assert opened(writer)["output"]["sentences"]  # the cached answer, opened for the timeline


def test_an_ingest_is_a_trajectory_with_one_librarian_call_per_chunk(clean_db: Engine, identity: Identity) -> None:
    manuscript_id, _ = _paragraph(clean_db, identity)
    document_id = _ingest(clean_db, identity, manuscript_id, "ingest-1")
    run = trajectory(clean_db, "ingest-1")
    assert (run.kind, run.status, run.document_id, run.manuscript_id) == ("ingest", "ok", document_id, manuscript_id)
    rows = spans(clean_db, "ingest-1")
    assert [s.name for s in rows if s.kind == "stage"] == ["prepare_pdf", "ingest", "save"]
    [ingest] = [s for s in rows if s.name == "ingest"]
    librarians = [s for s in rows if s.kind == "agent"]
    assert len(librarians) == ingest.attributes["chunks"] == run.calls > 0
    assert all(s.agent == "librarian" and s.parent_span_id == ingest.span_id for s in librarians)
    assert all(opened(s)["output"]["facts"] for s in librarians)


# -- (f) failed runs ------------------------------------------------------------------------------------


def test_a_paragraph_without_facts_leaves_an_error_trajectory_with_its_reason_sealed(
    clean_db: Engine, identity: Identity
) -> None:
    _, paragraph_id = _paragraph(clean_db, identity)
    with pytest.raises(NoFactsError):
        _draft(clean_db, identity, paragraph_id, "no-facts")
    run = trajectory(clean_db, "no-facts")
    assert (run.status, run.error_class, run.kind) == ("error", "NoFacts", "paragraph")
    assert run.ended_at is not None and run.version_id is None and run.calls == 0
    [stage] = [s for s in spans(clean_db, "no-facts") if s.kind == "stage"]
    assert (stage.name, stage.status, stage.error_class) == ("write_draft", "error", "NoFacts")
    [error] = [s for s in spans(clean_db, "no-facts") if s.kind == "error"]
    assert error.parent_span_id == stage.span_id and error.error_class == "NoFacts"
    assert "upload a PDF" in opened(error)["message"] and b"upload a PDF" not in (error.content or b"")


def test_a_provider_that_refuses_leaves_an_error_trajectory_and_its_billed_call(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    manuscript_id, paragraph_id = _paragraph(clean_db, identity)
    _ingest(clean_db, identity, manuscript_id, "ingest")
    use_provider(monkeypatch, fake, "openai")
    fake.push(Fault.status(401))
    with pytest.raises(ProviderRejectedError):
        _draft(clean_db, identity, paragraph_id, "refused")
    run = trajectory(clean_db, "refused")
    assert (run.status, run.error_class, run.calls, run.errors) == ("error", "rejected", 1, 1)
    rows = spans(clean_db, "refused")
    [agent] = [s for s in rows if s.kind == "agent"]
    assert (agent.status, agent.error_class, agent.agent) == ("error", "rejected", "writer")
    agent_errors = [s for s in rows if s.kind == "error" and s.parent_span_id == agent.span_id]
    assert len(agent_errors) == 1 and opened(agent_errors[0])["message"]
    assert opened(agent)["output"] is None and opened(agent)["prompt"]


def test_a_file_that_is_not_a_pdf_is_a_failed_ingest_run(clean_db: Engine, identity: Identity) -> None:
    manuscript_id, _ = _paragraph(clean_db, identity)
    with pytest.raises(NotAPdfError), db.session_scope(clean_db) as s:
        add_source(s, identity=identity, manuscript_id=manuscript_id, filename="notes.pdf", data=b"hello", trace_id="x")
    run = trajectory(clean_db, "x")
    assert (run.kind, run.status, run.error_class, run.document_id) == ("ingest", "error", "NotAPdf", None)
    assert [s.name for s in spans(clean_db, "x") if s.kind == "stage"] == ["prepare_pdf"]


# -- a paragraph run across two jobs ----------------------------------------------------------------------


def test_a_draft_split_across_two_jobs_is_one_trajectory_and_a_cancelled_second_half_ends_it(
    clean_db: Engine, identity: Identity
) -> None:
    manuscript_id, paragraph_id = _paragraph(clean_db, identity)
    _ingest(clean_db, identity, manuscript_id, "ingest")
    queued: list[str] = []

    def draft_job(trace_id: str) -> str:
        job_id = jobs.submit(
            clean_db,
            tenant_id=identity.tenant_id,
            user_id=identity.user_id,
            kind="draft",
            payload={"paragraph_id": paragraph_id},
            trace_id=trace_id,
        )
        assert (
            job_runner.execute(clean_db, job_id, worker="test", dispatch=lambda i, q: queued.append(i)) == "SUCCEEDED"
        )
        return queued[-1]

    verify_job = draft_job("two-jobs")
    assert trajectory(clean_db, "two-jobs").status == "running"  # the Writer's half is done, the rest is queued
    # The draft crosses queues inside the next job's payload: sealed there too.
    [writer] = [s for s in spans(clean_db, "two-jobs") if s.kind == "agent" and s.agent == "writer"]
    sentences = [sentence["text"] for sentence in opened(writer)["output"]["sentences"]]
    assert sentences and not [t for t in sentences if t in raw_dump(clean_db)]
    assert job_runner.execute(clean_db, verify_job, worker="test", dispatch=lambda i, q: None) == "SUCCEEDED"
    run = trajectory(clean_db, "two-jobs")
    assert run.status == "ok" and run.version_id is not None
    assert [s.name for s in spans(clean_db, "two-jobs") if s.kind == "stage"] == ["write_draft", "verify", "save"]
    both = {j.id for j in jobs.trace_jobs(clean_db, tenant_id=identity.tenant_id, trace_id="two-jobs")}
    assert len(both) == 2
    assert {s.attributes.get("job_id") for s in spans(clean_db, "two-jobs") if s.kind == "agent"} == both

    verify_job = draft_job("cancelled")
    jobs.cancel(clean_db, tenant_id=identity.tenant_id, job_id=verify_job)
    run = trajectory(clean_db, "cancelled")
    assert (run.status, run.error_class, run.version_id) == ("error", "JobCancelled", None)
    [error] = [s for s in spans(clean_db, "cancelled") if s.kind == "error"]
    assert error.name == "job cancelled" and "Cancelled" in opened(error)["message"]


def test_a_running_job_cancelled_mid_run_ends_its_trajectory_as_cancelled(
    monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    monkeypatch.setenv("JOB_HEARTBEAT_S", "0.05")
    reset_settings()
    manuscript_id, paragraph_id = _paragraph(clean_db, identity)
    _ingest(clean_db, identity, manuscript_id, "ingest")
    job_id = jobs.submit(
        clean_db,
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        kind="draft",
        payload={"paragraph_id": paragraph_id},
        trace_id="stopped",
    )

    def researcher_cancels(_fraction: float, _message: str) -> None:
        jobs.cancel(clean_db, tenant_id=identity.tenant_id, job_id=job_id)
        time.sleep(0.3)  # the heartbeat notices the request and the job stops at this step

    state = job_runner.execute(clean_db, job_id, worker="test", dispatch=lambda i, q: None, progress=researcher_cancels)
    assert state == "CANCELLED"
    run = trajectory(clean_db, "stopped")
    assert (run.status, run.error_class) == ("error", "JobCancelled")
    [stage] = [s for s in spans(clean_db, "stopped") if s.kind == "stage"]
    assert (stage.name, stage.status) == ("write_draft", "error")


def test_a_run_whose_work_is_rolled_back_after_it_ended_is_not_shown_as_ok(
    clean_db: Engine, identity: Identity
) -> None:
    manuscript_id, paragraph_id = _paragraph(clean_db, identity)
    _ingest(clean_db, identity, manuscript_id, "ingest")
    with pytest.raises(RuntimeError), db.session_scope(clean_db) as s:
        draft_paragraph(
            s, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph_id, trace_id="lost"
        )
        raise RuntimeError("the commit never happens")
    run = trajectory(clean_db, "lost")
    assert (run.status, run.error_class, run.version_id) == ("error", "RolledBack", None)
    assert run.calls > 0  # the calls it was billed for stay on record


# -- OTLP export when a run ends -------------------------------------------------------------------------


class _Collector(ThreadingHTTPServer):
    """A stand-in OTLP/HTTP collector: takes every POST, remembers its path."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                collector.paths.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_finished_runs_are_exported_when_a_collector_is_configured_and_a_dead_one_only_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clean_db: Engine, identity: Identity
) -> None:
    collector = _Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("WORKBENCH_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}/v1/traces")
        reset_settings()
        manuscript_id, paragraph_id = _paragraph(clean_db, identity)
        _ingest(clean_db, identity, manuscript_id, "exported-ingest")
        _draft(clean_db, identity, paragraph_id, "exported-draft")
        tracing.flush_exports()  # exports run on their own thread, off the job's
        assert collector.paths == ["/v1/traces", "/v1/traces"]  # one export per finished run
    finally:
        collector.shutdown()
        collector.server_close()

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    monkeypatch.setenv("WORKBENCH_OTLP_ENDPOINT", f"http://127.0.0.1:{dead}/v1/traces")
    reset_settings()
    with caplog.at_level(logging.WARNING, logger="core.tracing"):
        _draft(clean_db, identity, paragraph_id, "not-exported")
        tracing.flush_exports()
    assert trajectory(clean_db, "not-exported").status == "ok"
    assert any("not-exported was not exported" in r.getMessage() for r in caplog.records)


def test_a_run_with_an_unpriced_call_shows_its_cost_as_unpriced_not_understated(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, make_app: MakeApp, clean_db: Engine
) -> None:
    with db.session_scope(clean_db) as s:
        identity = bootstrap(s)
        register_models(s, "house-model-7", provider="openai")  # registered (callable) but with no price
    manuscript_id, paragraph_id = _paragraph(clean_db, identity)
    _ingest(clean_db, identity, manuscript_id, "ingest")
    # Priced everywhere but the Verifier, whose model has no price: the run's total is unknown.
    use_provider(monkeypatch, fake, "openai", WORKBENCH_MODELS='{"verifier": "house-model-7"}')
    _draft(clean_db, identity, paragraph_id, "partly-unpriced")
    run = trajectory(clean_db, "partly-unpriced")
    assert run.status == "ok" and run.cost_usd is None
    agents = [s for s in spans(clean_db, "partly-unpriced") if s.kind == "agent"]
    assert {s.agent for s in agents if s.cost_usd is None} == {"verifier"}
    assert any(s.cost_usd for s in agents if s.agent == "writer")  # the priced call still shows its cost

    at = make_app("pages/trajectories.py")
    at.selectbox(key="traj_trace").set_value("partly-unpriced").run()
    assert not at.exception
    assert [m.value for m in at.metric if m.label == "Cost"] == ["unpriced"]
