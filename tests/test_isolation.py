"""Tenant isolation: as one tenant's user, nothing of another tenant's is found, by any core query.

Every public ``core`` function that takes a tenant or an acting user (``tenant_id``, ``tenant_ids``,
``identity``, ``viewer`` or ``by``)
must appear below: either called as tenant B with tenant A's ids (it must refuse, or return
nothing of A's), or named in ``NOT_A_READ`` with the reason it reads no tenant data. A new
function that takes a tenant and is in neither table fails ``test_every_tenant_function_is_covered``.
The page walk (every page, every role) is in ``tests/test_isolation_pages.py``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

import core
from core import (
    accounts,
    alerts,
    api_tokens,
    audit,
    authz,
    crypto,
    dashboard,
    db,
    demo,
    documents,
    facts,
    false_supports,
    golive,
    incident_scope,
    incidents,
    jobs,
    manuscripts,
    metrics,
    model_registry,
    otel_export,
    pipeline,
    policy,
    policy_metrics,
    replay,
    retrieval,
    routing,
    slo,
    tenant_budgets,
    trajectories,
    ui_queries,
)
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.errors import WorkbenchError
from core.executors import get_executor
from core.models import Chunk, Document, Fact, Job, LlmUsageEvent, PolicyViolation, SentenceCheck, Trajectory
from core.settings import get_settings
from core.sources import add_source
from core.tenancy import Identity, create_tenant, is_golden_tenant
from tests.isolation_probe import leaks
from tests.ui_helpers import seed_drafted


@dataclass(frozen=True)
class World:
    """Tenant A (the default) with a drafted manuscript and its jobs; tenant B with its own."""

    a: Identity
    b: Identity
    content: tuple[str, ...]
    """Strings only tenant A's data holds: titles, file names, briefs, facts, sentences."""
    run_ids: tuple[str, ...]
    """Tenant A's trace and job ids and its token's name: metadata a result must not hold (a refusal may
    echo the id it was asked for; an admin sees other tenants' metadata on the admin pages)."""
    ids: dict[str, Any]
    """Tenant A's ids, which tenant B's calls are given."""


def _seed_b(engine: Engine) -> Identity:
    with db.session_scope(engine) as s:
        b = create_tenant(s, slug="beta", name="Beta lab")
        m = manuscripts.create_manuscript(s, tenant_id=b.tenant_id, title="Beta's own manuscript", user_id=b.user_id)
    name, pdf = demo_pdfs()[1]
    with db.session_scope(engine) as s:
        add_source(s, identity=b, manuscript_id=m.id, filename=name, data=pdf, progress=lambda _f, _m: None)
    with db.session_scope(engine) as s:
        p = manuscripts.add_paragraph(s, tenant_id=b.tenant_id, manuscript_id=m.id, brief=DEMO_BRIEFS[1])
    with db.session_scope(engine) as s:
        pipeline.draft_paragraph(s, tenant_id=b.tenant_id, user_id=b.user_id, paragraph_id=p.id)
    return b


