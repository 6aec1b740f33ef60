"""The job API every page uses: enqueue, status, cancel, retry.

It behaves the same on RQ workers (``REDIS_URL`` set) and on the in-process executor (the
embedded default): the jobs table is the source of truth, with every transition logged, and the
executor only carries job ids to whoever runs them (``core.executors``, ``core.job_runner``).
The trace id is created where the user acts and travels in the job, so every usage event and log
line of the job (and of the jobs it queues) carries it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from core import job_records, job_runner
from core.db import as_utc, session_scope
from core.errors import JobError, NotFoundError
from core.executors import Executor, QueueUnavailableError, get_executor
from core.job_kinds import KINDS, QUEUES, JobRun
from core.job_records import CANCELLED, FAILED, FINAL, QUEUED, RUNNING, SUCCEEDED
from core.models import Job, JobTransition, table_of, utcnow
from core.progress import ProgressFn, no_progress
from core.settings import get_settings
from core.storage import blob_path

log = logging.getLogger(__name__)
_J = table_of(Job)

__all__ = [
    "CANCELLED",
    "FAILED",
    "FINAL",
    "QUEUED",
    "QUEUE_FOR_KIND",
    "RUNNING",
    "SUCCEEDED",
    "JobOutcome",
    "JobView",
    "QueueUnavailableError",
    "cancel",
    "enqueue",
    "queue_stats",
    "recent_jobs",
    "retry",
    "run_inline",
    "status",
    "trace_jobs",
]

QUEUE_FOR_KIND = {name: kind.queue for name, kind in KINDS.items()}

Work = Callable[[Session, ProgressFn, str], dict[str, Any]]
"""A job body run by ``run_inline``: (session, progress, job id) -> a JSON-able result."""


@dataclass(frozen=True)
class JobView:
    """A job as a page shows it."""

    id: str
    kind: str
    queue: str
    state: str
    stage: str | None
    progress: float
    error: str | None
    result: dict[str, Any] | None
    trace_id: str
    parent_job_id: str | None
    attempt: int
    max_attempts: int
    cancel_requested: bool
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_position: int | None
    """1 = next to run on its queue; None unless QUEUED."""

    @property
    def final(self) -> bool:
        return self.state in FINAL


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    state: str
    result: dict[str, Any] | None
    error: str | None


def enqueue(
    engine: Engine,
    *,
    tenant_id: int,
    user_id: int | None,
    kind: str,
    payload: dict[str, Any],
    trace_id: str,
    executor: Executor | None = None,
) -> str:
    """Queue a job of ``kind``; returns its id at once. Refuses with ``QueueUnavailableError``
    (nothing recorded) when the queue cannot take it."""
    if kind not in KINDS:
        raise JobError(f"There is no job kind {kind!r}; kinds are {', '.join(sorted(KINDS))}.")
    executor = executor or get_executor()
    executor.ping()
    job_id = submit(engine, tenant_id=tenant_id, user_id=user_id, kind=kind, payload=payload, trace_id=trace_id)
    try:
        executor.submit(job_id, KINDS[kind].queue)
    except Exception as error:
        message = f"Could not be queued: {error}"
        job_records.move_now(
            engine,
            job_id,
            tenant_id=tenant_id,
            from_state=QUEUED,
            to_state=FAILED,
            reason=message,
            error=message,
            finished_at=utcnow(),
        )
        raise
    return job_id


def status(engine: Engine, *, tenant_id: int, job_id: str) -> JobView:
    with session_scope(engine) as s:
        job = s.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.id == job_id))
        if job is None:
            raise NotFoundError(f"Job {job_id} does not exist in this workspace.")
        return _view(s, job)


def trace_jobs(engine: Engine, *, tenant_id: int, trace_id: str) -> list[JobView]:
    """The jobs of one user action, oldest first (a draft and the verification it queued)."""
    with session_scope(engine) as s:
        jobs = s.scalars(
            select(Job).where(Job.tenant_id == tenant_id, Job.trace_id == trace_id).order_by(Job.created_at, Job.id)
        )
        return [_view(s, job) for job in jobs]


def cancel(engine: Engine, *, tenant_id: int, job_id: str, executor: Executor | None = None) -> JobView:
    """A queued job is cancelled at once; a running one stops at its next step and saves nothing."""
    view = status(engine, tenant_id=tenant_id, job_id=job_id)
    if view.state == QUEUED:
        if job_records.move_now(
            engine,
            job_id,
            tenant_id=tenant_id,
            from_state=QUEUED,
            to_state=CANCELLED,
            reason="cancelled before it started",
            error="Cancelled before it started.",
            finished_at=utcnow(),
        ):
            (executor or get_executor()).withdraw(job_id)
            job_runner.cleanup(engine, KINDS.get(view.kind), job_id, _payload(engine, job_id))
            return status(engine, tenant_id=tenant_id, job_id=job_id)
        view = status(engine, tenant_id=tenant_id, job_id=job_id)  # it started meanwhile
    if view.state == RUNNING:
        with engine.begin() as connection:
            connection.execute(
                update(_J).where(_J.c.id == job_id, _J.c.tenant_id == tenant_id).values(cancel_requested=True)
            )
        return status(engine, tenant_id=tenant_id, job_id=job_id)
    raise JobError(f"This job has already ended ({view.state.lower()}); there is nothing to cancel.")


def retry(engine: Engine, *, tenant_id: int, user_id: int | None, job_id: str, trace_id: str) -> str:
    """Queue a failed or cancelled job again, as a new job with the same kind and payload."""
    view = status(engine, tenant_id=tenant_id, job_id=job_id)
    if view.state not in (FAILED, CANCELLED):
        raise JobError(f"Only a failed or cancelled job can be retried; this one is {view.state.lower()}.")
    payload = _payload(engine, job_id)
    if view.kind == "ingest" and not blob_path(str(payload.get("sha256", ""))).exists():
        raise JobError("The uploaded file was not kept after this job ended; upload the PDF again.")
    return enqueue(engine, tenant_id=tenant_id, user_id=user_id, kind=view.kind, payload=payload, trace_id=trace_id)


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
    """Run ``work`` now, in this thread, as a recorded job with the full lifecycle (the CLI and
    scripts that must wait for the answer use this; pages ``enqueue``)."""
    job_id = submit(engine, tenant_id=tenant_id, user_id=user_id, kind=kind, payload=payload, trace_id=trace_id)
    return run_job(engine, tenant_id=tenant_id, job_id=job_id, work=work, progress=progress)


def submit(
    engine: Engine, *, tenant_id: int, user_id: int | None, kind: str, payload: dict[str, Any], trace_id: str
) -> str:
    """Record a job as QUEUED without handing it to an executor (``run_job`` runs it here)."""
    with engine.begin() as connection:
        return job_records.create(
            connection,
            tenant_id=tenant_id,
            user_id=user_id,
            kind=kind,
            queue=QUEUE_FOR_KIND.get(kind, "generation"),
            payload=payload,
            trace_id=trace_id,
            max_attempts=get_settings().job_max_attempts,
        )


def run_job(
    engine: Engine, *, tenant_id: int, job_id: str, work: Work, progress: ProgressFn = no_progress
) -> JobOutcome:
    """Run a QUEUED job in this thread, unless generation is paused (then it is CANCELLED)."""
    status(engine, tenant_id=tenant_id, job_id=job_id)  # the job must be this tenant's

    def body(s: Session, run: JobRun) -> dict[str, Any]:
        return work(s, run.progress, run.job_id)

    job_runner.execute(
        engine,
        job_id,
        worker="inline",
        dispatch=lambda next_id, queue: get_executor().submit(next_id, queue),
        work=body,
        progress=progress,
    )
    view = status(engine, tenant_id=tenant_id, job_id=job_id)
    return JobOutcome(job_id, view.state, view.result, view.error)


def recent_jobs(session: Session, *, tenant_id: int, limit: int = 50) -> list[Job]:
    return list(
        session.scalars(select(Job).where(Job.tenant_id == tenant_id).order_by(Job.created_at.desc()).limit(limit))
    )


def transitions(session: Session, *, tenant_id: int, job_id: str) -> list[JobTransition]:
    return list(
        session.scalars(
            select(JobTransition)
            .where(JobTransition.tenant_id == tenant_id, JobTransition.job_id == job_id)
            .order_by(JobTransition.id)
        )
    )


@dataclass(frozen=True)
class QueueStat:
    queue: str
    waiting: int
    running: int
    oldest_waiting_s: float | None


def queue_stats(engine: Engine) -> list[QueueStat]:
    """Each queue's length, running jobs and the age of its oldest waiting job (all workspaces:
    counts only, for ops)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(_J.c.queue, _J.c.state, func.count(), func.min(_J.c.created_at))
            .where(_J.c.state.in_([QUEUED, RUNNING]))
            .group_by(_J.c.queue, _J.c.state)
        ).all()
    now = utcnow()
    stats = {q: {"waiting": 0, "running": 0, "oldest": None} for q in QUEUES}
    for queue, state, count, oldest in rows:
        entry = stats.setdefault(queue, {"waiting": 0, "running": 0, "oldest": None})
        if state == QUEUED:
            entry["waiting"], entry["oldest"] = count, oldest
        else:
            entry["running"] = count
    return [
        QueueStat(
            queue,
            int(e["waiting"] or 0),
            int(e["running"] or 0),
            (now - as_utc(e["oldest"])).total_seconds() if e["oldest"] else None,  # type: ignore[arg-type]
        )
        for queue, e in stats.items()
    ]


def _payload(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        return dict(connection.scalar(select(_J.c.payload).where(_J.c.id == job_id)) or {})


def _view(s: Session, job: Job) -> JobView:
    position = None
    if job.state == QUEUED:
        ahead = s.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.queue == job.queue, Job.state == QUEUED, Job.created_at < job.created_at)
        )
        position = int(ahead or 0) + 1
    return JobView(
        id=job.id,
        kind=job.kind,
        queue=job.queue,
        state=job.state,
        stage=job.stage,
        progress=job.progress,
        error=job.error,
        result=job.result,
        trace_id=job.trace_id,
        parent_job_id=job.parent_job_id,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested,
        worker=job.worker,
        created_at=as_utc(job.created_at),
        started_at=as_utc(job.started_at) if job.started_at else None,
        finished_at=as_utc(job.finished_at) if job.finished_at else None,
        queue_position=position,
    )
