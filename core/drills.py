"""Operational drills: ``python -m core drill kill-switch`` throws the real kill switch and checks it holds.

The kill-switch drill, step by step: refuse if the switch is engaged already (a drill never releases
someone's real freeze); engage it (reason "drill"); the gate refuses a model call; a queued probe job
ends CANCELLED without its work running; the status banner says generation is paused; release it; a
call is admitted again. The switch is released in a ``finally`` whenever the drill engaged it, so a
failing step never leaves generation frozen. While the drill runs (a moment), real jobs that start
are refused like in any freeze; their users can retry them.

The probe job lives in a tenant of its own (``DRILL_TENANT_SLUG``) so no workspace's job list shows
it; its work only notes that it ran (it must not). Each run is a ``Drill`` row (kind, passed, each
step's outcome) audited as ``DRILL`` in the same transaction; the go-live criteria read the newest
passing one (``last_passed``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import audit, controls, jobs
from core.authz import Permission
from core.db import as_utc, session_scope
from core.errors import GenerationPausedError, IncidentError, WorkbenchError
from core.models import Drill, Tenant, table_of, utcnow
from core.settings import get_settings
from core.tenancy import Identity

KILL_SWITCH_DRILL = "kill-switch"
DRILL_REASON = "drill"
DRILL_TENANT_SLUG = "drills"
"""The tenant the probe jobs of drills are queued in."""
PROBE_KIND = "reverify"
"""The probe job's kind: a generation kind, so the gate treats it as real work (its work is replaced)."""
_D = table_of(Drill)


@dataclass(frozen=True)
class Step:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class DrillRecord:
    id: int
    kind: str
    passed: bool
    actor: str
    started_at: datetime
    finished_at: datetime | None
    steps: list[Step]


def _record(row: Any) -> DrillRecord:
    steps = [Step(s["name"], bool(s["passed"]), s["detail"]) for s in (row.details or {}).get("steps", [])]
    return DrillRecord(
        int(row.id),
        row.kind,
        bool(row.passed),
        row.actor or "",
        as_utc(row.started_at),
        as_utc(row.finished_at) if row.finished_at else None,
        steps,
    )


def last_passed(engine: Engine, kind: str = KILL_SWITCH_DRILL) -> DrillRecord | None:
    """The newest drill of ``kind`` in which every step held, or None."""
    with engine.connect() as connection:
        row = connection.execute(
            select(_D).where(_D.c.kind == kind, _D.c.passed.is_(True)).order_by(_D.c.started_at.desc()).limit(1)
        ).first()
    return _record(row) if row is not None else None


def recent(engine: Engine, *, kind: str = KILL_SWITCH_DRILL, limit: int = 10) -> list[DrillRecord]:
    """Drills of ``kind``, newest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(_D).where(_D.c.kind == kind).order_by(_D.c.started_at.desc()).limit(limit)
        ).all()
    return [_record(r) for r in rows]


def _drill_tenant(session: Session) -> int:
    found = session.scalar(select(Tenant.id).where(Tenant.slug == DRILL_TENANT_SLUG))
    if found is not None:
        return int(found)
    tenant = Tenant(slug=DRILL_TENANT_SLUG, name="Drills (probe jobs)")
    session.add(tenant)
    session.flush()
    return tenant.id


def _gate_refuses(engine: Engine, trace_id: str) -> Step:
    settings = get_settings()
    try:
        controls.check(engine, provider=settings.provider, trace_id=trace_id, drafting=True, settings=settings)
    except GenerationPausedError as error:
        return Step("gate refuses a model call", "kill switch" in str(error), str(error))
    return Step("gate refuses a model call", False, "the gate admitted a model call while the switch was engaged")


def _probe_does_not_start(engine: Engine, tenant_id: int, trace_id: str) -> Step:
    ran: list[str] = []

    def work(_s: Session, _progress: Any, job_id: str) -> dict[str, Any]:
        ran.append(job_id)
        return {}

    job_id = jobs.submit(engine, tenant_id=tenant_id, user_id=None, kind=PROBE_KIND, payload={}, trace_id=trace_id)
    outcome = jobs.run_job(engine, tenant_id=tenant_id, job_id=job_id, work=work)
    held = outcome.state == jobs.CANCELLED and not ran
    return Step("a queued job does not start", held, f"probe job {job_id} ended {outcome.state}: {outcome.error or ''}")


def _banner_paused(engine: Engine) -> Step:
    status = controls.status(engine)
    held = status.generation_paused and status.kill_switch.engaged and status.kill_switch.reason == DRILL_REASON
    return Step("the banner says paused", held, status.message() if status.generation_paused else "not paused")


def _admitted(engine: Engine, trace_id: str) -> Step:
    settings = get_settings()
    try:
        controls.check(engine, provider=settings.provider, trace_id=trace_id, drafting=False, settings=settings)
    except GenerationPausedError as error:
        return Step("a call is admitted again", False, str(error))
    return Step("a call is admitted again", True, "the gate admits calls")


def kill_switch_drill(engine: Engine, *, by: Identity) -> DrillRecord:
    """Run the kill-switch drill and record it; the record says whether every step held.

    Requires ``KILL_SWITCH``. Refuses (``IncidentError``, nothing changed) while the switch is engaged."""
    audit.refuse(engine, by, Permission.KILL_SWITCH, subject="kill-switch drill")
    switch = controls.status(engine).kill_switch
    if switch.engaged:
        raise IncidentError(
            f"The kill switch is engaged (by {switch.actor or 'ops'}: {switch.reason}); a drill never releases a "
            "real freeze. Run it once generation is released."
        )
    started = utcnow()
    trace_id = f"drill-{uuid.uuid4().hex[:16]}"
    with session_scope(engine) as s:
        tenant_id = _drill_tenant(s)
    steps: list[Step] = []
    engaged = False
    try:
        engaged = controls.set_kill_switch(engine, engaged=True, reason=DRILL_REASON, actor=by)
        steps.append(Step("engage the kill switch", engaged, "engaged" if engaged else "someone engaged it first"))
        if engaged:
            steps.append(_gate_refuses(engine, trace_id))
            steps.append(_probe_does_not_start(engine, tenant_id, trace_id))
            steps.append(_banner_paused(engine))
    except WorkbenchError as error:
        steps.append(Step("drill step", False, f"{type(error).__name__}: {error}"))
    finally:
        if engaged:
            released = controls.set_kill_switch(engine, engaged=False, reason="drill over", actor=by)
            steps.append(Step("release the kill switch", released, "released" if released else "already released"))
    if engaged:
        steps.append(_admitted(engine, trace_id))
    passed = bool(steps) and all(step.passed for step in steps)
    finished = utcnow()
    details = {"steps": [{"name": s.name, "passed": s.passed, "detail": s.detail} for s in steps]}
    with engine.begin() as connection:
        drill_id = connection.execute(
            _D.insert()
            .values(
                kind=KILL_SWITCH_DRILL,
                started_at=started,
                finished_at=finished,
                passed=passed,
                actor=by.name,
                details=details,
            )
            .returning(_D.c.id)
        ).scalar_one()
        audit.record(
            connection,
            audit.DRILL,
            actor=by,
            tenant_id=None,
            subject=f"{KILL_SWITCH_DRILL} drill {drill_id}",
            details={"drill_id": drill_id, "kind": KILL_SWITCH_DRILL, "passed": passed, **details},
        )
    return DrillRecord(drill_id, KILL_SWITCH_DRILL, passed, by.name, started, finished, steps)
