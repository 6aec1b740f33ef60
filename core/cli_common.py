"""What every ``python -m core`` command module shares: who acts from the command line."""

from __future__ import annotations

from dataclasses import replace

from core import authz, db, environments
from core.tenancy import Identity, bootstrap


def operator(name: str | None = None) -> Identity:
    """Who acts from the command line: ``authz.cli_identity`` in the default tenant (the schema is
    migrated first in local, so a fresh data directory works from the first command; elsewhere a schema
    behind head is refused, ``core.environments.prepare_schema``). ``name`` (``--actor``) names the
    person at the keyboard; the operating-system user stays beside it in every log."""
    environments.prepare_schema()
    with db.session_scope() as session:
        acting = authz.cli_identity(bootstrap(session).tenant_id)
    return replace(acting, name=f"{name.strip()} ({acting.name})") if name and name.strip() else acting
