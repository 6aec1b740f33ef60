"""Key management for sealed content: a fresh key, what is sealed under which key, rotation.

Three tables hold sealed content, each bound to its row by associated data: trajectory spans
(``crypto.span_aad``), cached answers (``llm_cache.aad``) and tool calls
(``gateway.tool_call_aad``). Rotation re-seals every row whose ``key_id`` is not the active
key's, in batches ordered by primary key, each batch its own transaction. It selects by key id,
so a rotation stopped half-way (killed, or told to stop after N batches) simply goes on from
where it was when run again.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, Table, bindparam, func, select, update

from core import audit, crypto, llm_cache
from core.authz import Permission
from core.crypto import KeyRing, KeyRotationError
from core.models import LlmCacheEntry, LlmToolCall, TrajectoryEvent, table_of
from core.settings import Settings
from core.tenancy import Identity

DEFAULT_BATCH = 500
"""Rows re-sealed per transaction by ``keys rotate``."""
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _tool_call_aad(row: Row[Any]) -> bytes:
    from core.gateway import tool_call_aad  # the gateway pulls in the providers; only rotation needs it

    return tool_call_aad(row.tenant_id, row.trace_id, row.usage_event_id, row.name)


@dataclass(frozen=True)
class SealedTable:
    """A table with sealed ``content`` under ``key_id``, and how its rows' associated data is made."""

    name: str
    table: Table
    aad_columns: tuple[str, ...]
    aad: Callable[[Row[Any]], bytes]


SEALED_TABLES = (
    SealedTable(
        "trajectory_events",
        table_of(TrajectoryEvent),
        ("tenant_id", "trace_id", "span_id"),
        lambda r: crypto.span_aad(r.tenant_id, r.trace_id, r.span_id),
    ),
    SealedTable(
        "llm_cache_entries",
        table_of(LlmCacheEntry),
        ("tenant_id", "agent", "prompt_version", "model", "input_hash"),
        lambda r: llm_cache.aad(r.tenant_id, r.agent, r.prompt_version, r.model, r.input_hash),
    ),
    SealedTable(
        "llm_tool_calls",
        table_of(LlmToolCall),
        ("tenant_id", "trace_id", "usage_event_id", "name"),
        _tool_call_aad,
    ),
)


def new_key_line(key_id: str | None = None) -> str:
    """``id:base64key``, ready to go first in ``WORKBENCH_ENCRYPTION_KEYS``."""
    key_id = key_id or f"key-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"
    if not _KEY_ID.match(key_id):
        raise KeyRotationError(
            f"Key id {key_id!r} cannot be used: up to 64 letters, digits, '.', '_' or '-' (no ',' or ':', which "
            "separate entries in WORKBENCH_ENCRYPTION_KEYS)."
        )
    return f"{key_id}:{crypto.new_key()}"


def sealed_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """Rows with sealed content, by table and key id."""
    counts: dict[str, dict[str, int]] = {}
    with engine.connect() as connection:
        for sealed in SEALED_TABLES:
            t = sealed.table
            rows = connection.execute(
                select(t.c.key_id, func.count()).where(t.c.content.is_not(None)).group_by(t.c.key_id)
            ).all()
            counts[sealed.name] = {str(key_id): int(n) for key_id, n in rows}
    return counts


@dataclass(frozen=True)
class KeyStatus:
    active_id: str
    development: bool
    development_key_file: Path | None
    counts: dict[str, dict[str, int]]
    """Sealed rows by table and key id."""
    missing: dict[str, int]
    """Rows by key id the ring does not hold (they cannot be opened until that key is added back)."""

    @property
    def to_rotate(self) -> int:
        return sum(n for by_key in self.counts.values() for kid, n in by_key.items() if kid != self.active_id)


def status(engine: Engine, settings: Settings) -> KeyStatus:
    ring = crypto.key_ring(settings)
    counts = sealed_counts(engine)
    return KeyStatus(
        active_id=ring.active_id,
        development=ring.development,
        development_key_file=settings.data_dir / crypto.DEV_KEY_FILE if ring.development else None,
        counts=counts,
        missing=_missing(ring, counts),
    )


def _missing(ring: KeyRing, counts: dict[str, dict[str, int]]) -> dict[str, int]:
    known = {kid for kid, _ in ring.keys}
    missing: dict[str, int] = {}
    for by_key in counts.values():
        for kid, n in by_key.items():
            if kid not in known:
                missing[kid] = missing.get(kid, 0) + n
    return missing


