"""Running one job, the same way on an RQ worker and on the in-process executor.

``execute(engine, job_id)``: ask the gate (kill switch, breakers); claim the job (QUEUED ->
RUNNING, attempt + 1); run its kind's work in one transaction while a heartbeat thread says it is
alive and relays cancellation; finish in that same transaction, fenced by the attempt, so the
work and its SUCCEEDED mark commit together or not at all. A worker killed mid-job therefore
leaves nothing half-written, and ``reap`` (run by every worker and executor every few seconds)
queues its job again or fails it once its heartbeat is older than ``JOB_STALE_AFTER_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import controls, job_records, tracing
from core.db import session_scope
from core.errors import GenerationPausedError, WorkbenchError
from core.job_kinds import KINDS, JobKind, JobRun
from core.job_records import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from core.log_context import job_context
from core.models import Job, JobTransition, table_of, utcnow
from core.progress import ProgressFn, no_progress
from core.settings import get_settings

log = logging.getLogger(__name__)
_J = table_of(Job)
_T = table_of(JobTransition)
LOST_GRACE_S = 1.0
"""How long a queued job that no queue holds is watched before it counts as lost (see resubmit_lost)."""


Work = Callable[[Session, JobRun], dict[str, Any]]
Dispatch = Callable[[str, str], None]
"""Hands a queued job (id, queue) to the executor that will run it."""


class JobCancelledError(WorkbenchError):
    """Raised inside a running job when someone asked to cancel it (or it was taken from it)."""


class _FencedOut(Exception):
    """The job was requeued, failed or cancelled behind this runner's back: commit nothing."""


class Heartbeat(threading.Thread):
    """Tells the jobs table a job is alive, with its progress; notices a cancel request."""

    def __init__(self, engine: Engine, job: Job, attempt: int, interval: float) -> None:
        super().__init__(name=f"heartbeat-{job.id[:8]}", daemon=True)
        self.engine, self.job_id, self.attempt, self.interval = engine, job.id, attempt, interval
        self.fraction, self.stage = 0.0, "Starting"
        self.cancelled = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            with self.engine.begin() as connection:
                row = connection.execute(
                    update(_J)
                    .where(_J.c.id == self.job_id, _J.c.state == RUNNING, _J.c.attempt == self.attempt)
                    .values(heartbeat_at=utcnow(), progress=round(self.fraction, 3), stage=self.stage[:64])
                    .returning(_J.c.cancel_requested)
                ).first()
        except Exception:  # a busy database must not kill the job; the next beat tries again
            log.warning("heartbeat of job %s could not be written", self.job_id, exc_info=True)
            return
        if row is None or row.cancel_requested:
            self.cancelled.set()

    def report(self, outer: ProgressFn) -> ProgressFn:
        def progress(fraction: float, message: str) -> None:
            self.fraction, self.stage = fraction, message
            outer(fraction, message)
            if self.cancelled.is_set():
                raise JobCancelledError("Cancelled at your request; nothing of this run was saved.")

        return progress

    def stop(self) -> None:
        self._halt.set()


