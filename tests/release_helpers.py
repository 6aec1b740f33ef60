"""Shared by the release check and environment tests: candidate prompts, a database left at an old
revision, and a workbench set up the way a release expects, all through the real core.

``release_prompts`` writes the shipped v1 of every agent plus a v2 of each (the same text and one
harmless line: passes the golden set) into a folder of its own, locked; with ``weak_verifier`` the
Verifier's v1 there is made lenient, so the golden set catches it (``strictness: lenient``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from core import crypto, db, deployments, prompts
from core.golden_runner import run_golden
from core.settings import reset_settings
from core.tenancy import Identity

ROOT = Path(__file__).resolve().parent.parent
V2 = "v2"


def release_prompts(folder: Path, *, weak_verifier: bool = False) -> Path:
    for agent in prompts.AGENTS:
        (folder / agent).mkdir(parents=True)
        shipped = (ROOT / "prompts" / agent / "v1.md").read_text()
        if weak_verifier and agent == "verifier":
            shipped = shipped.replace("max_tokens: 400", "max_tokens: 400\nstrictness: lenient")
        (folder / agent / "v1.md").write_text(shipped)
        (folder / agent / f"{V2}.md").write_text(shipped.replace("version: v1", f"version: {V2}") + "Be exact.\n")
    prompts.lock_new_versions(folder)
    return folder


def use_prompts(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(folder))
    reset_settings()


def use_ring(monkeypatch: pytest.MonkeyPatch, *entries: tuple[str, str]) -> None:
    """Configure ``WORKBENCH_ENCRYPTION_KEYS`` (id, base64 key) pairs, the active first."""
    monkeypatch.setenv("WORKBENCH_ENCRYPTION_KEYS", ",".join(f"{kid}:{key}" for kid, key in entries))
    reset_settings()


def pin_every_agent(engine: Engine, admin: Identity, agents: tuple[str, ...] = prompts.AGENTS) -> int:
    """A passing golden run of every agent's v2, then ``agents`` activated on it; returns the run id."""
    run = run_golden(engine, prompt_pins=dict.fromkeys(prompts.AGENTS, V2), label="release candidate")
    assert run.status == "passed", run.failing_cases
    with db.session_scope(engine) as session:
        for agent in agents:
            deployments.activate(session, by=admin, agent=agent, version=V2, reason="release")
    return run.id


def fresh_key() -> str:
    return crypto.new_key()


@contextmanager
def database_at(database_url: str, folder: Path, revision: str) -> Iterator[str]:
    """The URL of a new, empty database migrated to ``revision`` only (SQLite: a file in ``folder``;
    PostgreSQL: a schema of its own in the test database, chosen by ``search_path``)."""
    url = make_url(database_url)
    schema = ""
    if url.get_backend_name() == "sqlite":
        target = f"sqlite:///{folder / f'old-{uuid.uuid4().hex[:8]}.db'}"
    else:
        schema = f"old_{uuid.uuid4().hex[:8]}"
        with db.get_engine(database_url).begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        target = url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    engine = db.get_engine(target)
    command.upgrade(db.alembic_config(engine), revision)
    try:
        yield target
    finally:
        engine.dispose()
        if schema:
            with db.get_engine(database_url).begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point the workbench at ``url``. ``db.get_engine()`` caches its engine without an argument too,
    so that cache is dropped here and again after the test (``forget_engines``)."""
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    db.get_engine.cache_clear()
    _moved.append(url)


_moved: list[str] = []


def forget_engines() -> None:
    """After a test that used ``use_database``: drop cached engines, so ``db.get_engine()`` follows
    DATABASE_URL again."""
    if _moved:
        _moved.clear()
        db.get_engine.cache_clear()


def revision_of(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
