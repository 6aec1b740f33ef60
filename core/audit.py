"""The audit log: append-only and hash-chained, so anyone can prove afterwards what happened.

Each entry's ``hash`` is the sha256 of its own columns and the previous entry's hash. Changing
any column of any entry, removing one, or inserting one breaks the chain at that entry, and
``verify`` names it. The single ``audit_head`` row is updated by every append before the new
entry is written: that serialises appenders on SQLite and PostgreSQL alike (the UPDATE takes
the row's write lock), so concurrent writers never fork the chain, and it lets ``verify`` see a
removed tail.

``record`` writes on the caller's connection, inside the caller's transaction: an action and its
audit entry commit together or not at all.

Reading is by role: ``search`` (``VIEW_AUDIT``; an admin sees every tenant's entries, anyone else
their own tenant's, both the workbench-wide ones), ``export`` and ``access_review``
(``EXPORT_AUDIT``; each records an ``EXPORT`` entry). An export carries every column, so
``check_export`` can check it away from the database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, func, or_, select, update
from sqlalchemy.orm import Session

from core import authz
from core.authz import Permission
from core.db import as_utc, insert_ignoring_duplicates
from core.errors import PermissionDeniedError
from core.models import AuditEntry, AuditHead, Tenant, User, table_of, utcnow
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
INCIDENT_FREEZE = "incident_freeze"
INCIDENT_SCOPE = "incident_scope"
INCIDENT_ROLLBACK = "incident_rollback"
INCIDENT_THAW = "incident_thaw"
DRILL = "drill"
RELEASE_CHECK = "release_check"
EVENT_TYPES = (
    LOGIN,
    LOGIN_FAILED,
    LOGIN_LOCKED,
    LOGOUT,
    TRACE_VIEWED,
    ROUTING_CHANGED,
    PROMPT_CHANGED,
    BUDGET_CHANGED,
    ALERT_RULE_CHANGED,
    KILL_SWITCH,
    BREAKER_RESET,
    KEY_ROTATION,
    POLICY_VIOLATION,
    EXPORT,
    USER_CHANGED,
    TENANT_CHANGED,
    MODEL_CHANGED,
    BACKUP,
    RESTORE,
    PERMISSION_DENIED,
    INCIDENT_FREEZE,
    INCIDENT_SCOPE,
    INCIDENT_ROLLBACK,
    INCIDENT_THAW,
    DRILL,
    RELEASE_CHECK,
)
"""Every event type above, in the order a form lists them."""


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
    """Walk the chain from the first entry, ``batch`` entries per query; stop at the first one that
    does not hold: a changed column, a missing entry, an inserted entry or a removed tail.

    The head is read first and the walk goes up to it, so entries appended while it runs are
    checked too (the walk follows the head) instead of being taken for forged ones.
    """
    head = connection.execute(select(_H.c.seq, _H.c.hash).where(_H.c.id == 1)).first()
    head_seq, head_hash = (int(head.seq), head.hash) if head else (0, GENESIS)
    expected_seq, prev_hash, checked, last_seq = 1, GENESIS, 0, 0
    while True:
        rows = connection.execute(
            select(_A).where(_A.c.seq > last_seq, _A.c.seq <= head_seq).order_by(_A.c.seq).limit(max(1, batch))
        ).all()
        for row in rows:
            if row.seq != expected_seq:
                return ChainReport(
                    checked, expected_seq, f"entry {expected_seq} is missing (found {row.seq} after {last_seq})"
                )
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
        if rows:
            continue
        if last_seq < head_seq:
            return ChainReport(checked, last_seq + 1, f"entries {last_seq + 1} to {head_seq} were removed")
        if prev_hash != head_hash:
            return ChainReport(checked, last_seq, f"the chain's head does not match entry {last_seq}")
        beyond = connection.scalar(select(func.min(_A.c.seq)).where(_A.c.seq > head_seq))
        if beyond is None:
            return ChainReport(checked)
        later = connection.execute(select(_H.c.seq, _H.c.hash).where(_H.c.id == 1)).first()
        if later is None:
            return ChainReport(checked, int(beyond), "the chain's head row (audit_head) is missing")
        if int(later.seq) < beyond:
            return ChainReport(checked, int(beyond), f"entry {beyond} was inserted after the chain's last entry")
        head_seq, head_hash = int(later.seq), later.hash  # appended while we walked: go on to the new head


# Reading: search, export, access review -------------------------------------------------------

EXPORT_FORMAT = "opusblocks-audit-export/1"
"""The ``format`` field of an export; ``check_export`` reads this format."""

REVIEW_EVENTS = (LOGIN, LOGIN_FAILED, LOGIN_LOCKED, TRACE_VIEWED, EXPORT, PERMISSION_DENIED)
"""What an access review lists under "who looked at what"."""


@dataclass(frozen=True)
class Entry:
    """One audit entry as read back: every column, so a reader can recompute its hash."""

    seq: int
    at: datetime
    tenant_id: int | None
    actor_user_id: int | None
    actor: str
    event_type: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        """Plain JSON; ``at`` in the form the hash covers, so ``check_export`` can recompute it."""
        return {**asdict(self), "at": as_utc(self.at).isoformat(timespec="microseconds")}


def _entry(row: Any) -> Entry:
    return Entry(
        seq=int(row.seq),
        at=as_utc(row.at),
        tenant_id=row.tenant_id,
        actor_user_id=row.actor_user_id,
        actor=row.actor,
        event_type=row.event_type,
        subject=row.subject,
        details=dict(row.details or {}),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _scope(viewer: Identity, tenant_id: int | None) -> list[ColumnElement[bool]]:
    """Which entries ``viewer`` may read: an admin every tenant's (or the one asked for), anyone
    else their own tenant's; both also the workbench-wide ones (``tenant_id`` NULL)."""
    if authz.allowed(viewer, Permission.VIEW_ALL_TENANTS):
        return [] if tenant_id is None else [or_(_A.c.tenant_id == tenant_id, _A.c.tenant_id.is_(None))]
    if tenant_id is not None and tenant_id != viewer.tenant_id:
        authz.require(viewer, Permission.VIEW_ALL_TENANTS)
    return [or_(_A.c.tenant_id == viewer.tenant_id, _A.c.tenant_id.is_(None))]


