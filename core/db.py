"""Engines, sessions and migrations.

``get_engine(url)`` is cached per URL; ``migrate(engine)`` brings the schema to Alembic's
head on SQLite and PostgreSQL alike. Nothing connects at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ConfigurationError, ImmutableRecordError
from core.models import ParagraphVersion, SentenceCheck
from core.settings import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets the UI read while a job writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # In WAL mode NORMAL is still safe against a crashed process (only power loss can undo the
    # last commits) and spares an fsync per commit: the gateway commits its ledger on every call.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: the configured database), created once per process."""
    url = url or get_settings().resolved_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise ConfigurationError(
        f"DATABASE_URL uses '{parsed.get_backend_name()}'; the workbench supports sqlite and postgresql."
    )


@lru_cache(maxsize=8)
def _session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = _session_factory(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@lru_cache(maxsize=64)
def _insert_or_ignore(dialect: str, table: Table) -> Any:
    # Built once per table: constructing statements costs more than running them on SQLite.
    return (sqlite_insert if dialect == "sqlite" else pg_insert)(table).on_conflict_do_nothing()


def insert_ignoring_duplicates(connection: Connection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT that quietly does nothing when the key exists; True when a row was added."""
    return bool(connection.execute(_insert_or_ignore(connection.dialect.name, table), values).rowcount)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine | None = None) -> None:
    """Upgrade the schema to head (idempotent)."""
    engine = engine or get_engine()
    command.upgrade(alembic_config(engine), "head")


def schema_is_current(engine: Engine | None = None) -> bool:
    engine = engine or get_engine()
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current == head


@event.listens_for(Session, "before_flush")
def _refuse_changes_to_versions(session: Session, _context, _instances) -> None:  # type: ignore[no-untyped-def]
    # Versions are evidence of what was shown and verified; history must never be rewritten.
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, ParagraphVersion | SentenceCheck) and (
            obj in session.deleted or session.is_modified(obj, include_collections=False)
        ):
            raise ImmutableRecordError(
                "Paragraph versions are immutable: save a new version instead of changing this one."
            )
