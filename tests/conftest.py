"""Fixtures: a real database (SQLite file, or PostgreSQL when TEST_DATABASE_URL names one).

The schema is built once per run through the real Alembic migrations; each test starts
from empty tables.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core import db
from core.models import Base
from core.settings import reset_settings
from core.tenancy import Identity, bootstrap
from tests.fakellm import FakeLLM, start_fake_llm


def _database_url(tmp_root: Path) -> str:
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_root / 'test.db'}"


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workbench-data")


@pytest.fixture(scope="session")
def database_url(data_root: Path) -> str:
    return _database_url(data_root)


@pytest.fixture(scope="session", autouse=True)
def _environment(data_root: Path, database_url: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("WORKBENCH_DATA_DIR", "DATABASE_URL", "REDIS_URL", "WORKBENCH_PROVIDER")}
    os.environ["WORKBENCH_DATA_DIR"] = str(data_root)
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("REDIS_URL", None)
    os.environ["WORKBENCH_PROVIDER"] = "local"
    reset_settings()
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()


@pytest.fixture(scope="session")
def engine(database_url: str, _environment: None) -> Engine:
    engine = db.get_engine(database_url)
    if make_url(database_url).get_backend_name() == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    db.migrate(engine)
    return engine


def _empty_tables(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            connection.execute(text("UPDATE paragraphs SET accepted_version_id = NULL"))
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())


@pytest.fixture
def clean_db(engine: Engine, data_root: Path) -> Engine:
    _empty_tables(engine)
    shutil.rmtree(data_root / "blobs", ignore_errors=True)  # stored originals go with their rows
    return engine


@pytest.fixture
def session(clean_db: Engine) -> Iterator[Session]:
    with db.session_scope(clean_db) as s:
        yield s


@pytest.fixture
def identity(session: Session) -> Identity:
    ident = bootstrap(session)
    session.commit()
    return ident


@pytest.fixture(scope="session")
def llm_server() -> Iterator[FakeLLM]:
    """The local server speaking the OpenAI and Anthropic wire formats (one per test run)."""
    server = start_fake_llm()
    yield server
    server.stop()


@pytest.fixture
def fake(llm_server: FakeLLM) -> FakeLLM:
    """The fake model server with an empty script and no recorded requests."""
    llm_server.reset()
    return llm_server
