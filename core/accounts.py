"""Accounts: tenants and users, passwords, signing in and out, sessions.

Passwords are hashed with argon2id (argon2-cffi). Signing in is slowed and then locked per login
name, for names that exist and names that do not alike, so neither guessing nor probing which
e-mails have accounts gets far. A browser session is a random token; only its sha256 is stored.

Every change to a tenant or a user requires ``Permission.MANAGE_USERS`` and writes its audit entry
in the same transaction. Every sign-in attempt is audited, the failed ones too (on their own
transaction, committed before the error is raised). No password or hash ever reaches the log.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, authz
from core.db import as_utc, insert_ignoring_duplicates, session_scope
from core.errors import (
    AccountError,
    AccountLockedError,
    InvalidCredentialsError,
    NotFoundError,
    SessionExpiredError,
)
from core.models import AuthSession, LoginThrottle, Tenant, User, table_of, utcnow
from core.settings import Settings, get_settings
from core.tenancy import Identity, bootstrap

MIN_PASSWORD_LENGTH = 12
"""Shortest password an account may be given, characters."""
MAX_LOGIN_DELAY_S = 8.0
"""Longest wait between two failed attempts of one login name before it is locked, seconds."""
TOUCH_EVERY_S = 60
"""A session's ``last_seen_at`` is written at most this often, seconds."""
FIRST_ADMIN_EMAIL = "admin@localhost"
WRONG = "E-mail or password is wrong."

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_THROTTLE = table_of(LoginThrottle)
log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the name has no usable account, so both cases take the same time."""
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def _password_matches(stored: str | None, password: str) -> bool:
    try:
        return _hasher().verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A random password (about 96 bits), shown once to whoever creates or resets the account."""
    return secrets.token_urlsafe(12)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            f"A password needs at least {MIN_PASSWORD_LENGTH} characters; leave it empty to generate one."
        )


def _login_name(email: str) -> str:
    return " ".join(email.split()).lower()[:320]


ACTOR_LABEL_MAX = 200
"""The longest user label: the narrowest column that stores who acted (``alert_rules.actor`` and the
control tables). PostgreSQL refuses a longer one, so a long name would make every action of that
user fail; the audit log's ``actor_user_id`` still names the user exactly."""
NAME_MAX = 200
"""Display names and workspace names, as their columns hold them."""


def user_label(user: User) -> str:
    """How the audit log and control history name a user: ``Display name (email)``, shortened with
    an ellipsis to ``ACTOR_LABEL_MAX`` characters, keeping the e-mail whole where it fits."""
    label = f"{user.display_name} ({user.email})"
    if len(label) <= ACTOR_LABEL_MAX:
        return label
    room = ACTOR_LABEL_MAX - len(user.email) - len("… ()")
    if room >= 1:
        return f"{user.display_name[:room]}… ({user.email})"
    return label[: ACTOR_LABEL_MAX - 1] + "…"


def _check_name(name: str, what: str) -> None:
    if len(name) > NAME_MAX:
        raise AccountError(f"{what} is at most {NAME_MAX} characters; this one has {len(name)}.")


# Tenants and users ------------------------------------------------------------------------------


def create_tenant(session: Session, *, by: Identity, slug: str, name: str) -> int:
    """A new workspace (no users yet); returns its id."""
    authz.require(by, authz.Permission.MANAGE_USERS)
    slug, name = slug.strip().lower(), " ".join(name.split())
    if not _SLUG.match(slug):
        raise AccountError(
            "A workspace slug is 1 to 64 lower-case letters, digits or dashes, starting with one of the first two."
        )
    if not name:
        raise AccountError("A workspace needs a name.")
    _check_name(name, "A workspace name")
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise AccountError(f"A workspace with the slug {slug} exists already; choose another.")
    tenant = Tenant(slug=slug, name=name)
    session.add(tenant)
    session.flush()
    _audit_tenant(session, by, tenant, {"action": "created", "name": name})
    return tenant.id


def set_tenant_redact_pii(session: Session, *, by: Identity, tenant_id: int, redact: bool) -> None:
    """Whether e-mail addresses and phone numbers are redacted before this workspace's text leaves the machine."""
    authz.require(by, authz.Permission.MANAGE_USERS)
    tenant = _tenant(session, tenant_id)
    if tenant.redact_pii != redact:
        tenant.redact_pii = redact
        _audit_tenant(session, by, tenant, {"action": "redact_pii", "to": redact})


