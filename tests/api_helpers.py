"""Shared by the API tests: a client of the real app on the test database, tokens per role, every
operation of the checked-in OpenAPI document with a plausible request, and the workbench's state."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from api import auth, database
from api.app import create_app
from api.openapi import DOCUMENT
from core import accounts, api_tokens, authz, db, jobs, routing
from core.authz import Permission
from core.models import Base, Trajectory
from core.settings import get_settings
from core.tenancy import Identity, bootstrap
from tests.ui_helpers import Seeded


def client() -> TestClient:
    """The whole app (every router, the error handlers, the middleware) on the configured database."""
    database.reset()
    auth.limiter.reset()  # each test starts with full buckets
    return TestClient(create_app(), raise_server_exceptions=False)


def user(engine: Engine, *, role: str, tenant_id: int | None = None, email: str | None = None) -> Identity:
    """An account with ``role`` (in the default tenant unless named), created through core.accounts."""
    with db.session_scope(engine) as s:
        tenant_id = tenant_id or bootstrap(s).tenant_id
        email = email or f"api-{role}-{tenant_id}@example.org"
        accounts.create_user(
            s,
            by=authz.cli_identity(tenant_id),
            tenant_id=tenant_id,
            email=email,
            display_name=f"API {role}",
            role=role,
            password="a long enough password",
        )
        return accounts.identity_of(s, user_id=accounts.user_id_by_email(s, email=email))


def token(engine: Engine, who: Identity, *, days: int = 30, rate_per_minute: int = 10_000) -> str:
    """A live bearer secret of ``who``'s account."""
    with db.session_scope(engine) as s:
        secret, _view = api_tokens.create(s, by=who, name="test", days=days, rate_per_minute=rate_per_minute)
    return secret


def headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# -- every operation, with a request that would work -------------------------------------------------

PERMISSIONS: dict[tuple[str, str], Permission | None] = {
    # The API throws the kill switch for admins only (api.routes_admin), whose mark is MANAGE_USERS.
    ("POST", "/admin/kill-switch"): Permission.MANAGE_USERS,
    ("POST", "/admin/kill-switch/release"): Permission.MANAGE_USERS,
    ("GET", "/api/v1/audit"): Permission.VIEW_AUDIT,
    ("GET", "/api/v1/ops/costs/alerts"): Permission.VIEW_COSTS,
    ("POST", "/api/v1/ops/costs/alerts"): Permission.MANAGE_ALERTS,
    ("GET", "/api/v1/ops/costs/events"): Permission.VIEW_COSTS,
    ("GET", "/api/v1/ops/costs/summary"): Permission.VIEW_COSTS,
    ("GET", "/api/v1/ops/routing/config"): Permission.VIEW_ROUTING,
    ("POST", "/api/v1/ops/routing/config"): Permission.CHANGE_ROUTING,
    ("GET", "/api/v1/ops/trajectories"): Permission.VIEW_TRACES,
    ("GET", "/api/v1/ops/trajectories/{trace_id}"): Permission.VIEW_TRACES,
    ("POST", "/api/v1/paragraphs"): Permission.DRAFT,
    ("GET", "/api/v1/paragraphs/{paragraph_id}/jobs/{job_id}"): Permission.DRAFT,
    ("GET", "/api/v1/tools"): None,  # any live token
    ("POST", "/api/v1/tools/search_corpus"): Permission.DRAFT,
}
"""What each operation that takes a token requires of its role (None: only a live token)."""


def documented_operations() -> list[tuple[str, str]]:
    """Every operation of docs/openapi.json that takes a bearer token, as (METHOD, path template)."""
    paths: dict[str, dict[str, Any]] = json.loads(DOCUMENT.read_text(encoding="utf-8"))["paths"]
    return sorted(
        (method.upper(), path) for path, ops in paths.items() for method, op in ops.items() if op.get("security")
    )


def body_operations() -> list[tuple[str, str]]:
    """The operations of docs/openapi.json that take a JSON body."""
    paths: dict[str, dict[str, Any]] = json.loads(DOCUMENT.read_text(encoding="utf-8"))["paths"]
    return sorted(
        (method.upper(), path) for path, ops in paths.items() for method, op in ops.items() if "requestBody" in op
    )


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    body: dict[str, Any] | None


def plausible_calls(engine: Engine, seeded: Seeded) -> dict[tuple[str, str], Call]:
    """A request for every documented operation that a token allowed to make it would see succeed, on
    ``seeded``'s tenant: its real paragraph, a queued draft job of it, its drafted run's trace."""
    tenant_id = seeded.identity.tenant_id
    job_id = jobs.submit(
        engine,
        tenant_id=tenant_id,
        user_id=seeded.identity.user_id,
        kind="draft",
        payload={"paragraph_id": seeded.paragraph_id},
        trace_id="plausible-draft",
    )
    with db.session_scope(engine) as s:
        trace_id = s.scalars(select(Trajectory.trace_id).where(Trajectory.tenant_id == tenant_id)).first()
        config = routing.current_config(s, tenant_id=tenant_id, settings=get_settings()).config.model_dump(mode="json")
    assert trace_id, "the seeded draft leaves a trajectory"
    values = {"paragraph_id": str(seeded.paragraph_id), "job_id": job_id, "trace_id": trace_id}
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/admin/kill-switch"): {"reason": "drill"},
        ("POST", "/api/v1/ops/costs/alerts"): {"rule": "cost_per_paragraph", "threshold": 0.25, "enabled": False},
        ("POST", "/api/v1/ops/routing/config"): {
            "config": {**config, "simple_below": 20.0, "complex_from": 70.0},
            "note": "cheaper simple tier",
        },
        ("POST", "/api/v1/paragraphs"): {"manuscript_id": seeded.manuscript_id, "brief": "Biochar and nitrate"},
        ("POST", "/api/v1/tools/search_corpus"): {
            "manuscript_id": seeded.manuscript_id,
            "query": "nitrate leaching",
            "top_k": 5,
        },
    }
    calls = {}
    for method, template in documented_operations():
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        calls[(method, template)] = Call(method, url, bodies.get((method, template)))
    return calls


def send(api: TestClient, call: Call, secret: str, *, body: dict[str, Any] | None = None) -> Any:
    """``call`` with ``secret`` as its bearer token (and ``body`` instead of its own, when given)."""
    return api.request(call.method, call.url, headers=headers(secret), json=body if body is not None else call.body)


VOLATILE = frozenset({"workers", "alert_events", "api_tokens", "auth_sessions", "login_throttles"})
"""Tables that change without any request: heartbeats and the alert rounds of an in-process executor an
earlier test started, a token's last use, sign-in bookkeeping."""
AUDIT = frozenset({"audit_log", "audit_head"})


def state(engine: Engine, *, audit: bool = True) -> dict[str, list[str]]:
    """Every row of every table but the volatile ones (and the audit log unless ``audit``): equal before
    and after a request when it changed nothing."""
    skipped = VOLATILE if audit else VOLATILE | AUDIT
    with engine.connect() as connection:
        return {
            table.name: sorted(repr(tuple(row)) for row in connection.execute(select(table)))
            for table in Base.metadata.sorted_tables
            if table.name not in skipped
        }