def _filters(
    viewer: Identity,
    *,
    event_types: Iterable[str],
    since: datetime | None,
    until: datetime | None,
    actor_contains: str = "",
    tenant_id: int | None = None,
) -> list[ColumnElement[bool]]:
    conditions = _scope(viewer, tenant_id)
    types = sorted(set(event_types))
    if types:
        conditions.append(_A.c.event_type.in_(types))
    # Compared in UTC: SQLite stores the UTC wall clock and would read another zone's as UTC.
    if since is not None:
        conditions.append(_A.c.at >= _utc(since))
    if until is not None:
        conditions.append(_A.c.at < _utc(until))
    if actor_contains.strip():
        conditions.append(func.lower(_A.c.actor).contains(actor_contains.strip().lower(), autoescape=True))
    return conditions


def _utc(moment: datetime) -> datetime:
    return as_utc(moment).astimezone(UTC)


def search(
    connection: Connection,
    *,
    viewer: Identity,
    event_types: Iterable[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    actor_contains: str = "",
    tenant_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Entry]:
    """Entries ``viewer`` may read that match, newest first; ``since`` inclusive, ``until`` exclusive.

    Requires ``VIEW_AUDIT``. ``tenant_id`` narrows an admin's view to one tenant (plus the
    workbench-wide entries); anyone else asking for another tenant is refused.
    """
    authz.require(viewer, Permission.VIEW_AUDIT)
    conditions = _filters(
        viewer,
        event_types=event_types,
        since=since,
        until=until,
        actor_contains=actor_contains,
        tenant_id=tenant_id,
    )
    query = select(_A).where(*conditions).order_by(_A.c.seq.desc()).limit(max(1, limit)).offset(max(0, offset))
    return [_entry(row) for row in connection.execute(query)]


def _iso(moment: datetime | None) -> str | None:
    return _utc(moment).isoformat() if moment is not None else None


def export(
    connection: Connection,
    *,
    viewer: Identity,
    event_types: Iterable[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Every entry ``viewer`` may read of ``event_types`` (all when empty) in [since, until), oldest
    first, with ``seq``, ``prev_hash`` and ``hash`` so the range can be checked offline
    (``check_export``); the chain's head at export time is included to anchor it.

    Requires ``EXPORT_AUDIT``; records an ``EXPORT`` entry in the caller's transaction (the
    export is only evidence once that commits).
    """
    authz.require(viewer, Permission.EXPORT_AUDIT)
    types = sorted(set(event_types))
    query = select(_A).where(*_filters(viewer, event_types=types, since=since, until=until)).order_by(_A.c.seq)
    entries = [_entry(row).as_json() for row in connection.execute(query)]
    head = connection.execute(select(_H.c.seq, _H.c.hash).where(_H.c.id == 1)).first()
    filters = {"event_types": types, "since": _iso(since), "until": _iso(until)}
    exported_seq = record(
        connection,
        EXPORT,
        actor=viewer,
        tenant_id=None if authz.allowed(viewer, Permission.VIEW_ALL_TENANTS) else viewer.tenant_id,
        subject="audit log",
        details={"what": "audit_log", **filters, "count": len(entries)},
    )
    return {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(utcnow()),
        "exported_by": viewer.name,
        "export_entry": exported_seq,
        "filters": filters,
        "head": {"seq": int(head.seq), "hash": head.hash} if head else {"seq": 0, "hash": GENESIS},
        "count": len(entries),
        "entries": entries,
    }


def check_export(document: Mapping[str, Any]) -> list[str]:
    """Check an export offline: each entry's hash over its own columns, and each link between
    entries with consecutive ``seq``. Returns the problems found (empty when it holds).

    A filtered export has gaps (the entries of other types); those links cannot be checked
    from the export alone, only each entry itself.
    """
    problems, previous = [], None
    for item in document.get("entries", []):
        recomputed = entry_hash(
            seq=item["seq"],
            at=datetime.fromisoformat(item["at"]),
            tenant_id=item["tenant_id"],
            actor_user_id=item["actor_user_id"],
            actor=item["actor"],
            event_type=item["event_type"],
            subject=item["subject"],
            details=item["details"],
            prev_hash=item["prev_hash"],
        )
        if recomputed != item["hash"]:
            problems.append(f"entry {item['seq']} does not match its hash")
        if previous is not None and previous["seq"] + 1 == item["seq"] and previous["hash"] != item["prev_hash"]:
            problems.append(f"entry {item['seq']} does not link to entry {previous['seq']}")
        previous = item
    return problems


def access_review(
    session: Session,
    *,
    viewer: Identity,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Who can see what (every user, their role's permissions) and who looked at what (logins,
    failed logins, trace views, exports, refusals in [since, until)).

    Requires ``EXPORT_AUDIT``; an admin's review covers every tenant, anyone else's their own.
    Records an ``EXPORT`` entry in the caller's transaction.
    """
    authz.require(viewer, Permission.EXPORT_AUDIT)
    everyone = authz.allowed(viewer, Permission.VIEW_ALL_TENANTS)
    query = select(User, Tenant.slug).join(Tenant, Tenant.id == User.tenant_id).order_by(Tenant.slug, User.email)
    if not everyone:
        query = query.where(User.tenant_id == viewer.tenant_id)
    now = utcnow()
    users = [
        {
            "tenant": slug,
            "tenant_id": user.tenant_id,
            "user_id": user.id,
            "email": user.email,
            "name": user.display_name,
            "role": user.role,
            "active": bool(user.active),
            "locked": user.locked_until is not None and as_utc(user.locked_until) > now,
            "last_login_at": _iso(user.last_login_at),
            "permissions": sorted(p.value for p in authz.GRANTS.get(user.role, frozenset())),
        }
        for user, slug in session.execute(query)
    ]
    connection = session.connection()
    conditions = _filters(viewer, event_types=REVIEW_EVENTS, since=since, until=until)
    looked = [_entry(row).as_json() for row in connection.execute(select(_A).where(*conditions).order_by(_A.c.seq))]
    period = {"since": _iso(since), "until": _iso(until)}
    record(
        connection,
        EXPORT,
        actor=viewer,
        tenant_id=None if everyone else viewer.tenant_id,
        subject="access review",
        details={"what": "access_review", **period, "users": len(users), "count": len(looked)},
    )
    return {
        "format": "opusblocks-access-review/1",
        "exported_at": _iso(now),
        "exported_by": viewer.name,
        "scope": "all tenants" if everyone else f"tenant {viewer.tenant_id}",
        "period": period,
        "roles": {role: sorted(p.value for p in authz.GRANTS[role]) for role in authz.ROLES},
        "users": users,
        "activity": looked,
    }


def refuse(engine: Engine, actor: Identity, permission: Permission, *, subject: str = "") -> None:
    """Raise ``PermissionDeniedError`` unless ``actor`` holds ``permission``; a refusal is recorded
    as ``PERMISSION_DENIED`` in a transaction of its own (the refused action never opens one).

    For functions that own their transaction; one that writes in its caller's session refuses
    with ``authz.require`` alone, since its caller's rollback would take the entry with it.
    """
    try:
        authz.require(actor, permission)
    except PermissionDeniedError:
        with engine.begin() as connection:
            record(
                connection,
                PERMISSION_DENIED,
                actor=actor,
                tenant_id=actor.tenant_id,
                subject=subject,
                details={"permission": permission.value, "role": actor.role},
            )
        raise
