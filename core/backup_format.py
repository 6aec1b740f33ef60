"""The backup archive's format: what it holds, rows as canonical JSON, and how it is checked.

An archive is one gzip-compressed tar file: one file to copy off the machine, checked end to end
by gzip's CRC and by the sha256 sums its manifest holds::

    tables/<table>.jsonl          one canonical JSON object per row, in primary-key order
    blobs/<sha[:2]>/<sha>.pdf     the stored PDFs the snapshot's documents and queued uploads use
    manifest.json                 written last: format, schema revision, created_at, workbench
                                  version, per table its columns (with a type tag), primary key,
                                  row count and sha256 (the sha256 of its .jsonl file), per stored
                                  file its sha256 and size, the key ids sealed content needs

A row is a JSON object with sorted keys: binary columns base64, datetimes ISO 8601 in UTC with
microseconds, NUMERIC at its column's scale, JSON columns as JSON. The same rows give the same
bytes on SQLite and PostgreSQL (text keys are ordered by code point on both), so a table's hash
read back after a restore into either proves the rows arrived unchanged.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, MetaData, Table, null, select
from sqlalchemy.sql import sqltypes

from core.db import as_utc
from core.errors import BackupError
from core.models import Base

FORMAT = "opusblocks-workbench-backup"
FORMAT_VERSION = 1
"""Bumped when the archive layout changes; a restore refuses a format newer than it knows."""
MANIFEST = "manifest.json"
BATCH_ROWS = 1_000
"""Rows per INSERT batch on restore, and per fetch on backup."""
NOT_IN_BACKUP = frozenset({"alembic_version"})
"""Alembic's bookkeeping: the manifest carries the revision instead."""

_TABLE_MEMBER = re.compile(r"tables/([a-z0-9_]{1,63})\.jsonl")
_BLOB_MEMBER = re.compile(r"blobs/([0-9a-f]{2})/([0-9a-f]{64})\.pdf")

Progress = Callable[[str], None]
"""Told one line per step (a table read or loaded), e.g. for the command line to print."""


@dataclass(frozen=True)
class TableSpec:
    """One table as the manifest describes it."""

    name: str
    columns: tuple[tuple[str, str], ...]
    """(column, kind): kind is int str bool float bytes datetime json or decimal:<scale>."""
    primary_key: tuple[str, ...]
    rows: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": [list(c) for c in self.columns],
            "primary_key": list(self.primary_key),
            "rows": self.rows,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class Manifest:
    created_at: str
    schema_revision: str
    workbench_version: str | None
    source_dialect: str
    tables: tuple[TableSpec, ...]
    blobs: dict[str, int]
    """sha256 -> size in bytes of every stored file in the archive."""
    missing_blobs: tuple[str, ...] = ()
    """Files the snapshot referenced that the store did not have (or held damaged)."""
    key_ids: tuple[str, ...] = ()
    """Encryption key ids the sealed content in the archive was sealed with."""

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": self.created_at,
            "schema_revision": self.schema_revision,
            "workbench_version": self.workbench_version,
            "source_dialect": self.source_dialect,
            "tables": [t.as_json() for t in self.tables],
            "blobs": self.blobs,
            "missing_blobs": list(self.missing_blobs),
            "key_ids": list(self.key_ids),
        }


# Rows as canonical JSON -------------------------------------------------------------------------


def _kind(column: Column[Any]) -> str:
    t = column.type
    if isinstance(t, sqltypes.LargeBinary):
        return "bytes"
    if isinstance(t, sqltypes.DateTime):
        return "datetime"
    if isinstance(t, sqltypes.JSON):
        return "json"
    if isinstance(t, sqltypes.Boolean):
        return "bool"
    if isinstance(t, sqltypes.Float):  # before Numeric: Float is a Numeric
        return "float"
    if isinstance(t, sqltypes.Numeric):
        return f"decimal:{'' if t.scale is None else t.scale}"
    if isinstance(t, sqltypes.Integer):
        return "int"
    if isinstance(t, sqltypes.String):
        return "str"
    raise BackupError(
        f"Column {column.table.name}.{column.name} has a type ({t}) the backup does not know how to write; "
        "core/backup.py needs to learn it."
    )


