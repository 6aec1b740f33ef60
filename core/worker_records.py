"""Who runs jobs: each worker process (RQ worker or in-process executor) keeps a row alive."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update

from core.db import as_utc
from core.models import WorkerRecord, table_of, utcnow
from core.settings import get_settings

_W = table_of(WorkerRecord)
BEAT_S = 5.0
"""How often a worker (and an executor) beats for itself and reaps dead workers' jobs, seconds."""


def default_name(kind: str) -> str:
    return f"{kind}.{socket.gethostname()}.{os.getpid()}"


def beat(
    engine: Engine, *, name: str, kind: str, queues: list[str], state: str, current_job_id: str | None = None
) -> None:
    """Say this worker is alive (and what it is doing); creates its row the first time."""
    now = utcnow()
    values = {"state": state, "current_job_id": current_job_id, "heartbeat_at": now, "queues": queues}
    with engine.begin() as connection:
        if not connection.execute(update(_W).where(_W.c.name == name).values(**values)).rowcount:
            connection.execute(
                _W.insert().values(
                    name=name, kind=kind, host=socket.gethostname(), pid=os.getpid(), started_at=now, **values
                )
            )


@dataclass(frozen=True)
class WorkerView:
    name: str
    kind: str
    host: str
    queues: list[str]
    state: str
    current_job_id: str | None
    heartbeat_at: datetime
    alive: bool


def list_workers(engine: Engine) -> list[WorkerView]:
    """Every worker seen, newest heartbeat first; ``alive`` when it beat within JOB_STALE_AFTER_S
    (and never less than three beats)."""
    cutoff = utcnow() - timedelta(seconds=max(get_settings().job_stale_after_s, 3 * BEAT_S))
    with engine.connect() as connection:
        rows = connection.execute(select(_W).order_by(_W.c.heartbeat_at.desc())).all()
    return [
        WorkerView(
            r.name,
            r.kind,
            r.host,
            list(r.queues),
            r.state,
            r.current_job_id,
            as_utc(r.heartbeat_at),
            as_utc(r.heartbeat_at) >= cutoff and r.state != "stopped",
        )
        for r in rows
    ]