def create_user(
    session: Session,
    *,
    by: Identity,
    tenant_id: int,
    email: str,
    display_name: str,
    role: str,
    password: str | None = None,
) -> str:
    """A new account; returns its password (generated when none is given) to be shown once."""
    authz.require(by, authz.Permission.MANAGE_USERS)
    email, display_name = _login_name(email), " ".join(display_name.split())
    if not _EMAIL.match(email):
        raise AccountError(f"{email or 'An empty e-mail'} is not an e-mail address.")
    if not display_name:
        raise AccountError("A user needs a display name.")
    _check_name(display_name, "A display name")
    _check_role(role)
    tenant = _tenant(session, tenant_id)
    if password is None:
        password = generate_password()
    _check_password(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise AccountError(f"{email} has an account already (e-mail addresses are unique across workspaces).")
    user = User(
        tenant_id=tenant.id,
        email=email,
        display_name=display_name,
        role=role,
        password_hash=hash_password(password),
        active=True,
        failed_logins=0,
    )
    try:
        with session.begin_nested():  # someone else adding the same e-mail at this moment
            session.add(user)
            session.flush()
    except IntegrityError as error:
        raise AccountError(
            f"{email} has an account already (e-mail addresses are unique across workspaces)."
        ) from error
    _audit_user(session, by, user, {"action": "created", "role": role, "tenant": tenant.slug})
    return password


def set_role(session: Session, *, by: Identity, user_id: int, role: str) -> None:
    authz.require(by, authz.Permission.MANAGE_USERS)
    _check_role(role)
    user = _user(session, user_id)
    if user.role == role:
        return
    if user.role == authz.ADMIN and user.active:
        _keep_an_admin(session, user, "lose the admin role")
    before, user.role = user.role, role
    _audit_user(session, by, user, {"action": "role", "from": before, "to": role})


def set_active(session: Session, *, by: Identity, user_id: int, active: bool) -> None:
    """Deactivate (signs the user out everywhere, refuses their sign-ins) or reactivate an account."""
    authz.require(by, authz.Permission.MANAGE_USERS)
    user = _user(session, user_id)
    if user.active == active:
        return
    if not active and user.role == authz.ADMIN:
        _keep_an_admin(session, user, "be deactivated")
    user.active = active
    if not active:
        _end_sessions_of(session, user.id)
    _audit_user(session, by, user, {"action": "activated" if active else "deactivated"})


def reset_password(session: Session, *, by: Identity, user_id: int) -> str:
    """A new generated password (to be shown once); the user's open sessions end."""
    authz.require(by, authz.Permission.MANAGE_USERS)
    user = _user(session, user_id)
    password = generate_password()
    user.password_hash = hash_password(password)
    _end_sessions_of(session, user.id)
    _audit_user(session, by, user, {"action": "password_reset"})
    return password


def unlock(session: Session, *, by: Identity, user_id: int) -> None:
    """Clear a lockout and the failure count of the account and of its login name."""
    authz.require(by, authz.Permission.MANAGE_USERS)
    user = _user(session, user_id)
    user.failed_logins, user.locked_until = 0, None
    session.execute(update(_THROTTLE).where(_THROTTLE.c.login == user.email).values(failures=0, blocked_until=None))
    _audit_user(session, by, user, {"action": "unlocked"})


def user_id_by_email(session: Session, *, email: str) -> int:
    """The account of an e-mail address (any workspace); ``NotFoundError`` when there is none."""
    user_id = session.scalar(select(User.id).where(User.email == _login_name(email)))
    if user_id is None:
        raise NotFoundError(f"No account has the e-mail {_login_name(email)}; `python -m core users list` shows them.")
    return user_id


def identity_of(session: Session, *, user_id: int) -> Identity:
    """The identity an account acts as (role and name as they are now)."""
    user = _user(session, user_id)
    return Identity(tenant_id=user.tenant_id, user_id=user.id, role=user.role, name=user_label(user))


def tenant_name(session: Session, *, tenant_id: int) -> str:
    return _tenant(session, tenant_id).name


@dataclass(frozen=True)
class AccountRow:
    """One account as the Users page and ``users list`` show it (no hash)."""

    id: int
    email: str
    display_name: str
    role: str
    tenant_id: int
    tenant_slug: str
    active: bool
    failed_logins: int
    locked_until: datetime | None
    last_login_at: datetime | None


def list_users(session: Session, *, by: Identity) -> list[AccountRow]:
    """Every account of every workspace (admins only)."""
    authz.require(by, authz.Permission.MANAGE_USERS)
    rows = session.execute(select(User, Tenant.slug).join(Tenant, Tenant.id == User.tenant_id).order_by(User.email))
    return [
        AccountRow(
            id=u.id,
            email=u.email,
            display_name=u.display_name,
            role=u.role,
            tenant_id=u.tenant_id,
            tenant_slug=slug,
            active=u.active,
            failed_logins=u.failed_logins,
            locked_until=as_utc(u.locked_until) if u.locked_until else None,
            last_login_at=as_utc(u.last_login_at) if u.last_login_at else None,
        )
        for u, slug in rows
    ]


@dataclass(frozen=True)
class TenantRow:
    id: int
    slug: str
    name: str
    redact_pii: bool
    users: int


def list_tenants(session: Session, *, by: Identity) -> list[TenantRow]:
    """Every workspace with its number of accounts (admins only)."""
    authz.require(by, authz.Permission.MANAGE_USERS)
    counts = select(User.tenant_id, func.count().label("n")).group_by(User.tenant_id).subquery()
    rows = session.execute(
        select(Tenant, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.tenant_id == Tenant.id)
        .order_by(Tenant.slug)
    )
    return [TenantRow(t.id, t.slug, t.name, t.redact_pii, int(n)) for t, n in rows]


def ensure_first_admin(session: Session) -> tuple[str, str] | None:
    """When no active admin exists anywhere: make ``admin@localhost`` one, in the default workspace,
    with a generated password; returns (e-mail, password) to be shown once, else None."""
    active_admins = select(func.count()).select_from(User).where(User.role == authz.ADMIN, User.active.is_(True))
    if session.scalar(active_admins):
        return None
    tenant_id = bootstrap(session).tenant_id
    password = generate_password()
    user = session.scalar(select(User).where(User.email == FIRST_ADMIN_EMAIL))
    if user is None:
        user = User(tenant_id=tenant_id, email=FIRST_ADMIN_EMAIL, display_name="Admin", role=authz.ADMIN)
        session.add(user)
    user.role, user.active, user.password_hash = authz.ADMIN, True, hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    session.flush()
    audit.record(
        session.connection(),
        audit.USER_CHANGED,
        actor=None,
        actor_label="first run",
        tenant_id=user.tenant_id,
        subject=user.email,
        details={"action": "first_admin", "user_id": user.id},
    )
    return FIRST_ADMIN_EMAIL, password


def _check_role(role: str) -> None:
    if role not in authz.ROLES:
        raise AccountError(f"There is no role {role!r}; the roles are {', '.join(authz.ROLES)}.")


def _tenant(session: Session, tenant_id: int) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFoundError(f"There is no workspace {tenant_id}.")
    return tenant


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"There is no user {user_id}.")
    return user


