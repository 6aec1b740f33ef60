"""Restoring a backup (``core.backup``) into an empty database and file store.

Before the database is touched, the archive is unpacked and every file checked against its
manifest, and its schema revision must be one this code knows. The empty database is brought to
the backup's revision; every row is loaded in ONE transaction (a foreign key to a table not
loaded yet, the paragraphs <-> versions cycle, goes in NULL and is set afterwards); PostgreSQL
sequences move past the restored ids; the stored files are written through ``core.storage``;
every table's count and hash are compared with the manifest and the audit chain verified, all
before that transaction commits. Then the schema is upgraded to head and the RESTORE entry
written. A failure leaves the database without workbench rows and removes the files it stored.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from decimal import InvalidOperation
from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, func, inspect, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy import table as table_clause
from sqlalchemy.engine import make_url

from core import audit, authz, crypto
from core.backup_format import (
    BATCH_ROWS,
    NOT_IN_BACKUP,
    Manifest,
    Progress,
    decode,
    reflect,
    revision_of,
    table_digests,
    unpack,
)
from core.db import alembic_config
from core.errors import BackupError, ConfigurationError
from core.settings import get_settings
from core.storage import delete_blob, store_blob
from core.tenancy import Identity


@dataclass(frozen=True)
class RestoreSummary:
    path: Path
    manifest: Manifest
    head_revision: str
    audit_entries: int
    missing_key_ids: tuple[str, ...]
    """Key ids the restored content needs that the configured key ring lacks."""


def _check_revision(engine: Engine, revision: str) -> tuple[list[str], str]:
    """This code's revisions (oldest first) and head; refuse a revision it does not know."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    known = [r.revision for r in reversed(list(script.walk_revisions()))]
    head = str(script.get_current_head())
    if revision not in known:
        raise BackupError(
            f"The backup's database schema is at revision '{revision}', which this workbench does not know (its "
            f"newest is '{head}'): the backup was made by a newer version. Upgrade the workbench first, then restore."
        )
    return known, head


def _occupied(connection: Connection) -> list[tuple[str, int]]:
    names = [n for n in inspect(connection).get_table_names() if n not in NOT_IN_BACKUP]
    counts = []
    for name in sorted(names):
        rows = int(connection.scalar(select(func.count()).select_from(table_clause(name))) or 0)
        if rows:
            counts.append((name, rows))
    return counts


def _require_empty(connection: Connection) -> None:
    occupied = _occupied(connection)
    if occupied:
        url = make_url(str(connection.engine.url)).render_as_string(hide_password=True)
        listed = ", ".join(f"{rows} in {name}" for name, rows in occupied[:4])
        raise BackupError(
            f"The database at {url} already holds workbench data ({listed}{', ...' if len(occupied) > 4 else ''}). "
            "A restore goes only into an empty database, so nothing is overwritten: create an empty one "
            "(PostgreSQL: `createdb NEW_NAME` and point DATABASE_URL at it; SQLite: point WORKBENCH_DATA_DIR or "
            "DATABASE_URL at a new location) and run the restore again."
        )


def _schema_at(engine: Engine, revision: str, known: list[str]) -> None:
    with engine.connect() as connection:
        current = revision_of(connection)
    if current == revision:
        return
    if current is not None and current not in known:
        raise BackupError(
            f"The target database's schema is at revision '{current}', which this workbench does not know: "
            "restore into a newly created empty database instead."
        )
    config = alembic_config(engine)
    if current is None or known.index(current) < known.index(revision):
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)  # the database is empty: going down loses nothing


def _load(connection: Connection, manifest: Manifest, unpacked: Path, say: Progress) -> None:
    tables = reflect(connection)
    loaded: set[str] = set()
    later: list[tuple[Table, dict[str, Any], dict[str, Any]]] = []
    for spec in manifest.tables:
        table = tables.get(spec.name)
        missing = [name for name, _ in spec.columns if table is None or name not in table.c]
        if table is None or missing:
            raise BackupError(
                f"The backup's table {spec.name} does not fit schema revision {manifest.schema_revision} "
                f"(missing here: {', '.join(missing) or 'the table'}); nothing was restored."
            )
        # A key to a table not loaded yet (or to this one) goes in NULL and is set once all rows are in.
        deferred = {fk.parent.name for fk in table.foreign_keys if fk.column.table.name not in loaded}
        batch: list[dict[str, Any]] = []
        with (unpacked / "tables" / f"{spec.name}.jsonl").open("rb") as lines:
            for raw in lines:
                record = json.loads(raw)
                values = {name: decode(kind, record[name]) for name, kind in spec.columns}
                held = {c: values[c] for c in deferred if record.get(c) is not None}
                if held:
                    later.append((table, {k: values[k] for k in spec.primary_key}, held))
                    values.update(dict.fromkeys(held))
                batch.append(values)
                if len(batch) >= BATCH_ROWS:
                    connection.execute(table.insert(), batch)
                    batch = []
        if batch:
            connection.execute(table.insert(), batch)
        loaded.add(spec.name)
        say(f"{spec.name}: {spec.rows} rows")
    for table, key, held in later:
        connection.execute(table.update().where(*(table.c[k] == v for k, v in key.items())).values(**held))


