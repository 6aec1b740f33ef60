"""Tenants and the identity every call that touches tenant data is given.

Accounts (passwords, sessions, lockout) live in ``core.accounts``; roles and what they may do
in ``core.authz``. ``bootstrap`` keeps the default tenant (and its demo researcher) that the
embedded default and the tests start from.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from core.models import Tenant, User

DEFAULT_TENANT_SLUG = "default"
DEFAULT_USER_EMAIL = "researcher@localhost"
GOLDEN_TENANT_SLUG = "golden"
"""The tenant golden runs draft in (``core.golden_runner``): kept out of canaries and breakers."""


@dataclass(frozen=True)
class Identity:
    """Who is acting: every call that touches tenant data is given this (or its tenant_id)."""

    tenant_id: int
    user_id: int
    role: str = "researcher"
    """researcher, ops, prompt_engineer or admin (``core.authz``); the least privilege by default."""
    name: str = ""
    """Who, as the audit log and control history name them (display name and e-mail, or ``cli:<user>``)."""

    @property
    def account_id(self) -> int | None:
        """The users.id to record, or None for the command line (``user_id`` 0: no account)."""
        return self.user_id or None


def bootstrap(session: Session) -> Identity:
    """The default tenant and user, created on first use (idempotent)."""
    tenant = session.scalar(select(Tenant).where(Tenant.slug == DEFAULT_TENANT_SLUG))
    if tenant is None:
        tenant = Tenant(slug=DEFAULT_TENANT_SLUG, name="Default workspace")
        session.add(tenant)
        session.flush()
    user = session.scalar(select(User).where(User.tenant_id == tenant.id, User.email == DEFAULT_USER_EMAIL))
    if user is None:
        user = User(tenant_id=tenant.id, email=DEFAULT_USER_EMAIL, display_name="Researcher", role="researcher")
        session.add(user)
        session.flush()
    return Identity(tenant_id=tenant.id, user_id=user.id)


def create_tenant(session: Session, *, slug: str, name: str) -> Identity:
    """A further tenant with one researcher (used by tests of isolation and by later issues)."""
    tenant = Tenant(slug=slug, name=name)
    session.add(tenant)
    session.flush()
    user = User(tenant_id=tenant.id, email=f"researcher@{slug}", display_name="Researcher", role="researcher")
    session.add(user)
    session.flush()
    return Identity(tenant_id=tenant.id, user_id=user.id)


def is_golden_tenant(db: Session | Connection, *, tenant_id: int) -> bool:
    slug = db.execute(select(Tenant.slug).where(Tenant.id == tenant_id)).scalar()
    return slug == GOLDEN_TENANT_SLUG