@pytest.fixture
def world(clean_db: Engine) -> World:
    seeded = seed_drafted(clean_db, title="Alpha confidential manuscript")
    a = seeded.identity
    job_id = jobs.enqueue(
        clean_db,
        tenant_id=a.tenant_id,
        user_id=a.user_id,
        kind="reverify",
        payload={"paragraph_id": seeded.paragraph_id, "version_id": seeded.version_id},
        trace_id=pipeline.new_trace_id(),
    )
    get_executor().drain()  # type: ignore[attr-defined]
    b = _seed_b(clean_db)
    with db.session_scope(clean_db) as s:  # A asks for redaction and has a policy violation B must not count
        accounts.set_tenant_redact_pii(s, by=authz.cli_identity(a.tenant_id), tenant_id=a.tenant_id, redact=True)
        s.add(
            PolicyViolation(
                tenant_id=a.tenant_id,
                trace_id=None,
                agent="librarian",
                direction="input",
                rule="alpha_only_rule",
                severity="medium",
                action="flagged",
            )
        )
    with db.session_scope(clean_db) as s:  # A's researcher holds an API token
        _secret, a_token = api_tokens.create(s, by=a, name="Alpha private token")
    with db.session_scope(clean_db) as s:  # A keeps a routing version of its own (B has none)
        settings = get_settings()
        lower = routing.builtin_config(settings).model_copy(update={"simple_below": 10.0})
        routing.save_config(
            s, tenant_id=a.tenant_id, config=lower, actor=replace(a, role="ops"), note="alpha", settings=settings
        )
    with db.session_scope(clean_db) as s:  # A's admin reads A's trace: the audit log names it
        trace_id = s.scalar(select(Trajectory.trace_id).where(Trajectory.tenant_id == a.tenant_id))
        trajectories.get_trace(
            s, viewer=replace(a, role="admin"), trace_id=str(trace_id), ring=crypto.key_ring(get_settings())
        )
    with db.session_scope(clean_db) as s:
        b_facts = {f.text for f in s.scalars(select(Fact).where(Fact.tenant_id == b.tenant_id))}
        a_facts = [f for f in s.scalars(select(Fact).where(Fact.tenant_id == a.tenant_id))]
        sentences = [c for c in s.scalars(select(SentenceCheck).where(SentenceCheck.tenant_id == a.tenant_id))]
        traces = list(s.scalars(select(Trajectory.trace_id).where(Trajectory.tenant_id == a.tenant_id)))
        document = s.scalar(select(Document).where(Document.tenant_id == a.tenant_id))
        chunk = s.scalar(select(Chunk).where(Chunk.tenant_id == a.tenant_id))
        job_ids = list(s.scalars(select(Job.id).where(Job.tenant_id == a.tenant_id)))
        assert document is not None and chunk is not None and traces and sentences
        content = (
            "Alpha confidential manuscript",
            document.filename,
            DEMO_BRIEFS[0],
            *[f.text for f in a_facts if f.text not in b_facts],
            *[c.text for c in sentences],
        )
        ids = {
            "manuscript_id": seeded.manuscript_id,
            "paragraph_id": seeded.paragraph_id,
            "version_id": seeded.version_id,
            "document_id": document.id,
            "chunk_id": chunk.id,
            "trace_id": traces[0],
            "job_id": job_id,
            "sentence_check_id": sentences[0].id,
            "fact_refs": [f.ref for f in a_facts[:3]],
            "token_id": a_token.id,
        }
    return World(a=a, b=b, content=content, run_ids=(*traces, *job_ids, "Alpha private token"), ids=ids)


Call = Callable[[Engine, World], Any]
B = "b"


def _s(fn: Callable[..., Any], **kwargs: Any) -> Call:
    """Call ``fn(session, tenant_id=B, **kwargs)``; kwargs naming A's ids are filled from the world."""

    def call(engine: Engine, w: World) -> Any:
        with db.session_scope(engine) as s:
            resolved = {k: (w.ids[v[1:]] if isinstance(v, str) and v.startswith("@") else v) for k, v in kwargs.items()}
            if "identity" in inspect.signature(fn).parameters:
                return fn(s, identity=w.b, **resolved)
            return fn(s, tenant_id=w.b.tenant_id, **resolved)

    return call


def _e(fn: Callable[..., Any], **kwargs: Any) -> Call:
    """Like ``_s`` for functions that take the engine."""

    def call(engine: Engine, w: World) -> Any:
        resolved = {k: (w.ids[v[1:]] if isinstance(v, str) and v.startswith("@") else v) for k, v in kwargs.items()}
        return fn(engine, tenant_id=w.b.tenant_id, **resolved)

    return call


def _with_connection(engine: Engine, fn: Callable[..., Any], *args: Any) -> Any:
    with engine.connect() as connection:
        return fn(connection, *args)


