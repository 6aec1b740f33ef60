"""Circuit breakers and the kill switch, on the real database and over real HTTP: they open,
refuse work before anything is sent, let one probe through when half-open, and close again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from core import breakers, controls, db, jobs, providers
from core.errors import GenerationPausedError, ProviderUnavailableError
from core.models import CircuitBreaker, ControlEvent, LlmUsageEvent, ParagraphVersion, utcnow
from core.providers import ProviderRequest, ProviderResult
from core.providers.local import LocalProvider
from core.settings import get_settings, reset_settings
from core.tenancy import Identity
from tests.fakellm import FakeLLM, Fault
from tests.test_gateway import context, use_provider, verify

OPS = Identity(tenant_id=1, user_id=0, role="ops", name="ops@lab")
"""Who throws the switch in these tests (the kill switch is workbench-wide: no tenant is touched)."""


@pytest.fixture(autouse=True)
def _settings_back() -> Iterator[None]:
    yield
    reset_settings()


def breaker(engine: Engine, name: str) -> CircuitBreaker:
    with db.session_scope(engine) as s:
        row = s.get(CircuitBreaker, name)
        assert row is not None
        return row


def history(engine: Engine, name: str) -> list[tuple[str | None, str]]:
    with db.session_scope(engine) as s:
        rows = s.scalars(select(ControlEvent).where(ControlEvent.control == name).order_by(ControlEvent.id))
        return [(r.from_state, r.to_state) for r in rows]


def end_cooldown(engine: Engine, name: str) -> None:
    """Move the opening back past the cooldown instead of sleeping through it."""
    with engine.begin() as connection:
        connection.execute(
            update(CircuitBreaker)
            .where(CircuitBreaker.name == name)
            .values(opened_at=utcnow() - timedelta(seconds=get_settings().breaker_cooldown_s + 1))
        )


def draft_job(engine: Engine, identity: Identity, paragraph_id: int, trace_id: str) -> jobs.JobOutcome:
    from core.pipeline import draft_paragraph

    return jobs.run_inline(
        engine,
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        kind="draft",
        payload={"paragraph_id": paragraph_id},
        trace_id=trace_id,
        work=lambda s, progress, job_id: {
            "version": draft_paragraph(
                s,
                tenant_id=identity.tenant_id,
                user_id=identity.user_id,
                paragraph_id=paragraph_id,
                trace_id=trace_id,
                job_id=job_id,
            ).id
        },
    )


def seeded_paragraph(engine: Engine, identity: Identity) -> int:
    from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
    from core.manuscripts import add_paragraph, create_manuscript
    from core.sources import add_source

    with db.session_scope(engine) as s:
        manuscript = create_manuscript(s, tenant_id=identity.tenant_id, title="Controls", user_id=identity.user_id)
        paragraph = add_paragraph(s, tenant_id=identity.tenant_id, manuscript_id=manuscript.id, brief=DEMO_BRIEFS[0])
    filename, data = demo_pdfs()[0]
    with db.session_scope(engine) as s:
        add_source(s, identity=identity, manuscript_id=manuscript.id, filename=filename, data=data, trace_id="seed")
    return paragraph.id


# -- provider outage -------------------------------------------------------------------------------------


def test_an_outage_opens_the_provider_breaker_pauses_jobs_then_a_probe_closes_it(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, "openai", BREAKER_MIN_CALLS="3", BREAKER_FAILURE_RATE="0.5")
    fake.push(Fault.status(500), Fault.status(500), Fault.status(500))
    with pytest.raises(ProviderUnavailableError):
        verify(context(session, identity, trace_id="outage"))
    assert breaker(clean_db, "provider:openai").state == "open"
    assert "3 of the last 3 attempts failed" in breaker(clean_db, "provider:openai").reason

    # Open: nothing is sent, and a new job is not started.
    sent = len(fake.requests)
    with pytest.raises(GenerationPausedError, match="provider:openai"):
        verify(context(session, identity, trace_id="while-open"))
    outcome = draft_job(clean_db, identity, paragraph_id=1, trace_id="job-while-open")
    assert outcome.state == jobs.CANCELLED and "circuit breaker" in (outcome.error or "")
    assert len(fake.requests) == sent
    status = controls.status(clean_db)
    assert status.generation_paused and "provider:openai" in status.message()

    # After the cooldown one run probes; another run meanwhile is still refused.
    end_cooldown(clean_db, "provider:openai")
    fake.push(Fault.timeout(0.3))  # the probe's answer is slow, so it is still in flight below
    probe_done = []

    import threading

    def probe() -> None:
        with db.session_scope(clean_db) as s:
            probe_done.append(verify(context(s, identity, trace_id="probe")).verdict)

    thread = threading.Thread(target=probe)
    thread.start()
    for _ in range(100):
        if breaker(clean_db, "provider:openai").state == "half_open":
            break
        import time

        time.sleep(0.01)
    with pytest.raises(GenerationPausedError):
        verify(context(session, identity, trace_id="not-the-probe"))
    thread.join()
    assert probe_done == ["supported"]
    assert breaker(clean_db, "provider:openai").state == "closed"
    assert history(clean_db, "provider:openai") == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert verify(context(session, identity, trace_id="after")).verdict == "supported"


def test_a_failed_probe_opens_the_breaker_again(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, "openai", BREAKER_MIN_CALLS="3")
    fake.push(*[Fault.status(503)] * 3)
    with pytest.raises(ProviderUnavailableError):
        verify(context(session, identity, trace_id="outage"))
    end_cooldown(clean_db, "provider:openai")
    fake.push(Fault.status(503))
    with pytest.raises(GenerationPausedError):
        # The probe's first attempt fails: the breaker reopens and the retry is not sent.
        verify(context(session, identity, trace_id="probe"))
    assert breaker(clean_db, "provider:openai").state == "open"
    assert history(clean_db, "provider:openai")[-2:] == [("open", "half_open"), ("half_open", "open")]
    assert len(fake.requests) == 4


# -- verification and cost ------------------------------------------------------------------------------


def test_excessive_unsupported_verdicts_open_the_verification_breaker(
    monkeypatch: pytest.MonkeyPatch, clean_db: Engine, session: Session, identity: Identity
) -> None:
    monkeypatch.setenv("BREAKER_MIN_SENTENCES", "5")
    reset_settings()
    settings = get_settings()
    paragraph_id = seeded_paragraph(clean_db, identity)
    with clean_db.begin() as connection:
        breakers.record_paragraph(
            connection, trace_id="bad-run", sentences=5, unsupported=5, cost_usd=0.0, settings=settings
        )
    assert breaker(clean_db, "verification").state == "open"
    with pytest.raises(GenerationPausedError, match="verification"):
        verify(context(session, identity, trace_id="refused"))

    # Ingestion cannot be the probe (it drafts nothing), so it stays refused after the cooldown.
    end_cooldown(clean_db, "verification")
    with pytest.raises(GenerationPausedError):
        seeded_paragraph(clean_db, identity)
    # A drafting run is the probe; a healthy paragraph closes the breaker.
    outcome = draft_job(clean_db, identity, paragraph_id, trace_id="probe-paragraph")
    assert outcome.state == jobs.SUCCEEDED
    assert breaker(clean_db, "verification").state == "closed"
    assert history(clean_db, "verification") == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_paragraph_over_the_cost_threshold_opens_the_cost_breaker(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    use_provider(
        monkeypatch,
        fake,
        "openai",
        WORKBENCH_PRICING='{"gpt-4.1-mini": {"input": 500, "output": 2000}}',
        BREAKER_PARAGRAPH_COST_USD="0.5",
    )
    paragraph_id = seeded_paragraph(clean_db, identity)
    assert draft_job(clean_db, identity, paragraph_id, trace_id="expensive").state == jobs.SUCCEEDED
    cost = breaker(clean_db, "cost")
    assert cost.state == "open" and "limit $0.50" in cost.reason
    refused = draft_job(clean_db, identity, paragraph_id, trace_id="next")
    assert refused.state == jobs.CANCELLED and "cost" in (refused.error or "")


# -- the kill switch -------------------------------------------------------------------------------------


class FreezingProvider(LocalProvider):
    """The offline provider, with ops throwing the kill switch while the Writer answers."""

    name = "freezing"
    engine: Engine | None = None

    def complete(self, request: ProviderRequest) -> ProviderResult:
        result = super().complete(request)
        if request.agent == "writer" and self.engine is not None:
            controls.set_kill_switch(self.engine, engaged=True, reason="mid-run freeze", actor=OPS)
        return result


def test_the_kill_switch_stops_queued_new_and_running_work_and_keeps_what_was_verified(
    monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    paragraph_id = seeded_paragraph(clean_db, identity)
    assert draft_job(clean_db, identity, paragraph_id, trace_id="before").state == jobs.SUCCEEDED

    # A queued job, then the switch: the job never starts.
    queued = jobs.submit(
        clean_db,
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        kind="draft",
        payload={"paragraph_id": paragraph_id},
        trace_id="queued",
    )
    assert controls.set_kill_switch(clean_db, engaged=True, reason="incident 42", actor=OPS)
    started: list[str] = []
    outcome = jobs.run_job(
        clean_db, tenant_id=identity.tenant_id, job_id=queued, work=lambda s, p, j: started.append(j) or {}
    )
    assert outcome.state == jobs.CANCELLED and "incident 42" in (outcome.error or "") and started == []
    assert draft_job(clean_db, identity, paragraph_id, trace_id="new").state == jobs.CANCELLED

    # Released, then thrown again while a job runs: its next model call is refused, nothing is saved.
    controls.set_kill_switch(clean_db, engaged=False, reason="", actor=OPS)
    FreezingProvider.engine = clean_db
    providers.register("freezing", FreezingProvider)
    monkeypatch.setenv("WORKBENCH_PROVIDER", "freezing")
    reset_settings()
    with db.session_scope(clean_db) as s:
        from core.manuscripts import add_paragraph, get_paragraph

        manuscript_id = get_paragraph(s, tenant_id=identity.tenant_id, paragraph_id=paragraph_id).manuscript_id
        fresh = add_paragraph(
            s, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, brief="Nitrate leaching under biochar"
        ).id
    running = draft_job(clean_db, identity, fresh, trace_id="running")  # a new brief: nothing cached
    assert running.state == jobs.FAILED and "kill switch" in (running.error or "")
    with db.session_scope(clean_db) as s:
        versions = list(s.scalars(select(ParagraphVersion).order_by(ParagraphVersion.id)))
        paused = s.scalar(
            select(LlmUsageEvent).where(
                LlmUsageEvent.trace_id == "running", LlmUsageEvent.error_class == "GenerationPaused"
            )
        )
    # The earlier verified version is untouched and the frozen run saved nothing.
    assert [(v.paragraph_id, v.status) for v in versions] == [(paragraph_id, "verified")]
    assert paused is not None
    assert history(clean_db, controls.KILL_SWITCH) == [
        ("released", "engaged"),
        ("engaged", "released"),
        ("released", "engaged"),
    ]
    controls.set_kill_switch(clean_db, engaged=False, reason="", actor=OPS)
    monkeypatch.setenv("WORKBENCH_PROVIDER", "local")
    reset_settings()
    assert draft_job(clean_db, identity, paragraph_id, trace_id="after").state == jobs.SUCCEEDED