def _keep_an_admin(session: Session, user: User, change: str) -> None:
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == authz.ADMIN, User.active.is_(True), User.id != user.id)
    )
    if not others:
        raise AccountError(f"{user.email} is the last active admin and cannot {change}; make another admin first.")


def _end_sessions_of(session: Session, user_id: int) -> None:
    session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def _audit_user(session: Session, by: Identity, user: User, details: dict[str, Any]) -> None:
    audit.record(
        session.connection(),
        audit.USER_CHANGED,
        actor=by,
        tenant_id=user.tenant_id,
        subject=user.email,
        details={"user_id": user.id, **details},
    )


def _audit_tenant(session: Session, by: Identity, tenant: Tenant, details: dict[str, Any]) -> None:
    audit.record(
        session.connection(),
        audit.TENANT_CHANGED,
        actor=by,
        tenant_id=tenant.id,
        subject=tenant.slug,
        details={"tenant_id": tenant.id, **details},
    )


# Signing in ----------------------------------------------------------------------------------


def _wait_text(until: datetime, now: datetime) -> str:
    seconds = max(1, int((until - now).total_seconds() + 0.999))
    return f"{seconds} s"


def login(
    engine: Engine, *, email: str, password: str, settings: Settings | None = None, now: datetime | None = None
) -> Identity:
    """Check an e-mail and password; returns the identity to start a session for.

    Raises ``InvalidCredentialsError`` (never saying which of the two was wrong), or
    ``AccountLockedError`` with ``until`` while the name must wait after a failure or is locked.
    """
    settings, now = settings or get_settings(), now or utcnow()
    name = _login_name(email)
    outcome: Identity | Exception
    with session_scope(engine) as s:
        throttle = _throttle_row(s, name)
        user = s.scalar(select(User).where(User.email == name))
        outcome = _attempt(s, throttle, user, name=name, password=password, settings=settings, now=now)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _throttle_row(s: Session, name: str) -> LoginThrottle:
    """The name's failed-login counter, created when missing, locked for this attempt."""
    query = select(LoginThrottle).where(LoginThrottle.login == name).with_for_update()
    for _ in range(3):
        insert_ignoring_duplicates(s.connection(), _THROTTLE, {"login": name, "failures": 0})
        throttle = s.execute(query).scalar_one_or_none()
        if throttle is not None:
            return throttle
        # Housekeeping (``forget_stale``) deleted an idle counter between the two statements: make it again.
    raise AccountError("Signing in could not be recorded; try again in a moment.")