def _window(fn: Callable[..., Any], **kwargs: Any) -> Call:
    return _s(fn, window="month", **kwargs)


READS: dict[str, Call] = {
    "core.alerts.rule_settings": _s(alerts.rule_settings),
    "core.tenant_budgets.budget_settings": _s(tenant_budgets.budget_settings),
    "core.tenant_budgets.limits": lambda e, w: _with_connection(e, tenant_budgets.limits, w.b.tenant_id),
    "core.alerts.evaluate": lambda e, w: alerts.evaluate(e, tenant_id=w.b.tenant_id),
    "core.alerts.active_alerts": _s(alerts.active_alerts),
    "core.alerts.alert_history": _s(alerts.alert_history),
    "core.alerts.firing_count": _s(alerts.firing_count),
    "core.dashboard.totals": _window(dashboard.totals),
    "core.dashboard.week_over_week": _s(dashboard.week_over_week),
    "core.dashboard.series": _window(dashboard.series),
    "core.dashboard.breakdowns": _window(dashboard.breakdowns),
    "core.dashboard.breakdown": _window(dashboard.breakdown, by="model"),
    "core.dashboard.latency": _window(dashboard.latency),
    "core.dashboard.error_rates": _window(dashboard.error_rates),
    "core.dashboard.paragraph_runs": _window(dashboard.paragraph_runs),
    "core.dashboard.paragraph_costs": _window(dashboard.paragraph_costs),
    "core.dashboard.model_quality": _window(dashboard.model_quality),
    "core.dashboard.quality_report": _window(dashboard.quality_report),
    "core.dashboard.quality": _window(dashboard.quality),
    "core.dashboard.prompt_failure_rates": _window(dashboard.prompt_failure_rates),
    "core.dashboard.costs_view": _window(dashboard.costs_view),
    "core.demo.demo_exists": _s(demo.demo_exists),
    "core.documents.list_documents": _s(documents.list_documents, manuscript_id="@manuscript_id"),
    "core.documents.get_document": _s(documents.get_document, document_id="@document_id"),
    "core.documents.list_chunks": _s(documents.list_chunks, document_id="@document_id"),
    "core.documents.get_chunk": _s(documents.get_chunk, chunk_id="@chunk_id"),
    "core.documents.read_original": _s(documents.read_original, document_id="@document_id"),
    "core.facts.list_facts": _s(facts.list_facts, manuscript_id="@manuscript_id"),
    "core.facts.get_facts_by_ref": _s(facts.get_facts_by_ref, manuscript_id="@manuscript_id", refs="@fact_refs"),
    "core.facts.list_rejections": _s(facts.list_rejections, document_id="@document_id"),
    "core.false_supports.reportable_sentences": _s(false_supports.reportable_sentences, manuscript_id="@manuscript_id"),
    "core.jobs.status": _e(jobs.status, job_id="@job_id"),
    "core.jobs.trace_jobs": _e(jobs.trace_jobs, trace_id="@trace_id"),
    "core.jobs.recent_jobs": _s(jobs.recent_jobs),
    "core.jobs.transitions": _s(jobs.transitions, job_id="@job_id"),
    "core.manuscripts.list_manuscripts": _s(manuscripts.list_manuscripts),
    "core.manuscripts.get_manuscript": _s(manuscripts.get_manuscript, manuscript_id="@manuscript_id"),
    "core.manuscripts.list_paragraphs": _s(manuscripts.list_paragraphs, manuscript_id="@manuscript_id"),
    "core.manuscripts.get_paragraph": _s(manuscripts.get_paragraph, paragraph_id="@paragraph_id"),
    "core.manuscripts.list_versions": _s(manuscripts.list_versions, paragraph_id="@paragraph_id"),
    "core.manuscripts.latest_version": _s(manuscripts.latest_version, paragraph_id="@paragraph_id"),
    "core.metrics.verification_summary": _s(metrics.verification_summary, manuscript_id="@manuscript_id"),
    "core.metrics.failure_modes_all_checks": _s(metrics.failure_modes_all_checks),
    "core.metrics.recent_sentence_checks": _s(metrics.recent_sentence_checks, manuscript_id="@manuscript_id"),
    "core.otel_export.export_trace": lambda e, w: otel_export.export_trace(
        e,
        tenant_id=w.b.tenant_id,
        trace_id=w.ids["trace_id"],
        settings=get_settings().model_copy(update={"otlp_endpoint": "http://127.0.0.1:1/v1/traces"}),
    ),
    "core.retrieval.search_corpus": _s(
        retrieval.search_corpus, manuscript_id="@manuscript_id", query="nitrate leaching biochar", top_k=8
    ),
    "core.retrieval.corpus_fingerprint": _s(retrieval.corpus_fingerprint, manuscript_id="@manuscript_id"),
    "core.retrieval.search_corpus_tool": lambda e, w: _tool_search(e, w),
    "core.routing.current_config": lambda e, w: _routing_current(e, w),
    "core.routing.config_history": _s(routing.config_history),
    "core.routing.judge_paragraph": _s(
        routing.judge_paragraph, manuscript_id="@manuscript_id", brief=DEMO_BRIEFS[0], refs=None
    ),
    "core.routing.brief_facts": _s(routing.brief_facts, manuscript_id="@manuscript_id", brief=DEMO_BRIEFS[0]),
    "core.routing.recent_decisions": _s(routing.recent_decisions),
    "core.slo.slo_status": _s(slo.slo_status),
    "core.audit.search": lambda e, w: [
        *_audit_search(e, w, role="ops", tenant_id=None),
        *_audit_search(e, w, role="ops", tenant_id=w.a.tenant_id),  # refused
    ],
    "core.accounts.tenant_name": _s(accounts.tenant_name),
    "core.api_tokens.list_tokens": lambda e, w: _by_call(e, w, api_tokens.list_tokens),
    "core.model_registry.remaining_usage": lambda e, w: _s(model_registry.remaining_usage)(e, w),
    "core.policy_metrics.policy_violation_rate": _s(
        policy_metrics.policy_violation_rate,
        since=datetime(2000, 1, 1, tzinfo=UTC),
        until=datetime(2100, 1, 1, tzinfo=UTC),
    ),
    "core.policy.tenant_redacts": lambda e, w: _redacts(e, w),
    "core.trajectories.list_trajectories": _s(trajectories.list_trajectories),
    "core.trajectories.filter_options": _s(trajectories.filter_options),
    "core.trajectories.get_trace": lambda e, w: _get_trace(e, w),
    "core.ui_queries.job_state_counts": _s(ui_queries.job_state_counts),
    "core.replay.recorded_agents": lambda e, w: _viewer_call(e, w, replay.recorded_agents),
    "core.replay.replay": lambda e, w: replay.replay(
        e,
        viewer=replace(w.b, role="admin"),
        trace_id=w.ids["trace_id"],
        prompt_pins={},
        model_pins={},
        ring=crypto.key_ring(get_settings()),
    ),
    "core.tenancy.is_golden_tenant": lambda e, w: _golden(e, w),
    "core.ui_queries.prompt_versions_in_use": _s(ui_queries.prompt_versions_in_use),
    "core.ui_queries.user_label": lambda e, w: _s(ui_queries.user_label, user_id=w.a.user_id)(e, w),
    "core.ui_queries.actions": lambda e, w: ui_queries.actions(e, tenant_id=w.b.tenant_id, job_ids=[w.ids["job_id"]]),
    "core.ui_queries.live_actions": lambda e, w: _s(ui_queries.live_actions, user_id=w.a.user_id)(e, w),
    "core.ui_queries.job_rows": _s(ui_queries.job_rows),
    "core.incident_scope.scope": lambda e, w: incident_scope.scope(
        e, by=replace(w.b, role="ops"), trace_id=w.ids["trace_id"]
    ),
    "core.ui_queries.transition_rows": _s(ui_queries.transition_rows, job_id="@job_id"),
    "core.golive.snapshot": lambda e, w: _golive(e, w, golive.snapshot),
    "core.golive.status": lambda e, w: _golive(e, w, golive.status),
}
"""Reads, called as tenant B with tenant A's ids."""


