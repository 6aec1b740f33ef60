"""The incident procedure as commands: freeze, roll back, thaw (``incident scope`` is ``core.incident_scope``).

``freeze``: the kill switch (``controls.set_kill_switch``, with its own audit entry), then every
QUEUED job that would call a model is CANCELLED with a reason naming the incident (so none starts by
surprise later), recorded on the ``Incident`` row; then the evidence bundle (``core.evidence``) is
written from one snapshot and its path and sha256 are stored on the incident. Two ``INCIDENT_FREEZE``
entries: the freeze itself (in the transaction that stops the jobs, so the bundle holds it), then the
bundle's sha256 (anchoring the bundle in the hash chain; it cannot hold its own hash).

A job already RUNNING is not touched: its next model call meets the kill switch, it ends FAILED and
its transaction rolls back (``core.job_runner``), so nothing half-made is saved.

``thaw``: releases the kill switch and queues again (``jobs.retry``, same trace) every job the freeze
stopped and every job that ended because generation was paused while the incident was open, one per
paragraph, unless that paragraph got a version since the freeze. ``rollback_prompt`` and
``rollback_model`` go through ``core.deployments`` and ``core.routing`` (their gates, permissions and
audit entries apply) and add an ``INCIDENT_ROLLBACK`` entry linked to the open incident.

Incidents are workbench-wide, like the kill switch: their audit entries carry no tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, or_, select, update
from sqlalchemy.orm import Session

from core import audit, authz, controls, deployments, evidence, job_records, jobs, model_registry, routing
from core.authz import Permission
from core.db import as_utc, session_scope
from core.errors import IncidentError, ModelRetiredError, NotFoundError, WorkbenchError
from core.models import Document, Incident, Job, ParagraphVersion, Tenant, table_of, utcnow
from core.settings import get_settings
from core.tenancy import Identity

_I = table_of(Incident)
_J = table_of(Job)

FROZEN, THAWED = "frozen", "thawed"
MODEL_KINDS = frozenset({"ingest", "draft", "verify_draft", "edit", "reverify"})
"""Job kinds that call a model (Librarian, Writer, Verifier, Rewriter): the freeze stops these."""
EVIDENCE_WINDOW = timedelta(hours=24)
"""How far back the bundle reaches, unless the previous incident was thawed more recently."""
PAUSED_MARKERS = ("Generation is frozen", "Generation is paused")
"""How ``controls.admit``'s refusals begin: a job that ended with one was stopped by the gate."""


@dataclass(frozen=True)
class IncidentView:
    """One incident as read."""

    id: int
    state: str
    reason: str
    opened_by: str
    opened_at: datetime
    bundle_path: str
    bundle_sha256: str
    stopped_jobs: list[dict[str, Any]]
    thawed_by: str
    thawed_at: datetime | None
    thaw_note: str


@dataclass(frozen=True)
class FreezeResult:
    incident: IncidentView
    kill_switch_changed: bool
    """False when the kill switch was engaged already (the incident took it over)."""
    bundle: evidence.Bundle


@dataclass(frozen=True)
class ThawResult:
    incident: IncidentView
    requeued: list[dict[str, Any]]
    """[{"job_id", "new_job_id", "kind", "tenant_id", "trace_id"}]"""
    not_requeued: list[dict[str, Any]]
    """[{"job_id", "kind", "reason"}]: a paragraph that has a version since, or a retry refused."""


@dataclass(frozen=True)
class RollbackResult:
    what: str
    """prompt or model"""
    agent: str
    target: str
    incident_id: int | None
    routing_versions: dict[int, int]
    """Model rollback: tenant id -> the routing version saved (tenants already on the model are absent)."""
    provider: str = ""


def _view(row: Any) -> IncidentView:
    return IncidentView(
        id=int(row.id),
        state=row.state,
        reason=row.reason,
        opened_by=row.opened_by,
        opened_at=as_utc(row.opened_at),
        bundle_path=row.bundle_path or "",
        bundle_sha256=row.bundle_sha256 or "",
        stopped_jobs=list(row.stopped_jobs or []),
        thawed_by=row.thawed_by or "",
        thawed_at=as_utc(row.thawed_at) if row.thawed_at else None,
        thaw_note=row.thaw_note or "",
    )


def _connection(db: Engine | Connection | Session) -> Any:
    return db.connection() if isinstance(db, Session) else db


def open_incident(db: Connection | Session) -> IncidentView | None:
    """The incident frozen now, if any."""
    row = _connection(db).execute(select(_I).where(_I.c.state == FROZEN).order_by(_I.c.id.desc()).limit(1)).first()
    return _view(row) if row is not None else None


