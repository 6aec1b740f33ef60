"""Jobs: the table the UI trusts for what ran, when, and how it ended.

This module runs jobs in-process (the embedded default): the job row and each state
transition are committed in their own transactions, and the work runs in one transaction
of its own, so a failed job leaves its FAILED row and reason behind and none of its
half-done work. A job is asked at the gate before it starts: while the kill switch is
engaged or a circuit breaker is open it is not started but CANCELLED with the reason (the
in-process executor has no queue to hold it in; RQ workers arrive with the worker issue).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import controls
from core.db import session_scope
from core.errors import GenerationPausedError, JobError, WorkbenchError
from core.models import Job, JobTransition, utcnow
from core.progress import ProgressFn, no_progress
from core.settings import get_settings

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
QUEUE_FOR_KIND = {"ingest": "facts", "draft": "generation", "edit": "verification", "reverify": "verification"}

Work = Callable[[Session, ProgressFn, str], dict[str, Any]]
"""A job's body: given its session, a progress callback and the job id, returns a JSON-able result."""


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    state: str
    result: dict[str, Any] | None
    error: str | None


def _transition(engine: Engine, tenant_id: int, job_id: str, to_state: str, reason: str, **fields: Any) -> None:
    with session_scope(engine) as session:
        job = session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.id == job_id))
        if job is None:
            raise WorkbenchError(f"Job {job_id} vanished while running.")
        session.add(
            JobTransition(
                tenant_id=job.tenant_id, job_id=job_id, from_state=job.state, to_state=to_state, reason=reason
            )
        )
        job.state = to_state
        for key, value in fields.items():
            setattr(job, key, value)


def run_inline(
    engine: Engine,
    *,
    tenant_id: int,
    user_id: int | None,
    kind: str,
    payload: dict[str, Any],
    trace_id: str,
    work: Work,
    progress: ProgressFn = no_progress,
) -> JobOutcome:
    """Run ``work`` now, recording the job and its transitions. Errors a user can act on are
    returned as a FAILED outcome with their message; anything else is recorded and re-raised."""
    job_id = submit(engine, tenant_id=tenant_id, user_id=user_id, kind=kind, payload=payload, trace_id=trace_id)
    return run_job(engine, tenant_id=tenant_id, job_id=job_id, work=work, progress=progress)


def submit(
    engine: Engine, *, tenant_id: int, user_id: int | None, kind: str, payload: dict[str, Any], trace_id: str
) -> str:
    """Record a job as QUEUED; returns its id."""
    job_id = str(uuid.uuid4())
    with session_scope(engine) as session:
        session.add(
            Job(
                id=job_id,
                tenant_id=tenant_id,
                kind=kind,
                queue=QUEUE_FOR_KIND.get(kind, "generation"),
                state=QUEUED,
                payload=payload,
                trace_id=trace_id,
                created_by=user_id,
            )
        )
        session.flush()
        session.add(
            JobTransition(
                tenant_id=tenant_id,
                job_id=job_id,
                from_state=None,
                to_state=QUEUED,
                reason="submitted from the workbench",
            )
        )
    return job_id


def run_job(
    engine: Engine, *, tenant_id: int, job_id: str, work: Work, progress: ProgressFn = no_progress
) -> JobOutcome:
    """Start a QUEUED job now, unless generation is paused (then it is CANCELLED, untouched)."""
    with session_scope(engine) as session:
        job = session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.id == job_id))
        if job is None:
            raise JobError(f"Job {job_id} does not exist in this workspace.")
        if job.state != QUEUED:
            raise JobError(f"Job {job_id} is {job.state}, not QUEUED; only a queued job can start.")
        trace_id, kind = job.trace_id, job.kind
    try:
        settings = get_settings()
        controls.check(
            engine, provider=settings.provider, trace_id=trace_id, drafting=kind == "draft", settings=settings
        )
    except GenerationPausedError as error:
        reason = f"Not started: {error}"
        _transition(engine, tenant_id, job_id, CANCELLED, reason, error=reason, finished_at=utcnow())
        return JobOutcome(job_id, CANCELLED, None, str(error))
    _transition(engine, tenant_id, job_id, RUNNING, "started in-process", started_at=utcnow())
    try:
        with session_scope(engine) as session:
            result = work(session, progress, job_id)
    except WorkbenchError as error:
        _transition(engine, tenant_id, job_id, FAILED, str(error), error=str(error), finished_at=utcnow(), progress=0.0)
        return JobOutcome(job_id, FAILED, None, str(error))
    except Exception as error:
        message = f"Unexpected {type(error).__name__}: {error}"
        log.exception("job failed", extra={"trace_id": trace_id, "job_id": job_id})
        _transition(engine, tenant_id, job_id, FAILED, message, error=message, finished_at=utcnow(), progress=0.0)
        raise
    _transition(engine, tenant_id, job_id, SUCCEEDED, "finished", result=result, finished_at=utcnow(), progress=1.0)
    return JobOutcome(job_id, SUCCEEDED, result, None)


def recent_jobs(session: Session, *, tenant_id: int, limit: int = 50) -> list[Job]:
    return list(
        session.scalars(select(Job).where(Job.tenant_id == tenant_id).order_by(Job.created_at.desc()).limit(limit))
    )
