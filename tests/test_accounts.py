"""Accounts: argon2id hashing, slowed and locked sign-ins, sessions that expire, roles, the last
admin, the first-run admin, the audit trail, and the command line, on the real database."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import accounts, alerts, audit, authz, cli, controls, db
from core.errors import (
    AccountError,
    AccountLockedError,
    InvalidCredentialsError,
    PermissionDeniedError,
    SessionExpiredError,
)
from core.models import AuditEntry, AuthSession, LoginThrottle, User, utcnow
from core.settings import Settings, get_settings
from core.tenancy import Identity, bootstrap

PASSWORD = "correct horse battery"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=utcnow().tzinfo)


def settings(**changes: object) -> Settings:
    base = {"login_delay_s": 1.0, "login_max_failures": 4, "login_lockout_s": 900}
    return get_settings().model_copy(update={**base, **changes})


def cli_admin(engine: Engine) -> Identity:
    with db.session_scope(engine) as s:
        return authz.cli_identity(bootstrap(s).tenant_id)


def add_user(engine: Engine, email: str, *, role: str = "researcher", password: str | None = PASSWORD) -> Identity:
    by = cli_admin(engine)
    with db.session_scope(engine) as s:
        accounts.create_user(
            s,
            by=by,
            tenant_id=by.tenant_id,
            email=email,
            display_name=email.split("@")[0],
            role=role,
            password=password,
        )
        return accounts.identity_of(s, user_id=accounts.user_id_by_email(s, email=email))


def events(engine: Engine) -> list[AuditEntry]:
    with db.session_scope(engine) as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def chain_intact(engine: Engine) -> bool:
    with engine.connect() as connection:
        return audit.verify(connection).intact


def attempt(engine: Engine, email: str, password: str, at: datetime, **changes: object) -> Exception | Identity:
    try:
        return accounts.login(engine, email=email, password=password, settings=settings(**changes), now=at)
    except (InvalidCredentialsError, AccountLockedError) as error:
        return error


# Passwords and signing in -------------------------------------------------------------------------


def test_passwords_are_argon2id_and_a_right_one_signs_in(clean_db: Engine) -> None:
    ident = add_user(clean_db, "Ana@Lab.example", role="ops")
    with db.session_scope(clean_db) as s:
        user = s.get(User, ident.user_id)
        assert user is not None and user.email == "ana@lab.example", "stored lower-case"
        assert user.password_hash and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash

    signed = accounts.login(clean_db, email="  ANA@lab.example ", password=PASSWORD, settings=settings(), now=T0)
    assert signed == Identity(ident.tenant_id, ident.user_id, "ops", "Ana (ana@lab.example)")
    with db.session_scope(clean_db) as s:
        user = s.get(User, ident.user_id)
        assert user is not None and db.as_utc(user.last_login_at or T0 - timedelta(1)) == T0


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(clean_db: Engine) -> None:
    add_user(clean_db, "ana@lab.example")
    wrong = attempt(clean_db, "ana@lab.example", "not the password", T0)
    unknown = attempt(clean_db, "nobody@lab.example", PASSWORD, T0)
    assert isinstance(wrong, InvalidCredentialsError) and isinstance(unknown, InvalidCredentialsError)
    assert str(wrong) == str(unknown) == "E-mail or password is wrong."


def test_a_failure_blocks_the_name_for_a_doubling_window_even_for_the_right_password(clean_db: Engine) -> None:
    add_user(clean_db, "ana@lab.example")
    assert isinstance(attempt(clean_db, "ana@lab.example", "guess 1", T0), InvalidCredentialsError)

    # Inside the 1 s window the right password is not even checked.
    refused = attempt(clean_db, "ana@lab.example", PASSWORD, T0 + timedelta(seconds=0.5))
    assert isinstance(refused, AccountLockedError) and "wait 1 s" in str(refused)
    assert refused.until == T0 + timedelta(seconds=1)

    # The second failure doubles the window to 2 s.
    assert isinstance(
        attempt(clean_db, "ana@lab.example", "guess 2", T0 + timedelta(seconds=1)), InvalidCredentialsError
    )
    refused = attempt(clean_db, "ana@lab.example", PASSWORD, T0 + timedelta(seconds=2.5))
    assert isinstance(refused, AccountLockedError) and "wait 1 s" in str(refused)
    assert isinstance(attempt(clean_db, "ana@lab.example", PASSWORD, T0 + timedelta(seconds=3)), Identity)

    # Success resets the count: the next failure waits 1 s again.
    assert isinstance(
        attempt(clean_db, "ana@lab.example", "guess 3", T0 + timedelta(seconds=4)), InvalidCredentialsError
    )
    with db.session_scope(clean_db) as s:
        throttle = s.get(LoginThrottle, "ana@lab.example")
        assert throttle is not None and throttle.failures == 1
        assert db.as_utc(throttle.blocked_until or T0) == T0 + timedelta(seconds=5)


def test_the_window_is_capped_at_eight_seconds(clean_db: Engine) -> None:
    add_user(clean_db, "ana@lab.example")
    at = T0
    for expected in (3, 6, 8, 8):  # 3 * 2**(n-1), capped
        assert isinstance(
            attempt(clean_db, "ana@lab.example", "guess", at, login_delay_s=3.0, login_max_failures=9),
            InvalidCredentialsError,
        )
        with db.session_scope(clean_db) as s:
            throttle = s.get(LoginThrottle, "ana@lab.example")
            assert throttle is not None and db.as_utc(throttle.blocked_until or at) - at == timedelta(seconds=expected)
        at += timedelta(seconds=expected)


def fail_until_locked(engine: Engine, email: str) -> tuple[Exception | Identity, datetime]:
    at, outcome = T0, None
    for n in range(1, 5):
        outcome = attempt(engine, email, f"guess {n}", at)
        at += timedelta(seconds=8)
    assert outcome is not None
    return outcome, at


def test_repeated_failures_lock_the_account_until_it_expires_or_an_admin_unlocks(clean_db: Engine) -> None:
    ident = add_user(clean_db, "ana@lab.example")
    locked, at = fail_until_locked(clean_db, "ana@lab.example")
    assert isinstance(locked, AccountLockedError) and "locked until" in str(locked)
    until = T0 + timedelta(seconds=24 + 900)
    assert locked.until == until
    with db.session_scope(clean_db) as s:
        user = s.get(User, ident.user_id)
        assert user is not None and user.failed_logins == 4 and db.as_utc(user.locked_until or T0) == until

    still = attempt(clean_db, "ana@lab.example", PASSWORD, at + timedelta(seconds=600))
    assert isinstance(still, AccountLockedError) and "locked until" in str(still), "the right password does not help"
    # When the lockout has run out, the right password works again.
    assert isinstance(attempt(clean_db, "ana@lab.example", PASSWORD, until + timedelta(seconds=1)), Identity)

    fail_until_locked(clean_db, "ana@lab.example")
    with db.session_scope(clean_db) as s:
        accounts.unlock(s, by=cli_admin(clean_db), user_id=ident.user_id)
    assert isinstance(attempt(clean_db, "ana@lab.example", PASSWORD, at + timedelta(seconds=1)), Identity)
    with db.session_scope(clean_db) as s:
        user = s.get(User, ident.user_id)
        assert user is not None and user.failed_logins == 0 and user.locked_until is None


def test_unknown_emails_are_slowed_and_locked_the_same_way(clean_db: Engine) -> None:
    add_user(clean_db, "ana@lab.example")
    known = [attempt(clean_db, "ana@lab.example", "guess", T0 + timedelta(seconds=s)) for s in (0, 0.5, 8, 16, 24)]
    unknown = [attempt(clean_db, "ghost@lab.example", "guess", T0 + timedelta(seconds=s)) for s in (0, 0.5, 8, 16, 24)]
    assert [type(o) for o in known] == [type(o) for o in unknown]
    assert [str(o).replace("ana@", "ghost@") for o in known] == [str(o) for o in unknown]
    assert isinstance(unknown[-1], AccountLockedError)
    with db.session_scope(clean_db) as s:
        assert s.scalar(select(User).where(User.email == "ghost@lab.example")) is None, "no account appears"


def test_inactive_users_cannot_sign_in(clean_db: Engine) -> None:
    ident = add_user(clean_db, "ana@lab.example")
    with db.session_scope(clean_db) as s:
        accounts.set_active(s, by=cli_admin(clean_db), user_id=ident.user_id, active=False)
    assert isinstance(attempt(clean_db, "ana@lab.example", PASSWORD, T0), InvalidCredentialsError)


# Sessions ---------------------------------------------------------------------------------------------


def test_only_the_tokens_hash_is_stored_and_sessions_expire_by_ttl(clean_db: Engine) -> None:
    ident = add_user(clean_db, "ana@lab.example")
    conf = settings(session_ttl_s=3600, session_idle_s=600)
    token = accounts.start_session(clean_db, ident, settings=conf, now=T0)
    with db.session_scope(clean_db) as s:
        [stored] = s.scalars(select(AuthSession))
        assert stored.token_sha256 == hashlib.sha256(token.encode()).hexdigest() != token
    for minutes in (8, 16, 24, 32, 40, 48, 56):  # active all along: never idle for 10 minutes
        assert accounts.resume(clean_db, token, settings=conf, now=T0 + timedelta(minutes=minutes)) == ident
    with pytest.raises(SessionExpiredError, match="expired"):
        accounts.resume(clean_db, token, settings=conf, now=T0 + timedelta(minutes=60))
    with pytest.raises(SessionExpiredError):
        accounts.resume(clean_db, token, settings=conf, now=T0 + timedelta(minutes=1))  # it stays ended


def test_sessions_end_when_idle_and_on_sign_out(clean_db: Engine) -> None:
    ident = add_user(clean_db, "ana@lab.example")
    conf = settings(session_ttl_s=3600, session_idle_s=600)
    idle = accounts.start_session(clean_db, ident, settings=conf, now=T0)
    accounts.resume(clean_db, idle, settings=conf, now=T0 + timedelta(seconds=30))  # under a minute: not written
    with pytest.raises(SessionExpiredError, match="without activity"):
        accounts.resume(clean_db, idle, settings=conf, now=T0 + timedelta(seconds=601))

    token = accounts.start_session(clean_db, ident, settings=conf, now=T0)
    accounts.end_session(clean_db, token, now=T0 + timedelta(seconds=5))
    with pytest.raises(SessionExpiredError, match="signed out"):
        accounts.resume(clean_db, token, settings=conf, now=T0 + timedelta(seconds=6))
    with pytest.raises(SessionExpiredError):
        accounts.resume(clean_db, "not a token at all", settings=conf)
    assert [e.event_type for e in events(clean_db)][-1] == audit.LOGOUT


def test_housekeeping_forgets_old_sessions_and_idle_counters_and_nothing_still_in_force(clean_db: Engine) -> None:
    ident = add_user(clean_db, "ana@lab.example")
    conf = settings(session_ttl_s=3600)
    day = timedelta(days=1)
    expired_long_ago = accounts.start_session(clean_db, ident, settings=conf, now=T0 - 3 * day)
    signed_out_long_ago = accounts.start_session(clean_db, ident, settings=conf, now=T0 - 3 * day)
    accounts.end_session(clean_db, signed_out_long_ago, now=T0 - 3 * day)
    live = accounts.start_session(clean_db, ident, settings=conf, now=T0)
    just_signed_out = accounts.start_session(clean_db, ident, settings=conf, now=T0)
    accounts.end_session(clean_db, just_signed_out, now=T0)
    # A guesser's counters: one a week idle, one locked until now (4 failures), one slowed a minute ago.
    attempt(clean_db, "old-guess@lab.example", "wrong", T0 - 7 * day)
    for n in range(4):
        attempt(clean_db, "locked@lab.example", "wrong", T0 - timedelta(minutes=10) + timedelta(seconds=10 * n))
    attempt(clean_db, "recent@lab.example", "wrong", T0 - timedelta(minutes=1))

    assert accounts.forget_stale(clean_db, now=T0) == (2, 1)
    with db.session_scope(clean_db) as s:
        assert set(s.scalars(select(LoginThrottle.login))) == {"locked@lab.example", "recent@lab.example"}
    assert accounts.resume(clean_db, live, settings=conf, now=T0).user_id == ident.user_id
    for gone in (expired_long_ago, signed_out_long_ago):
        with pytest.raises(SessionExpiredError):
            accounts.resume(clean_db, gone, settings=conf, now=T0)
    locked = attempt(clean_db, "locked@lab.example", "wrong", T0)
    assert isinstance(locked, AccountLockedError), "a lock still in force is never forgotten"
    assert accounts.forget_stale(clean_db, now=T0) == (0, 0)
    # A forgotten name starts counting anew, as a name never tried does.
    assert isinstance(attempt(clean_db, "old-guess@lab.example", "wrong", T0), InvalidCredentialsError)


def test_a_role_change_applies_on_the_next_resume_and_deactivation_ends_sessions(clean_db: Engine) -> None:
    ident = add_user(clean_db, "ana@lab.example")
    token = accounts.start_session(clean_db, ident)
    assert accounts.resume(clean_db, token).role == authz.RESEARCHER
    with db.session_scope(clean_db) as s:
        accounts.set_role(s, by=cli_admin(clean_db), user_id=ident.user_id, role=authz.OPS)
    assert accounts.resume(clean_db, token).role == authz.OPS
    with db.session_scope(clean_db) as s:
        accounts.set_active(s, by=cli_admin(clean_db), user_id=ident.user_id, active=False)
    with pytest.raises(SessionExpiredError):
        accounts.resume(clean_db, token)


def test_a_password_reset_gives_a_new_password_and_ends_open_sessions(clean_db: Engine) -> None:
    ident = add_user(clean_db, "ana@lab.example")
    token = accounts.start_session(clean_db, ident)
    with db.session_scope(clean_db) as s:
        new = accounts.reset_password(s, by=cli_admin(clean_db), user_id=ident.user_id)
    assert len(new) >= accounts.MIN_PASSWORD_LENGTH and new != PASSWORD
    with pytest.raises(SessionExpiredError):
        accounts.resume(clean_db, token)
    assert isinstance(attempt(clean_db, "ana@lab.example", PASSWORD, T0), InvalidCredentialsError)
    assert isinstance(attempt(clean_db, "ana@lab.example", new, T0 + timedelta(seconds=2)), Identity)


# Users, tenants, permissions --------------------------------------------------------------------------


def test_emails_are_unique_across_tenants_and_roles_and_passwords_are_checked(clean_db: Engine) -> None:
    admin = cli_admin(clean_db)
    add_user(clean_db, "ana@lab.example")
    with db.session_scope(clean_db) as s:
        other = accounts.create_tenant(s, by=admin, slug="lab-b", name="Lab B")
    cases: list[tuple[dict[str, object], str]] = [
        ({"email": "ANA@lab.example", "tenant_id": other}, "has an account already"),
        ({"email": "bo@lab.example", "role": "superuser"}, "no role 'superuser'"),
        ({"email": "bo@lab.example", "password": "short pass"}, "at least 12 characters"),
        ({"email": "not an e-mail"}, "not an e-mail address"),
        ({"email": "bo@lab.example", "display_name": "B" * 201}, "at most 200 characters; this one has 201"),
    ]
    for change, message in cases:
        fields: dict[str, object] = {"tenant_id": admin.tenant_id, "display_name": "Bo", "role": "researcher", **change}
        with db.session_scope(clean_db) as s, pytest.raises(AccountError, match=message):
            accounts.create_user(s, by=admin, **fields)  # type: ignore[arg-type]
    with db.session_scope(clean_db) as s, pytest.raises(AccountError, match="exists already"):
        accounts.create_tenant(s, by=admin, slug="lab-b", name="Again")
    with db.session_scope(clean_db) as s, pytest.raises(AccountError, match="A workspace name is at most 200"):
        accounts.create_tenant(s, by=admin, slug="lab-c", name="L" * 201)
    with db.session_scope(clean_db) as s:
        generated = accounts.create_user(
            s, by=admin, tenant_id=other, email="bo@lab.example", display_name="Bo", role="prompt_engineer"
        )
        accounts.set_tenant_redact_pii(s, by=admin, tenant_id=other, redact=True)
    assert len(generated) >= accounts.MIN_PASSWORD_LENGTH
    assert isinstance(attempt(clean_db, "bo@lab.example", generated, T0), Identity)
    with db.session_scope(clean_db) as s:
        tenants = {t.slug: t for t in accounts.list_tenants(s, by=admin)}
        assert tenants["lab-b"].redact_pii and tenants["lab-b"].users == 1


def test_a_long_name_and_e_mail_still_fit_every_column_that_says_who_acted(clean_db: Engine) -> None:
    """The narrowest actor column holds 200 characters; PostgreSQL refuses more, so a user with a long
    name would otherwise fail at every action (here: saving an alert rule and engaging the kill switch)."""
    admin = cli_admin(clean_db)
    email = f"{'e' * 150}@lab.example"
    with db.session_scope(clean_db) as s:
        accounts.create_user(
            s, by=admin, tenant_id=admin.tenant_id, email=email, display_name="N" * 200, role="admin", password=PASSWORD
        )
        long_named = accounts.identity_of(s, user_id=accounts.user_id_by_email(s, email=email))
    assert len(long_named.name) == accounts.ACTOR_LABEL_MAX
    assert long_named.name.endswith(f"… ({email})") and long_named.name.startswith("NNN")
    with db.session_scope(clean_db) as s:
        alerts.update_rule(s, tenant_id=admin.tenant_id, rule="budget", enabled=True, threshold=0.5, actor=long_named)
    controls.set_kill_switch(clean_db, engaged=True, reason="long name drill", actor=long_named)
    assert controls.status(clean_db).kill_switch.actor == long_named.name
    [entry] = [e for e in events(clean_db) if e.event_type == audit.KILL_SWITCH]
    assert entry.actor == long_named.name and entry.actor_user_id == long_named.user_id
    short = accounts.user_label(User(display_name="Ana", email="ana@lab.example"))
    assert short == "Ana (ana@lab.example)"


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(clean_db: Engine) -> None:
    by = cli_admin(clean_db)
    first = add_user(clean_db, "root@lab.example", role="admin")
    for change in (
        lambda s: accounts.set_role(s, by=by, user_id=first.user_id, role="ops"),
        lambda s: accounts.set_active(s, by=by, user_id=first.user_id, active=False),
    ):
        with db.session_scope(clean_db) as s, pytest.raises(AccountError, match="last active admin"):
            change(s)
    second = add_user(clean_db, "deputy@lab.example", role="admin")
    with db.session_scope(clean_db) as s:
        accounts.set_role(s, by=by, user_id=first.user_id, role="ops")
    with db.session_scope(clean_db) as s, pytest.raises(AccountError, match="last active admin"):
        accounts.set_active(s, by=by, user_id=second.user_id, active=False)


@pytest.mark.parametrize("role", [authz.RESEARCHER, authz.OPS, authz.PROMPT_ENGINEER])
def test_every_account_function_is_refused_to_other_roles(clean_db: Engine, role: str) -> None:
    target = add_user(clean_db, "ana@lab.example")
    actor = add_user(clean_db, f"{role}@lab.example", role=role)
    tid, uid = target.tenant_id, target.user_id
    calls = {
        "create_tenant": lambda s: accounts.create_tenant(s, by=actor, slug="x", name="X"),
        "set_tenant_redact_pii": lambda s: accounts.set_tenant_redact_pii(s, by=actor, tenant_id=tid, redact=True),
        "create_user": lambda s: accounts.create_user(
            s, by=actor, tenant_id=tid, email="new@lab.example", display_name="New", role=authz.ADMIN
        ),
        "set_role": lambda s: accounts.set_role(s, by=actor, user_id=uid, role=authz.ADMIN),
        "set_active": lambda s: accounts.set_active(s, by=actor, user_id=uid, active=False),
        "reset_password": lambda s: accounts.reset_password(s, by=actor, user_id=uid),
        "unlock": lambda s: accounts.unlock(s, by=actor, user_id=uid),
        "list_users": lambda s: accounts.list_users(s, by=actor),
        "list_tenants": lambda s: accounts.list_tenants(s, by=actor),
    }
    before = len(events(clean_db))
    for name, call in calls.items():
        with db.session_scope(clean_db) as s, pytest.raises(PermissionDeniedError, match="manage users") as refused:
            call(s)
        assert refused.value.permission == authz.Permission.MANAGE_USERS, name
    with db.session_scope(clean_db) as s:
        user = s.get(User, uid)
        assert user is not None and user.role == authz.RESEARCHER and user.active, "nothing changed"
    assert len(events(clean_db)) == before


def test_the_first_run_admin_is_created_once_with_a_generated_password(clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        created = accounts.ensure_first_admin(s)
    assert created is not None
    email, password = created
    assert email == "admin@localhost" and len(password) >= accounts.MIN_PASSWORD_LENGTH
    admin = accounts.login(clean_db, email=email, password=password, settings=settings(), now=T0)
    assert admin.role == authz.ADMIN and admin.name == "Admin (admin@localhost)"
    with db.session_scope(clean_db) as s:
        assert accounts.ensure_first_admin(s) is None


# Audit --------------------------------------------------------------------------------------------------


def test_sign_ins_and_account_changes_are_audited_without_secrets(clean_db: Engine) -> None:
    ident = add_user(clean_db, "ana@lab.example")
    attempt(clean_db, "ana@lab.example", PASSWORD, T0)
    for n, seconds in enumerate((10, 20, 30, 40)):
        attempt(clean_db, "ana@lab.example", f"guess {n}", T0 + timedelta(seconds=seconds))
    attempt(clean_db, "ana@lab.example", PASSWORD, T0 + timedelta(seconds=41))  # while locked
    token = accounts.start_session(clean_db, ident)
    accounts.end_session(clean_db, token)
    with db.session_scope(clean_db) as s:
        reset = accounts.reset_password(s, by=cli_admin(clean_db), user_id=ident.user_id)

    log = events(clean_db)
    kinds = [e.event_type for e in log]
    assert kinds == [
        audit.USER_CHANGED,  # created
        audit.LOGIN,
        *[audit.LOGIN_FAILED] * 4,
        audit.LOGIN_LOCKED,
        audit.LOGIN_FAILED,  # refused while locked
        audit.LOGOUT,
        audit.USER_CHANGED,  # password reset
    ]
    failed = [e for e in log if e.event_type == audit.LOGIN_FAILED]
    assert all(e.actor == "ana@lab.example" and e.actor_user_id is None for e in failed), "the typed e-mail"
    assert failed[-1].details["reason"] == "locked"
    assert log[1].actor == "ana (ana@lab.example)" and log[1].actor_user_id == ident.user_id
    assert log[-1].details == {"user_id": ident.user_id, "action": "password_reset"}
    assert log[-1].actor.startswith("cli:")
    with db.session_scope(clean_db) as s:
        stored_hash = s.get(User, ident.user_id).password_hash  # type: ignore[union-attr]
    everything = " ".join(f"{e.subject} {e.details}" for e in log)
    for secret in (PASSWORD, reset, "guess 1", stored_hash or "", token):
        assert secret not in everything
    assert chain_intact(clean_db)


# Command line --------------------------------------------------------------------------------------------


def test_the_command_line_creates_the_first_admin_once_and_manages_accounts(
    clean_db: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["users", "first-run"]) == 0
    out = capsys.readouterr().out
    assert "admin@localhost" in out and "shown only now" in out
    password = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Password: "))
    assert isinstance(attempt(clean_db, "admin@localhost", password, T0), Identity)
    assert cli.main(["users", "first-run"]) == 0
    assert "an admin exists already" in capsys.readouterr().out

    assert cli.main(["tenants", "add", "lab-b", "Lab B"]) == 0
    assert cli.main(["users", "add", "Bo@Lab.example", "--role", "ops", "--tenant", "lab-b", "--name", "Bo"]) == 0
    out = capsys.readouterr().out
    bo_password = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Password: "))
    assert cli.main(["users", "set-role", "bo@lab.example", "prompt_engineer"]) == 0
    assert cli.main(["users", "deactivate", "bo@lab.example"]) == 0
    assert cli.main(["users", "list"]) == 0
    assert cli.main(["tenants", "list"]) == 0
    out = capsys.readouterr().out
    assert "bo@lab.example\tBo\tprompt_engineer\tlab-b\tno" in out
    assert "lab-b\tLab B\tno\t1" in out
    assert isinstance(attempt(clean_db, "bo@lab.example", bo_password, T0), InvalidCredentialsError)
    assert cli.main(["users", "set-role", "admin@localhost", "ops"]) == 1, "the last admin stays"
    assert "last active admin" in capsys.readouterr().err
    assert cli.main(["users", "unlock", "nobody@lab.example"]) == 1
    assert "No account has the e-mail nobody@lab.example" in capsys.readouterr().err


def test_session_fixture_user_is_not_an_admin(session: Session) -> None:
    """The bootstrap user the other tests act as stays a researcher without a password."""
    ident = bootstrap(session)
    user = session.get(User, ident.user_id)
    assert user is not None and user.role == authz.RESEARCHER and user.password_hash is None
