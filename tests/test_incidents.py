"""The incident procedure as a drill on the real database: a batch of paragraph drafts is frozen mid-way,
scoped by trace, rolled back and thawed, and every step is in the audit log.

The batch runs on an in-process executor with one thread and the slow local provider (its Writer sleeps),
so at the freeze some paragraphs are finished, one draft is running and the rest are queued.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

import tests.slow_provider  # noqa: F401  (registers the "slow" provider)
from core import audit, controls, db, deployments, evidence, executors, incident_scope, incidents, jobs, routing
from core.cli import main
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.errors import IncidentError, ModelRetiredError, NotFoundError, PermissionDeniedError
from core.executors import InProcessExecutor, get_executor
from core.golden_runner import run_golden
from core.manuscripts import add_paragraph, create_manuscript
from core.models import AuditEntry, Incident, Job, LlmUsageEvent, ParagraphVersion, TrajectoryEvent
from core.pipeline import new_trace_id
from core.prompts import lock_new_versions
from core.settings import get_settings, reset_settings
from core.sources import add_source
from core.tenancy import Identity
from tests.slow_provider import DELAY_ENV
from tests.test_prompts_page import candidate_prompts

BATCH = 6
FINISHED_FIRST = 2
SECRET_MARKER = "sk-incident-test-SECRET-0123456789"


@pytest.fixture(autouse=True)
def _released(clean_db: Engine) -> Iterator[None]:
    yield
    controls.set_kill_switch(clean_db, engaged=False, reason="", actor=Identity(0, 0, "admin", "test"))
    reset_settings()


def admin(identity: Identity) -> Identity:
    return Identity(tenant_id=identity.tenant_id, user_id=0, role="admin", name="incident commander")


def seed(engine: Engine, identity: Identity, count: int) -> list[int]:
    """A manuscript with the demo papers' facts and ``count`` paragraphs of distinct briefs."""
    with db.session_scope(engine) as s:
        manuscript = create_manuscript(s, tenant_id=identity.tenant_id, title="Incident", user_id=identity.user_id)
        paragraphs = [
            add_paragraph(
                s,
                tenant_id=identity.tenant_id,
                manuscript_id=manuscript.id,
                brief=f"{DEMO_BRIEFS[i % len(DEMO_BRIEFS)]} (part {i + 1})",
            ).id
            for i in range(count)
        ]
    for filename, data in demo_pdfs()[:3]:
        with db.session_scope(engine) as s:
            add_source(s, identity=identity, manuscript_id=manuscript.id, filename=filename, data=data, trace_id="seed")
    return paragraphs


def enqueue_draft(engine: Engine, identity: Identity, paragraph_id: int, executor: executors.Executor) -> str:
    return jobs.enqueue(
        engine,
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        kind="draft",
        payload={"paragraph_id": paragraph_id},
        trace_id=new_trace_id(),
        executor=executor,
    )


def wait_for(condition: Any, what: str, limit_s: float = 60.0) -> None:
    """Poll until ``condition()`` holds (a wait, not a timed assertion: the limit only ends a hang)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {limit_s:g} s")
        time.sleep(0.02)


def versions_of(engine: Engine, paragraph_ids: list[int]) -> dict[int, list[tuple[Any, ...]]]:
    """Each paragraph's versions as stored, sentences included: what must not change."""
    with db.session_scope(engine) as s:
        rows = s.scalars(
            select(ParagraphVersion)
            .where(ParagraphVersion.paragraph_id.in_(paragraph_ids))
            .order_by(ParagraphVersion.id)
        )
        out: dict[int, list[tuple[Any, ...]]] = {p: [] for p in paragraph_ids}
        for v in rows:
            sentences = tuple((c.text, tuple(c.cites), c.verdict) for c in v.sentences)
            out[v.paragraph_id].append((v.id, v.number, v.text, v.status, dict(v.prompt_versions), sentences))
        return out


def count_usage(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(LlmUsageEvent)) or 0)


def job_state(engine: Engine, job_id: str) -> str:
    with engine.connect() as connection:
        return str(connection.scalar(select(Job.state).where(Job.id == job_id)))


