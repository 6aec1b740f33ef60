"""``incident scope TRACE_ID``: everything one trace touched, for the person sizing an incident.

The trace's tenant, its trajectory (status, agents), spans (timing, tokens, cost), jobs with their
transitions, the paragraphs and paragraph versions it produced, its usage events with their totals,
the users involved (who started its jobs, who created its versions, who opened its content, per the
audit log's ``TRACE_VIEWED``) and its policy violations. Metadata only: no span content is opened and
no paragraph text is shown, so scoping never widens who has read what.

Every query is bounded by the trace's tenant as well as the trace id. An admin
(``VIEW_ALL_TENANTS``) may scope any tenant's trace; anyone else holding ``VIEW_TRACES`` only their own
tenant's, and another tenant's trace is "not found" to them. Each scope is audited (``INCIDENT_SCOPE``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from core import audit, authz
from core.authz import Permission
from core.db import as_utc, session_scope
from core.errors import NotFoundError
from core.models import (
    AuditEntry,
    Job,
    JobTransition,
    LlmUsageEvent,
    ParagraphVersion,
    PolicyViolation,
    Tenant,
    Trajectory,
    TrajectoryEvent,
    User,
)
from core.tenancy import Identity


@dataclass(frozen=True)
class Usage:
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    unpriced_calls: int
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class TraceScope:
    """What ``scope`` found, section by section (plain values, ready for JSON)."""

    trace_id: str
    tenant: dict[str, Any]
    trajectory: dict[str, Any] | None
    spans: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    paragraphs: list[int]
    paragraph_versions: list[dict[str, Any]]
    usage: Usage
    users: list[dict[str, Any]]
    policy_violations: list[dict[str, Any]]
    viewers: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return as_utc(value).isoformat(timespec="milliseconds")
    if isinstance(value, Decimal):
        return float(value)
    return value


def _tenant_of(session: Any, trace_id: str, by: Identity) -> int | None:
    """The trace's tenant, as far as ``by`` may see it."""
    limit = [] if authz.allowed(by, Permission.VIEW_ALL_TENANTS) else [by.tenant_id]
    for model in (Trajectory, Job, LlmUsageEvent):
        query = select(model.tenant_id).where(model.trace_id == trace_id)
        if limit:
            query = query.where(model.tenant_id.in_(limit))
        found = session.scalar(query.limit(1))
        if found is not None:
            return int(found)
    return None


def scope(engine: Engine, *, by: Identity, trace_id: str) -> TraceScope:
    """Everything ``trace_id`` touched; ``NotFoundError`` when no run, job or usage of it is visible to ``by``.

    Requires ``VIEW_TRACES``; an admin sees any tenant's trace, anyone else their own tenant's."""
    audit.refuse(engine, by, Permission.VIEW_TRACES, subject=f"incident scope {trace_id}")
    trace_id = trace_id.strip()
    with session_scope(engine) as s:
        tenant_id = _tenant_of(s, trace_id, by)
        if tenant_id is None:
            raise NotFoundError(
                f"No trace {trace_id!r}: no run, job or model call carries it"
                + ("" if authz.allowed(by, Permission.VIEW_ALL_TENANTS) else " in your workspace")
                + ". Copy the id from the Trajectories page or a job's details."
            )
        tenant = s.get(Tenant, tenant_id)
        trajectory = s.scalar(
            select(Trajectory).where(Trajectory.tenant_id == tenant_id, Trajectory.trace_id == trace_id)
        )
        events = list(
            s.scalars(
                select(TrajectoryEvent)
                .where(TrajectoryEvent.tenant_id == tenant_id, TrajectoryEvent.trace_id == trace_id)
                .order_by(TrajectoryEvent.started_at, TrajectoryEvent.id)
            )
        )
        job_rows = list(
            s.scalars(select(Job).where(Job.tenant_id == tenant_id, Job.trace_id == trace_id).order_by(Job.created_at))
        )
        transitions = list(
            s.scalars(
                select(JobTransition)
                .where(JobTransition.tenant_id == tenant_id, JobTransition.job_id.in_([j.id for j in job_rows]))
                .order_by(JobTransition.id)
            )
        )
        versions = list(
            s.scalars(
                select(ParagraphVersion)
                .where(ParagraphVersion.tenant_id == tenant_id, ParagraphVersion.trace_id == trace_id)
                .order_by(ParagraphVersion.id)
            )
        )
        usage_rows = list(
            s.scalars(
                select(LlmUsageEvent)
                .where(LlmUsageEvent.tenant_id == tenant_id, LlmUsageEvent.trace_id == trace_id)
                .order_by(LlmUsageEvent.id)
            )
        )
        violations = list(
            s.scalars(
                select(PolicyViolation)
                .where(PolicyViolation.tenant_id == tenant_id, PolicyViolation.trace_id == trace_id)
                .order_by(PolicyViolation.id)
            )
        )
        viewed = list(
            s.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.event_type == audit.TRACE_VIEWED,
                    AuditEntry.tenant_id == tenant_id,
                    AuditEntry.subject == trace_id,
                )
                .order_by(AuditEntry.seq)
            )
        )
        user_ids = {j.created_by for j in job_rows} | {v.created_by for v in versions}
        user_ids |= {e.actor_user_id for e in viewed}
        users = list(
            s.scalars(
                select(User)
                .where(User.tenant_id == tenant_id, User.id.in_([u for u in user_ids if u is not None]))
                .order_by(User.id)
            )
        )
        result = TraceScope(
            trace_id=trace_id,
            tenant={"id": tenant_id, "slug": tenant.slug if tenant else "", "name": tenant.name if tenant else ""},
            trajectory=_trajectory(trajectory, events),
            spans=[_span(e) for e in events],
            jobs=[_job(j, [t for t in transitions if t.job_id == j.id]) for j in job_rows],
            paragraphs=sorted(
                {v.paragraph_id for v in versions}
                | ({trajectory.paragraph_id} if trajectory and trajectory.paragraph_id else set())
            ),
            paragraph_versions=[
                {
                    "id": v.id,
                    "paragraph_id": v.paragraph_id,
                    "number": v.number,
                    "status": v.status,
                    "origin": v.origin,
                    "created_by": v.created_by,
                    "created_at": v.created_at,
                }
                for v in versions
            ],
            usage=_usage(usage_rows),
            users=[
                {
                    "id": u.id,
                    "email": u.email,
                    "name": u.display_name,
                    "role": u.role,
                    "as": _roles_of(u.id, job_rows, versions, viewed),
                }
                for u in users
            ],
            policy_violations=[
                {
                    "id": p.id,
                    "agent": p.agent,
                    "direction": p.direction,
                    "rule": p.rule,
                    "severity": p.severity,
                    "action": p.action,
                    "location": p.location,
                    "created_at": p.created_at,
                }
                for p in violations
            ],
            viewers=[{"actor": e.actor, "user_id": e.actor_user_id, "at": e.at} for e in viewed],
        )
        audit.record(
            s.connection(),
            audit.INCIDENT_SCOPE,
            actor=by,
            tenant_id=tenant_id,
            subject=trace_id,
            details={
                "trace_id": trace_id,
                "spans": len(result.spans),
                "jobs": len(result.jobs),
                "paragraph_versions": [v["id"] for v in result.paragraph_versions],
                "usage_events": result.usage.calls,
            },
        )
        return result


