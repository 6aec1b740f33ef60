"""Backing up the whole workbench while it is in use: every table and the stored files, one archive.

The archive's layout is ``core.backup_format``'s; ``restore_backup`` (``core.restore``) reads it
back. Nothing of ``data/`` but the file store goes in: not the SQLite file, not the development
key. Trace content stays sealed (AES-256-GCM, ``core.crypto``): a restored workbench reads it
only with the same key ring, which must be kept apart from the backups.

Consistency: every table is read in ONE transaction with a snapshot (PostgreSQL: REPEATABLE
READ, read only; SQLite in WAL mode: one read transaction, begun explicitly because the driver
would otherwise run each SELECT on its own). Stored files are content-addressed and immutable,
so copying those the snapshot's rows name after it closes is as good as during it. The BACKUP
audit entry is written after the snapshot, so the archive does not hold the entry recording it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table

from core import audit, authz, crypto
from core.backup_format import (
    MANIFEST,
    Manifest,
    Progress,
    TableSpec,
    columns_of,
    dependency_order,
    digest,
    reflect,
    revision_of,
    table_digests,
)
from core.errors import BackupError
from core.restore import RestoreSummary, restore_backup
from core.settings import PROJECT_ROOT, get_settings
from core.storage import blob_path
from core.tenancy import Identity

COMPRESS_LEVEL = 3
"""gzip level: JSON lines shrink well already at a low level, PDFs and sealed bytes hardly at
all, so higher levels mostly cost time while the snapshot's files wait to be packed."""
QUEUED_UPLOAD_STATES = ("QUEUED", "RUNNING")
"""Ingest jobs in these states still need the upload they name (it has no document yet)."""


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    manifest: Manifest
    size_bytes: int
    key_ring_is_development: bool


@contextmanager
def consistent_snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose every read sees the database as of one moment."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            reading = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with reading.begin():
                yield reading
            return
        raw: Any = connection.connection.driver_connection
        previous = raw.isolation_level
        raw.isolation_level = None  # the driver would run each SELECT outside any transaction
        try:
            connection.exec_driver_sql("BEGIN")  # WAL: the first read fixes the snapshot
            yield connection
        finally:
            connection.rollback()
            raw.isolation_level = previous


class _Collector:
    """What the rows read tell the backup beyond themselves: stored files and key ids in use."""

    def __init__(self) -> None:
        self.blobs: set[str] = set()
        self.key_ids: set[str] = set()

    def for_table(self, table: Table) -> Callable[[Any], None] | None:
        names = set(table.c.keys())
        if table.name == "documents":
            return lambda row: self.blobs.add(row["sha256"])
        if table.name == "jobs":
            return self._queued_upload
        if {"key_id", "content"} <= names:
            return lambda row: self.key_ids.add(row["key_id"]) if row["content"] is not None else None
        return None

    def _queued_upload(self, row: Any) -> None:
        payload = row["payload"]
        if row["kind"] == "ingest" and row["state"] in QUEUED_UPLOAD_STATES and isinstance(payload, dict):
            self.blobs.add(str(payload.get("sha256", "")))


def _target_path(destination: Path) -> Path:
    if destination.is_dir():
        return destination / f"workbench-backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.tar.gz"
    if destination.exists():
        raise BackupError(f"{destination} exists already; a backup never overwrites one. Choose a new file name.")
    if not destination.parent.is_dir():
        raise BackupError(f"The folder {destination.parent} does not exist; create it or choose another path.")
    return destination


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(datetime.now(UTC).timestamp()), 0o600
    tar.addfile(info, fileobj=io.BytesIO(data))