def _golive(engine: Engine, w: World, fn: Callable[..., Any]) -> Any:
    # B's ops: tenant figures (costs, reports, verified versions, alert rules) of B's workspace only.
    with db.session_scope(engine) as s:
        return fn(s, viewer=replace(w.b, role="ops"))


def _tool_search(engine: Engine, w: World) -> Any:
    with db.session_scope(engine) as s:
        tool = retrieval.search_corpus_tool(s, tenant_id=w.b.tenant_id, manuscript_id=w.ids["manuscript_id"])
        return tool.fn(query="nitrate leaching biochar", top_k=8)


def _routing_current(engine: Engine, w: World) -> Any:
    with db.session_scope(engine) as s:
        return routing.current_config(s, tenant_id=w.b.tenant_id, settings=get_settings())


def _get_trace(engine: Engine, w: World) -> Any:
    with db.session_scope(engine) as s:
        return trajectories.get_trace(
            s, viewer=replace(w.b, role="admin"), trace_id=w.ids["trace_id"], ring=crypto.key_ring(get_settings())
        )


def _viewer_call(engine: Engine, w: World, fn: Callable[..., Any]) -> Any:
    with db.session_scope(engine) as s:
        return fn(s, viewer=replace(w.b, role="admin"), trace_id=w.ids["trace_id"])