def _roles_of(user_id: int, jobs: list[Job], versions: list[ParagraphVersion], viewed: list[AuditEntry]) -> list[str]:
    roles = []
    if any(j.created_by == user_id for j in jobs):
        roles.append("started a job")
    if any(v.created_by == user_id for v in versions):
        roles.append("created a version")
    if any(e.actor_user_id == user_id for e in viewed):
        roles.append("viewed its content")
    return roles


def _trajectory(row: Trajectory | None, events: list[TrajectoryEvent]) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "kind": row.kind,
        "status": row.status,
        "agents": sorted({e.agent for e in events if e.agent}),
        "paragraph_id": row.paragraph_id,
        "manuscript_id": row.manuscript_id,
        "document_id": row.document_id,
        "version_id": row.version_id,
        "calls": row.calls,
        "errors": row.errors,
        "error_class": row.error_class,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "duration_ms": row.duration_ms,
    }


def _span(e: TrajectoryEvent) -> dict[str, Any]:
    return {
        "span_id": e.span_id,
        "parent_span_id": e.parent_span_id,
        "kind": e.kind,
        "name": e.name,
        "agent": e.agent,
        "model": e.model,
        "status": e.status,
        "started_at": e.started_at,
        "duration_ms": e.duration_ms,
        "input_tokens": e.input_tokens,
        "output_tokens": e.output_tokens,
        "cost_usd": e.cost_usd,
    }


def _job(job: Job, transitions: list[JobTransition]) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "created_by": job.created_by,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "error": job.error,
        "transitions": [{"from": t.from_state, "to": t.to_state, "reason": t.reason, "at": t.at} for t in transitions],
    }


def _usage(rows: list[LlmUsageEvent]) -> Usage:
    inputs = sum(r.input_tokens for r in rows)
    outputs = sum(r.output_tokens for r in rows)
    return Usage(
        calls=len(rows),
        input_tokens=inputs,
        output_tokens=outputs,
        total_tokens=inputs + outputs,
        cost_usd=float(sum((Decimal(r.cost_usd) for r in rows if r.cost_usd is not None), Decimal(0))),
        unpriced_calls=sum(1 for r in rows if r.cost_usd is None),
        events=[
            {
                "id": r.id,
                "agent": r.agent,
                "provider": r.provider,
                "model": r.model,
                "prompt_version": r.prompt_version,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "cost_usd": r.cost_usd,
                "cache_hit": r.cache_hit,
                "error_class": r.error_class,
                "job_id": r.job_id,
                "created_at": r.created_at,
            }
            for r in rows
        ],
    )
