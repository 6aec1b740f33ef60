"""The jobs table: states, and every change of state with its time and reason.

States: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED; QUEUED -> CANCELLED; RUNNING ->
QUEUED again when its worker died and it has attempts left. Each change is one conditional
UPDATE (``WHERE state = expected``), so two processes can never both move the same job, and a
runner fenced out by ``attempt`` (its job was requeued or cancelled behind its back) changes
nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, update

from core.models import Job, JobTransition, table_of, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
_J = table_of(Job)
_T = table_of(JobTransition)


def create(
    connection: Connection,
    *,
    tenant_id: int,
    user_id: int | None,
    kind: str,
    queue: str,
    payload: dict[str, Any],
    trace_id: str,
    max_attempts: int,
    parent_job_id: str | None = None,
    reason: str = "submitted from the workbench",
) -> str:
    """Insert a QUEUED job and its first transition; returns its id."""
    job_id = str(uuid.uuid4())
    now = utcnow()
    connection.execute(
        _J.insert().values(
            id=job_id,
            tenant_id=tenant_id,
            kind=kind,
            queue=queue,
            state=QUEUED,
            progress=0.0,
            payload=payload,
            trace_id=trace_id,
            created_by=user_id,
            parent_job_id=parent_job_id,
            attempt=0,
            max_attempts=max_attempts,
            cancel_requested=False,
            created_at=now,
        )
    )
    connection.execute(
        _T.insert().values(tenant_id=tenant_id, job_id=job_id, from_state=None, to_state=QUEUED, reason=reason, at=now)
    )
    return job_id


def move(
    connection: Connection,
    job_id: str,
    *,
    tenant_id: int,
    from_state: str,
    to_state: str,
    reason: str,
    expect_attempt: int | None = None,
    **fields: Any,
) -> bool:
    """Move a job from ``from_state`` (and ``expect_attempt``, when given) to ``to_state``, setting
    ``fields``; False when it was not there any more (another process moved it first)."""
    conditions = [_J.c.id == job_id, _J.c.tenant_id == tenant_id, _J.c.state == from_state]
    if expect_attempt is not None:
        conditions.append(_J.c.attempt == expect_attempt)
    moved = connection.execute(update(_J).where(*conditions).values(state=to_state, **fields)).rowcount
    if moved:
        connection.execute(
            _T.insert().values(
                tenant_id=tenant_id, job_id=job_id, from_state=from_state, to_state=to_state, reason=reason, at=utcnow()
            )
        )
    return bool(moved)


def move_now(engine: Engine, job_id: str, **kwargs: Any) -> bool:
    with engine.begin() as connection:
        return move(connection, job_id, **kwargs)


def finished_fields(now: datetime | None = None, **fields: Any) -> dict[str, Any]:
    return {"finished_at": now or utcnow(), **fields}
