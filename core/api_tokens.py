"""Bearer tokens of the ops API: created and revoked by their user (or an admin), stored hashed.

A token acts as its user, in the user's tenant, with the role chosen at creation (never above the
user's own); it expires, can be revoked, and carries its own rate limit. The secret is returned
once, by ``create``; only its sha256 is kept.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from core import audit, authz
from core.db import as_utc, session_scope
from core.errors import AccountError, NotFoundError, PermissionDeniedError, SessionExpiredError
from core.models import ApiToken, User, utcnow
from core.tenancy import Identity

TOKEN_PREFIX = "obw_"  # noqa: S105 (a public marker, not a secret)
"""Every secret starts with this, so a leaked token is recognisable in logs and secret scanners."""
MAX_DAYS = 365
"""The longest a token may live, days."""
DEFAULT_RATE_PER_MINUTE = 120
"""Requests a token may make per minute unless its creator chose otherwise."""
_RANK = {role: n for n, role in enumerate(authz.ROLES)}


@dataclass(frozen=True)
class TokenView:
    """A token as lists show it: never the secret."""

    id: int
    name: str
    prefix: str
    user_id: int
    tenant_id: int
    role: str
    rate_per_minute: int
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def live(self) -> bool:
        return self.revoked_at is None and self.expires_at > utcnow()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _view(row: ApiToken) -> TokenView:
    return TokenView(
        row.id,
        row.name,
        row.prefix,
        row.user_id,
        row.tenant_id,
        row.role,
        row.rate_per_minute,
        as_utc(row.created_at),
        as_utc(row.expires_at),
        as_utc(row.last_used_at) if row.last_used_at else None,
        as_utc(row.revoked_at) if row.revoked_at else None,
    )


def create(
    session: Session,
    *,
    by: Identity,
    name: str,
    days: int = 90,
    role: str | None = None,
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE,
) -> tuple[str, TokenView]:
    """A new token of ``by``'s own account; returns the secret (shown once) and the token."""
    role = role or by.role
    if role not in _RANK:
        raise AccountError(f"Unknown role {role!r}; roles are {', '.join(authz.ROLES)}.")
    if by.role not in _RANK or _RANK[role] > _RANK[by.role]:
        raise PermissionDeniedError(
            f"A token cannot act with more than your own role ({by.role}).", permission="api_token_role"
        )
    if not name.strip():
        raise AccountError("Name the token (what it is for), so it can be told apart and revoked.")
    if not 1 <= days <= MAX_DAYS:
        raise AccountError(f"A token lives 1 to {MAX_DAYS} days, not {days}.")
    if not 1 <= rate_per_minute <= 10_000:
        raise AccountError(f"A token's rate is 1 to 10000 requests per minute, not {rate_per_minute}.")
    if not by.account_id:
        raise AccountError("The command line has no account to own a token; create it as a user.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiToken(
        token_sha256=_digest(secret),
        prefix=secret[:12],
        name=name.strip()[:200],
        user_id=by.user_id,
        tenant_id=by.tenant_id,
        role=role,
        rate_per_minute=rate_per_minute,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(row)
    session.flush()
    audit.record(
        session.connection(),
        audit.USER_CHANGED,
        actor=by,
        tenant_id=by.tenant_id,
        subject=by.name,
        details={"action": "api_token_created", "token_id": row.id, "role": role, "days": days},
    )
    return secret, _view(row)


def list_tokens(session: Session, *, by: Identity) -> list[TokenView]:
    """``by``'s own tokens; every tenant's for an admin (metadata only), newest first."""
    query = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    if not authz.allowed(by, authz.Permission.MANAGE_USERS):
        query = query.where(ApiToken.user_id == by.user_id, ApiToken.tenant_id == by.tenant_id)
    return [_view(row) for row in session.scalars(query)]


def revoke(session: Session, *, by: Identity, token_id: int) -> None:
    """End a token now: its owner, or an admin."""
    row = session.get(ApiToken, token_id)
    is_admin = authz.allowed(by, authz.Permission.MANAGE_USERS)
    if row is None or (not is_admin and (row.user_id != by.user_id or row.tenant_id != by.tenant_id)):
        raise NotFoundError(f"Token {token_id} does not exist among your tokens.")
    if row.revoked_at is not None:
        return
    row.revoked_at = utcnow()
    audit.record(
        session.connection(),
        audit.USER_CHANGED,
        actor=by,
        tenant_id=row.tenant_id,
        subject=f"token {row.prefix}…",
        details={"action": "api_token_revoked", "token_id": row.id},
    )


@dataclass(frozen=True)
class Bearer:
    """Who a request acts as, and under which token."""

    identity: Identity
    token_id: int
    rate_per_minute: int


def authenticate(engine: Engine, secret: str, *, now: datetime | None = None) -> Bearer:
    """The identity a bearer secret acts as; ``SessionExpiredError`` for an unknown, revoked or expired
    token, or one whose user is inactive. The role is the lower of the token's and the user's now."""
    now = now or utcnow()
    with session_scope(engine) as s:
        row = s.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_sha256 == _digest(secret))
        ).first()
        if row is None:
            raise SessionExpiredError("The bearer token is not known; create one on the API tokens page.")
        token, user = row
        if token.revoked_at is not None:
            raise SessionExpiredError("This bearer token was revoked; create a new one on the API tokens page.")
        if as_utc(token.expires_at) <= now:
            raise SessionExpiredError("This bearer token has expired; create a new one on the API tokens page.")
        if not user.active:
            raise SessionExpiredError("The account of this bearer token is deactivated; ask an admin.")
        role = min(token.role, user.role, key=lambda r: _RANK.get(r, -1))
        if token.last_used_at is None or as_utc(token.last_used_at) + timedelta(minutes=1) <= now:
            s.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
        name = f"{user.display_name} ({user.email}) via token {token.prefix}…"
        identity = Identity(tenant_id=token.tenant_id, user_id=user.id, role=role, name=name)
        return Bearer(identity, token.id, token.rate_per_minute)
