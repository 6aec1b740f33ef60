"""What every ``python -m core`` command module shares: who acts from the command line."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Engine, inspect, select

from core import authz, db, environments
from core.models import Tenant
from core.tenancy import DEFAULT_TENANT_SLUG, Identity, bootstrap


def operator(name: str | None = None) -> Identity:
    """Who acts from the command line: ``authz.cli_identity`` in the default tenant (the schema is
    migrated first in local, so a fresh data directory works from the first command; elsewhere a schema
    behind head is refused, ``core.environments.prepare_schema``). ``name`` (``--actor``) names the
    person at the keyboard; the operating-system user stays beside it in every log."""
    environments.prepare_schema()
    with db.session_scope() as session:
        acting = authz.cli_identity(bootstrap(session).tenant_id)
    return _named(acting, name)


def _named(acting: Identity, name: str | None) -> Identity:
    return replace(acting, name=f"{name.strip()} ({acting.name})") if name and name.strip() else acting


def reading_operator(engine: Engine, name: str | None = None) -> Identity:
    """``operator`` found without migrating or creating anything, for commands that must see the
    database as it is (a backup source, an empty restore target, the release check's pending
    migration): the default tenant's id, or 0 while it does not exist."""
    tenant_id = 0
    with engine.connect() as connection:
        if inspect(connection).has_table("tenants"):
            tenant_id = connection.scalar(select(Tenant.id).where(Tenant.slug == DEFAULT_TENANT_SLUG)) or 0
    return _named(authz.cli_identity(int(tenant_id)), name)