def _datetime(value: datetime) -> str:
    return as_utc(value).astimezone(UTC).isoformat(timespec="microseconds")


def _bytes(value: Any) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def _decimal(scale: str) -> Callable[[Any], str]:
    # SQLite keeps NUMERIC as a float, PostgreSQL exactly: the column's scale makes both say the same.
    step = Decimal(1).scaleb(-int(scale)) if scale else None

    def encode(value: Any) -> str:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        return format(number.quantize(step) if step is not None else number, "f")

    return encode


def _as_is(value: Any) -> Any:
    return value  # json: already plain JSON values


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "bytes": _bytes,
    "datetime": _datetime,
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "json": _as_is,
}


def encoders(columns: tuple[tuple[str, str], ...]) -> list[tuple[str, Callable[[Any], Any]]]:
    """(column, function giving its canonical JSON value) for each column, looked up once per table."""
    return [
        (name, _decimal(kind.partition(":")[2]) if kind.startswith("decimal:") else _ENCODERS[kind])
        for name, kind in columns
    ]


def decode(kind: str, value: Any) -> Any:
    if value is None:
        # A JSON column given None would store the JSON text 'null'; the row had SQL NULL.
        return null() if kind == "json" else None
    if kind == "bytes":
        return base64.b64decode(value, validate=True)
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind.startswith("decimal:"):
        return Decimal(value)
    return value


