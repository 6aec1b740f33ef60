"""The Trajectories read side: filters, paging, tenant isolation, opened content, and the page itself.

Runs are written as rows here (content sealed with the real key ring) so each filter can be
checked against a known set; the last test drafts a real paragraph and finds its trace.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core import crypto, db
from core.errors import NotFoundError
from core.manuscripts import add_paragraph, create_manuscript, list_versions
from core.models import ParagraphVersion, SentenceCheck, Trajectory, TrajectoryEvent
from core.settings import get_settings
from core.tenancy import Identity, bootstrap, create_tenant
from core.trace_chart import timeline_figure
from core.trajectories import TrajectoryFilter, filter_options, get_trace, list_trajectories
from tests.ui_helpers import MakeApp, seed_drafted

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class SpanSpec:
    name: str
    kind: str = "agent"
    agent: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    status: str = "ok"
    at_ms: float = 0.0
    duration_ms: float = 10.0
    parent: str | None = None
    content: Any = None
    span_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])


def developer(ident: Identity) -> Identity:
    """A prompt engineer of ``ident``'s tenant: may read trace content (each view is audited)."""
    return replace(ident, role="prompt_engineer", name="dev")


def ring() -> crypto.KeyRing:
    return crypto.key_ring(get_settings())


def add_run(
    session: Session,
    *,
    tenant_id: int,
    kind: str = "paragraph",
    status: str = "ok",
    started_at: datetime = NOW,
    paragraph_id: int | None = None,
    version_id: int | None = None,
    spans: list[SpanSpec] | None = None,
    sealer: crypto.KeyRing | None = None,
) -> str:
    """A finished run with its spans, content sealed as the tracer seals it (bound to tenant, trace, span)."""
    trace_id = uuid.uuid4().hex
    spans = spans or []
    session.add(
        Trajectory(
            trace_id=trace_id,
            tenant_id=tenant_id,
            kind=kind,
            status=status,
            paragraph_id=paragraph_id,
            version_id=version_id,
            calls=sum(s.kind == "agent" for s in spans),
            errors=sum(s.status == "error" for s in spans),
            input_tokens=120,
            output_tokens=40,
            cost_usd=0.0012,
            error_class="ProviderUnavailableError" if status == "error" else None,
            started_at=started_at,
            ended_at=started_at + timedelta(milliseconds=500),
            duration_ms=500.0,
        )
    )
    for spec in spans:
        sealed = None
        if spec.content is not None:
            aad = crypto.span_aad(tenant_id, trace_id, spec.span_id)
            sealed = (sealer or ring()).seal_json(spec.content, aad=aad)
        session.add(
            TrajectoryEvent(
                tenant_id=tenant_id,
                trace_id=trace_id,
                span_id=spec.span_id,
                parent_span_id=spec.parent,
                kind=spec.kind,
                name=spec.name,
                agent=spec.agent,
                provider="local" if spec.model else None,
                model=spec.model,
                prompt_version=spec.prompt_version,
                status=spec.status,
                error_class="ProviderUnavailableError" if spec.status == "error" else None,
                started_at=started_at + timedelta(milliseconds=spec.at_ms),
                duration_ms=spec.duration_ms,
                input_tokens=60 if spec.model else 0,
                output_tokens=20 if spec.model else 0,
                cost_usd=0.0006 if spec.model else None,
                attributes={"tier": "simple"} if spec.kind == "routing" else {},
                content=sealed.blob if sealed else None,
                key_id=sealed.key_id if sealed else None,
            )
        )
    session.flush()
    return trace_id


def traces(session: Session, tenant_id: int, **filters: Any) -> set[str]:
    page = list_trajectories(session, tenant_id=tenant_id, filters=TrajectoryFilter(**filters), page_size=100)
    return {t.trace_id for t in page.rows}