def _by_call(engine: Engine, w: World, fn: Callable[..., Any], **kwargs: Any) -> Any:
    with db.session_scope(engine) as s:
        return fn(s, by=replace(w.b, role="ops"), **kwargs)


def _golden(engine: Engine, w: World) -> bool:
    with engine.connect() as connection:
        answer = is_golden_tenant(connection, tenant_id=w.b.tenant_id)
    assert answer is False
    return answer


def _redacts(engine: Engine, w: World) -> bool:
    with engine.connect() as connection:
        redacts = policy.tenant_redacts(connection, tenant_id=w.b.tenant_id)
    assert redacts is False  # tenant A asks for redaction (the world sets it), B does not
    return redacts


def _audit_search(engine: Engine, w: World, *, role: str, tenant_id: int | None) -> Any:
    with engine.connect() as connection:
        return audit.search(connection, viewer=replace(w.b, role=role), tenant_id=tenant_id)


WRITES: dict[str, Call] = {
    "core.api_tokens.revoke": lambda e, w: _by_call(e, w, api_tokens.revoke, token_id=w.ids["token_id"]),
    "core.routing.restore_config": lambda e, w: _s(
        routing.restore_config, by=replace(w.b, role="ops"), version=1, settings=get_settings()
    )(e, w),
    "core.documents.ingest_pdf": _s(
        documents.ingest_pdf,
        manuscript_id="@manuscript_id",
        filename="x.pdf",
        data=demo_pdfs()[2][1],
        progress=lambda _f, _m: None,
    ),
    "core.documents.prepare_pdf": _s(
        documents.prepare_pdf,
        manuscript_id="@manuscript_id",
        filename="x.pdf",
        data=demo_pdfs()[2][1],
        progress=lambda _f, _m: None,
    ),
    "core.sources.add_source": _s(
        add_source, manuscript_id="@manuscript_id", filename="x.pdf", data=demo_pdfs()[2][1], progress=lambda f, m: None
    ),
    "core.facts.extract_facts": _s(facts.extract_facts, document_id="@document_id", trace_id="t-iso"),
    "core.false_supports.report_false_support": lambda e, w: _s(
        false_supports.report_false_support, user_id=w.b.user_id, sentence_check_id="@sentence_check_id", note="x"
    )(e, w),
    "core.incidents.rollback_model": lambda e, w: incidents.rollback_model(
        e, by=replace(w.b, role="ops"), agent="writer", model="gpt-4.1-mini", reason="x", tenant_id=w.a.tenant_id
    ),
    "core.jobs.cancel": _e(jobs.cancel, job_id="@job_id"),
    "core.jobs.retry": lambda e, w: _e(jobs.retry, user_id=w.b.user_id, job_id="@job_id", trace_id="t-iso")(e, w),
    "core.manuscripts.add_paragraph": _s(manuscripts.add_paragraph, manuscript_id="@manuscript_id", brief="hi"),
    "core.manuscripts.update_brief": _s(manuscripts.update_brief, paragraph_id="@paragraph_id", brief="hijacked"),
    "core.manuscripts.accept_version": _s(
        manuscripts.accept_version, paragraph_id="@paragraph_id", version_id="@version_id"
    ),
    "core.pipeline.draft_paragraph": lambda e, w: _s(
        pipeline.draft_paragraph, user_id=w.b.user_id, paragraph_id="@paragraph_id"
    )(e, w),
    "core.pipeline.write_draft": _s(pipeline.write_draft, paragraph_id="@paragraph_id", trace_id="t-iso"),
    "core.pipeline.save_edited_version": lambda e, w: _s(
        pipeline.save_edited_version,
        user_id=w.b.user_id,
        paragraph_id="@paragraph_id",
        sentences=[("Hijacked sentence.", w.ids["fact_refs"][:1])],
        trace_id="t-iso",
    )(e, w),
    "core.pipeline.reverify": lambda e, w: _s(
        pipeline.reverify, user_id=w.b.user_id, paragraph_id="@paragraph_id", version_id="@version_id", trace_id="t"
    )(e, w),
}
"""Writes aimed at tenant A's rows, made as tenant B: each must be refused."""

