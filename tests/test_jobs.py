"""In-process jobs: the jobs table records every transition, and a failed job keeps nothing of its work."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.errors import WorkbenchError
from core.jobs import FAILED, SUCCEEDED, recent_jobs, run_inline
from core.manuscripts import create_manuscript
from core.models import Job, JobTransition, Manuscript
from core.tenancy import Identity


def _transitions(session: Session, job_id: str) -> list[tuple[str | None, str]]:
    rows = session.scalars(select(JobTransition).where(JobTransition.job_id == job_id).order_by(JobTransition.id))
    return [(t.from_state, t.to_state) for t in rows]


def test_a_successful_job_records_its_lifecycle(clean_db: Engine, session: Session, identity: Identity) -> None:
    seen: list[tuple[float, str]] = []

    def work(s: Session, progress: Any, job_id: str) -> dict[str, Any]:
        progress(0.5, "half way")
        m = create_manuscript(s, tenant_id=identity.tenant_id, title="From a job")
        return {"manuscript_id": m.id}

    outcome = run_inline(
        clean_db,
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        kind="draft",
        payload={"x": 1},
        trace_id="trace-ok",
        work=work,
        progress=lambda f, m: seen.append((f, m)),
    )
    assert outcome.state == SUCCEEDED and outcome.result and outcome.error is None
    assert seen == [(0.5, "half way")]
    session.expire_all()
    job = session.get(Job, outcome.job_id)
    assert job is not None and job.queue == "generation" and job.trace_id == "trace-ok"
    assert job.started_at is not None and job.finished_at is not None and job.progress == 1.0
    assert _transitions(session, outcome.job_id) == [(None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "SUCCEEDED")]
    assert [j.id for j in recent_jobs(session, tenant_id=identity.tenant_id)] == [outcome.job_id]
    assert recent_jobs(session, tenant_id=identity.tenant_id + 1000) == []


def test_a_failed_job_keeps_its_reason_and_none_of_its_work(
    clean_db: Engine, session: Session, identity: Identity
) -> None:
    def work(s: Session, progress: Any, job_id: str) -> dict[str, Any]:
        create_manuscript(s, tenant_id=identity.tenant_id, title="Half written")
        s.flush()
        raise WorkbenchError("The PDF is encrypted: remove the password and upload it again.")

    outcome = run_inline(
        clean_db,
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        kind="ingest",
        payload={},
        trace_id="trace-bad",
        work=work,
    )
    assert outcome.state == FAILED and outcome.error and "encrypted" in outcome.error
    session.expire_all()
    assert session.scalar(select(func.count(Manuscript.id))) == 0
    job = session.get(Job, outcome.job_id)
    assert job is not None and job.state == FAILED and job.queue == "facts"
    assert _transitions(session, outcome.job_id)[-1] == ("RUNNING", "FAILED")


def test_an_unexpected_error_is_recorded_with_its_type(clean_db: Engine, session: Session, identity: Identity) -> None:
    def work(s: Session, progress: Any, job_id: str) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    # A worker must outlive any job, so the error is recorded (and logged with its traceback), not raised.
    outcome = run_inline(
        clean_db, tenant_id=identity.tenant_id, user_id=None, kind="draft", payload={}, trace_id="t", work=work
    )
    assert outcome.state == FAILED and outcome.error == "Unexpected RuntimeError: disk on fire"
    session.expire_all()
    job = session.scalars(select(Job)).one()
    assert job.state == FAILED and job.error == "Unexpected RuntimeError: disk on fire"