def paragraph_with_version(session: Session, ident: Identity, *, text: str) -> tuple[int, int]:
    manuscript = create_manuscript(session, tenant_id=ident.tenant_id, title="Traced", user_id=ident.user_id)
    paragraph = add_paragraph(session, tenant_id=ident.tenant_id, manuscript_id=manuscript.id, brief="Leaching.")
    version = ParagraphVersion(
        tenant_id=ident.tenant_id,
        paragraph_id=paragraph.id,
        number=1,
        text=text,
        status="needs_review",
        origin="drafted",
        provider="local",
    )
    session.add(version)
    session.flush()
    sentences = [("Biochar cut nitrate leaching by 23%.", "supported"), ("It also doubled yields.", "unsupported")]
    for ordinal, (sentence, verdict) in enumerate(sentences, start=1):
        session.add(
            SentenceCheck(
                tenant_id=ident.tenant_id,
                version_id=version.id,
                ordinal=ordinal,
                text=sentence,
                cites=["F1"],
                verdict=verdict,
                failure_mode=None if verdict == "supported" else "unsupported_claim",
                reason="",
            )
        )
    session.flush()
    return paragraph.id, version.id


@dataclass
class World:
    a: Identity
    b: Identity
    draft: str
    ingest: str
    reverify: str
    other_tenant: str
    paragraph_id: int


@pytest.fixture
def world(session: Session) -> World:
    a = bootstrap(session)
    b = create_tenant(session, slug="other", name="Other lab")
    paragraph_id, _ = paragraph_with_version(session, a, text="Biochar cut nitrate leaching by 23%.")
    # The agent is on the agent span and the model on its attempt: filters must see both in one trace.
    writer = SpanSpec("writer", agent="writer")
    draft = add_run(
        session,
        tenant_id=a.tenant_id,
        started_at=NOW - timedelta(hours=1),
        paragraph_id=paragraph_id,
        spans=[
            writer,
            SpanSpec(
                "writer attempt 1", kind="attempt", model="model-a", prompt_version="writer@v1", parent=writer.span_id
            ),
        ],
    )
    ingest = add_run(
        session,
        tenant_id=a.tenant_id,
        kind="ingest",
        status="error",
        started_at=NOW - timedelta(days=2),
        spans=[
            SpanSpec("librarian", agent="librarian", model="model-b", prompt_version="librarian@v2", status="error")
        ],
    )
    reverify = add_run(
        session,
        tenant_id=a.tenant_id,
        kind="reverify",
        started_at=NOW - timedelta(days=10),
        paragraph_id=paragraph_id + 1000,
        spans=[SpanSpec("verifier", agent="verifier", model="model-a", prompt_version="verifier@v1")],
    )
    other = add_run(
        session,
        tenant_id=b.tenant_id,
        started_at=NOW,
        paragraph_id=paragraph_id,
        spans=[SpanSpec("writer", agent="writer", model="model-secret", prompt_version="writer@v9")],
    )
    session.commit()
    return World(a, b, draft, ingest, reverify, other, paragraph_id)


def test_each_filter_narrows_the_list(session: Session, world: World) -> None:
    tenant = world.a.tenant_id
    assert traces(session, tenant) == {world.draft, world.ingest, world.reverify}
    assert traces(session, tenant, status="error") == {world.ingest}
    assert traces(session, tenant, status="ok") == {world.draft, world.reverify}
    assert traces(session, tenant, kind="reverify") == {world.reverify}
    assert traces(session, tenant, agent="writer") == {world.draft}
    assert traces(session, tenant, agent="librarian") == {world.ingest}
    assert traces(session, tenant, model="model-a") == {world.draft, world.reverify}
    assert traces(session, tenant, agent="writer", model="model-a") == {world.draft}
    assert traces(session, tenant, agent="writer", model="model-b") == set()
    assert traces(session, tenant, prompt_version="librarian@v2") == {world.ingest}
    assert traces(session, tenant, paragraph_id=world.paragraph_id) == {world.draft}
    assert traces(session, tenant, since=NOW - timedelta(days=3)) == {world.draft, world.ingest}
    assert traces(session, tenant, until=NOW - timedelta(days=1)) == {world.ingest, world.reverify}
    assert traces(session, tenant, since=NOW - timedelta(days=3), until=NOW - timedelta(days=1)) == {world.ingest}
    # A bound given in another zone means the same instant (SQLite compares stored UTC wall clocks).
    paris = NOW.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert traces(session, tenant, since=paris - timedelta(hours=2)) == {world.draft}


