"""The job runner's promises, on the real database: a job finishes exactly once, a runner whose
job was taken from it commits nothing, heartbeats carry progress, and a cancel request stops a
running job without saving anything."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from core import job_records, job_runner, jobs
from core.errors import JobError
from core.job_kinds import JobRun
from core.manuscripts import create_manuscript
from core.models import Job, JobTransition, Manuscript, utcnow
from core.settings import reset_settings
from core.tenancy import Identity


@pytest.fixture(autouse=True)
def _fast_heartbeats(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOB_HEARTBEAT_S", "0.1")
    monkeypatch.setenv("JOB_STALE_AFTER_S", "5")
    reset_settings()
    yield
    reset_settings()


def no_dispatch(job_id: str, queue: str) -> None:
    raise AssertionError(f"nothing should be dispatched here ({job_id} on {queue})")


def manuscripts(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(Manuscript)) or 0)


def story(engine: Engine, job_id: str) -> list[tuple[str | None, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(JobTransition.from_state, JobTransition.to_state)
            .where(JobTransition.job_id == job_id)
            .order_by(JobTransition.id)
        ).all()
    return [(r[0], r[1]) for r in rows]


def test_a_runner_whose_job_was_requeued_commits_nothing_and_the_job_completes_once(
    clean_db: Engine, identity: Identity
) -> None:
    job_id = jobs.submit(
        clean_db, tenant_id=identity.tenant_id, user_id=identity.user_id, kind="draft", payload={}, trace_id="t1"
    )
    requeued: list[str] = []

    def stalled_then_writes(s: Session, run: JobRun) -> dict[str, Any]:
        # Seen from outside, this runner went silent: its heartbeat is old and a reaper takes the job.
        with clean_db.begin() as connection:
            connection.execute(
                update(Job).where(Job.id == run.job_id).values(heartbeat_at=utcnow() - timedelta(minutes=5))
            )
        requeued.extend(job_runner.reap(clean_db, dispatch=lambda jid, queue: None))
        create_manuscript(s, tenant_id=run.tenant_id, title="written by the stale runner")
        return {"written": True}

    state = job_runner.execute(clean_db, job_id, worker="stale", dispatch=no_dispatch, work=stalled_then_writes)
    assert requeued == [job_id]
    assert state == jobs.QUEUED and manuscripts(clean_db) == 0  # fenced out: its work was rolled back

    def writes(s: Session, run: JobRun) -> dict[str, Any]:
        create_manuscript(s, tenant_id=run.tenant_id, title="written by the second runner")
        return {"written": True}

    assert job_runner.execute(clean_db, job_id, worker="fresh", dispatch=no_dispatch, work=writes) == jobs.SUCCEEDED
    assert manuscripts(clean_db) == 1
    view = jobs.status(clean_db, tenant_id=identity.tenant_id, job_id=job_id)
    assert view.attempt == 2 and view.worker == "fresh" and view.result == {"written": True}
    assert story(clean_db, job_id) == [
        (None, "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]
    # Finished jobs are never started again.
    assert job_runner.execute(clean_db, job_id, worker="late", dispatch=no_dispatch, work=writes) == jobs.SUCCEEDED
    assert manuscripts(clean_db) == 1


def test_a_job_out_of_attempts_fails_with_the_reason_when_its_worker_dies(
    clean_db: Engine, identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_MAX_ATTEMPTS", "1")
    reset_settings()
    job_id = jobs.submit(
        clean_db, tenant_id=identity.tenant_id, user_id=identity.user_id, kind="draft", payload={}, trace_id="t2"
    )
    # A worker claimed it and then died without a word (SIGKILL): RUNNING, heartbeat long gone.
    with clean_db.begin() as connection:
        connection.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(state=jobs.RUNNING, attempt=1, worker="rq.dead.1", heartbeat_at=utcnow() - timedelta(minutes=1))
        )
    dispatched: list[str] = []
    assert job_runner.reap(clean_db, dispatch=lambda jid, queue: dispatched.append(jid)) == [job_id]
    view = jobs.status(clean_db, tenant_id=identity.tenant_id, job_id=job_id)
    assert view.state == jobs.FAILED and dispatched == []
    assert "rq.dead.1 stopped responding" in (view.error or "") and "nothing of this job was saved" in (
        view.error or ""
    )
    assert job_runner.reap(clean_db, dispatch=lambda jid, queue: dispatched.append(jid)) == []  # once only


def test_heartbeats_carry_progress_and_a_cancel_request_stops_the_job_saving_nothing(
    clean_db: Engine, identity: Identity
) -> None:
    job_id = jobs.submit(
        clean_db, tenant_id=identity.tenant_id, user_id=identity.user_id, kind="draft", payload={}, trace_id="t3"
    )
    started = threading.Event()

    def long_work(s: Session, run: JobRun) -> dict[str, Any]:
        # Reads and model calls first, writes last (as every job does): the write would come after.
        for step in range(200):
            run.progress(step / 200, f"step {step}")
            started.set()
            time.sleep(0.02)
        create_manuscript(s, tenant_id=run.tenant_id, title="finished")
        return {}

    outcome: list[str] = []
    thread = threading.Thread(
        target=lambda: outcome.append(
            job_runner.execute(clean_db, job_id, worker="w", dispatch=no_dispatch, work=long_work)
        )
    )
    thread.start()
    assert started.wait(5)
    for _ in range(50):
        view = jobs.status(clean_db, tenant_id=identity.tenant_id, job_id=job_id)
        if view.stage and view.stage.startswith("step ") and view.progress > 0:
            break
        time.sleep(0.05)
    assert view.state == jobs.RUNNING and view.stage.startswith("step ")  # type: ignore[union-attr]
    jobs.cancel(clean_db, tenant_id=identity.tenant_id, job_id=job_id)
    thread.join(10)
    assert outcome == [jobs.CANCELLED]
    view = jobs.status(clean_db, tenant_id=identity.tenant_id, job_id=job_id)
    assert view.state == jobs.CANCELLED and "nothing of this run was saved" in (view.error or "")
    assert manuscripts(clean_db) == 0
    with pytest.raises(JobError, match="already ended"):
        jobs.cancel(clean_db, tenant_id=identity.tenant_id, job_id=job_id)


def test_another_tenant_cannot_see_or_cancel_a_job(clean_db: Engine, session: Session, identity: Identity) -> None:
    from core.errors import NotFoundError
    from core.tenancy import create_tenant

    other = create_tenant(session, slug="other", name="Other")
    session.commit()
    job_id = jobs.submit(
        clean_db, tenant_id=identity.tenant_id, user_id=identity.user_id, kind="draft", payload={}, trace_id="t4"
    )
    with pytest.raises(NotFoundError):
        jobs.status(clean_db, tenant_id=other.tenant_id, job_id=job_id)
    with pytest.raises(NotFoundError):
        jobs.cancel(clean_db, tenant_id=other.tenant_id, job_id=job_id)
    assert jobs.status(clean_db, tenant_id=identity.tenant_id, job_id=job_id).state == jobs.QUEUED


def test_log_lines_of_a_job_carry_its_trace_and_job_ids(
    clean_db: Engine, identity: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from core.log_context import TraceFilter

    caplog.handler.addFilter(TraceFilter())
    job_id = jobs.submit(
        clean_db, tenant_id=identity.tenant_id, user_id=identity.user_id, kind="draft", payload={}, trace_id="trace-77"
    )

    def logs(s: Session, run: JobRun) -> dict[str, Any]:
        logging.getLogger("core.example").warning("working on it")
        return {}

    with caplog.at_level(logging.WARNING):
        job_runner.execute(clean_db, job_id, worker="w", dispatch=no_dispatch, work=logs)
        logging.getLogger("core.example").warning("outside any job")
    inside, outside = (r for r in caplog.records if r.name == "core.example")
    assert (inside.trace_id, inside.job_id) == ("trace-77", job_id)  # type: ignore[attr-defined]
    assert (outside.trace_id, outside.job_id) == ("-", "-")  # type: ignore[attr-defined]


def test_a_queued_job_its_queue_lost_is_handed_over_again_once(clean_db: Engine, identity: Identity) -> None:
    lost = jobs.submit(
        clean_db, tenant_id=identity.tenant_id, user_id=identity.user_id, kind="draft", payload={}, trace_id="t5"
    )
    held = jobs.submit(
        clean_db, tenant_id=identity.tenant_id, user_id=identity.user_id, kind="draft", payload={}, trace_id="t6"
    )
    fresh = jobs.submit(
        clean_db, tenant_id=identity.tenant_id, user_id=identity.user_id, kind="draft", payload={}, trace_id="t7"
    )
    with clean_db.begin() as connection:
        connection.execute(
            update(JobTransition)
            .where(JobTransition.job_id.in_([lost, held]))
            .values(at=utcnow() - timedelta(minutes=2))
        )
    handed: list[tuple[str, str]] = []
    moved = job_runner.resubmit_lost(
        clean_db, holds=lambda job_id: job_id == held, dispatch=lambda job_id, queue: handed.append((job_id, queue))
    )
    # Only the old job nobody holds; a young one may still be on its way to the queue.
    assert moved == [lost] and handed == [(lost, "generation")]
    assert story(clean_db, lost)[-1] == ("QUEUED", "QUEUED")
    assert jobs.status(clean_db, tenant_id=identity.tenant_id, job_id=fresh).state == jobs.QUEUED


def test_a_job_a_worker_has_just_taken_is_not_handed_over_again(
    clean_db: Engine, identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between taking a job from Redis and claiming it, a worker holds it nowhere: the first look finds
    it in no queue, the second (after the grace) finds it RUNNING, and nothing is resubmitted."""
    monkeypatch.setattr(job_runner, "LOST_GRACE_S", 0.05)
    taken = jobs.submit(
        clean_db, tenant_id=identity.tenant_id, user_id=identity.user_id, kind="draft", payload={}, trace_id="t8"
    )
    with clean_db.begin() as connection:
        connection.execute(
            update(JobTransition).where(JobTransition.job_id == taken).values(at=utcnow() - timedelta(minutes=2))
        )
    looks: list[str] = []

    def claimed_meanwhile(job_id: str) -> bool:
        if not looks:  # the worker claims it right after this first look
            job_records.move_now(
                clean_db,
                job_id,
                tenant_id=identity.tenant_id,
                from_state="QUEUED",
                to_state="RUNNING",
                reason="started",
            )
        looks.append(job_id)
        return False

    handed: list[tuple[str, str]] = []
    moved = job_runner.resubmit_lost(
        clean_db, holds=claimed_meanwhile, dispatch=lambda job_id, queue: handed.append((job_id, queue))
    )
    assert moved == [] and handed == [] and looks == [taken]
    assert ("QUEUED", "QUEUED") not in story(clean_db, taken)


def test_an_unreachable_queue_is_a_clear_error_that_never_shows_the_redis_password(clean_db: Engine) -> None:
    from core.executors import QueueUnavailableError, RqExecutor

    started = time.monotonic()
    with pytest.raises(QueueUnavailableError, match=r"redis://127\.0\.0\.1:1/0\) is not answering") as caught:
        RqExecutor(clean_db, "redis://:s3cret-pw@127.0.0.1:1/0").ping()
    assert "s3cret-pw" not in str(caught.value)
    assert time.monotonic() - started < 5  # refused, not hanging