def set_up_two_writer_versions(engine: Engine, identity: Identity, folder: Path) -> tuple[str, str]:
    """Two Writer versions with a passing golden run each; the old one activated, then the new one."""
    found = candidate_prompts(folder)
    # A second good candidate beside ``found.good``: the same template with one more harmless line.
    old, new = found.good, f"v{int(found.weak.lstrip('v')) + 1}"
    text = (folder / "writer" / f"{old}.md").read_text().replace(f"version: {old}\n", f"version: {new}\n", 1)
    (folder / "writer" / f"{new}.md").write_text(text + "Keep each sentence short.\n")
    lock_new_versions(folder)
    for version in (old, new):
        run = run_golden(engine, prompt_pins={"writer": version}, label=f"writer {version}", triggered_by="test")
        assert run.status == "passed", run.failing_cases
        with db.session_scope(engine) as s:
            deployments.activate(s, by=admin(identity), agent="writer", version=version, reason="release")
    return old, new


def test_freeze_scope_rollback_thaw_mid_batch(
    clean_db: Engine, identity: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    engine, commander = clean_db, admin(identity)
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(tmp_path / "prompts"))
    monkeypatch.setenv("WORKBENCH_EVIDENCE_DIR", str(tmp_path / "evidence"))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_MARKER)
    reset_settings()
    old, new = set_up_two_writer_versions(engine, identity, tmp_path / "prompts")
    paragraphs = seed(engine, identity, BATCH)

    # The batch: two paragraphs finish, then four more are queued behind a slow Writer.
    monkeypatch.setenv("WORKBENCH_PROVIDER", "slow")
    monkeypatch.setenv(DELAY_ENV, "1.0")
    reset_settings()
    executor = InProcessExecutor(engine, threads=1)
    try:
        first = [enqueue_draft(engine, identity, p, executor) for p in paragraphs[:FINISHED_FIRST]]
        executor.drain()
        finished = versions_of(engine, paragraphs[:FINISHED_FIRST])
        assert all(len(v) == 1 and v[0][3] == "verified" for v in finished.values()), finished
        rest = [enqueue_draft(engine, identity, p, executor) for p in paragraphs[FINISHED_FIRST:]]
        wait_for(lambda: job_state(engine, rest[0]) != jobs.QUEUED, "the first queued draft to start")

        usage_at_freeze = count_usage(engine)
        frozen = incidents.freeze(engine, by=commander, reason="writer cites the wrong papers")
        executor.drain()
    finally:
        executor.close()
    incident = frozen.incident
    assert incident.state == incidents.FROZEN and controls.status(engine).kill_switch.engaged

    # Nothing lost: the finished paragraphs keep their versions, the stopped ones have none, and every job
    # the freeze stopped is recorded on the incident and says so.
    assert versions_of(engine, paragraphs[:FINISHED_FIRST]) == finished
    assert all(not v for v in versions_of(engine, paragraphs[FINISHED_FIRST:]).values())
    stopped = {s["job_id"] for s in incident.stopped_jobs}
    with db.session_scope(engine) as s:
        batch_jobs = list(s.scalars(select(Job)))
        rest_traces = {j.trace_id for j in batch_jobs if j.id in rest}
        assert not [j.id for j in batch_jobs if j.state in (jobs.QUEUED, jobs.RUNNING)]
        named = {j.id for j in batch_jobs if j.state == jobs.CANCELLED and f"incident {incident.id}" in (j.error or "")}
    assert len(stopped) >= 2 and stopped == named
    assert {s["trace_id"] for s in incident.stopped_jobs} <= rest_traces

    # No model call while frozen: at most the Writer call already in flight at the freeze lands, and
    # new work is refused before anything is sent.
    usage_frozen = count_usage(engine)
    assert usage_frozen - usage_at_freeze <= 1
    late = enqueue_draft(engine, identity, paragraphs[-1], get_executor())
    get_executor().drain()  # type: ignore[attr-defined]
    assert job_state(engine, late) == jobs.CANCELLED
    assert count_usage(engine) == usage_frozen

    check_bundle(engine, incident, finished, first)
    traces = check_scope(engine, commander, first, finished, identity, capsys)

    # Roll back the Writer's prompt: the old version serves again; earlier versions stay as they were.
    incidents.rollback_prompt(engine, by=commander, agent="writer", version=old, reason="new prompt misbehaves")
    with db.session_scope(engine) as s:
        assert deployments.active_versions(s)["writer"] == old
    assert versions_of(engine, paragraphs[:FINISHED_FIRST]) == finished

    # A model rollback touches that agent's routing only.
    settings = get_settings()
    with db.session_scope(engine) as s:
        before = routing.current_config(s, tenant_id=identity.tenant_id, settings=settings)
    rolled = incidents.rollback_model(
        engine, by=commander, agent="writer", model="gpt-4.1-mini", reason="4.1 regressed", tenant_id=identity.tenant_id
    )
    assert rolled.incident_id == incident.id and rolled.provider == "openai"
    with db.session_scope(engine) as s:
        after = routing.current_config(s, tenant_id=identity.tenant_id, settings=settings)
    assert after.version == rolled.routing_versions[identity.tenant_id] == before.version + 1
    assert routing.changes(before.config, after.config) == [
        f"openai writer {tier}: {before.config.tier_model('openai', 'writer', tier)} → gpt-4.1-mini"
        for tier in routing.TIERS
        if before.config.tier_model("openai", "writer", tier) != "gpt-4.1-mini"
    ]

    # Thaw: generation resumes and every stopped paragraph ends with a version, drafted by the old prompt.
    monkeypatch.setenv(DELAY_ENV, "0")
    thawed = incidents.thaw(engine, by=commander, note="prompt rolled back")
    get_executor().drain()  # type: ignore[attr-defined]
    assert thawed.incident.state == incidents.THAWED and not controls.status(engine).kill_switch.engaged
    assert stopped <= {r["job_id"] for r in thawed.requeued} | {r["job_id"] for r in thawed.not_requeued}
    resumed = versions_of(engine, paragraphs[FINISHED_FIRST:])
    assert all(resumed.values()), resumed
    assert versions_of(engine, paragraphs[:FINISHED_FIRST]) == finished
    with db.session_scope(engine) as s:
        writers = s.scalars(
            select(LlmUsageEvent.prompt_version).where(
                LlmUsageEvent.agent == "writer", LlmUsageEvent.created_at >= thawed.incident.thawed_at
            )
        ).all()
    assert writers and set(writers) == {old}, (writers, old, new)

    # The audit log holds each step, in order, and its chain holds.
    with engine.connect() as connection:
        steps = connection.execute(
            select(AuditEntry.event_type, AuditEntry.subject)
            .where(AuditEntry.event_type.in_(incident_steps()))
            .order_by(AuditEntry.seq)
        ).all()
        assert audit.verify(connection).intact
    kinds = [t for t, _ in steps]
    assert kinds == [
        audit.INCIDENT_FREEZE,
        audit.INCIDENT_FREEZE,
        audit.INCIDENT_SCOPE,
        audit.INCIDENT_SCOPE,
        audit.INCIDENT_ROLLBACK,
        audit.INCIDENT_ROLLBACK,
        audit.INCIDENT_THAW,
    ]
    assert [s for t, s in steps if t == audit.INCIDENT_SCOPE] == [traces[0], traces[0]]