def execute(
    engine: Engine,
    job_id: str,
    *,
    worker: str,
    dispatch: Dispatch,
    work: Work | None = None,
    progress: ProgressFn = no_progress,
) -> str:
    """Run a QUEUED job to its end; returns the state it ended in (or its state if it was not QUEUED)."""
    settings = get_settings()
    # The worker knows only the job id; the tenant comes from the job's own row.
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        if job is not None:
            s.expunge(job)
    if job is None or job.state != QUEUED:
        return job.state if job else "missing"
    kind = KINDS.get(job.kind)
    if work is None and kind is None:
        job_records.move_now(
            engine,
            job_id,
            tenant_id=job.tenant_id,
            from_state=QUEUED,
            to_state=FAILED,
            reason=f"unknown job kind {job.kind!r}",
            error=f"Unknown job kind {job.kind!r}.",
            finished_at=utcnow(),
        )
        return FAILED
    try:
        controls.check(
            engine,
            provider=settings.provider,
            trace_id=job.trace_id,
            drafting=bool(kind and kind.drafting),
            settings=settings,
        )
    except GenerationPausedError as error:
        reason = f"Not started: {error}"
        job_records.move_now(
            engine,
            job_id,
            tenant_id=job.tenant_id,
            from_state=QUEUED,
            to_state=CANCELLED,
            reason=reason,
            error=reason,
            finished_at=utcnow(),
        )
        cleanup(engine, kind, job.id, dict(job.payload))
        return CANCELLED

    attempt = job.attempt + 1
    if not _claim(engine, job, attempt, worker):
        return "taken"  # another worker claimed it first, or it was cancelled meanwhile
    beat = Heartbeat(engine, job, attempt, settings.job_heartbeat_s)
    beat.start()
    run = JobRun(job.id, job.tenant_id, job.created_by, job.trace_id, dict(job.payload), beat.report(progress))
    follow: list[tuple[str, str]] = []
    try:
        with job_context(trace_id=job.trace_id, job_id=job.id), session_scope(engine) as s:
            result = (work or kind.run)(s, run)  # type: ignore[union-attr]
            for next_kind, payload in run.follow_ups:
                next_id = job_records.create(
                    s.connection(),
                    tenant_id=job.tenant_id,
                    user_id=job.created_by,
                    kind=next_kind,
                    queue=KINDS[next_kind].queue,
                    payload=payload,
                    trace_id=job.trace_id,
                    max_attempts=settings.job_max_attempts,
                    parent_job_id=job.id,
                    reason=f"queued by job {job.id}",
                )
                follow.append((next_id, KINDS[next_kind].queue))
            if follow:
                result = {**result, "next_job_ids": [i for i, _ in follow]}
            if not job_records.move(
                s.connection(),
                job.id,
                tenant_id=job.tenant_id,
                from_state=RUNNING,
                to_state=SUCCEEDED,
                expect_attempt=attempt,
                reason="finished",
                result=result,
                progress=1.0,
                stage="Done",
                finished_at=utcnow(),
            ):
                raise _FencedOut
    except _FencedOut:
        log.warning("job %s was taken from this runner (attempt %d); its work was rolled back", job.id, attempt)
        return _state_of(engine, job.id)
    except JobCancelledError as error:
        _end(engine, job, attempt, CANCELLED, str(error))
        cleanup(engine, kind, job.id, dict(job.payload))
        return CANCELLED
    except WorkbenchError as error:
        _end(engine, job, attempt, FAILED, str(error))
        cleanup(engine, kind, job.id, dict(job.payload))
        return FAILED
    except Exception as error:
        log.exception("job %s failed unexpectedly", job.id, extra={"trace_id": job.trace_id, "job_id": job.id})
        _end(engine, job, attempt, FAILED, f"Unexpected {type(error).__name__}: {error}")
        cleanup(engine, kind, job.id, dict(job.payload))
        return FAILED
    finally:
        beat.stop()
    for next_id, queue in follow:
        dispatch(next_id, queue)
    return SUCCEEDED


def _claim(engine: Engine, job: Job, attempt: int, worker: str) -> bool:
    now = utcnow()
    return job_records.move_now(
        engine,
        job.id,
        tenant_id=job.tenant_id,
        from_state=QUEUED,
        to_state=RUNNING,
        expect_attempt=job.attempt,
        reason=f"started on {worker} (attempt {attempt} of {job.max_attempts})",
        attempt=attempt,
        worker=worker,
        started_at=now,
        heartbeat_at=now,
        stage="Starting",
        progress=0.0,
    )


def _end(engine: Engine, job: Job, attempt: int, state: str, message: str) -> None:
    job_records.move_now(
        engine,
        job.id,
        tenant_id=job.tenant_id,
        from_state=RUNNING,
        to_state=state,
        expect_attempt=attempt,
        reason=message,
        error=message,
        finished_at=utcnow(),
        progress=0.0,
    )


def cleanup(engine: Engine, kind: JobKind | None, job_id: str, payload: dict[str, Any]) -> None:
    """Undo what a job that ended without success left outside the database (its stored upload),
    and end its trajectory as an error if nothing else did (cancelled in its queue, worker lost).
    The job's own state is already recorded; a failed cleanup leaves a stray file, so it is
    logged for ops rather than turned into a second failure of the job."""
    try:
        tracing.end_job_run(engine, job_id)
    except (SQLAlchemyError, WorkbenchError):
        # The database away or the key ring misconfigured: the job's FAILED/CANCELLED state is
        # already stored (the jobs page shows it); only its trajectory keeps saying running.
        log.warning("the trajectory of job %s could not be ended", job_id, exc_info=True)
    if kind is not None and kind.cleanup is not None:
        try:
            kind.cleanup(engine, payload)
        except Exception:  # cleanup is best effort: the job's own outcome is stored already and must stand
            log.warning("cleanup after job %s failed; a stored upload may be left over", job_id, exc_info=True)


