"""The health report the Operations page shows: every failure named with what to do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from core import db, health
from core.executors import reset_executors
from core.models import CircuitBreaker, KillSwitch, utcnow
from core.settings import get_settings, reset_settings


@pytest.fixture
def rq_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Jobs on RQ at a Redis address where nothing listens (port 1)."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    reset_settings()
    reset_executors()
    yield
    monkeypatch.delenv("REDIS_URL")
    reset_settings()
    reset_executors()


def names(report: health.HealthReport) -> dict[str, health.Check]:
    return {c.name: c for c in report.checks}


def test_a_fresh_workbench_is_healthy(clean_db: Engine) -> None:
    report = health.report(clean_db)
    assert report.healthy, report.failing()
    checks = names(report)
    assert set(checks) == {"Database", "Job queue", "Workers", "Kill switch", "Circuit breakers"}
    assert "schema at head" in checks["Database"].detail
    assert "in-process" in checks["Job queue"].detail


def test_kill_switch_and_open_breaker_make_it_unhealthy_and_are_named(clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        s.add(KillSwitch(id=1, engaged=True, reason="bills look wrong", actor="Ops (ops@x)", changed_at=utcnow()))
        s.add(CircuitBreaker(name="provider:openai", state="open", reason="5 of 6 failed", opened_at=utcnow()))
    report = health.report(clean_db)
    assert not report.healthy
    failing = {c.name: c.detail for c in report.failing()}
    assert failing == {
        "Kill switch": "engaged by Ops (ops@x): bills look wrong",
        "Circuit breakers": "not closed: provider:openai (open)",
    }


def test_an_unreachable_database_is_reported_with_what_to_do() -> None:
    engine = db.get_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    report = health.report(engine)
    assert not report.healthy
    database = names(report)["Database"]
    assert not database.ok
    assert "DATABASE_URL" in database.detail
    assert "Workers" not in names(report)  # nothing that reads the database is asked


def test_redis_down_and_no_worker_are_reported(clean_db: Engine, rq_settings: None) -> None:
    report = health.report(clean_db, get_settings())
    failing = {c.name: c.detail for c in report.failing()}
    assert set(failing) == {"Job queue", "Workers"}
    assert "not answering" in failing["Job queue"]
    assert "python -m workers" in failing["Workers"]