def test_filter_choices_are_this_tenants_only(session: Session, world: World) -> None:
    options = filter_options(session, tenant_id=world.a.tenant_id)
    assert options.agents == ["librarian", "verifier", "writer"]
    assert options.models == ["model-a", "model-b"]
    assert options.prompt_versions == ["librarian@v2", "verifier@v1", "writer@v1"]


def test_paging_counts_and_orders_newest_first(session: Session, identity: Identity) -> None:
    made = [add_run(session, tenant_id=identity.tenant_id, started_at=NOW - timedelta(minutes=i)) for i in range(7)]
    session.commit()
    first = list_trajectories(session, tenant_id=identity.tenant_id, page=1, page_size=3)
    assert (first.total, first.pages, first.page) == (7, 3, 1)
    assert [t.trace_id for t in first.rows] == made[:3]
    second = list_trajectories(session, tenant_id=identity.tenant_id, page=2, page_size=3)
    assert [t.trace_id for t in second.rows] == made[3:6]
    past_the_end = list_trajectories(session, tenant_id=identity.tenant_id, page=99, page_size=3)
    assert past_the_end.page == 3 and [t.trace_id for t in past_the_end.rows] == made[6:]
    empty = list_trajectories(session, tenant_id=identity.tenant_id, filters=TrajectoryFilter(kind="golden"))
    assert (empty.total, empty.pages, empty.rows) == (0, 1, [])


def test_another_tenants_trace_is_never_listed_nor_opened(session: Session, world: World) -> None:
    listed = traces(session, world.a.tenant_id, model="model-secret")
    assert listed == set()
    assert world.other_tenant not in traces(session, world.a.tenant_id)
    with pytest.raises(NotFoundError, match="No trajectory"):
        get_trace(session, viewer=developer(world.a), trace_id=world.other_tenant, ring=ring())
    assert traces(session, world.b.tenant_id) == {world.other_tenant}


def test_get_trace_opens_content_and_reports_a_missing_or_wrong_key(session: Session, identity: Identity) -> None:
    paragraph_id, version_id = paragraph_with_version(session, identity, text="Biochar cut nitrate leaching by 23%.")
    stage = SpanSpec("draft", kind="stage", duration_ms=400)
    agent = SpanSpec(
        "writer", agent="writer", at_ms=50, parent=stage.span_id, content={"prompt": "Write about biochar"}
    )
    attempt = SpanSpec(
        "writer attempt 1", kind="attempt", model="local-writer", at_ms=60, parent=agent.span_id, content="raw answer"
    )
    retired = crypto.KeyRing((("retired", bytes(32)),))
    impostor = crypto.KeyRing(((ring().active_id, bytes(range(32))),))
    lost = SpanSpec("verifier", agent="verifier", at_ms=200, parent=stage.span_id, content={"x": 1})
    forged = SpanSpec("rewriter", agent="rewriter", at_ms=300, parent=stage.span_id, content={"y": 2})
    trace_id = add_run(
        session,
        tenant_id=identity.tenant_id,
        paragraph_id=paragraph_id,
        version_id=version_id,
        spans=[stage, agent, attempt],
    )
    # Same trace, content sealed under a key the ring no longer has, and under a different key with the active id.
    for spec, sealer in ((lost, retired), (forged, impostor)):
        sealed = sealer.seal_json(spec.content, aad=crypto.span_aad(identity.tenant_id, trace_id, spec.span_id))
        session.add(
            TrajectoryEvent(
                tenant_id=identity.tenant_id,
                trace_id=trace_id,
                span_id=spec.span_id,
                parent_span_id=spec.parent,
                kind="agent",
                name=spec.name,
                agent=spec.agent,
                started_at=NOW + timedelta(milliseconds=spec.at_ms),
                duration_ms=5,
                content=sealed.blob,
                key_id=sealed.key_id,
            )
        )
    session.commit()

    trace = get_trace(session, viewer=developer(identity), trace_id=trace_id, ring=ring())
    by_name = {s.event.name: s for s in trace.spans}
    assert [s.event.name for s in trace.spans] == ["draft", "writer", "writer attempt 1", "verifier", "rewriter"]
    assert [round(s.offset_ms) for s in trace.spans] == [0, 50, 60, 200, 300]
    assert [s.depth for s in trace.spans] == [0, 1, 2, 1, 1]
    assert by_name["writer"].content == {"prompt": "Write about biochar"}
    assert by_name["writer attempt 1"].content == "raw answer"
    assert by_name["draft"].content is None and by_name["draft"].content_error is None
    assert by_name["verifier"].content is None
    assert "sealed with key 'retired', which is not in the key ring" in (by_name["verifier"].content_error or "")
    assert "does not open this content" in (by_name["rewriter"].content_error or "")
    assert trace.version is not None and trace.version.text == "Biochar cut nitrate leaching by 23%."
    assert [s.verdict for s in trace.version.sentences] == ["supported", "unsupported"]

    figure = timeline_figure(trace.spans)
    bars = {bar.name: bar for bar in figure.data}
    assert set(bars) == {"stage", "agent", "attempt"}
    assert list(bars["agent"].base) == [50, 200, 300]
    assert "model local/local-writer" in bars["attempt"].customdata[0]
    assert figure.layout.yaxis.ticktext[2].endswith("└ writer attempt 1")


