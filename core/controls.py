"""The kill switch and the generation gate.

``gate`` is asked before a generation job starts and by the gateway before every model call:
while the kill switch is engaged, or a breaker that covers the call is open, nothing is sent
to a model. Stored manuscripts, facts and verified paragraphs are never touched, so what was
verified stays readable while generation is frozen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, bindparam, func, select, update

from core import audit, breakers
from core.authz import Permission
from core.db import as_utc, insert_ignoring_duplicates
from core.errors import GenerationPausedError, WorkbenchError
from core.models import CircuitBreaker, ControlEvent, KillSwitch, table_of, utcnow
from core.settings import Settings
from core.tenancy import Identity

log = logging.getLogger(__name__)
_K = table_of(KillSwitch)
KILL_SWITCH = "kill_switch"


@dataclass(frozen=True)
class KillSwitchState:
    engaged: bool
    reason: str
    actor: str
    changed_at: datetime | None


@dataclass(frozen=True)
class Status:
    """What the banner on every page shows."""

    kill_switch: KillSwitchState
    open_breakers: list[breakers.BreakerState]

    @property
    def generation_paused(self) -> bool:
        return self.kill_switch.engaged or bool(self.open_breakers)

    def message(self) -> str:
        parts = []
        if self.kill_switch.engaged:
            parts.append(f"the kill switch is engaged by {self.kill_switch.actor or 'ops'}: {self.kill_switch.reason}")
        parts += [f"breaker {b.name} is {b.state.replace('_', '-')}: {b.reason}" for b in self.open_breakers]
        return "Generation is paused: " + "; ".join(parts) + ". Stored and verified work stays readable."


def _kill_switch(connection: Connection) -> KillSwitchState:
    row = connection.execute(select(_K).where(_K.c.id == 1)).first()
    if row is None:
        return KillSwitchState(False, "", "", None)
    return KillSwitchState(row.engaged, row.reason, row.actor, as_utc(row.changed_at))


def status(engine: Engine) -> Status:
    with engine.connect() as connection:
        return Status(_kill_switch(connection), breakers.open_breakers(connection))


_B = table_of(CircuitBreaker)
_ALL_CLEAR = select(
    select(_K.c.engaged).where(_K.c.id == 1).scalar_subquery(),
    select(func.count())
    .select_from(_B)
    .where(_B.c.name.in_(bindparam("names", expanding=True)), _B.c.state != breakers.CLOSED)
    .scalar_subquery(),
)
"""The common case in one round trip: switch released, every breaker closed (built once)."""


def _all_clear(connection: Connection, names: list[str]) -> bool:
    engaged, not_closed = connection.execute(_ALL_CLEAR, {"names": names}).one()
    return not engaged and not not_closed


def set_kill_switch(engine: Engine, *, engaged: bool, reason: str, actor: Identity) -> bool:
    """Engage or release; True when the state changed. Requires ``KILL_SWITCH``; a change is logged
    as a control event and audited (workbench-wide) in the same transaction."""
    audit.refuse(engine, actor, Permission.KILL_SWITCH, subject="engage" if engaged else "release")
    if engaged and not reason.strip():
        raise WorkbenchError("Say why the kill switch is engaged: a reason is required, and it is shown to everyone.")
    name = actor.name
    with engine.begin() as connection:
        insert_ignoring_duplicates(
            connection, _K, {"id": 1, "engaged": False, "reason": "", "actor": "", "changed_at": utcnow()}
        )
        changed = connection.execute(
            update(_K)
            .where(_K.c.id == 1, _K.c.engaged.is_(not engaged))
            .values(engaged=engaged, reason=reason.strip(), actor=name, changed_at=utcnow())
        ).rowcount
        if changed:
            connection.execute(
                table_of(ControlEvent)
                .insert()
                .values(
                    control=KILL_SWITCH,
                    from_state="released" if engaged else "engaged",
                    to_state="engaged" if engaged else "released",
                    reason=reason.strip(),
                    actor=name,
                    at=utcnow(),
                )
            )
            audit.record(
                connection,
                audit.KILL_SWITCH,
                actor=actor,
                tenant_id=None,
                subject="engaged" if engaged else "released",
                details={"engaged": engaged, "reason": reason.strip()},
            )
            log.warning(
                "kill switch %s by %s%s", "engaged" if engaged else "released", name, f": {reason}" if reason else ""
            )
    return bool(changed)


def admit(connection: Connection, *, provider: str, trace_id: str, drafting: bool, settings: Settings) -> None:
    """Raise ``GenerationPausedError`` unless a call of ``trace_id`` to ``provider`` may go ahead.
    ``drafting``: the run drafts a paragraph, so it may probe the paragraph breakers."""
    names = [breakers.provider_breaker(provider), breakers.VERIFICATION, breakers.COST]
    if _all_clear(connection, names):
        return
    switch = _kill_switch(connection)
    if switch.engaged:
        raise GenerationPausedError(
            f"Generation is frozen: the kill switch was engaged by {switch.actor or 'ops'} ({switch.reason}). "
            f"Nothing was sent to a model and nothing stored was changed; try again once it is released."
        )
    refusing = breakers.admit(connection, names, trace_id=trace_id, drafting=drafting, settings=settings)
    if refusing:
        detail = "; ".join(f"{b.name} ({b.reason})" for b in refusing)
        raise GenerationPausedError(
            f"Generation is paused because a circuit breaker is open: {detail}. It lets a trial run through "
            f"after its cooldown ({settings.breaker_cooldown_s} s); ops can also reset it on the Operations page."
        )


def check(engine: Engine, *, provider: str, trace_id: str, drafting: bool, settings: Settings) -> None:
    with engine.begin() as connection:
        admit(connection, provider=provider, trace_id=trace_id, drafting=drafting, settings=settings)
