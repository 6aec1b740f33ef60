"""API tokens (everyone): bearer tokens of the ops API, created and revoked by their user; admins see all."""

from collections.abc import Callable

import streamlit as st
from sqlalchemy.orm import Session

from core import api_tokens, authz, ui
from core.errors import WorkbenchError

st.title("API tokens")
ident = ui.identity()
if not ui.allowed(authz.Permission.USE_API):  # hidden from the navigation too
    st.error("Your role may not hold API tokens.")
    st.stop()
is_admin = ui.allowed(authz.Permission.MANAGE_USERS)

SHOWN = "api_tokens_new_secret"
"""Session-state key of a secret just created: shown on the next run only, then dropped."""
AT = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")


def run(action: Callable[[Session], object], done: str) -> None:
    """Apply a change in its own transaction; a new secret (a str result) is kept for one run."""
    try:
        with ui.session() as s:
            result = action(s)
    except WorkbenchError as error:
        st.error(ui.md_escape(error))
        return
    st.session_state[SHOWN] = (done, result if isinstance(result, str) else None)
    st.rerun()


st.caption(
    "A token lets a script call the ops API (`make api`) as you, in your workspace, with the role you "
    "choose (never above your own). Send it as `Authorization: Bearer <token>`. Only its hash is kept."
)
shown = st.session_state.pop(SHOWN, None)
if shown:
    done, secret = shown
    st.success(ui.md_escape(done), icon=":material/check_circle:")
    if secret:
        st.code(secret, language=None)
        st.caption("Copy it now: the secret is shown only this once. Lost it? Revoke the token and create another.")

with ui.session() as s:
    tokens = api_tokens.list_tokens(s, by=ident)

st.subheader("Everyone's tokens" if is_admin else "Your tokens")
if tokens:
    st.dataframe(
        [
            {
                "Name": t.name,
                "Prefix": t.prefix + "…",
                **({"User id": t.user_id, "Workspace id": t.tenant_id} if is_admin else {}),
                "Role": t.role,
                "Per minute": t.rate_per_minute,
                "Created": t.created_at,
                "Expires": t.expires_at,
                "Last used": t.last_used_at,
                "Revoked": t.revoked_at,
                "Live": t.live,
            }
            for t in tokens
        ],
        hide_index=True,
        column_config={"Created": AT, "Expires": AT, "Last used": AT, "Revoked": AT},
    )
else:
    st.info("No tokens yet.")

left, right = st.columns(2)
rank = authz.ROLES.index(ident.role) if ident.role in authz.ROLES else 0
with left, st.form("api_tokens_create", clear_on_submit=True):
    st.markdown("**Create a token**")
    name = st.text_input("Name", help="What it is for (a monitoring check, an incident script).")
    days = st.number_input("Lives (days)", min_value=1, max_value=api_tokens.MAX_DAYS, value=90, step=1)
    role = st.selectbox("Role", authz.ROLES[: rank + 1], index=rank, help="Up to your own role.")
    rate = st.number_input(
        "Requests per minute",
        min_value=1,
        max_value=10_000,
        value=api_tokens.DEFAULT_RATE_PER_MINUTE,
        step=10,
    )
    if st.form_submit_button("Create token"):

        def create(s: Session) -> str:
            return api_tokens.create(s, by=ident, name=name, days=int(days), role=role, rate_per_minute=int(rate))[0]

        run(create, f"Created token {name.strip()}.")

live = {t.id: f"{t.name} ({t.prefix}…)" for t in tokens if t.live}
with right, st.form("api_tokens_revoke"):
    st.markdown("**Revoke a token**")
    chosen = st.selectbox("Token", list(live), format_func=live.__getitem__, key="api_tokens_revoke_id")
    if st.form_submit_button("Revoke", disabled=not live) and chosen is not None:
        run(lambda s: api_tokens.revoke(s, by=ident, token_id=chosen), f"Revoked {live[chosen]}.")