def list_incidents(db: Connection | Session, *, limit: int = 20) -> list[IncidentView]:
    """Incidents, newest first."""
    return [_view(r) for r in _connection(db).execute(select(_I).order_by(_I.c.id.desc()).limit(limit))]


def get_incident(db: Connection | Session, incident_id: int) -> IncidentView:
    row = _connection(db).execute(select(_I).where(_I.c.id == incident_id)).first()
    if row is None:
        raise NotFoundError(f"There is no incident {incident_id}; `python -m core incident list` shows them.")
    return _view(row)


# -- freeze ----------------------------------------------------------------------------------------


def _window_start(connection: Connection, now: datetime) -> datetime:
    previous = connection.execute(select(_I.c.thawed_at).where(_I.c.thawed_at.is_not(None)).order_by(_I.c.id.desc()))
    thawed = previous.scalar()
    start = now - EVIDENCE_WINDOW
    return max(start, as_utc(thawed)) if thawed is not None else start


def _stop_queued(connection: Connection, incident_id: int, reason: str) -> list[dict[str, Any]]:
    rows = connection.execute(
        select(_J.c.id, _J.c.tenant_id, _J.c.trace_id, _J.c.kind)
        .where(_J.c.state == job_records.QUEUED, _J.c.kind.in_(sorted(MODEL_KINDS)))
        .order_by(_J.c.created_at, _J.c.id)
    ).all()
    stopped = []
    message = f"Stopped by incident {incident_id} (generation frozen: {reason}); it is queued again at the thaw."
    for row in rows:
        # Conditional: a runner that claimed the job a moment ago keeps it (it meets the kill switch instead).
        if job_records.move(
            connection,
            row.id,
            tenant_id=row.tenant_id,
            from_state=job_records.QUEUED,
            to_state=job_records.CANCELLED,
            reason=f"stopped by incident {incident_id}: {reason}",
            error=message,
            finished_at=utcnow(),
        ):
            stopped.append({"job_id": row.id, "tenant_id": row.tenant_id, "trace_id": row.trace_id, "kind": row.kind})
    return stopped


def freeze(engine: Engine, *, by: Identity, reason: str) -> FreezeResult:
    """Open an incident: freeze generation, stop queued model jobs, write the evidence bundle.

    Requires ``KILL_SWITCH``. Refuses (``IncidentError``) without a reason or while another incident is frozen.
    """
    audit.refuse(engine, by, Permission.KILL_SWITCH, subject="incident freeze")
    reason = reason.strip()
    if not reason:
        raise IncidentError("Say why generation is frozen (--reason): it is shown to everyone and kept in the audit.")
    with engine.connect() as connection:
        frozen = open_incident(connection)
    if frozen is not None:
        raise IncidentError(
            f"Incident {frozen.id} is frozen already (by {frozen.opened_by} at "
            f"{frozen.opened_at:%Y-%m-%d %H:%M} UTC: {frozen.reason}); thaw it first with `incident thaw`."
        )
    opened = utcnow()
    changed = controls.set_kill_switch(engine, engaged=True, reason=f"incident: {reason}", actor=by)
    with engine.begin() as connection:
        since = _window_start(connection, opened)
        incident_id = connection.execute(
            _I.insert()
            .values(state=FROZEN, reason=reason, opened_by=by.name, opened_at=opened, stopped_jobs=[])
            .returning(_I.c.id)
        ).scalar_one()
        stopped = _stop_queued(connection, incident_id, reason)
        connection.execute(update(_I).where(_I.c.id == incident_id).values(stopped_jobs=stopped))
        audit.record(
            connection,
            audit.INCIDENT_FREEZE,
            actor=by,
            tenant_id=None,
            subject=f"incident {incident_id}",
            details={
                "step": "freeze",
                "incident_id": incident_id,
                "reason": reason,
                "kill_switch_changed": changed,
                "stopped_jobs": [s["job_id"] for s in stopped],
            },
        )
    bundle = evidence.write_bundle(engine, incident_id=incident_id, since=since, reason=reason, settings=get_settings())
    with engine.begin() as connection:
        connection.execute(
            update(_I).where(_I.c.id == incident_id).values(bundle_path=str(bundle.path), bundle_sha256=bundle.sha256)
        )
        audit.record(
            connection,
            audit.INCIDENT_FREEZE,
            actor=by,
            tenant_id=None,
            subject=f"incident {incident_id} evidence",
            details={
                "step": "evidence",
                "incident_id": incident_id,
                "bundle": bundle.path.name,
                "sha256": bundle.sha256,
                "rows": bundle.rows,
            },
        )
        incident = get_incident(connection, incident_id)
    return FreezeResult(incident, changed, bundle)