def incident_steps() -> tuple[str, ...]:
    return (audit.INCIDENT_FREEZE, audit.INCIDENT_SCOPE, audit.INCIDENT_ROLLBACK, audit.INCIDENT_THAW)


def check_bundle(
    engine: Engine, incident: incidents.IncidentView, finished: dict[int, list[tuple[Any, ...]]], first: list[str]
) -> None:
    """The bundle exists, matches its sha256 and manifest, holds the batch's runs, and no secret or plaintext."""
    path = Path(incident.bundle_path)
    assert path.is_file() and path.parent == get_settings().resolved_evidence_dir
    assert path.name.startswith(f"incident-{incident.id}-") and path.name.endswith(".tar.gz")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == incident.bundle_sha256
    assert evidence.check_bundle(path) == []
    members = evidence.read_bundle(path)
    jobs_in = {json.loads(line)["id"] for line in members["jobs.jsonl"].splitlines()}
    with db.session_scope(engine) as s:
        all_jobs = {j.id: j for j in s.scalars(select(Job))}
        first_traces = {all_jobs[j].trace_id for j in first}
    assert set(first) <= jobs_in and {s["job_id"] for s in incident.stopped_jobs} <= jobs_in
    trajectories = {json.loads(line)["trace_id"] for line in members["trajectories.jsonl"].splitlines()}
    assert first_traces <= trajectories
    events = [json.loads(line) for line in members["trajectory_events.jsonl"].splitlines()]
    sealed = [e for e in events if e["content"] is not None]
    assert sealed and all(set(e["content"]) == {"base64"} and e["key_id"] for e in sealed)
    manifest = json.loads(members["manifest.json"])
    assert manifest["incident_id"] == incident.id and set(manifest["key_ids"]) == {e["key_id"] for e in sealed}
    config = json.loads(members["config.json"])
    assert config["openai_api_key"] == "(set)" and config["encryption_keys"] in ("(set)", "(not set)")
    audit_types = {json.loads(line)["event_type"] for line in members["audit_log.jsonl"].splitlines()}
    assert {audit.KILL_SWITCH, audit.INCIDENT_FREEZE} <= audit_types
    everything = b"".join(members.values())
    secrets = [SECRET_MARKER.encode()]
    dev_key = get_settings().data_dir / "dev-encryption.key"
    if dev_key.exists():
        secrets += [part.split(":", 1)[1].strip().encode() for part in dev_key.read_text().split(",") if ":" in part]
    assert not [s for s in secrets if s in everything], "a secret is in the bundle"
    sentences = [sentence[0].encode() for versions in finished.values() for v in versions for sentence in v[5]]
    assert sentences and not [t for t in sentences if t in everything], "decrypted content is in the bundle"


