"""Audit log (ops, admins): search the hash-chained log, verify the chain, export it and an access review."""

import json
from datetime import UTC, datetime, time, timedelta

import streamlit as st

from core import audit, ui
from core.authz import Permission
from core.errors import WorkbenchError

PAGE_SIZE = 50
AT = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss.SSS")  # times are UTC

st.title("Audit log")
ident = ui.identity()
if not ui.allowed(Permission.VIEW_AUDIT):  # the navigation hides the page; this is the check behind it
    st.error("Your role may not search the audit log; ops and admins may.", icon=":material/block:")
    st.stop()
everyone = ui.allowed(Permission.VIEW_ALL_TENANTS)
st.caption(
    "Logins, trace views, configuration changes, the kill switch, key rotations, policy violations and exports, "
    "each linked to the one before by its hash: changing, removing or inserting any entry breaks the chain. "
    + (
        "You see every workspace's entries."
        if everyone
        else "You see this workspace's entries and workbench-wide ones."
    )
)

# Verify ----------------------------------------------------------------------------------------
if st.button("Verify chain", icon=":material/verified:", key="audit_verify"):
    with ui.engine().connect() as connection:
        report = audit.verify(connection)
    if report.intact:
        st.success(f"Audit log intact: {report.checked:,} entries, every link and hash holds.")
    else:
        st.error(
            f"Audit log BROKEN at entry {report.broken_seq}: {ui.md_escape(report.reason)}. "
            f"The {report.checked:,} entries before it hold.",
            icon=":material/gpp_bad:",
        )

# Search ----------------------------------------------------------------------------------------
st.subheader("Search")
with st.form("audit_search"):
    left, right = st.columns(2)
    types = left.multiselect(
        "Event types (none: all)", audit.EVENT_TYPES, key="audit_types", format_func=lambda t: t.replace("_", " ")
    )
    actor = right.text_input("Actor contains", key="audit_actor", placeholder="a name or e-mail, or cli:")
    left, right = st.columns(2)
    first_day = left.date_input("From (UTC)", value=None, key="audit_from")
    last_day = right.date_input("To (UTC, inclusive)", value=None, key="audit_to")
    if st.form_submit_button("Search", icon=":material/search:"):
        st.session_state["audit_page"] = 1
since = datetime.combine(first_day, time.min, UTC) if first_day else None
until = datetime.combine(last_day + timedelta(days=1), time.min, UTC) if last_day else None

page = st.session_state.setdefault("audit_page", 1)
try:
    with ui.engine().connect() as connection:
        found = audit.search(
            connection,
            viewer=ident,
            event_types=types,
            since=since,
            until=until,
            actor_contains=actor,
            limit=PAGE_SIZE + 1,  # one more tells whether a next page exists
            offset=(page - 1) * PAGE_SIZE,
        )
except WorkbenchError as error:
    st.error(ui.md_escape(error))
    st.stop()
more, entries = len(found) > PAGE_SIZE, found[:PAGE_SIZE]
if entries:
    st.dataframe(
        [
            {
                "Seq": e.seq,
                "At": e.at,
                "Workspace": "workbench" if e.tenant_id is None else str(e.tenant_id),
                "Actor": e.actor,
                "Event": e.event_type.replace("_", " "),
                "Subject": e.subject,
                "Details": json.dumps(e.details, ensure_ascii=False, sort_keys=True),
            }
            for e in entries
        ],
        hide_index=True,
        column_config={"At": AT, "Details": st.column_config.TextColumn(width="large")},
    )
    shown = f"entries {(page - 1) * PAGE_SIZE + 1:,} to {(page - 1) * PAGE_SIZE + len(entries):,}, newest first"
    st.caption(f"Page {page} · {shown}")
elif page > 1:
    st.caption("No entries on this page; go back.")
else:
    st.caption("No entry matches. Sign-ins, trace views and configuration changes appear here as they happen.")
with st.container(horizontal=True):
    if st.button("Newer", key="audit_newer", icon=":material/chevron_left:", disabled=page <= 1):
        st.session_state["audit_page"] = page - 1
        st.rerun()
    if st.button("Older", key="audit_older", icon=":material/chevron_right:", disabled=not more):
        st.session_state["audit_page"] = page + 1
        st.rerun()

# Export ----------------------------------------------------------------------------------------
if not ui.allowed(Permission.EXPORT_AUDIT):
    st.caption("Exports of the log and access reviews are for admins.")
    st.stop()
st.subheader("Export")
st.caption(
    "The export holds the entries of the search above (event types and dates; all actors) with their "
    "sequence numbers and hashes, so the range can be checked away from the workbench. The access review "
    "lists every account with its role's permissions, and the sign-ins, trace views and exports in the "
    "dates above. Each export is itself recorded in the log."
)


def _prepare(kind: str) -> None:
    try:
        if kind == "audit":
            with ui.engine().begin() as connection:  # the EXPORT entry commits with the read
                document = audit.export(connection, viewer=ident, event_types=types, since=since, until=until)
        else:
            with ui.session() as s:
                document = audit.access_review(s, viewer=ident, since=since, until=until)
    except WorkbenchError as error:
        st.error(ui.md_escape(error))
        return
    st.session_state[f"audit_{kind}_json"] = json.dumps(document, ensure_ascii=False, indent=2)


stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
for kind, label, name in (("audit", "audit log", "audit-log"), ("review", "access review", "access-review")):
    with st.container(horizontal=True, vertical_alignment="center"):
        if st.button(f"Prepare {label} export", key=f"audit_prepare_{kind}", icon=":material/description:"):
            _prepare(kind)
        prepared = st.session_state.get(f"audit_{kind}_json")
        if prepared:
            st.download_button(
                f"Download {label} (JSON)",
                data=prepared,
                file_name=f"{name}-{stamp}.json",
                mime="application/json",
                key=f"audit_download_{kind}",
                icon=":material/download:",
                on_click="ignore",
            )