def _attempt(
    s: Session,
    throttle: LoginThrottle,
    user: User | None,
    *,
    name: str,
    password: str,
    settings: Settings,
    now: datetime,
) -> Identity | Exception:
    """One attempt on the locked throttle row: what to return or raise, with its audit entries written."""
    tenant_id = user.tenant_id if user else None

    def failed(reason: str, **details: Any) -> None:
        audit.record(
            s.connection(),
            audit.LOGIN_FAILED,
            actor=None,
            actor_label=name,
            tenant_id=tenant_id,
            subject=name,
            details={"reason": reason, **details},
        )

    blocked = max(
        (as_utc(t) for t in (throttle.blocked_until, user.locked_until if user else None) if t is not None),
        default=None,
    )
    if blocked is not None and blocked > now:
        locked = throttle.failures >= settings.login_max_failures or (
            user is not None and user.locked_until is not None and as_utc(user.locked_until) > now
        )
        failed("locked" if locked else "too_soon", until=blocked.isoformat())
        if locked:
            return AccountLockedError(
                f"Too many failed sign-ins: this login is locked until {blocked:%H:%M:%S} UTC "
                "(or until an admin unlocks it).",
                until=blocked,
            )
        return AccountLockedError(
            f"Signing in failed a moment ago: wait {_wait_text(blocked, now)} (until {blocked:%H:%M:%S} UTC) "
            "before trying again.",
            until=blocked,
        )
    if throttle.failures >= settings.login_max_failures:  # a lockout that has run out starts counting anew
        throttle.failures = 0
    usable = user is not None and user.active and user.password_hash is not None
    if _password_matches(user.password_hash if usable and user else None, password) and user is not None:
        throttle.failures, throttle.blocked_until = 0, None
        user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
        if _hasher().check_needs_rehash(user.password_hash or ""):
            user.password_hash = hash_password(password)
        identity = Identity(tenant_id=user.tenant_id, user_id=user.id, role=user.role, name=user_label(user))
        audit.record(s.connection(), audit.LOGIN, actor=identity, tenant_id=user.tenant_id, subject=user.email)
        return identity
    throttle.failures += 1
    throttle.last_failure_at = now
    n = throttle.failures
    if n >= settings.login_max_failures:
        until = now + timedelta(seconds=settings.login_lockout_s)
    else:
        until = now + timedelta(seconds=min(settings.login_delay_s * 2 ** (n - 1), MAX_LOGIN_DELAY_S))
    throttle.blocked_until = until
    if user is not None:
        user.failed_logins = n
    failed("bad_credentials", failures=n, known_account=user is not None, active=bool(user and user.active))
    if n < settings.login_max_failures:
        return InvalidCredentialsError(WRONG)
    if user is not None:
        user.locked_until = until
    audit.record(
        s.connection(),
        audit.LOGIN_LOCKED,
        actor=None,
        actor_label=name,
        tenant_id=tenant_id,
        subject=name,
        details={"failures": n, "until": until.isoformat()},
    )
    return AccountLockedError(
        f"{WRONG} After {n} failed attempts this login is locked until {until:%H:%M:%S} UTC "
        "(or until an admin unlocks it).",
        until=until,
    )


# Sessions -----------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    engine: Engine, identity: Identity, *, settings: Settings | None = None, now: datetime | None = None
) -> str:
    """A new session for a signed-in user; returns its token (only its sha256 is stored)."""
    settings, now = settings or get_settings(), now or utcnow()
    token = secrets.token_urlsafe(32)
    with session_scope(engine) as s:
        s.add(
            AuthSession(
                token_sha256=_digest(token),
                user_id=identity.user_id,
                tenant_id=identity.tenant_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=settings.session_ttl_s),
            )
        )
    return token