def test_content_copied_to_another_span_does_not_open(session: Session, identity: Identity) -> None:
    source = SpanSpec("writer", agent="writer", content={"prompt": "secret"})
    target = SpanSpec("verifier", agent="verifier", at_ms=20)
    trace_id = add_run(session, tenant_id=identity.tenant_id, spans=[source, target])
    rows = {e.span_id: e for e in session.query(TrajectoryEvent).filter_by(trace_id=trace_id)}
    rows[target.span_id].content, rows[target.span_id].key_id = (
        rows[source.span_id].content,
        rows[source.span_id].key_id,
    )
    session.commit()
    trace = get_trace(session, viewer=developer(identity), trace_id=trace_id, ring=ring())
    spans = {s.event.name: s for s in trace.spans}
    assert spans["writer"].content == {"prompt": "secret"}
    assert spans["verifier"].content is None and "does not open this content" in (spans["verifier"].content_error or "")


# The page --------------------------------------------------------------------------------------


def texts(at: Any) -> list[str]:
    return [*(t.value for t in at.text), *(c.value for c in at.caption), *(m.value for m in at.markdown)]


def test_page_on_an_empty_database_says_how_runs_get_here(make_app: MakeApp) -> None:
    at = make_app("pages/trajectories.py")
    assert not at.exception
    assert any("No trajectories yet: draft a paragraph" in c.value for c in at.caption)
    assert not at.get("plotly_chart")


def test_page_lists_runs_and_shows_a_picked_trace(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        paragraph_id, version_id = paragraph_with_version(s, ident, text="Biochar cut nitrate leaching by 23%.")
        writer = SpanSpec("writer", agent="writer", content={"prompt": "Write about biochar <b>now</b>"})
        lost = SpanSpec("verifier", agent="verifier", at_ms=30, content={"x": 1})
        drafted = add_run(
            s,
            tenant_id=ident.tenant_id,
            paragraph_id=paragraph_id,
            version_id=version_id,
            spans=[writer, SpanSpec("writer attempt 1", kind="attempt", model="m-a", parent=writer.span_id)],
        )
        sealed = crypto.KeyRing((("retired", bytes(32)),)).seal_json(
            lost.content, aad=crypto.span_aad(ident.tenant_id, drafted, lost.span_id)
        )
        s.add(
            TrajectoryEvent(
                tenant_id=ident.tenant_id,
                trace_id=drafted,
                span_id=lost.span_id,
                kind="agent",
                name="verifier",
                started_at=NOW + timedelta(milliseconds=30),
                content=sealed.blob,
                key_id=sealed.key_id,
            )
        )
        failed = add_run(
            s, tenant_id=ident.tenant_id, kind="ingest", status="error", started_at=NOW - timedelta(minutes=5)
        )
    at = make_app("pages/trajectories.py")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["Trace"]) == [drafted, failed] and list(table["Status"]) == ["ok", "error"]

    # The newest run is picked first: its timeline, spans, opened content, and the paragraph it made.
    assert at.selectbox(key="traj_trace").value == drafted
    assert len(at.get("plotly_chart")) == 1
    spans = at.dataframe[1].value
    assert list(spans["Kind"]) == ["agent", "attempt", "agent"] and "m-a" in list(spans["Model"])
    assert any("Write about biochar <b>now</b>" in j.value for j in at.json), "content shown as JSON, never markup"
    assert any("sealed with key 'retired'" in e.value.replace("\\", "") for e in at.error)
    assert "Biochar cut nitrate leaching by 23%." in [t.value for t in at.text]
    assert list(at.dataframe[2].value["Verdict"]) == ["supported", "unsupported"]
    assert at.query_params["trace"] == [drafted] or at.query_params["trace"] == drafted

    # A status filter narrows the table; picking the failed ingest shows it has no paragraph.
    at.selectbox(key="traj_status").set_value("error").run()
    assert list(at.dataframe[0].value["Trace"]) == [failed]
    assert at.selectbox(key="traj_trace").value == failed
    assert any("produced no paragraph version" in c for c in texts(at))
    assert any("recorded no spans" in c for c in texts(at))