# -- thaw ------------------------------------------------------------------------------------------


def _candidates(connection: Connection, incident: IncidentView) -> list[Any]:
    """Jobs to queue again: those the freeze stopped, and those the gate stopped while it was frozen."""
    stopped_ids = [s["job_id"] for s in incident.stopped_jobs]
    paused = or_(*(_J.c.error.contains(marker) for marker in PAUSED_MARKERS))
    condition = _J.c.state.in_((job_records.FAILED, job_records.CANCELLED)) & _J.c.finished_at.is_not(None)
    window = (_J.c.finished_at >= incident.opened_at) & paused
    query = select(_J).where(condition, or_(_J.c.id.in_(stopped_ids), window) if stopped_ids else window)
    return list(connection.execute(query.order_by(_J.c.created_at, _J.c.id)))


def _done_since(connection: Connection, job: Any, since: datetime) -> str | None:
    """Why ``job`` need not run again (its paragraph has a version since ``since``), or None."""
    payload = job.payload or {}
    if "paragraph_id" in payload:
        newer = connection.execute(
            select(ParagraphVersion.id).where(
                ParagraphVersion.tenant_id == job.tenant_id,
                ParagraphVersion.paragraph_id == int(payload["paragraph_id"]),
                ParagraphVersion.created_at >= since,
            )
        ).first()
        return f"paragraph {payload['paragraph_id']} has a version since the freeze" if newer else None
    if job.kind == "ingest":
        present = connection.execute(
            select(Document.id).where(
                Document.tenant_id == job.tenant_id,
                Document.manuscript_id == int(payload.get("manuscript_id", 0)),
                Document.sha256 == str(payload.get("sha256", "")),
            )
        ).first()
        return "the document was added since the freeze" if present else None
    return None


def _work_key(job: Any) -> tuple[Any, ...]:
    """Jobs with the same key do the same work: queue only the newest of them again."""
    payload = job.payload or {}
    if "paragraph_id" in payload:
        return (job.tenant_id, "paragraph", payload["paragraph_id"])
    if job.kind == "ingest":
        return (job.tenant_id, "ingest", payload.get("manuscript_id"), payload.get("sha256"))
    return (job.tenant_id, "job", job.id)


def thaw(engine: Engine, *, by: Identity, note: str = "") -> ThawResult:
    """Close the frozen incident: release the kill switch and queue the stopped work again.

    Requires ``KILL_SWITCH``; refuses (``IncidentError``) when no incident is frozen."""
    audit.refuse(engine, by, Permission.KILL_SWITCH, subject="incident thaw")
    with engine.connect() as connection:
        incident = open_incident(connection)
    if incident is None:
        raise IncidentError("No incident is frozen, so there is nothing to thaw; `incident list` shows past ones.")
    controls.set_kill_switch(engine, engaged=False, reason=f"incident {incident.id} thawed", actor=by)
    with engine.connect() as connection:
        newest: dict[tuple[Any, ...], Any] = {}
        not_requeued: list[dict[str, Any]] = []
        for job in _candidates(connection, incident):  # oldest first, so the newest of each key stays
            older = newest.get(_work_key(job))
            if older is not None:
                not_requeued.append({"job_id": older.id, "kind": older.kind, "reason": f"job {job.id} does it again"})
            newest[_work_key(job)] = job
        todo = []
        for job in newest.values():
            why = _done_since(connection, job, incident.opened_at)
            if why:
                not_requeued.append({"job_id": job.id, "kind": job.kind, "reason": why})
            else:
                todo.append(job)
    requeued = []
    for job in todo:
        try:
            # The same trace: the user's action carries on where the freeze stopped it.
            new_id = jobs.retry(
                engine, tenant_id=job.tenant_id, user_id=job.created_by, job_id=job.id, trace_id=job.trace_id
            )
        except WorkbenchError as error:
            not_requeued.append({"job_id": job.id, "kind": job.kind, "reason": str(error)})
            continue
        requeued.append(
            {
                "job_id": job.id,
                "new_job_id": new_id,
                "kind": job.kind,
                "tenant_id": job.tenant_id,
                "trace_id": job.trace_id,
            }
        )
    with engine.begin() as connection:
        connection.execute(
            update(_I)
            .where(_I.c.id == incident.id, _I.c.state == FROZEN)
            .values(state=THAWED, thawed_by=by.name, thawed_at=utcnow(), thaw_note=note.strip())
        )
        audit.record(
            connection,
            audit.INCIDENT_THAW,
            actor=by,
            tenant_id=None,
            subject=f"incident {incident.id}",
            details={
                "incident_id": incident.id,
                "note": note.strip(),
                "requeued": [r["new_job_id"] for r in requeued],
                "requeued_from": [r["job_id"] for r in requeued],
                "not_requeued": not_requeued,
            },
        )
        closed = get_incident(connection, incident.id)
    return ThawResult(closed, requeued, not_requeued)