def resume(engine: Engine, token: str, *, settings: Settings | None = None, now: datetime | None = None) -> Identity:
    """The identity of a live session, read fresh (a role change applies at once);
    ``SessionExpiredError`` when it expired, idled too long, was ended, or the user was deactivated."""
    settings, now = settings or get_settings(), now or utcnow()
    with session_scope(engine) as s:
        row = s.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.token_sha256 == _digest(token))
        ).first()
        if row is None:
            raise SessionExpiredError("You are signed out; sign in again.")
        auth, user = row
        reason = None
        if not user.active:
            reason = "This account has been deactivated; ask an admin."
        elif auth.ended_at is not None:
            reason = "You are signed out; sign in again."
        elif as_utc(auth.expires_at) <= now:
            reason = "Your session has expired; sign in again."
        elif as_utc(auth.last_seen_at) + timedelta(seconds=settings.session_idle_s) <= now:
            reason = "You were signed out after a while without activity; sign in again."
        if reason is not None:
            if auth.ended_at is None:
                auth.ended_at = now
            s.commit()  # the session stays ended
            raise SessionExpiredError(reason)
        if as_utc(auth.last_seen_at) + timedelta(seconds=TOUCH_EVERY_S) <= now:
            auth.last_seen_at = now
        return Identity(tenant_id=user.tenant_id, user_id=user.id, role=user.role, name=user_label(user))


def end_session(engine: Engine, token: str, *, now: datetime | None = None) -> None:
    """Sign out: the session ends (audited); an unknown or ended token is left alone."""
    now = now or utcnow()
    with session_scope(engine) as s:
        row = s.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.token_sha256 == _digest(token), AuthSession.ended_at.is_(None))
        ).first()
        if row is None:
            return
        auth, user = row
        auth.ended_at = now
        identity = Identity(tenant_id=user.tenant_id, user_id=user.id, role=user.role, name=user_label(user))
        audit.record(s.connection(), audit.LOGOUT, actor=identity, tenant_id=user.tenant_id, subject=user.email)


def change_password(engine: Engine, token: str, *, current: str, new: str) -> None:
    """The signed-in user changes their own password (the first admin's generated one, say). The
    current one is checked like a sign-in, so guessing it here is slowed and locked the same way;
    every other session of the user ends, this one stays (audited)."""
    identity = resume(engine, token)
    _check_password(new)
    if new == current:
        raise AccountError("The new password is the current one; choose another.")
    with session_scope(engine) as s:
        email = _user(s, identity.user_id).email
    try:
        login(engine, email=email, password=current)
    except InvalidCredentialsError:
        raise AccountError("The current password is wrong; the password was not changed.") from None
    with session_scope(engine) as s:
        user = _user(s, identity.user_id)
        user.password_hash = hash_password(new)
        s.execute(
            update(AuthSession)
            .where(
                AuthSession.user_id == user.id,
                AuthSession.ended_at.is_(None),
                AuthSession.token_sha256 != _digest(token),
            )
            .values(ended_at=utcnow())
        )
        _audit_user(s, identity, user, {"action": "password_changed"})


STALE_AFTER = timedelta(days=1)
"""How long an ended or expired sign-in session, or a failed-login counter nobody has touched, is
kept before housekeeping deletes it."""


def forget_stale(engine: Engine, *, now: datetime | None = None) -> tuple[int, int]:
    """Delete sign-in sessions that ended or expired over ``STALE_AFTER`` ago, and failed-login
    counters whose last failure and block are that old; returns (sessions, counters) deleted.

    Without it both tables grow for ever: every sign-in leaves a session row, and every e-mail an
    attacker tries leaves a counter. A counter a day idle no longer slows anyone (a lockout lasts
    ``WORKBENCH_LOGIN_LOCKOUT_S``), so forgetting it gives a guesser nothing; an account's own lock
    lives on the user row and is untouched. Run on the maintenance beat of workers and executors."""
    cutoff = (now or utcnow()) - STALE_AFTER
    with engine.begin() as connection:
        sessions = connection.execute(
            delete(AuthSession).where(
                (AuthSession.expires_at < cutoff)
                | (AuthSession.ended_at.is_not(None) & (AuthSession.ended_at < cutoff))
            )
        ).rowcount
        counters = connection.execute(
            delete(LoginThrottle).where(
                LoginThrottle.last_failure_at < cutoff,
                (LoginThrottle.blocked_until.is_(None)) | (LoginThrottle.blocked_until < cutoff),
            )
        ).rowcount
    if sessions or counters:
        log.info("housekeeping: %d old sign-in session(s), %d idle failed-login counter(s) deleted", sessions, counters)
    return sessions, counters
