"""Is the workbench healthy? One report for the Operations page (and, later, ``GET /health``).

Each check says what it looked at and, when it fails, what to do. The report is healthy only
when the database answers at the schema head, the job queue answers, at least one worker is
alive when jobs run on RQ, and generation is not stopped (kill switch or an open breaker):
a frozen workbench still serves reading, but it is not healthy for drafting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from core import controls, worker_records
from core.db import schema_is_current
from core.executors import QueueUnavailableError, get_executor
from core.settings import Settings, get_settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    latency_ms: float | None = None


@dataclass(frozen=True)
class HealthReport:
    checks: list[Check]

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    def failing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def _timed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def check_database(engine: Engine) -> Check:
    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = schema_is_current(engine)
    except SQLAlchemyError as error:
        return Check(
            "Database",
            False,
            f"not answering ({type(error).__name__}): check that it runs and that DATABASE_URL is right",
            _timed_ms(started),
        )
    if not current:
        return Check("Database", False, "answering, but the schema is behind: run python -m core migrate")
    return Check("Database", True, f"{engine.dialect.name}, schema at head", _timed_ms(started))


def check_queue(settings: Settings) -> Check:
    started = time.perf_counter()
    try:
        get_executor().ping()
    except QueueUnavailableError as error:
        return Check("Job queue", False, str(error), _timed_ms(started))
    mode = "Redis (RQ)" if settings.redis_url else "in-process"
    return Check("Job queue", True, f"{mode}, answering", _timed_ms(started))


def check_workers(engine: Engine, settings: Settings) -> Check:
    alive = [w for w in worker_records.list_workers(engine) if w.alive]
    if settings.redis_url and not alive:
        return Check("Workers", False, "no worker alive: start python -m workers (queued jobs wait until one is)")
    if not settings.redis_url:
        return Check("Workers", True, f"in-process executor ({len(alive)} beating)")
    return Check("Workers", True, f"{len(alive)} alive: " + ", ".join(w.name for w in alive[:5]))


def check_generation(engine: Engine) -> list[Check]:
    status = controls.status(engine)
    switch = status.kill_switch
    checks = [
        Check(
            "Kill switch",
            not switch.engaged,
            f"engaged by {switch.actor or 'ops'}: {switch.reason}" if switch.engaged else "released",
        )
    ]
    if status.open_breakers:
        names = ", ".join(f"{b.name} ({b.state.replace('_', '-')})" for b in status.open_breakers)
        checks.append(Check("Circuit breakers", False, f"not closed: {names}"))
    else:
        checks.append(Check("Circuit breakers", True, "all closed"))
    return checks


def report(engine: Engine, settings: Settings | None = None) -> HealthReport:
    """Every check; the database one first, and those that read it skipped when it fails."""
    settings = settings or get_settings()
    database = check_database(engine)
    if not database.ok:
        return HealthReport([database, check_queue(settings)])
    return HealthReport([database, check_queue(settings), check_workers(engine, settings), *check_generation(engine)])
