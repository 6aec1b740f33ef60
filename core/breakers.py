"""Circuit breakers whose state lives in the database, so every process sees the same one.

Three kinds:

- ``provider:<name>``: opens when, within ``BREAKER_WINDOW_S``, at least ``BREAKER_MIN_CALLS``
  attempts were made and ``BREAKER_FAILURE_RATE`` of them failed (timeouts, 429s, 5xx, broken
  answers), so callers stop paying for failed attempts during an outage;
- ``verification``: opens when the share of final unsupported verdicts over the window
  reaches ``BREAKER_UNSUPPORTED_RATE`` (a broken prompt or model drafting nonsense);
- ``cost``: opens when one paragraph run costs more than ``BREAKER_PARAGRAPH_COST_USD``.

closed -> open (tripped) -> half_open after ``BREAKER_COOLDOWN_S`` (one run, the probe, is let
through) -> closed when the probe succeeds, open again when it fails. Every change is a
``control_events`` row and a log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, case, or_, select, update

from core import audit
from core.authz import Permission
from core.db import as_utc, insert_ignoring_duplicates
from core.models import CircuitBreaker, ControlEvent, table_of, utcnow
from core.settings import Settings
from core.tenancy import Identity

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
VERIFICATION, COST = "verification", "cost"
_B = table_of(CircuitBreaker)
_E = table_of(ControlEvent)


def provider_breaker(provider: str) -> str:
    return f"provider:{provider}"


@dataclass(frozen=True)
class BreakerState:
    name: str
    state: str
    reason: str
    opened_at: datetime | None
    window_total: int
    window_failures: int

    @property
    def blocking(self) -> bool:
        return self.state != CLOSED


def _ensure(connection: Connection, name: str) -> None:
    insert_ignoring_duplicates(
        connection,
        _B,
        {
            "name": name,
            "state": CLOSED,
            "reason": "",
            "window_total": 0,
            "window_failures": 0,
            "window_started_at": utcnow(),
            "updated_at": utcnow(),
        },
    )


def _log_change(connection: Connection, name: str, before: str, after: str, reason: str, actor: str) -> None:
    connection.execute(
        _E.insert().values(control=name, from_state=before, to_state=after, reason=reason, actor=actor, at=utcnow())
    )
    log.warning("breaker %s: %s -> %s (%s)", name, before, after, reason)


def _move(
    connection: Connection, name: str, before: str, after: str, reason: str, actor: str = "system", **values: object
) -> bool:
    """Change state only if it is still ``before`` (another process may have moved it first)."""
    now = utcnow()
    changed = connection.execute(
        update(_B)
        .where(_B.c.name == name, _B.c.state == before)
        .values(state=after, reason=reason, updated_at=now, **values)
    ).rowcount
    if changed:
        _log_change(connection, name, before, after, reason, actor)
    return bool(changed)


PARAGRAPH_BREAKERS = (VERIFICATION, COST)
"""Breakers judged on whole drafted paragraphs: only a drafting run can be their probe."""


def admit(
    connection: Connection, names: list[str], *, trace_id: str, drafting: bool, settings: Settings
) -> list[BreakerState]:
    """The breakers among ``names`` that refuse this run. An open breaker whose cooldown is over
    lets exactly one run through as its half-open probe (claimed atomically); the probe's own
    later calls pass too."""
    rows = connection.execute(select(_B).where(_B.c.name.in_(names), _B.c.state != CLOSED)).all()
    refusing = []
    now = utcnow()
    cooldown = timedelta(seconds=settings.breaker_cooldown_s)
    for row in rows:
        if row.state == HALF_OPEN and row.probe_trace_id == trace_id:
            continue
        stale_probe = row.state == HALF_OPEN and (
            row.probe_started_at is None or as_utc(row.probe_started_at) <= now - cooldown
        )
        cooled = row.state == OPEN and row.opened_at is not None and as_utc(row.opened_at) <= now - cooldown
        can_probe = drafting or row.name not in PARAGRAPH_BREAKERS
        if (cooled or stale_probe) and can_probe:
            claimed = connection.execute(
                update(_B)
                .where(
                    _B.c.name == row.name,
                    _B.c.state == row.state,
                    or_(_B.c.probe_trace_id.is_(None), _B.c.probe_trace_id == row.probe_trace_id),
                )
                .values(state=HALF_OPEN, probe_trace_id=trace_id, probe_started_at=now, updated_at=now)
            ).rowcount
            if claimed:
                if row.state == OPEN:
                    _log_change(
                        connection, row.name, OPEN, HALF_OPEN, f"cooldown over; run {trace_id[:12]} probes", "system"
                    )
                continue
        refusing.append(_state(row))
    return refusing


_EXPIRED = _B.c.window_started_at < bindparam("window_start")
_COUNT = (
    update(_B)
    .where(_B.c.name == bindparam("b_name"))
    .values(
        window_total=case((_EXPIRED, bindparam("total")), else_=_B.c.window_total + bindparam("total")),
        window_failures=case((_EXPIRED, bindparam("failures")), else_=_B.c.window_failures + bindparam("failures")),
        window_started_at=case((_EXPIRED, bindparam("now")), else_=_B.c.window_started_at),
    )
    .returning(_B.c.state, _B.c.probe_trace_id, _B.c.window_total, _B.c.window_failures)
)
"""Count attempts in the window, starting a new window when the old one has passed (built once)."""


def record_attempts(
    connection: Connection, name: str, *, total: int, failures: int, trace_id: str, settings: Settings
) -> None:
    """Count a call's attempts in the breaker's window and trip, close or reopen it."""
    now = utcnow()
    values = {
        "b_name": name,
        "total": total,
        "failures": failures,
        "now": now,
        "window_start": now - timedelta(seconds=settings.breaker_window_s),
    }
    row = connection.execute(_COUNT, values).first()
    if row is None:
        _ensure(connection, name)  # first call to this provider: make the row, then count
        row = connection.execute(_COUNT, values).one()
    ok = failures < total  # the call ended with an answer
    if row.state == HALF_OPEN and row.probe_trace_id == trace_id:
        if ok:
            _move(
                connection,
                name,
                HALF_OPEN,
                CLOSED,
                "probe call answered",
                window_total=0,
                window_failures=0,
                window_started_at=now,
                probe_trace_id=None,
                opened_at=None,
            )
        else:
            _move(connection, name, HALF_OPEN, OPEN, "probe call failed", opened_at=now, probe_trace_id=None)
        return
    if row.state == CLOSED and row.window_total >= settings.breaker_min_calls:
        rate = row.window_failures / row.window_total
        if rate >= settings.breaker_failure_rate:
            _move(
                connection,
                name,
                CLOSED,
                OPEN,
                f"{row.window_failures} of the last {row.window_total} attempts failed "
                f"({rate:.0%} >= {settings.breaker_failure_rate:.0%})",
                opened_at=now,
            )


def record_paragraph(
    connection: Connection,
    *,
    trace_id: str,
    sentences: int,
    unsupported: int,
    cost_usd: float | None,
    settings: Settings,
) -> None:
    """After a paragraph run: feed the verification and cost breakers."""
    _record_verification(connection, trace_id, sentences, unsupported, settings)
    _record_cost(connection, trace_id, cost_usd, settings)


def _record_verification(
    connection: Connection, trace_id: str, sentences: int, unsupported: int, settings: Settings
) -> None:
    if not sentences:
        return  # nothing drafted was judged (an edit, a re-check): no evidence either way
    _ensure(connection, VERIFICATION)
    now = utcnow()
    row = connection.execute(select(_B).where(_B.c.name == VERIFICATION)).one()
    rate = unsupported / sentences if sentences else 0.0
    if row.state == HALF_OPEN and row.probe_trace_id == trace_id:
        if rate < settings.breaker_unsupported_rate:
            _move(
                connection,
                VERIFICATION,
                HALF_OPEN,
                CLOSED,
                f"probe paragraph: {unsupported} of {sentences} unsupported",
                window_total=0,
                window_failures=0,
                window_started_at=now,
                probe_trace_id=None,
                opened_at=None,
            )
        else:
            _move(
                connection,
                VERIFICATION,
                HALF_OPEN,
                OPEN,
                f"probe paragraph: {unsupported} of {sentences} unsupported",
                opened_at=now,
                probe_trace_id=None,
            )
        return
    expired = as_utc(row.window_started_at) < now - timedelta(seconds=settings.breaker_window_s)
    total = sentences + (0 if expired else row.window_total)
    failures = unsupported + (0 if expired else row.window_failures)
    connection.execute(
        update(_B)
        .where(_B.c.name == VERIFICATION)
        .values(
            window_total=total, window_failures=failures, window_started_at=now if expired else row.window_started_at
        )
    )
    if (
        row.state == CLOSED
        and total >= settings.breaker_min_sentences
        and failures / total >= settings.breaker_unsupported_rate
    ):
        _move(
            connection,
            VERIFICATION,
            CLOSED,
            OPEN,
            f"{failures} of the last {total} sentences were unsupported "
            f"({failures / total:.0%} >= {settings.breaker_unsupported_rate:.0%})",
            opened_at=now,
        )


def _record_cost(connection: Connection, trace_id: str, cost_usd: float | None, settings: Settings) -> None:
    _ensure(connection, COST)
    if cost_usd is None:
        return
    row = connection.execute(select(_B).where(_B.c.name == COST)).one()
    over = cost_usd > settings.breaker_paragraph_cost_usd
    detail = f"paragraph run {trace_id[:12]} cost ${cost_usd:.4f} (limit ${settings.breaker_paragraph_cost_usd:.2f})"
    if row.state == HALF_OPEN and row.probe_trace_id == trace_id:
        if over:
            _move(connection, COST, HALF_OPEN, OPEN, detail, opened_at=utcnow(), probe_trace_id=None)
        else:
            _move(connection, COST, HALF_OPEN, CLOSED, detail, probe_trace_id=None, opened_at=None)
    elif row.state == CLOSED and over:
        _move(connection, COST, CLOSED, OPEN, detail, opened_at=utcnow())


def reset(engine: Engine, name: str, *, actor: Identity) -> bool:
    """Close a breaker by hand (after the cause is fixed). Requires ``RESET_BREAKERS``; logged with
    who did it and audited in the same transaction."""
    audit.refuse(engine, actor, Permission.RESET_BREAKERS, subject=name)
    with engine.begin() as connection:
        row = connection.execute(select(_B).where(_B.c.name == name)).first()
        if row is None or row.state == CLOSED:
            return False
        changed = _move(
            connection,
            name,
            row.state,
            CLOSED,
            "reset by hand",
            actor=actor.name,
            window_total=0,
            window_failures=0,
            window_started_at=utcnow(),
            probe_trace_id=None,
            opened_at=None,
        )
        if changed:
            audit.record(
                connection,
                audit.BREAKER_RESET,
                actor=actor,
                tenant_id=None,
                subject=name,
                details={"from": row.state, "to": CLOSED, "reason": row.reason},
            )
        return changed


def list_breakers(engine: Engine) -> list[BreakerState]:
    with engine.connect() as connection:
        return [_state(r) for r in connection.execute(select(_B).order_by(_B.c.name))]


def open_breakers(connection: Connection) -> list[BreakerState]:
    return [_state(r) for r in connection.execute(select(_B).where(_B.c.state != CLOSED).order_by(_B.c.name))]


def _state(row: object) -> BreakerState:
    opened = getattr(row, "opened_at", None)
    return BreakerState(
        name=row.name,  # type: ignore[attr-defined]
        state=row.state,  # type: ignore[attr-defined]
        reason=row.reason,  # type: ignore[attr-defined]
        opened_at=as_utc(opened) if opened else None,
        window_total=row.window_total,  # type: ignore[attr-defined]
        window_failures=row.window_failures,  # type: ignore[attr-defined]
    )