def test_page_opens_the_trace_a_link_names_and_refuses_another_tenants(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        other = create_tenant(s, slug="other", name="Other lab")
        old = add_run(s, tenant_id=ident.tenant_id, kind="edit", started_at=NOW - timedelta(days=40))
        for i in range(30):  # pushes the old run off the first page
            add_run(s, tenant_id=ident.tenant_id, started_at=NOW - timedelta(minutes=i))
        foreign = add_run(s, tenant_id=other.tenant_id, spans=[SpanSpec("writer", content={"prompt": "theirs"})])
    at = make_app("pages/trajectories.py")
    assert old not in list(at.dataframe[0].value["Trace"])
    assert any("31 trajectories match" in c.value for c in at.caption)
    at.query_params["trace"] = old
    at.run()
    assert at.selectbox(key="traj_trace").value == old
    assert any(m.label == "Status" and m.value == "ok" for m in at.metric)
    at.number_input(key="traj_page").set_value(2).run()
    assert list(at.dataframe[0].value["Trace"])[-1] == old

    at.query_params["trace"] = foreign
    at.run()
    assert any("No trajectory" in e.value for e in at.error)
    assert not any("theirs" in j.value for j in at.json)


def test_a_real_draft_is_listed_and_viewed_with_its_spans_and_paragraph(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)  # a PDF ingested and a paragraph drafted by the local provider
    with db.session_scope(clean_db) as s:
        listed = list_trajectories(s, tenant_id=seeded.identity.tenant_id, filters=TrajectoryFilter(kind="paragraph"))
        assert [t.paragraph_id for t in listed.rows] == [seeded.paragraph_id]
        drafted = listed.rows[0].trace_id
        trace = get_trace(s, viewer=developer(seeded.identity), trace_id=drafted, ring=ring())
        text = list_versions(s, tenant_id=seeded.identity.tenant_id, paragraph_id=seeded.paragraph_id)[0].text
        assert traces(s, seeded.identity.tenant_id, agent="librarian") == {
            t.trace_id for t in list_trajectories(s, tenant_id=seeded.identity.tenant_id).rows if t.kind == "ingest"
        }
    assert trace.version is not None and trace.version.id == seeded.version_id
    assert {"writer", "verifier"} <= {sp.event.agent for sp in trace.spans if sp.event.kind == "agent"}
    assert all(sp.content_error is None for sp in trace.spans), "the tracer's content opens with the same ring"

    at = make_app("pages/trajectories.py")
    assert set(at.dataframe[0].value["Run"]) == {"paragraph", "ingest"}
    at.selectbox(key="traj_trace").set_value(drafted).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 1
    assert {"writer", "verifier"} <= set(at.dataframe[1].value["Agent"])
    assert any("You are the Writer" in j.value for j in at.json), "the Writer's prompt, decrypted"
    assert text in [t.value for t in at.text]