NOT_A_READ: dict[str, str] = {
    "core.api_tokens.create": "creates a token of the caller's own account, in its own tenant",
    "core.deployments.activate": "prompt deployments are workbench-wide, not tenant data (MANAGE_PROMPTS)",
    "core.deployments.promote": "prompt deployments are workbench-wide, not tenant data (MANAGE_PROMPTS)",
    "core.deployments.retire": "prompt deployments are workbench-wide, not tenant data (MANAGE_PROMPTS)",
    "core.deployments.rollback": "prompt deployments are workbench-wide, not tenant data (MANAGE_PROMPTS)",
    "core.deployments.start_canary": "prompt deployments are workbench-wide, not tenant data (MANAGE_PROMPTS)",
    "core.accounts.create_tenant": "workbench administration (MANAGE_USERS, admins only); refusals in test_accounts",
    "core.accounts.list_tenants": "account metadata across tenants for admins only; refusals in test_accounts",
    "core.accounts.list_users": "account metadata across tenants for admins only; refusals in test_accounts",
    "core.accounts.reset_password": "workbench administration (MANAGE_USERS); refusals in test_accounts",
    "core.accounts.set_active": "workbench administration (MANAGE_USERS); refusals in test_accounts",
    "core.accounts.set_role": "workbench administration (MANAGE_USERS); refusals in test_accounts",
    "core.accounts.unlock": "workbench administration (MANAGE_USERS); refusals in test_accounts",
    "core.audit.access_review": "audit metadata across tenants (EXPORT_AUDIT, admins only); refusals in test_audit",
    "core.audit.export": "audit metadata across tenants (EXPORT_AUDIT, admins only); refusals in test_audit",
    "core.model_registry.deprecate": "the registry is workbench-wide, not tenant data (MANAGE_MODELS)",
    "core.model_registry.reactivate": "the registry is workbench-wide, not tenant data (MANAGE_MODELS)",
    "core.model_registry.register": "the registry is workbench-wide, not tenant data (MANAGE_MODELS)",
    "core.model_registry.retire": "the registry is workbench-wide, not tenant data (MANAGE_MODELS)",
    "core.accounts.create_user": "admins only (MANAGE_USERS), into the tenant named; tested in test_accounts",
    "core.accounts.set_tenant_redact_pii": "admins only (MANAGE_USERS); tested in test_accounts",
    "core.accounts.start_session": "opens a session for the identity login returned",
    "core.alerts.update_rule": "changes tenant B's own rule settings (tested in test_authz_actions)",
    "core.tenant_budgets.update_budgets": "changes tenant B's own budgets (test_tenant_budgets, test_authz_actions)",
    "core.audit.entry_hash": "pure: hashes the values it is given",
    "core.audit.record": "appends to the audit log; reads nothing",
    "core.authz.allowed": "pure: a role's permissions",
    "core.authz.require": "pure: a role's permissions",
    "core.authz.cli_identity": "pure: builds an identity",
    "core.crypto.span_aad": "pure: associated data for sealing",
    "core.gateway.tool_call_aad": "pure: associated data for sealing",
    "core.llm_cache.aad": "pure: associated data for sealing",
    "core.dashboard.spend_by_tenant": "metadata across tenants, asked with explicit tenant ids (admins only)",
    "core.demo.seed_demo": "creates the demo in the identity's own tenant",
    "core.job_records.create": "creates a job in the tenant it is given",
    "core.job_records.move": "tested below: moving another tenant's job changes nothing",
    "core.jobs.enqueue": "creates a job in the tenant it is given",
    "core.jobs.submit": "creates a job in the tenant it is given",
    "core.jobs.run_inline": "runs a job it creates in the tenant it is given",
    "core.jobs.run_job": "runs a job by id for its own tenant (workers); refusal tested in test_job_lifecycle",
    "core.manuscripts.create_manuscript": "creates in the tenant it is given",
    "core.pipeline.finish_draft": "second half of a draft started by write_draft, which is refused",
    "core.routing.save_config": "saves tenant B's own configuration (tested in test_authz_actions)",
    "core.tracing.start": "writes the calling run's own trajectory",
    "core.tracing.finish": "writes the calling run's own trajectory",
    "core.incidents.freeze": "workbench-wide: the kill switch and every queued model job (KILL_SWITCH)",
    "core.incidents.thaw": "workbench-wide: releases the kill switch, requeues jobs in their own tenants",
    "core.incidents.rollback_prompt": "prompt deployments are workbench-wide, not tenant data (MANAGE_PROMPTS)",
    "core.drills.kill_switch_drill": "workbench-wide: the kill switch; its probe job is in its own drill tenant",
}