def check_scope(
    engine: Engine,
    commander: Identity,
    first: list[str],
    finished: dict[int, list[tuple[Any, ...]]],
    identity: Identity,
    capsys: Any,
) -> list[str]:
    """``scope`` of the first finished paragraph lists exactly its trace's effects, nothing of the second's."""
    with db.session_scope(engine) as s:
        traces = [s.get(Job, j).trace_id for j in first]  # type: ignore[union-attr]
        spans = set(s.scalars(select(TrajectoryEvent.span_id).where(TrajectoryEvent.trace_id == traces[0])))
        other_spans = set(s.scalars(select(TrajectoryEvent.span_id).where(TrajectoryEvent.trace_id == traces[1])))
        usage = list(s.scalars(select(LlmUsageEvent).where(LlmUsageEvent.trace_id == traces[0])))
        trace_jobs = set(s.scalars(select(Job.id).where(Job.trace_id == traces[0])))
    found = incident_scope.scope(engine, by=commander, trace_id=traces[0])
    assert found.tenant["id"] == identity.tenant_id
    assert {sp["span_id"] for sp in found.spans} == spans and not spans & other_spans
    assert found.usage.calls == len(usage) > 0
    assert found.usage.input_tokens == sum(u.input_tokens for u in usage)
    assert found.usage.total_tokens == sum(u.input_tokens + u.output_tokens for u in usage)
    assert found.usage.cost_usd == pytest.approx(float(sum(u.cost_usd or 0 for u in usage)))
    [(version_id, *_)] = finished[found.paragraphs[0]]
    assert [v["id"] for v in found.paragraph_versions] == [version_id] and len(found.paragraphs) == 1
    assert {j["id"] for j in found.jobs} == trace_jobs and first[0] in trace_jobs and first[1] not in trace_jobs
    assert all(j["transitions"][0]["to"] == jobs.QUEUED and j["state"] == jobs.SUCCEEDED for j in found.jobs)
    assert [u["id"] for u in found.users] == [identity.user_id] and found.users[0]["as"]
    assert found.trajectory and found.trajectory["status"] == "ok" and "writer" in found.trajectory["agents"]
    text = json.dumps(found.as_json())
    assert traces[1] not in text and first[1] not in text

    # The same from the command line, as JSON.
    capsys.readouterr()
    assert main(["incident", "scope", traces[0], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {sp["span_id"] for sp in printed["spans"]} == spans and printed["usage"]["calls"] == len(usage)
    return traces


# -- refusals ---------------------------------------------------------------------------------------------


def test_refusals_leave_the_state_as_it_was(
    clean_db: Engine, identity: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("WORKBENCH_EVIDENCE_DIR", str(tmp_path / "evidence"))
    reset_settings()
    commander = admin(identity)

    with pytest.raises(IncidentError, match="No incident is frozen"):
        incidents.thaw(clean_db, by=commander)
    assert main(["incident", "thaw"]) == 1

    researcher = replace(commander, role="researcher", name="a researcher")
    with pytest.raises(PermissionDeniedError):
        incidents.freeze(clean_db, by=researcher, reason="curious")
    assert not controls.status(clean_db).kill_switch.engaged
    with clean_db.connect() as connection:
        denied = audit.search(connection, viewer=commander, event_types=[audit.PERMISSION_DENIED])
        assert [e.subject for e in denied] == ["incident freeze"]
        assert connection.scalar(select(func.count()).select_from(Incident)) == 0

    first = incidents.freeze(clean_db, by=commander, reason="first")
    with pytest.raises(IncidentError, match=f"Incident {first.incident.id} is frozen already"):
        incidents.freeze(clean_db, by=commander, reason="second")
    capsys.readouterr()
    assert main(["incident", "freeze", "--reason", "again"]) == 1
    assert f"Incident {first.incident.id} is frozen already" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["incident", "show", str(first.incident.id)]) == 0 and main(["incident", "list"]) == 0
    listed = capsys.readouterr().out
    assert first.incident.bundle_sha256 in listed and f"{first.incident.id}\tfrozen" in listed
    assert main(["incident", "show", "999"]) == 1

    with pytest.raises(PermissionDeniedError):
        incident_scope.scope(clean_db, by=researcher, trace_id="any")
    with pytest.raises(NotFoundError, match="No trace 'no-such-trace'"):
        incident_scope.scope(clean_db, by=commander, trace_id="no-such-trace")
    assert main(["incident", "scope", "no-such-trace"]) == 1

    with clean_db.connect() as connection:
        routing_before = routing.config_history(connection, tenant_id=identity.tenant_id)
    with pytest.raises(ModelRetiredError, match=r"not-a-model is unregistered.*gpt-4\.1-mini \(openai\)"):
        incidents.rollback_model(clean_db, by=commander, agent="writer", model="not-a-model", reason="x")
    assert main(["incident", "rollback", "--model", "writer=not-a-model", "--reason", "x"]) == 1
    with clean_db.connect() as connection:
        assert routing.config_history(connection, tenant_id=identity.tenant_id) == routing_before
    with clean_db.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Incident)) == 1
        assert audit.verify(connection).intact


