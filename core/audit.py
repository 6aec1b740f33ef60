"""The audit log: append-only and hash-chained, so anyone can prove afterwards what happened.

Each entry's ``hash`` is the sha256 of its own columns and the previous entry's hash. Changing
any column of any entry, removing one, or inserting one breaks the chain at that entry, and
``verify`` names it. The single ``audit_head`` row is updated by every append before the new
entry is written: that serialises appenders on SQLite and PostgreSQL alike (the UPDATE takes
the row's write lock), so concurrent writers never fork the chain, and it lets ``verify`` see a
removed tail.

``record`` writes on the caller's connection, inside the caller's transaction: an action and its
audit entry commit together or not at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from core.db import as_utc, insert_ignoring_duplicates
from core.models import AuditEntry, AuditHead, table_of, utcnow
from core.tenancy import Identity

_A = table_of(AuditEntry)
_H = table_of(AuditHead)
GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""

# Event types (one vocabulary, so exports and searches can filter on them).
LOGIN = "login"
LOGIN_FAILED = "login_failed"
LOGIN_LOCKED = "login_locked"
LOGOUT = "logout"
TRACE_VIEWED = "trace_viewed"
ROUTING_CHANGED = "routing_changed"
PROMPT_CHANGED = "prompt_changed"
BUDGET_CHANGED = "budget_changed"
ALERT_RULE_CHANGED = "alert_rule_changed"
KILL_SWITCH = "kill_switch"
BREAKER_RESET = "breaker_reset"
KEY_ROTATION = "key_rotation"
POLICY_VIOLATION = "policy_violation"
EXPORT = "export"
USER_CHANGED = "user_changed"
TENANT_CHANGED = "tenant_changed"
MODEL_CHANGED = "model_changed"
BACKUP = "backup"
RESTORE = "restore"
PERMISSION_DENIED = "permission_denied"


def entry_hash(
    *,
    seq: int,
    at: datetime,
    tenant_id: int | None,
    actor_user_id: int | None,
    actor: str,
    event_type: str,
    subject: str,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    """The hash an entry must carry: over every column but itself, in one canonical JSON form."""
    canonical = json.dumps(
        [
            seq,
            as_utc(at).isoformat(timespec="microseconds"),
            tenant_id,
            actor_user_id,
            actor,
            event_type,
            subject,
            details,
            prev_hash,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(
    connection: Connection,
    event_type: str,
    *,
    actor: Identity | None,
    tenant_id: int | None,
    subject: str = "",
    details: dict[str, Any] | None = None,
    actor_label: str | None = None,
) -> int:
    """Append one entry (in the caller's transaction); returns its sequence number.

    ``actor`` None is the workbench itself (a worker, a scheduled job); ``actor_label`` names an
    actor that has no identity (a failed login names the e-mail that was tried). ``details`` must
    be JSON of plain values and never hold tenant content or secrets: ids, names, counts, reasons.
    """
    details = json.loads(json.dumps(details or {}, default=str))  # plain JSON now, as it will read back
    insert_ignoring_duplicates(connection, _H, {"id": 1, "seq": 0, "hash": GENESIS})
    # The UPDATE takes the head's write lock first (SQLite: the database's), then we read it.
    connection.execute(update(_H).where(_H.c.id == 1).values(seq=_H.c.seq + 1))
    seq, prev_hash = connection.execute(select(_H.c.seq, _H.c.hash).where(_H.c.id == 1)).one()
    at = utcnow()
    row = {
        "seq": int(seq),
        "at": at,
        "tenant_id": tenant_id,
        "actor_user_id": actor.account_id if actor else None,
        "actor": actor_label or (actor.name if actor else "workbench"),
        "event_type": event_type,
        "subject": subject[:300],
        "details": details,
        "prev_hash": prev_hash,
    }
    row["hash"] = entry_hash(**row)
    connection.execute(_A.insert().values(**row))
    connection.execute(update(_H).where(_H.c.id == 1).values(hash=row["hash"]))
    return int(seq)


@dataclass(frozen=True)
class ChainReport:
    """What ``verify`` found: ``broken_seq`` names the first entry that does not hold."""

    checked: int
    broken_seq: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_seq is None


def verify(connection: Connection, *, batch: int = 5_000) -> ChainReport:
    """Walk the chain from the first entry; stop at the first one that does not hold."""
    expected_seq, prev_hash, checked = 1, GENESIS, 0
    last_seq = 0
    result = connection.execution_options(yield_per=batch).execute(select(_A).order_by(_A.c.seq))
    for row in result:
        if row.seq != expected_seq:
            missing = expected_seq if row.seq > expected_seq else row.seq
            return ChainReport(checked, missing, f"entry {missing} is missing (found {row.seq} after {last_seq})")
        if row.prev_hash != prev_hash:
            return ChainReport(checked, row.seq, f"entry {row.seq} does not link to entry {row.seq - 1}")
        recomputed = entry_hash(
            seq=row.seq,
            at=row.at,
            tenant_id=row.tenant_id,
            actor_user_id=row.actor_user_id,
            actor=row.actor,
            event_type=row.event_type,
            subject=row.subject,
            details=row.details,
            prev_hash=row.prev_hash,
        )
        if recomputed != row.hash:
            return ChainReport(checked, row.seq, f"entry {row.seq} was changed after it was written")
        checked += 1
        last_seq, prev_hash, expected_seq = row.seq, row.hash, row.seq + 1
    result.close()
    head = connection.execute(select(_H.c.seq, _H.c.hash).where(_H.c.id == 1)).first()
    if head is not None and (head.seq != last_seq or head.hash != prev_hash):
        if head.seq > last_seq:
            return ChainReport(checked, last_seq + 1, f"entries {last_seq + 1} to {head.seq} were removed")
        return ChainReport(checked, last_seq, f"the chain's head does not match entry {last_seq}")
    return ChainReport(checked)