def tenant_functions() -> set[str]:
    found = set()
    for info in pkgutil.walk_packages(core.__path__, "core."):
        if info.name in ("core.ui", "core.__main__") or ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, fn in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != module.__name__:
                continue
            if {"tenant_id", "tenant_ids", "identity", "viewer", "by"} & set(inspect.signature(fn).parameters):
                found.add(f"{info.name}.{name}")
    return found


def test_every_tenant_function_is_covered() -> None:
    covered = set(READS) | set(WRITES) | set(NOT_A_READ)
    missing = sorted(tenant_functions() - covered)
    assert not missing, f"functions taking a tenant that the isolation test does not cover: {missing}"
    assert not sorted(covered - tenant_functions()), "the tables name functions that no longer exist"


@pytest.fixture
def tables_unchanged(clean_db: Engine) -> Iterator[Callable[[], dict[str, int]]]:
    yield lambda: {}


@pytest.mark.parametrize("name", sorted(READS))
def test_reads_as_another_tenant_find_nothing(world: World, clean_db: Engine, name: str) -> None:
    try:
        result = READS[name](clean_db, world)
    except WorkbenchError as refused:  # a refusal may name the id it was given, never A's content
        assert not leaks(str(refused), world.content, tenant_id=world.a.tenant_id), name
        return
    assert not leaks(result, world.content + world.run_ids, tenant_id=world.a.tenant_id), name