def _reset_sequences(connection: Connection, manifest: Manifest) -> None:
    if connection.dialect.name != "postgresql":
        return  # SQLite takes max(rowid) + 1 by itself
    quote = connection.dialect.identifier_preparer.quote
    for spec in manifest.tables:
        if len(spec.primary_key) != 1 or dict(spec.columns)[spec.primary_key[0]] != "int":
            continue
        column = spec.primary_key[0]
        sequence = connection.scalar(
            text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": quote(spec.name), "column": column}
        )
        if sequence:
            connection.execute(
                text(f"SELECT setval(CAST(:seq AS regclass), COALESCE(MAX({quote(column)}), 0) + 1, false) "  # noqa: S608
                     f"FROM {quote(spec.name)}"),
                {"seq": sequence},
            )  # fmt: skip


def _verify(connection: Connection, manifest: Manifest) -> None:
    found = table_digests(connection, manifest.tables)
    for spec in manifest.tables:
        rows, sha = found[spec.name]
        if rows != spec.rows or sha != spec.sha256:
            raise BackupError(
                f"After loading, table {spec.name} holds {rows} rows that do not match the backup's "
                f"({spec.rows} rows, sha256 {spec.sha256[:12]}...); nothing was restored."
            )


def _verify_chain(connection: Connection, manifest: Manifest) -> int:
    if not any(t.name == "audit_log" for t in manifest.tables):
        return 0  # a schema revision from before the audit log
    report = audit.verify(connection)
    if not report.intact:
        raise BackupError(
            f"The audit chain in this backup does not hold at entry {report.broken_seq} ({report.reason}), so it was "
            "already broken when the backup was taken; nothing was restored. Restore an older backup, or investigate "
            "the source with `python -m core audit verify`."
        )
    return report.checked


def _write_blobs(manifest: Manifest, unpacked: Path, created: list[str]) -> None:
    for sha in manifest.blobs:
        data = (unpacked / "blobs" / sha[:2] / f"{sha}.pdf").read_bytes()
        stored, _path, made = store_blob(data)
        if made:
            created.append(stored)
        if stored != sha:
            raise BackupError(f"The stored file {sha[:12]}... was written as {stored[:12]}...; nothing was restored.")


def _ring_key_ids() -> tuple[str, ...]:
    """Key ids of the configured ring, without creating a development key as a side effect."""
    settings = get_settings()
    if settings.encryption_keys is not None:
        return tuple(kid for kid, _ in crypto.parse_ring(settings.encryption_keys.get_secret_value()))
    dev_key = settings.data_dir / crypto.DEV_KEY_FILE
    return tuple(kid for kid, _ in crypto.parse_ring(dev_key.read_text())) if dev_key.is_file() else ()


def restore_backup(
    source: Path, *, engine: Engine, actor: Identity, progress: Progress | None = None
) -> RestoreSummary:
    """Restore the archive at ``source`` into the empty database of ``engine`` and the configured
    file store; the schema ends at head. Records ``audit.RESTORE``. Raises ``BackupError``."""
    authz.require(actor, authz.Permission.BACKUP)
    say = progress or (lambda _message: None)
    archive = Path(source)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".restore-") as scratch:
        manifest = unpack(archive, Path(scratch))
        known, head = _check_revision(engine, manifest.schema_revision)
        with engine.connect() as connection:
            _require_empty(connection)
        _schema_at(engine, manifest.schema_revision, known)
        created: list[str] = []
        try:
            with engine.begin() as connection:
                _require_empty(connection)  # again, inside the transaction that loads
                _load(connection, manifest, Path(scratch), say)
                _reset_sequences(connection, manifest)
                _verify(connection, manifest)
                checked = _verify_chain(connection, manifest)
                _write_blobs(manifest, Path(scratch), created)
        except (sa_exc.IntegrityError, sa_exc.DataError, ValueError, InvalidOperation, KeyError) as exc:
            for sha in created:
                delete_blob(sha)
            raise BackupError(
                f"The backup's rows cannot be loaded ({type(exc).__name__}); nothing was restored. "
                "Use another copy of the backup."
            ) from exc
        except BaseException:
            for sha in created:
                delete_blob(sha)
            raise
    say(f"stored files: {len(manifest.blobs)}")
    if manifest.schema_revision != head:
        say(f"upgrading the schema from {manifest.schema_revision} to {head}")
        command.upgrade(alembic_config(engine), "head")
    with engine.begin() as connection:
        audit.record(
            connection,
            audit.RESTORE,
            actor=actor,
            tenant_id=None,
            subject=str(archive),
            details={
                "backup_created_at": manifest.created_at,
                "schema_revision": manifest.schema_revision,
                "tables": len(manifest.tables),
                "rows": manifest.rows,
                "blobs": len(manifest.blobs),
                "source_dialect": manifest.source_dialect,
            },
        )
    try:
        ring = set(_ring_key_ids())
    except (OSError, ConfigurationError):  # an unreadable ring: every key the content needs is reported missing
        ring = set()
    return RestoreSummary(archive, manifest, head, checked, tuple(k for k in manifest.key_ids if k not in ring))