def _state_of(engine: Engine, job_id: str) -> str:
    with engine.connect() as connection:
        return str(connection.scalar(select(_J.c.state).where(_J.c.id == job_id)))


def reap(engine: Engine, *, dispatch: Dispatch) -> list[str]:
    """Jobs whose worker stopped answering: queued again while attempts remain, else FAILED.
    Returns the ids it moved. Safe to run from any number of processes at once."""
    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=settings.job_stale_after_s)
    with engine.connect() as connection:
        stale = connection.execute(
            select(
                _J.c.id,
                _J.c.tenant_id,
                _J.c.attempt,
                _J.c.max_attempts,
                _J.c.worker,
                _J.c.heartbeat_at,
                _J.c.queue,
                _J.c.kind,
                _J.c.payload,
            ).where(_J.c.state == RUNNING, _J.c.heartbeat_at < cutoff)
        ).all()
    moved = []
    for row in stale:
        silent = f"worker {row.worker} stopped responding (last heartbeat {row.heartbeat_at:%H:%M:%S} UTC)"
        if row.attempt < row.max_attempts:
            if job_records.move_now(
                engine,
                row.id,
                tenant_id=row.tenant_id,
                from_state=RUNNING,
                to_state=QUEUED,
                expect_attempt=row.attempt,
                reason=f"{silent}; nothing of that run was saved; queued again (attempt {row.attempt + 1} of "
                f"{row.max_attempts} starts afresh)",
                worker=None,
                progress=0.0,
                stage="Queued again",
            ):
                dispatch(row.id, row.queue)
                moved.append(row.id)
        else:
            message = f"{silent} on attempt {row.attempt} of {row.max_attempts}; nothing of this job was saved."
            if job_records.move_now(
                engine,
                row.id,
                tenant_id=row.tenant_id,
                from_state=RUNNING,
                to_state=FAILED,
                expect_attempt=row.attempt,
                reason=message,
                error=message,
                finished_at=utcnow(),
                progress=0.0,
            ):
                moved.append(row.id)
                cleanup(engine, KINDS.get(row.kind), row.id, dict(row.payload))
    if moved:
        log.warning("reaped %d job(s) whose worker died: %s", len(moved), ", ".join(moved))
    return moved


Holds = Callable[[str], bool]
"""Whether the executor still has a queued job (id) waiting to run."""


def resubmit_lost(engine: Engine, *, holds: Holds, dispatch: Dispatch) -> list[str]:
    """QUEUED jobs older than ``JOB_STALE_AFTER_S`` that their queue no longer holds (a hand-off
    to Redis failed after a reap or a follow-up, Redis lost its data, the web process running
    in-process jobs restarted) are handed to the queue again, with a logged reason. Running a
    job twice stays impossible: the runner claims only a QUEUED job, once."""
    cutoff = utcnow() - timedelta(seconds=get_settings().job_stale_after_s)
    # Waiting since its last move to QUEUED (a requeued job is young again), not since creation.
    queued_at = select(func.max(_T.c.at)).where(_T.c.job_id == _J.c.id, _T.c.to_state == QUEUED).scalar_subquery()

    def still_waiting() -> list[Any]:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    select(_J.c.id, _J.c.tenant_id, _J.c.queue, queued_at.label("queued_at")).where(
                        _J.c.state == QUEUED, queued_at < cutoff
                    )
                ).all()
            )

    suspects = {(row.id, row.queued_at): row for row in still_waiting() if not holds(row.id)}
    if suspects:
        # A worker that has just taken a job from Redis holds it nowhere until it claims it a moment
        # later (rq marks it started only then): look again after that moment, and count as lost
        # only a job still QUEUED since the same time and still held by no queue.
        time.sleep(LOST_GRACE_S)
    lost = [row for row in still_waiting() if (row.id, row.queued_at) in suspects and not holds(row.id)]
    for row in lost:
        job_records.move_now(
            engine,
            row.id,
            tenant_id=row.tenant_id,
            from_state=QUEUED,
            to_state=QUEUED,
            reason="its queue no longer held it; handed to the queue again",
        )
        dispatch(row.id, row.queue)
    if lost:
        log.warning("handed %d lost queued job(s) to the queue again", len(lost))
    return [row.id for row in lost]