@pytest.mark.parametrize("name", sorted(WRITES))
def test_writes_aimed_at_another_tenant_are_refused(world: World, clean_db: Engine, name: str) -> None:
    before = _fingerprint(clean_db, world.a.tenant_id)
    with pytest.raises(WorkbenchError) as refused:
        WRITES[name](clean_db, world)
    assert not leaks(str(refused.value), world.content, tenant_id=world.a.tenant_id)
    assert _fingerprint(clean_db, world.a.tenant_id) == before, f"{name} changed tenant A's data"


def test_moving_another_tenants_job_changes_nothing(world: World, clean_db: Engine) -> None:
    from core import job_records

    with clean_db.begin() as connection:
        moved = job_records.move(
            connection,
            world.ids["job_id"],
            tenant_id=world.b.tenant_id,
            from_state=jobs.SUCCEEDED,
            to_state=jobs.FAILED,
            reason="hijack",
        )
    assert not moved
    assert jobs.status(clean_db, tenant_id=world.a.tenant_id, job_id=world.ids["job_id"]).state == jobs.SUCCEEDED


def _fingerprint(engine: Engine, tenant_id: int) -> dict[str, Any]:
    """Tenant A's rows by table (counts) and its paragraphs' briefs and accepted versions."""
    from core.models import Base, Paragraph

    with db.session_scope(engine) as s:
        counts = {}
        for table in Base.metadata.sorted_tables:
            if "tenant_id" in table.c:
                counts[table.name] = (
                    s.execute(select(table.c.tenant_id).where(table.c.tenant_id == tenant_id)).all().__len__()
                )
        paragraphs = [
            (p.brief, p.accepted_version_id)
            for p in s.scalars(select(Paragraph).where(Paragraph.tenant_id == tenant_id))
        ]
    return {"counts": counts, "paragraphs": paragraphs}


def test_counts_across_tenants_count_only_the_callers(world: World, clean_db: Engine) -> None:
    """Figures carry no text to look for: the policy rate and deprecated-model usage are compared
    with tenant B's own rows."""
    forever = {"since": datetime(2000, 1, 1, tzinfo=UTC), "until": datetime(2100, 1, 1, tzinfo=UTC)}
    with db.session_scope(clean_db) as s:
        rate = policy_metrics.policy_violation_rate(s, tenant_id=world.b.tenant_id, **forever)
        b_calls = s.scalar(select(func.count()).where(LlmUsageEvent.tenant_id == world.b.tenant_id))
        assert "alpha_only_rule" not in rate.by_rule
        assert rate.calls == b_calls
        writer_model = s.scalar(
            select(LlmUsageEvent.model).where(
                LlmUsageEvent.tenant_id == world.b.tenant_id, LlmUsageEvent.agent == "writer"
            )
        )
        assert writer_model
        model_registry.deprecate(
            s,
            by=authz.cli_identity(world.b.tenant_id),
            model=writer_model,
            removal_date=date.today() + timedelta(days=30),
        )
    with db.session_scope(clean_db) as s:
        b_writer_calls = s.scalar(
            select(func.count()).where(
                LlmUsageEvent.tenant_id == world.b.tenant_id, LlmUsageEvent.model == writer_model
            )
        )
        all_writer_calls = s.scalar(select(func.count()).where(LlmUsageEvent.model == writer_model))
        assert all_writer_calls > b_writer_calls > 0  # both tenants drafted with it
        (usage,) = model_registry.remaining_usage(s, identity=world.b, models=[writer_model])
        assert usage.calls == b_writer_calls
        (everyone,) = model_registry.remaining_usage(s, identity=replace(world.b, role="admin"), models=[writer_model])
        assert everyone.calls == all_writer_calls  # an admin sees every tenant's figures (metadata, no content)
