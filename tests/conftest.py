"""Fixtures: a real database (SQLite file, or PostgreSQL when TEST_DATABASE_URL names one).

The schema is built once per run through the real Alembic migrations; each test starts
from empty tables.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from streamlit.runtime import pages_manager
from streamlit.testing.v1 import AppTest

from core import db
from core.models import Base
from core.settings import reset_settings
from core.tenancy import Identity, bootstrap
from core.ui import AUTH_TOKEN
from tests.fakellm import FakeLLM, start_fake_llm
from tests.ui_helpers import APP, MakeApp, session_token


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
    if engine.dialect.name == "postgresql":
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        for attempt in range(5):
            try:
                with engine.begin() as connection:
                    connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
                return
            except OperationalError as error:
                # An in-process executor left by an earlier test still beats and reaps every few
                # seconds; its transaction can lock tables in another order than TRUNCATE does, and
                # PostgreSQL then aborts one of the two. Only a deadlock is retried.
                if "deadlock" not in str(error.orig).lower() or attempt == 4:
                    raise
                time.sleep(0.2)
    with engine.begin() as connection:
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


@pytest.fixture
def make_app(clean_db: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeApp]:
    """A factory of AppTests of the whole app (the frame, app.py, around the page asked for), signed
    in as the admin of the default tenant, or as ``role``'s user there, or as ``identity``'s user
    (``role=None``: not signed in)."""
    # The server leaves Streamlit's old pages/ folder mode for good once app.py has called
    # st.navigation (and core.ui makes sure it does); AppTest resets that flag before every run
    # and would run a switched-to page file alone, without the frame. Keep it off, as the server does.
    original_init = pages_manager.PagesManager.__init__

    def init_as_after_navigation(self: pages_manager.PagesManager, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        pages_manager.PagesManager.uses_pages_directory = False

    monkeypatch.setattr(pages_manager.PagesManager, "__init__", init_as_after_navigation)
    st.cache_resource.clear()  # process-wide and outlives an AppTest: each case builds its engine anew
    reset_settings()

    def make(page: str | None = None, *, role: str | None = "admin", identity: Identity | None = None) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=120)
        if role is not None or identity is not None:  # role=None: a browser that has not signed in
            at.session_state[AUTH_TOKEN] = session_token(clean_db, role=role or "admin", identity=identity)
        at.run()
        assert not at.exception, at.exception
        if page:
            at.switch_page(page).run()
            assert not at.exception, at.exception
        return at

    yield make
    st.cache_resource.clear()
    reset_settings()