def row_line(encoding: list[tuple[str, Callable[[Any], Any]]], row: Any) -> bytes:
    """One row as its canonical JSON line."""
    record = {name: None if row[name] is None else encode(row[name]) for name, encode in encoding}
    return (json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def reflect(connection: Connection) -> dict[str, Table]:
    reflected = MetaData()
    reflected.reflect(bind=connection)
    return {name: t for name, t in reflected.tables.items() if name not in NOT_IN_BACKUP}


def dependency_order(tables: dict[str, Table]) -> list[str]:
    """Parents before children. A cycle (paragraphs <-> paragraph_versions) is broken at a table
    whose remaining foreign keys are all nullable: those are loaded NULL and set afterwards."""
    needs = {
        name: {fk.column.table.name for fk in t.foreign_keys if fk.column.table.name in tables} - {name}
        for name, t in tables.items()
    }
    order: list[str] = []
    while needs:
        ready = sorted(name for name, deps in needs.items() if not deps)
        if not ready:
            ready = [
                min(
                    needs,
                    key=lambda n: (
                        any(not fk.parent.nullable for fk in tables[n].foreign_keys if fk.column.table.name in needs),
                        n,
                    ),
                )
            ]
        for name in ready:
            order.append(name)
            del needs[name]
        for deps in needs.values():
            deps.difference_update(ready)
    return order


def columns_of(table: Table) -> tuple[tuple[str, str], ...]:
    model = Base.metadata.tables.get(table.name)
    # The model's types are exact (NUMERIC's scale); reflection covers tables of older revisions.
    return tuple(
        (c.name, _kind(model.c[c.name] if model is not None and c.name in model.c else c)) for c in table.columns
    )


def _ordered(connection: Connection, table: Table, columns: tuple[tuple[str, str], ...], key: tuple[str, ...]) -> Any:
    kinds = dict(columns)
    order = [
        # PostgreSQL would sort text by its locale; "C" sorts by code point, as SQLite does.
        table.c[name].collate("C")
        if kinds[name] == "str" and connection.dialect.name == "postgresql"
        else table.c[name]
        for name in key or tuple(kinds)
    ]
    statement = select(*(table.c[name] for name, _ in columns)).order_by(*order)
    return connection.execution_options(yield_per=BATCH_ROWS).execute(statement)


def digest(
    connection: Connection,
    table: Table,
    columns: tuple[tuple[str, str], ...],
    key: tuple[str, ...],
    *,
    sink: IO[bytes] | None = None,
    on_row: Callable[[Any], None] | None = None,
) -> tuple[int, str]:
    """Rows and sha256 of a table as canonical JSON lines (written to ``sink`` when given)."""
    digest, rows = hashlib.sha256(), 0
    result = _ordered(connection, table, columns, key)
    encoding = encoders(columns)
    for row in result.mappings():
        line = row_line(encoding, row)
        digest.update(line)
        if sink is not None:
            sink.write(line)
        if on_row is not None:
            on_row(row)
        rows += 1
    return rows, digest.hexdigest()


def revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def table_digests(connection: Connection, tables: Iterable[TableSpec]) -> dict[str, tuple[int, str]]:
    """Rows and sha256 of each table as a manifest records them, read on ``connection`` now."""
    reflected = reflect(connection)
    return {spec.name: digest(connection, reflected[spec.name], spec.columns, spec.primary_key) for spec in tables}


# Reading an archive back ----------------------------------------------------------------------


def damaged(archive: Path, what: str) -> BackupError:
    return BackupError(
        f"The backup {archive} is damaged or not a workbench backup ({what}); nothing was restored. "
        "Use another copy of it, or an older backup."
    )


def parse_manifest(archive: Path, data: bytes) -> Manifest:
    try:
        raw = json.loads(data)
        if raw.get("format") != FORMAT:
            raise damaged(archive, "its manifest is not a workbench backup's")
        if int(raw["format_version"]) > FORMAT_VERSION:
            raise BackupError(
                f"The backup {archive} has archive format {raw['format_version']}, newer than this workbench reads "
                f"({FORMAT_VERSION}): upgrade the workbench first, then restore."
            )
        tables = tuple(
            TableSpec(
                name=str(t["name"]),
                columns=tuple((str(c), str(k)) for c, k in t["columns"]),
                primary_key=tuple(str(c) for c in t["primary_key"]),
                rows=int(t["rows"]),
                sha256=str(t["sha256"]),
            )
            for t in raw["tables"]
        )
        return Manifest(
            created_at=str(raw["created_at"]),
            schema_revision=str(raw["schema_revision"]),
            workbench_version=raw.get("workbench_version"),
            source_dialect=str(raw.get("source_dialect", "")),
            tables=tables,
            blobs={str(sha): int(size) for sha, size in raw["blobs"].items()},
            missing_blobs=tuple(str(s) for s in raw.get("missing_blobs", [])),
            key_ids=tuple(str(k) for k in raw.get("key_ids", [])),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise damaged(archive, f"its manifest cannot be read: {type(exc).__name__}") from None


def unpack(archive: Path, into: Path) -> Manifest:
    """Extract the archive into ``into`` and check every file against the manifest."""
    if not archive.is_file():
        raise BackupError(f"There is no backup file at {archive}.")
    sums: dict[str, tuple[str, int]] = {}
    manifest_bytes: bytes | None = None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name
                if not member.isfile() or not (
                    name == MANIFEST or _TABLE_MEMBER.fullmatch(name) or _BLOB_MEMBER.fullmatch(name)
                ):
                    raise damaged(archive, f"unexpected member {name!r}")
                if name in sums or (name == MANIFEST and manifest_bytes is not None):
                    raise damaged(archive, f"{name} appears twice")
                source = tar.extractfile(member)
                if source is None:
                    raise damaged(archive, f"{name} cannot be read")
                if name == MANIFEST:
                    manifest_bytes = source.read()
                    continue
                out = into / name
                out.parent.mkdir(parents=True, exist_ok=True)
                digest, size = hashlib.sha256(), 0
                with out.open("wb") as handle:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        handle.write(chunk)
                        size += len(chunk)
                sums[name] = (digest.hexdigest(), size)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise damaged(archive, f"{type(exc).__name__}: {exc}") from None
    if manifest_bytes is None:
        raise damaged(archive, "it has no manifest; it may have been cut short")
    manifest = parse_manifest(archive, manifest_bytes)
    expected: dict[str, tuple[str, int | None]] = {f"tables/{t.name}.jsonl": (t.sha256, None) for t in manifest.tables}
    expected.update({f"blobs/{sha[:2]}/{sha}.pdf": (sha, size) for sha, size in manifest.blobs.items()})
    for name, (want_sha, want_size) in expected.items():
        if name not in sums:
            raise damaged(archive, f"{name} is missing")
        if sums[name][0] != want_sha or (want_size is not None and sums[name][1] != want_size):
            raise damaged(archive, f"{name} does not match its checksum in the manifest")
    extra = sorted(set(sums) - set(expected))
    if extra:
        raise damaged(archive, f"{extra[0]} is not in the manifest")
    return manifest