def test_thaw_requeues_work_the_gate_stopped_once_per_paragraph(
    clean_db: Engine, identity: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_EVIDENCE_DIR", str(tmp_path / "evidence"))
    reset_settings()
    commander = admin(identity)
    [paragraph] = seed(clean_db, identity, 1)
    incidents.freeze(clean_db, by=commander, reason="provider returns garbage")
    # Two clicks on Draft while frozen: both refused at start; the thaw drafts the paragraph once.
    refused = []
    for _ in range(2):
        job_id = jobs.submit(
            clean_db,
            tenant_id=identity.tenant_id,
            user_id=identity.user_id,
            kind="draft",
            payload={"paragraph_id": paragraph},
            trace_id=new_trace_id(),
        )
        assert jobs.run_job(clean_db, tenant_id=identity.tenant_id, job_id=job_id, work=_never).state == jobs.CANCELLED
        refused.append(job_id)
    thawed = incidents.thaw(clean_db, by=commander)
    get_executor().drain()  # type: ignore[attr-defined]
    assert [r["job_id"] for r in thawed.requeued] == [refused[-1]]
    assert len(versions_of(clean_db, [paragraph])[paragraph]) == 1
    with clean_db.connect() as connection:
        [entry] = audit.search(connection, viewer=commander, event_types=[audit.INCIDENT_THAW])
    assert entry.details["requeued"] == [thawed.requeued[0]["new_job_id"]]


def _never(_s: Any, _progress: Any, _job_id: str) -> dict[str, Any]:
    raise AssertionError("a job ran while generation was frozen")
