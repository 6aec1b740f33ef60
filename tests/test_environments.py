"""Environments (``WORKBENCH_ENV``): production refuses to start on a development encryption key, a schema
behind head, or an unpinned prompt version, in every process (worker, ops API, web app); commands outside
local refuse an old schema instead of migrating it; staging warns on unpinned prompts; local is unchanged.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Engine
from starlette.testclient import TestClient
from streamlit.testing.v1 import AppTest

from api import database as api_database
from api.app import create_app
from core import authz, cli, db, environments
from core.errors import StartupRefusedError
from core.settings import get_settings, reset_settings
from core.tenancy import Identity
from tests.release_helpers import (
    database_at,
    forget_engines,
    fresh_key,
    pin_every_agent,
    release_prompts,
    revision_of,
    use_database,
    use_prompts,
    use_ring,
)
from tests.ui_helpers import APP
from workers.__main__ import main as worker_main

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = {
    "development key": "development key in production",
    "schema behind head": "python -m core migrate",
    "unpinned prompt": "unpinned prompt version for librarian, writer, verifier, rewriter",
}


@pytest.fixture(autouse=True)
def _settings_follow_the_environment() -> Iterator[None]:
    # Set up before each test's monkeypatch, so torn down after it has put the environment back.
    st.cache_resource.clear()
    yield
    reset_settings()
    forget_engines()
    api_database.reset()
    st.cache_resource.clear()


def use_environment(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("WORKBENCH_ENV", name)
    reset_settings()


@pytest.fixture
def setup(
    request: pytest.FixtureRequest,
    clean_db: Engine,
    identity: Identity,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """Production with exactly one of the three problems (the parameter); the other two are in order."""
    problem = request.param
    use_prompts(monkeypatch, release_prompts(tmp_path / "prompts"))
    use_ring(monkeypatch, ("prod-1", fresh_key()))
    if problem == "development key":
        pin_every_agent(clean_db, authz.cli_identity(identity.tenant_id))
        monkeypatch.delenv("WORKBENCH_ENCRYPTION_KEYS")
    if problem == "schema behind head":
        with database_at(database_url, tmp_path, "0008") as old:
            use_database(monkeypatch, old)
            use_environment(monkeypatch, "production")
            yield problem
        return
    use_environment(monkeypatch, "production")
    yield problem


def refused_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("setup", list(PROBLEMS), indirect=True)
def test_production_refuses_to_start_on_each_problem_in_every_process(
    setup: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = PROBLEMS[setup]
    problems = environments.startup_problems(db.get_engine(get_settings().resolved_database_url), get_settings())
    assert len(problems) == 1 and expected in problems[0], problems

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens: the refusal comes first
    reset_settings()
    capsys.readouterr()
    assert worker_main(["--burst"]) == 2
    err = capsys.readouterr().err
    assert "The worker refuses to start in production" in err and expected in err and "Redis" not in err

    with pytest.raises(StartupRefusedError) as refused, TestClient(create_app()):
        pass
    assert "The ops API refuses to start in production" in str(refused.value) and expected in str(refused.value)

    at = refused_app()
    [error] = at.error
    assert "The web app refuses to start in production" in error.value and expected in error.value
    assert not at.text_input, "no sign-in form behind the refusal"


def test_the_api_process_exits_non_zero_under_uvicorn(
    clean_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "WORKBENCH_ENV": "production"}
    env.pop("WORKBENCH_ENCRYPTION_KEYS", None)
    process = subprocess.run(
        [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", "0"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode != 0
    assert "development key in production" in process.stderr


def test_a_correct_production_setup_starts(
    clean_db: Engine, identity: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_prompts(monkeypatch, release_prompts(tmp_path / "prompts"))
    use_ring(monkeypatch, ("prod-1", fresh_key()))
    pin_every_agent(clean_db, authz.cli_identity(identity.tenant_id))
    use_environment(monkeypatch, "production")
    assert environments.refusal("worker") is None
    with TestClient(create_app()) as client:
        assert client.get("/health").status_code in (200, 503)
    at = refused_app()
    assert not at.error and at.text_input, "the sign-in page shows"


@pytest.mark.parametrize("name", ["staging", "production"])
def test_commands_outside_local_refuse_an_old_schema_but_migrate_always_works(
    name: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with database_at(database_url, tmp_path, "0008") as old:
        use_database(monkeypatch, old)
        use_environment(monkeypatch, name)
        capsys.readouterr()
        for command in (["manuscripts"], ["prompts", "status"]):
            assert cli.main(command) == 1
            err = capsys.readouterr().err
            assert f"In {name} (WORKBENCH_ENV) commands do not migrate" in err and "python -m core migrate" in err
            assert revision_of(old) == "0008"
        assert cli.main(["migrate"]) == 0
        assert db.schema_is_current(db.get_engine(old))
        assert cli.main(["manuscripts"]) == 0


def test_local_is_unchanged_commands_migrate_and_nothing_is_refused(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKBENCH_ENV", raising=False)
    monkeypatch.delenv("WORKBENCH_ENCRYPTION_KEYS", raising=False)
    with database_at(database_url, tmp_path, "0008") as old:
        use_database(monkeypatch, old)
        assert get_settings().environment == "local"
        engine = db.get_engine(old)
        assert environments.startup_problems(engine, get_settings()) == []
        assert environments.refusal("web app") is None and revision_of(old) == "0008", "the check touches nothing"
        assert cli.main(["manuscripts"]) == 0
        assert db.schema_is_current(engine), "local commands migrate as they always did"


def test_staging_refuses_the_development_key_and_warns_on_unpinned_prompts(
    clean_db: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use_environment(monkeypatch, "staging")
    monkeypatch.delenv("WORKBENCH_ENCRYPTION_KEYS", raising=False)
    reset_settings()
    message = environments.refusal("worker")
    assert message is not None and "development key in staging" in message and "unpinned" not in message

    use_ring(monkeypatch, ("stage-1", fresh_key()))
    with caplog.at_level(logging.WARNING, logger="core.environments"):
        assert environments.refusal("worker") is None
    assert any("unpinned prompt version" in r.getMessage() for r in caplog.records)