def create_backup(
    destination: Path, *, engine: Engine, actor: Identity, progress: Progress | None = None
) -> BackupSummary:
    """Write every table and the stored files the snapshot uses to one archive at ``destination``
    (a new file, or an existing folder to write a dated one into); records ``audit.BACKUP``."""
    authz.require(actor, authz.Permission.BACKUP)
    say = progress or (lambda _message: None)
    target = _target_path(Path(destination))
    partial = target.with_name(target.name + ".partial")
    collector = _Collector()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".backup-") as staging:
        tables_dir = Path(staging) / "tables"
        tables_dir.mkdir()
        specs: list[TableSpec] = []
        with consistent_snapshot(engine) as connection:
            revision = revision_of(connection)  # the first read: the snapshot starts here
            if revision is None:
                raise BackupError(
                    "This database has no workbench schema, so there is nothing to back up. "
                    "Check DATABASE_URL (and WORKBENCH_DATA_DIR for the SQLite default)."
                )
            created_at = datetime.now(UTC).isoformat(timespec="microseconds")
            dialect = connection.dialect.name
            tables = reflect(connection)
            for name in dependency_order(tables):
                table = tables[name]
                columns = columns_of(table)
                key = tuple(c.name for c in table.primary_key.columns)
                with (tables_dir / f"{name}.jsonl").open("wb") as sink:
                    rows, sha = digest(connection, table, columns, key, sink=sink, on_row=collector.for_table(table))
                specs.append(TableSpec(name, columns, key, rows, sha))
                say(f"{name}: {rows} rows")
            has_audit = "audit_log" in tables
        blobs, missing = _gather_blobs(sorted(b for b in collector.blobs if b))
        manifest = Manifest(
            created_at=created_at,
            schema_revision=revision,
            workbench_version=_workbench_version(),
            source_dialect=dialect,
            tables=tuple(specs),
            blobs={sha: size for sha, size in blobs},
            missing_blobs=tuple(missing),
            key_ids=tuple(sorted(collector.key_ids)),
        )
        try:
            with tarfile.open(partial, "w:gz", compresslevel=COMPRESS_LEVEL) as tar:
                for spec in specs:
                    tar.add(tables_dir / f"{spec.name}.jsonl", arcname=f"tables/{spec.name}.jsonl", recursive=False)
                for sha, _size in blobs:
                    tar.add(blob_path(sha), arcname=f"blobs/{sha[:2]}/{sha}.pdf", recursive=False)
                _add_bytes(tar, MANIFEST, json.dumps(manifest.as_json(), indent=1, sort_keys=True).encode())
            with partial.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    say(f"stored files: {len(blobs)}" + (f" ({len(missing)} missing from the store)" if missing else ""))
    if has_audit:
        # After the snapshot, so the archive does not hold the entry that records it.
        with engine.begin() as connection:
            audit.record(
                connection,
                audit.BACKUP,
                actor=actor,
                tenant_id=None,
                subject=str(target),
                details={
                    "schema_revision": revision,
                    "snapshot_at": created_at,
                    "tables": len(specs),
                    "rows": manifest.rows,
                    "blobs": len(blobs),
                    "missing_blobs": len(missing),
                    "archive_sha256": _sha256_of(target),
                },
            )
    ring = crypto.key_ring(get_settings()) if manifest.key_ids else None
    return BackupSummary(target, manifest, target.stat().st_size, bool(ring and ring.development))


def _gather_blobs(wanted: list[str]) -> tuple[list[tuple[str, int]], list[str]]:
    """(sha256, size) of each stored file present and intact; the missing or damaged ones apart."""
    present: list[tuple[str, int]] = []
    missing: list[str] = []
    for sha in wanted:
        try:
            path = blob_path(sha)
            if _sha256_of(path) != sha:  # the store is content-addressed: a mismatch is damage
                missing.append(sha)
                continue
            present.append((sha, path.stat().st_size))
        except (OSError, ValueError):  # gone since (its document was deleted) or not a sha256
            missing.append(sha)
    return present, missing


def _workbench_version() -> str | None:
    try:
        return package_metadata.version("opusblocks-workbench")
    except package_metadata.PackageNotFoundError:  # run from a checkout: its pyproject says
        try:
            with (PROJECT_ROOT / "pyproject.toml").open("rb") as handle:
                return str(tomllib.load(handle)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return None


__all__ = [
    "BackupSummary",
    "Manifest",
    "RestoreSummary",
    "TableSpec",
    "create_backup",
    "restore_backup",
    "table_digests",
]
