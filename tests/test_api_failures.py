"""The API when the database is away: a clear 503 body with a request id, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api import database
from core.settings import reset_settings
from tests.api_helpers import client, headers


@pytest.fixture
def database_away(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")  # nothing listens on port 1
    reset_settings()
    database.reset()
    yield
    monkeypatch.undo()
    reset_settings()
    database.reset()


def test_a_request_while_the_database_is_away_gets_503_with_what_to_do(database_away: None) -> None:
    response = client().get("/api/v1/audit", headers=headers("obw_anything"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    error = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert "not answering" in error["message"] and "nothing was changed" in error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