# -- rollback --------------------------------------------------------------------------------------


def _record_rollback(connection: Connection, by: Identity, result: RollbackResult, reason: str) -> None:
    audit.record(
        connection,
        audit.INCIDENT_ROLLBACK,
        actor=by,
        tenant_id=None,
        subject=f"{result.what} {result.agent} -> {result.target}",
        details={
            "what": result.what,
            "agent": result.agent,
            "to": result.target,
            "provider": result.provider,
            "reason": reason,
            "incident_id": result.incident_id,
            "routing_versions": {str(t): v for t, v in result.routing_versions.items()},
        },
    )


def rollback_prompt(engine: Engine, *, by: Identity, agent: str, version: str, reason: str) -> RollbackResult:
    """Serve ``agent``'s prompt ``version`` again (``deployments.rollback``: its gate and ``MANAGE_PROMPTS``)."""
    with session_scope(engine) as session:
        deployments.rollback(session, by=by, agent=agent, reason=reason, to_version=version)
        frozen = open_incident(session)
        result = RollbackResult("prompt", agent, version, frozen.id if frozen else None, {})
        _record_rollback(session.connection(), by, result, reason.strip())
    return result


def _active_models(registry: model_registry.Snapshot) -> list[str]:
    return sorted(
        f"{m} ({e.spec.provider})"
        for m, e in registry.entries.items()
        if e.status_on(registry.today) == model_registry.ACTIVE
    )


def _with_model(config: routing.RoutingConfig, *, provider: str, agent: str, model: str) -> routing.RoutingConfig:
    data = config.model_dump()
    data["models"] = {p: {a: dict(t) for a, t in agents.items()} for p, agents in config.models.items()}
    data["models"].setdefault(provider, {})[agent] = {tier: model for tier in routing.TIERS}
    if config.override(provider, agent):  # an override wins over every tier: it must name the model too
        data["overrides"] = {p: dict(forced) for p, forced in config.overrides.items()}
        data["overrides"][provider][agent] = model
    return routing.parse_config(data)


def rollback_model(
    engine: Engine, *, by: Identity, agent: str, model: str, reason: str, tenant_id: int | None = None
) -> RollbackResult:
    """Route ``agent`` to ``model`` on every tier (and its override, if it has one) of the model's provider,
    as a new routing version of ``tenant_id``'s configuration; None: every tenant for an admin, the caller's
    own for anyone else. The model must be registered and active. Requires ``CHANGE_ROUTING``."""
    audit.refuse(engine, by, Permission.CHANGE_ROUTING, subject=f"incident rollback {agent} -> {model}")
    if agent not in routing.AGENTS:
        raise IncidentError(f"There is no agent {agent!r}; agents are {', '.join(routing.AGENTS)}.")
    if not reason.strip():
        raise IncidentError("Say why you roll back (--reason): the audit log keeps it.")
    everyone = authz.allowed(by, Permission.VIEW_ALL_TENANTS)
    if tenant_id is not None and tenant_id != by.tenant_id:
        authz.require(by, Permission.VIEW_ALL_TENANTS)
    settings = get_settings()
    with session_scope(engine) as session:
        registry = model_registry.snapshot(session)
        entry = registry.entry(model)
        if entry is None or registry.status(model) != model_registry.ACTIVE:
            raise ModelRetiredError(
                f"{model} is {registry.status(model)} in the model registry; a rollback goes to a registered "
                f"active model: {', '.join(_active_models(registry))}."
            )
        provider = entry.spec.provider
        if tenant_id is not None:
            tenants = [tenant_id]
        elif everyone:
            tenants = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
        else:
            tenants = [by.tenant_id]
        saved: dict[int, int] = {}
        note = f"incident rollback: {agent} to {model}: {reason.strip()}"
        for tenant in tenants:
            current = routing.current_config(session, tenant_id=tenant, settings=settings)
            changed = _with_model(current.config, provider=provider, agent=agent, model=model)
            if changed == current.config:
                continue  # already routed there
            acting = replace(by, tenant_id=tenant)  # an admin acts in each tenant in turn
            stored = routing.save_config(
                session, tenant_id=tenant, config=changed, actor=acting, note=note, settings=settings
            )
            saved[tenant] = stored.version
        frozen = open_incident(session)
        result = RollbackResult("model", agent, model, frozen.id if frozen else None, saved, provider)
        _record_rollback(session.connection(), by, result, reason.strip())
    return result
