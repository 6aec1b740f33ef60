"""Users and tenants (admins): workspaces, accounts of every workspace, roles, lockouts, passwords."""

from collections.abc import Callable

import streamlit as st
from sqlalchemy.orm import Session

from core import accounts, authz, ui
from core.errors import WorkbenchError

st.title("Users and tenants")
ident = ui.identity()
if not ui.allowed(authz.Permission.MANAGE_USERS):  # hidden from the navigation too; core refuses anyway
    st.error("Only admins manage users and tenants.")
    st.stop()

SHOWN = "users_new_password"
"""Session-state key of a password just generated: shown once on the next run, then dropped."""
AT = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")


def run(action: Callable[[Session], object], done: str) -> None:
    """Apply a change in its own transaction; a generated password (a str result) is kept for one run."""
    try:
        with ui.session() as s:
            result = action(s)
    except WorkbenchError as error:
        st.error(ui.md_escape(error))
        return
    st.session_state[SHOWN] = (done, result if isinstance(result, str) else None)
    st.rerun()


shown = st.session_state.pop(SHOWN, None)
if shown:
    done, password = shown
    st.success(ui.md_escape(done), icon=":material/check_circle:")
    if password:
        st.code(password, language=None)
        st.caption("This password is shown only now: hand it over safely; the user signs in with it.")

with ui.session() as s:
    tenants = accounts.list_tenants(s, by=ident)
    users = accounts.list_users(s, by=ident)
slugs = {t.id: t.slug for t in tenants}

# Workspaces ---------------------------------------------------------------------------------------
st.subheader("Workspaces")
st.dataframe(
    [{"Slug": t.slug, "Name": t.name, "Redact PII": t.redact_pii, "Accounts": t.users} for t in tenants],
    hide_index=True,
)
left, right = st.columns(2)
with left, st.form("users_add_tenant", clear_on_submit=True):
    st.markdown("**Add a workspace**")
    slug = st.text_input("Slug", help="Lower-case letters, digits and dashes; it never changes.")
    name = st.text_input("Name")
    if st.form_submit_button("Add workspace"):
        run(lambda s: accounts.create_tenant(s, by=ident, slug=slug, name=name), f"Added workspace {slug}.")
with right, st.form("users_redact"):
    st.markdown("**PII redaction**")
    tenant_id = st.selectbox("Workspace", list(slugs), format_func=slugs.__getitem__, key="users_redact_tenant")
    current = next((t.redact_pii for t in tenants if t.id == tenant_id), False)
    redact = st.toggle("Redact e-mail addresses and phone numbers before text leaves the machine", value=current)
    if st.form_submit_button("Save") and tenant_id is not None:
        run(
            lambda s: accounts.set_tenant_redact_pii(s, by=ident, tenant_id=tenant_id, redact=redact),
            f"PII redaction is {'on' if redact else 'off'} for {slugs[tenant_id]}.",
        )

# Accounts -----------------------------------------------------------------------------------------
st.subheader("Accounts")
st.dataframe(
    [
        {
            "E-mail": u.email,
            "Name": u.display_name,
            "Role": u.role,
            "Workspace": u.tenant_slug,
            "Active": u.active,
            "Failed sign-ins": u.failed_logins,
            "Locked until": u.locked_until,
            "Last sign-in": u.last_login_at,
        }
        for u in users
    ],
    hide_index=True,
    column_config={"Locked until": AT, "Last sign-in": AT},
)

with st.form("users_add_user", clear_on_submit=True):
    st.markdown("**Add an account** (a password is generated and shown once)")
    email = st.text_input("E-mail", help="The login name; unique across workspaces.", key="users_new_email")
    display_name = st.text_input("Display name", key="users_new_name")
    c1, c2 = st.columns(2)
    role = c1.selectbox("Role", authz.ROLES, format_func=lambda r: r.replace("_", " "), key="users_new_role")
    home = c2.selectbox("Workspace", list(slugs), format_func=slugs.__getitem__, key="users_add_tenant_id")
    if st.form_submit_button("Add account", type="primary") and home is not None:
        run(
            lambda s: accounts.create_user(
                s, by=ident, tenant_id=home, email=email, display_name=display_name, role=role
            ),
            f"Added {email.strip().lower()} ({role.replace('_', ' ')}). Their password:",
        )

st.markdown("**Change an account**")
by_id = {u.id: u for u in users}
user_id = st.selectbox("Account", list(by_id), format_func=lambda i: by_id[i].email, key="users_pick")
if user_id is not None:
    user = by_id[user_id]
    state = "active" if user.active else "deactivated"
    locked = f", locked until {ui.when(user.locked_until)}" if user.locked_until else ""
    st.caption(
        f"{ui.md_escape(user.display_name)} · {user.role.replace('_', ' ')} · {ui.md_escape(user.tenant_slug)} · "
        f"{state}, {user.failed_logins} failed sign-ins{locked}"
    )
    with st.container(horizontal=True, vertical_alignment="bottom"):
        new_role = st.selectbox(
            "Role", authz.ROLES, index=authz.ROLES.index(user.role), key=f"users_role_{user_id}", width=220
        )
        if st.button("Change role", key="users_set_role"):
            run(
                lambda s: accounts.set_role(s, by=ident, user_id=user_id, role=new_role),
                f"{user.email} is now {new_role.replace('_', ' ')}.",
            )
        if st.button("Deactivate" if user.active else "Activate", key="users_active"):
            run(
                lambda s: accounts.set_active(s, by=ident, user_id=user_id, active=not user.active),
                f"{user.email} is {'deactivated' if user.active else 'active again'}.",
            )
        if st.button("Unlock", key="users_unlock", disabled=not (user.failed_logins or user.locked_until)):
            run(lambda s: accounts.unlock(s, by=ident, user_id=user_id), f"{user.email} is unlocked.")
        if st.button("Reset password", key="users_reset"):
            run(
                lambda s: accounts.reset_password(s, by=ident, user_id=user_id),
                f"New password for {user.email} (their open sessions ended):",
            )