@dataclass(frozen=True)
class Rotation:
    rotated: dict[str, int]
    """Rows re-sealed in this run, by table."""
    remaining: int
    """Rows still under another key than the active one (0 when the rotation is complete)."""

    @property
    def complete(self) -> bool:
        return self.remaining == 0


def rotate(
    engine: Engine,
    settings: Settings,
    *,
    actor: Identity,
    batch: int = DEFAULT_BATCH,
    max_batches: int | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> Rotation:
    """Re-seal every row not under the active key with the active key, ``batch`` rows per transaction.

    Stops before touching anything when some rows are under a key the ring lacks; stops after
    ``max_batches`` batches when given (a later run continues). Requires ``MANAGE_KEYS``. Audited
    twice: "started" in the transaction of the first re-sealed batch (so no row changes key
    without an entry committed with it), "finished" with the counts once the run ends.
    """
    audit.refuse(engine, actor, Permission.MANAGE_KEYS, subject="rotate")
    if batch < 1:
        raise KeyRotationError(f"--batch must be at least 1 (got {batch}).")
    ring = crypto.key_ring(settings)
    active = ring.active_id
    missing = _missing(ring, sealed_counts(engine))
    if missing:
        listed = "; ".join(f"key '{kid}' seals {n} row{'s' * (n != 1)}" for kid, n in sorted(missing.items()))
        raise KeyRotationError(
            f"Cannot rotate: {listed}, and the key ring does not hold it. Add it to WORKBENCH_ENCRYPTION_KEYS after "
            f"the active key '{active}' and run `python -m core keys rotate` again; nothing was changed."
        )
    rotated = {sealed.name: 0 for sealed in SEALED_TABLES}
    batches, started = 0, 0
    for sealed in SEALED_TABLES:
        t = sealed.table
        pending = select(func.count()).select_from(t).where(t.c.key_id != active, t.c.content.is_not(None))
        with engine.connect() as connection:
            total = int(connection.scalar(pending) or 0)
        if not total:
            continue
        query = (
            select(t.c.id, t.c.key_id, t.c.content, *(t.c[name] for name in sealed.aad_columns))
            .where(t.c.key_id != active, t.c.content.is_not(None))
            .order_by(t.c.id)
            .limit(batch)
        )
        # Fenced by the old key id: a row someone else re-sealed meanwhile is left as they left it.
        reseal = (
            update(t)
            .where(t.c.id == bindparam("row_id"), t.c.key_id == bindparam("old_key"))
            .values(content=bindparam("new_content"), key_id=bindparam("new_key"))
        )
        while max_batches is None or batches < max_batches:
            with engine.begin() as connection:
                rows = connection.execute(query).all()
                if not rows:
                    break
                changes = []
                for row in rows:
                    aad = sealed.aad(row)
                    try:
                        plain = ring.open(row.key_id, row.content, aad=aad)
                    except crypto.DecryptionError as error:
                        raise KeyRotationError(
                            f"Cannot rotate {sealed.name} row {row.id}: {error} Rows before it in this batch were "
                            "left as they were."
                        ) from None
                    fresh = ring.seal(plain, aad=aad)
                    changes.append(
                        {"row_id": row.id, "old_key": row.key_id, "new_content": fresh.blob, "new_key": fresh.key_id}
                    )
                connection.execute(reseal, changes)
                if not started:
                    started = audit.record(
                        connection,
                        audit.KEY_ROTATION,
                        actor=actor,
                        tenant_id=None,
                        subject="started",
                        details={"active_key": active, "batch": batch, "max_batches": max_batches},
                    )
            batches += 1
            rotated[sealed.name] += len(changes)
            progress(f"{sealed.name}: {rotated[sealed.name]} of {total} re-encrypted to key '{active}'")
    remaining = sum(n for by_key in sealed_counts(engine).values() for kid, n in by_key.items() if kid != active)
    if started:
        with engine.begin() as connection:
            audit.record(
                connection,
                audit.KEY_ROTATION,
                actor=actor,
                tenant_id=None,
                subject="finished" if not remaining else "stopped",
                details={"active_key": active, "rotated": rotated, "remaining": remaining, "started_entry": started},
            )
    return Rotation(rotated, remaining)
