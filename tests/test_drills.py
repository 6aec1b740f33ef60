"""The kill-switch drill: it throws the real switch, checks each step, releases it, and is recorded."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from core import audit, controls, drills
from core.cli import main
from core.errors import IncidentError, PermissionDeniedError
from core.models import ControlEvent, Drill
from core.tenancy import Identity

OPS = Identity(tenant_id=1, user_id=0, role="ops", name="ops on call")


def test_the_drill_passes_is_recorded_and_leaves_the_switch_released(clean_db: Engine, identity: Identity) -> None:
    assert drills.last_passed(clean_db) is None
    record = drills.kill_switch_drill(clean_db, by=OPS)
    assert record.passed, record.steps
    assert [s.name for s in record.steps] == [
        "engage the kill switch",
        "gate refuses a model call",
        "a queued job does not start",
        "the banner says paused",
        "release the kill switch",
        "a call is admitted again",
    ]
    assert not controls.status(clean_db).kill_switch.engaged
    last = drills.last_passed(clean_db, kind="kill-switch")
    assert last is not None and last.id == record.id and last.actor == "ops on call" and last.finished_at
    with clean_db.connect() as connection:
        row = connection.execute(select(Drill.kind, Drill.passed, Drill.details)).one()
        assert row.kind == "kill-switch" and row.passed and len(row.details["steps"]) == 6
        events = connection.execute(select(ControlEvent.to_state, ControlEvent.reason).order_by(ControlEvent.id)).all()
        assert [tuple(e) for e in events] == [("engaged", "drill"), ("released", "drill over")]
        [entry] = audit.search(connection, viewer=OPS, event_types=[audit.DRILL])
        assert entry.details["drill_id"] == record.id and entry.details["passed"] is True
        assert audit.verify(connection).intact


def test_the_drill_refuses_while_the_switch_is_engaged_and_leaves_it_engaged(
    clean_db: Engine, identity: Identity, capsys: Any
) -> None:
    controls.set_kill_switch(clean_db, engaged=True, reason="real outage", actor=OPS)
    with pytest.raises(IncidentError, match="never releases a real freeze"):
        drills.kill_switch_drill(clean_db, by=OPS)
    capsys.readouterr()
    assert main(["drill", "kill-switch", "--actor", "alice"]) == 1
    assert "real outage" in capsys.readouterr().err
    switch = controls.status(clean_db).kill_switch
    assert switch.engaged and switch.reason == "real outage"
    with clean_db.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Drill)) == 0
    assert drills.last_passed(clean_db) is None
    controls.set_kill_switch(clean_db, engaged=False, reason="", actor=OPS)


def test_a_researcher_cannot_run_a_drill(clean_db: Engine, identity: Identity) -> None:
    with pytest.raises(PermissionDeniedError):
        drills.kill_switch_drill(clean_db, by=Identity(identity.tenant_id, identity.user_id, "researcher", "r"))
    assert not controls.status(clean_db).kill_switch.engaged
    assert drills.last_passed(clean_db) is None


def test_the_cli_drill_exits_0_and_names_each_step(clean_db: Engine, identity: Identity, capsys: Any) -> None:
    capsys.readouterr()
    assert main(["drill", "kill-switch", "--actor", "alice"]) == 0
    out = capsys.readouterr().out
    assert "a queued job does not start" in out and "passed" in out
    last = drills.last_passed(clean_db)
    assert last is not None and last.actor.startswith("alice (cli:")
    assert not controls.status(clean_db).kill_switch.engaged


def test_a_drill_whose_step_fails_exits_1_and_still_releases(clean_db: Engine, identity: Identity, capsys: Any) -> None:
    """An open breaker keeps the gate shut after the release: the last step fails, the switch is released."""
    from core import breakers
    from core.models import CircuitBreaker, utcnow

    with clean_db.begin() as connection:
        connection.execute(
            CircuitBreaker.__table__.insert().values(  # type: ignore[attr-defined]
                name=breakers.COST, state="open", reason="a paragraph cost too much", opened_at=utcnow()
            )
        )
    capsys.readouterr()
    assert main(["drill", "kill-switch"]) == 1
    out = capsys.readouterr().out
    assert "FAIL\ta call is admitted again" in out and "FAILED" in out
    assert not controls.status(clean_db).kill_switch.engaged
    assert drills.last_passed(clean_db) is None
    assert [d.passed for d in drills.recent(clean_db)] == [False]
