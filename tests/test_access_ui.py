"""The app behind its sign-in (AppTest of the whole frame): nothing without a session, the sign-in
form, each role's navigation and nothing beyond it, expiry, sign-out, the Users page, escaping."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from streamlit.testing.v1 import AppTest

from core import accounts, audit, authz, db
from core.errors import AuthenticationError, SessionExpiredError
from core.manuscripts import create_manuscript
from core.models import AuditEntry, AuthSession, LoginThrottle, User, utcnow
from core.pages_spec import PAGES, pages_for
from core.settings import get_settings, reset_settings
from core.tenancy import Identity, bootstrap
from core.ui import AUTH_TOKEN, md_escape
from tests.ui_helpers import APP, MakeApp, role_user

PASSWORD = "a long enough password"
SECRET_TITLE = "Unpublished: nitrate results 2026"
HOSTILE_NAME = "<img src=x onerror=alert(1)> **bold**"


def add_user(engine: Engine, email: str, *, role: str = "researcher", name: str = "Ana") -> Identity:
    with db.session_scope(engine) as s:
        by = authz.cli_identity(bootstrap(s).tenant_id)
        accounts.create_user(
            s, by=by, tenant_id=by.tenant_id, email=email, display_name=name, role=role, password=PASSWORD
        )
        return accounts.identity_of(s, user_id=accounts.user_id_by_email(s, email=email))


def seed_content(engine: Engine) -> None:
    with db.session_scope(engine) as s:
        ident = bootstrap(s)
        create_manuscript(s, tenant_id=ident.tenant_id, title=SECRET_TITLE, user_id=ident.user_id)


def everything(at: AppTest) -> str:
    """Every text value the run produced, main area and sidebar."""
    values = []
    for node in [*at.main, *at.sidebar]:
        values.extend(_texts(node))
    return "\n".join(values)


def _texts(node: object) -> list[str]:
    out = []
    for attr in ("value", "label", "body"):
        value = getattr(node, attr, None)
        if isinstance(value, str):
            out.append(value)
    options = getattr(node, "options", None)
    if isinstance(options, list):
        out.extend(str(o) for o in options)
    for child in getattr(node, "children", {}).values():
        out.extend(_texts(child))
    return out


def navigation(at: AppTest) -> set[str]:
    """The page files the run's ``st.navigation`` offered (AppTest's registry of them)."""
    root = APP.parent
    return {
        str(Path(str(info["script_path"])).resolve().relative_to(root))
        for info in at._registered_pages.values()
        if info.get("script_path")
    }


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def sign_in(at: AppTest, email: str, password: str) -> AppTest:
    at.text_input(key="auth_email").input(email)
    next(t for t in at.text_input if t.label == "Password").input(password)
    return at.button(key="FormSubmitter:auth_sign_in-Sign in").click().run()


def test_without_a_session_only_the_sign_in_page_renders(make_app: MakeApp, clean_db: Engine) -> None:
    seed_content(clean_db)
    at = make_app(role=None)
    assert not at.exception, at.exception
    assert titles(at) == ["Sign in"]
    assert navigation(at) == set(), "no page file is offered"
    text = everything(at)
    assert SECRET_TITLE not in text and "Signed in as" not in text and "Status" not in text
    assert AUTH_TOKEN not in at.session_state

    # A deep link to a page (as the browser would ask for it) still gets the sign-in page alone.
    admin = make_app()
    costs_hash = next(
        h for h, i in admin._registered_pages.items() if str(i.get("script_path", "")).endswith("costs.py")
    )
    at._page_hash = costs_hash
    at.run()
    assert titles(at) == ["Sign in"] and SECRET_TITLE not in everything(at)


def test_signing_in_through_the_form_and_a_wrong_password(make_app: MakeApp, clean_db: Engine) -> None:
    seed_content(clean_db)
    add_user(clean_db, "ana@lab.example")
    at = make_app(role=None)

    sign_in(at, "ana@lab.example", "not the password")
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [md_escape("E-mail or password is wrong.")]
    assert titles(at) == ["Sign in"] and AUTH_TOKEN not in at.session_state

    sign_in(at, "ANA@lab.example", PASSWORD)  # within the wait after the failure: slowed, says until when
    [slowed] = [e.value for e in at.error]
    assert "wait" in slowed and "UTC" in slowed and AUTH_TOKEN not in at.session_state

    with db.session_scope(clean_db) as s:  # an admin lets the name try again at once
        accounts.unlock(s, by=authz.cli_identity(1), user_id=accounts.user_id_by_email(s, email="ana@lab.example"))
    sign_in(at, "ANA@lab.example", PASSWORD)
    assert not at.exception, at.exception
    assert titles(at) == ["Write"] and SECRET_TITLE in everything(at)
    token = at.session_state[AUTH_TOKEN]
    assert isinstance(token, str) and len(token) >= 40, "only the token is kept"
    assert accounts.resume(clean_db, token).name == "Ana (ana@lab.example)"
    assert any(
        c.value == "Signed in as **Ana \\(ana@lab\\.example\\)** · researcher · Default workspace"
        for c in at.sidebar.caption
    )


def test_a_locked_login_says_until_when(make_app: MakeApp, clean_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    add_user(clean_db, "ana@lab.example")
    monkeypatch.setenv("WORKBENCH_LOGIN_DELAY_S", "0")
    monkeypatch.setenv("WORKBENCH_LOGIN_MAX_FAILURES", "2")
    at = make_app(role=None)  # (make_app resets the settings: the variables above apply)
    sign_in(at, "ana@lab.example", "guess one")
    sign_in(at, "ana@lab.example", "guess two")
    [locked] = [e.value for e in at.error]
    assert "locked until" in locked and "UTC" in locked
    sign_in(at, "ana@lab.example", PASSWORD)
    assert titles(at) == ["Sign in"] and "locked until" in at.error[0].value


@pytest.mark.parametrize("role", authz.ROLES)
def test_each_role_gets_exactly_its_pages_and_nothing_beyond(make_app: MakeApp, clean_db: Engine, role: str) -> None:
    seed_content(clean_db)
    admin = make_app()
    hashes = {str(Path(str(i["script_path"])).name): h for h, i in admin._registered_pages.items()}
    mine = {spec.path for spec in pages_for(role)}
    at = make_app(role=role)
    assert not at.exception, at.exception
    assert navigation(at) == mine
    assert titles(at) == [pages_for(role)[0].title], "the start page is the role's first page"
    for spec in PAGES:
        if spec.path in mine:
            continue
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(spec.path)
        at._page_hash = hashes[Path(spec.path).name]  # as a crafted request for that page would ask
        at.run()
        assert not at.exception, at.exception
        assert spec.title not in titles(at), f"{role} saw {spec.path}"
        assert titles(at) == [pages_for(role)[0].title]


def test_the_users_page_is_the_admins_and_works(make_app: MakeApp, clean_db: Engine) -> None:
    at = make_app("pages/users.py")
    assert not at.exception, at.exception
    at.text_input(key="users_new_email").input("bo@lab.example")
    at.text_input(key="users_new_name").input(HOSTILE_NAME)
    at.selectbox(key="users_new_role").set_value(authz.OPS)
    at.button(key="FormSubmitter:users_add_user-Add account").click().run()
    assert not at.exception, at.exception
    [password] = [c.value for c in at.code]
    assert "shown only now" in everything(at)
    assert accounts.login(clean_db, email="bo@lab.example", password=password).role == authz.OPS
    at.run()
    assert not at.code, "shown once"

    bo = accounts_row(clean_db, "bo@lab.example")
    at.selectbox(key="users_pick").set_value(bo.id).run()
    caption = next(c.value for c in at.caption if md_escape(HOSTILE_NAME) in c.value)
    assert "<img" not in caption.replace("\\<img", ""), "escaped, never raw HTML"
    at.selectbox(key=f"users_role_{bo.id}").set_value(authz.PROMPT_ENGINEER).run()
    at.button(key="users_set_role").click().run()
    assert not at.exception, at.exception
    assert accounts_row(clean_db, "bo@lab.example").role == authz.PROMPT_ENGINEER
    with db.session_scope(clean_db) as s:
        kinds = list(s.scalars(select(AuditEntry.event_type).where(AuditEntry.subject == "bo@lab.example")))
    assert kinds.count(audit.USER_CHANGED) == 2


def accounts_row(engine: Engine, email: str) -> accounts.AccountRow:
    with db.session_scope(engine) as s:
        rows = accounts.list_users(s, by=authz.cli_identity(bootstrap(s).tenant_id))
    return next(r for r in rows if r.email == email)


def test_an_expired_session_returns_to_sign_in_with_a_note(make_app: MakeApp, clean_db: Engine) -> None:
    seed_content(clean_db)
    ident = role_user(clean_db, "researcher")
    long_ago = utcnow() - timedelta(seconds=get_settings().session_ttl_s + 60)
    at = AppTest.from_file(str(APP), default_timeout=120)
    make_app(role=None)  # (the fixture's set-up: a fresh engine cache, the frame's page mode)
    at.session_state[AUTH_TOKEN] = accounts.start_session(clean_db, ident, now=long_ago)
    at.run()
    assert not at.exception, at.exception
    assert titles(at) == ["Sign in"] and SECRET_TITLE not in everything(at)
    assert any("expired" in i.value for i in at.info)
    assert AUTH_TOKEN not in at.session_state


def test_sign_out_ends_the_session(make_app: MakeApp, clean_db: Engine) -> None:
    seed_content(clean_db)
    at = make_app(role="researcher")
    token = at.session_state[AUTH_TOKEN]
    at.button(key="auth_sign_out").click().run()
    assert not at.exception, at.exception
    assert titles(at) == ["Sign in"] and SECRET_TITLE not in everything(at)
    assert any("signed out" in i.value for i in at.info)
    with db.session_scope(clean_db) as s:
        ended = s.scalar(select(AuthSession.ended_at).where(AuthSession.token_sha256 == accounts._digest(token)))
        assert ended is not None
        assert s.scalar(select(AuditEntry.event_type).order_by(AuditEntry.seq.desc()).limit(1)) == audit.LOGOUT


def test_a_role_change_or_deactivation_applies_on_the_next_run(make_app: MakeApp, clean_db: Engine) -> None:
    ident = add_user(clean_db, "ana@lab.example")
    at = make_app(identity=ident)
    assert navigation(at) == {s.path for s in pages_for(authz.RESEARCHER)}
    with db.session_scope(clean_db) as s:
        accounts.set_role(s, by=authz.cli_identity(ident.tenant_id), user_id=ident.user_id, role=authz.OPS)
    at.run()
    assert navigation(at) == {s.path for s in pages_for(authz.OPS)}
    with db.session_scope(clean_db) as s:
        accounts.set_active(s, by=authz.cli_identity(ident.tenant_id), user_id=ident.user_id, active=False)
    at.run()
    assert titles(at) == ["Sign in"] and any("deactivated" in i.value for i in at.info)


def test_user_supplied_names_are_shown_escaped(make_app: MakeApp, clean_db: Engine) -> None:
    ident = add_user(clean_db, "eve@lab.example", role="admin", name=HOSTILE_NAME)
    at = make_app(identity=ident)
    [line] = [c.value for c in at.sidebar.caption if c.value.startswith("Signed in as")]
    assert md_escape(HOSTILE_NAME) in line
    assert "<img" not in line.replace("\\<img", "") and "**bold**" not in line
    with db.session_scope(clean_db) as s:
        user = s.get(User, ident.user_id)
        assert user is not None and user.display_name == HOSTILE_NAME, "stored as typed, escaped when shown"


def test_a_deep_link_signs_in_and_then_opens_that_page(make_app: MakeApp, clean_db: Engine) -> None:
    add_user(clean_db, "ana@lab.example")
    admin = make_app()
    verification = next(
        h for h, i in admin._registered_pages.items() if str(i.get("script_path", "")).endswith("verification.py")
    )
    at = make_app(role=None)
    at._page_hash = verification  # the browser asked for /verification
    at.run()
    assert titles(at) == ["Sign in"]
    sign_in(at, "ana@lab.example", PASSWORD)
    assert not at.exception, at.exception
    assert titles(at) == ["Verification"]


def test_a_user_changes_their_own_password(
    make_app: MakeApp, clean_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wait far longer than one AppTest run, so "at once" holds on a loaded machine too.
    monkeypatch.setenv("WORKBENCH_LOGIN_DELAY_S", "30")
    reset_settings()
    ana = add_user(clean_db, "ana@lab.example")
    other_session = accounts.start_session(clean_db, ana)
    at = make_app(identity=ana)

    def change(current: str, new: str, again: str) -> None:
        at.text_input(key="auth_pw_current").input(current)
        at.text_input(key="auth_pw_new").input(new)
        at.text_input(key="auth_pw_again").input(again)
        next(b for b in at.button if b.label == "Change password").click().run()
        assert not at.exception, at.exception

    change(PASSWORD, "short", "short")
    assert any("at least 12 characters" in e.value for e in at.error)
    change("not my password", "a brand new passphrase", "a brand new passphrase")
    assert any("current password is wrong" in e.value for e in at.error)
    change(PASSWORD, "a brand new passphrase", "a brand new passphrase")  # at once: a guess is slowed here too
    assert any("wait" in e.value for e in at.error)
    with db.session_scope(clean_db) as s:  # the wait is over (as if a second had passed)
        s.execute(update(LoginThrottle).values(blocked_until=None))
    change(PASSWORD, "a brand new passphrase", "a brand new passphrase")
    assert any("Password changed" in s.value for s in at.success)

    later = utcnow() + timedelta(seconds=10)
    with pytest.raises(AuthenticationError):  # the old password is gone
        accounts.login(clean_db, email="ana@lab.example", password=PASSWORD, now=later)
    after_wait = later + timedelta(seconds=10)
    assert (
        accounts.login(clean_db, email="ana@lab.example", password="a brand new passphrase", now=after_wait).user_id
        == ana.user_id
    )
    with pytest.raises(SessionExpiredError):  # her other sign-in ended; this one goes on
        accounts.resume(clean_db, other_session)
    assert accounts.resume(clean_db, at.session_state[AUTH_TOKEN]).user_id == ana.user_id
    with db.session_scope(clean_db) as s:
        entry = s.scalar(
            select(AuditEntry).where(AuditEntry.event_type == audit.USER_CHANGED).order_by(AuditEntry.seq.desc())
        )
        assert entry is not None and entry.details["action"] == "password_changed"
        assert PASSWORD not in str(entry.details) and "passphrase" not in str(entry.details)
