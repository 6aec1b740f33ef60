"""The served OpenAPI document: checked in without drift, and every operation keeps to it.

Schemathesis generates requests for every operation of the served ``/openapi.json`` (valid and
invalid ones) and sends them, with an admin token of a seeded tenant, through the real app to the
real database: no response may be a 5xx, nor have a status, content type or body the document does
not describe. Hypothesis is derandomized and kept to a few examples per operation.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from api import auth, database
from api.app import create_app
from api.openapi import DOCUMENT, render
from tests import api_helpers
from tests.conftest import _empty_tables
from tests.ui_helpers import seed_drafted

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
"""What the issue asks of every response: no 5xx, and nothing outside the document."""

EXAMPLES = 12
"""Generated requests per operation in the fuzzing phase (the coverage phase adds its edge cases)."""

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


def test_the_checked_in_document_is_the_served_one() -> None:
    served = api_helpers.client().get("/openapi.json")
    assert served.status_code == 200
    checked_in = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    assert served.json() == checked_in, (
        f"{DOCUMENT.name} has drifted from the app's routes: run `python -m api.openapi` and commit the result."
    )
    assert DOCUMENT.read_text(encoding="utf-8") == render(), "run `python -m api.openapi` (the file is not as written)"


@pytest.fixture(scope="module")
def admin_headers(engine: Engine, data_root: Path) -> Iterator[dict[str, str]]:
    """A seeded tenant (a drafted paragraph: usage, a trajectory, facts) and its admin's bearer header;
    seeded once for the module, since every operation's run reads it."""
    _empty_tables(engine)
    shutil.rmtree(data_root / "blobs", ignore_errors=True)
    seed_drafted(engine)
    database.reset()
    auth.limiter.reset()
    admin = api_helpers.user(engine, role="admin")
    yield api_helpers.headers(api_helpers.token(engine, admin))
    _empty_tables(engine)  # the kill switch and anything else the run changed go with it


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_to_the_document(case: schemathesis.Case, admin_headers: dict[str, str]) -> None:
    case.call_and_validate(headers=admin_headers, checks=CHECKS)
