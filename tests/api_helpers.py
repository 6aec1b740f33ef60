"""Shared by the API tests: a client of the real app on the test database, and tokens per role."""

from __future__ import annotations

from sqlalchemy import Engine
from starlette.testclient import TestClient

from api import auth, database
from api.app import create_app
from core import accounts, api_tokens, authz, db
from core.tenancy import Identity, bootstrap


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
