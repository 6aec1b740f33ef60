"""Runbook (ops, admins): the go-live criteria with live status, and every procedure of docs/runbook.md."""

import streamlit as st

from core import alerts, authz, golive, runbook, ui
from core.errors import WorkbenchError

PAGE = "pages/runbook.py"

st.title("Runbook")
ident = ui.identity()
try:
    book = runbook.load()
except WorkbenchError as error:
    st.error(ui.md_escape(error))
    st.stop()


def link(procedure: runbook.Procedure, label: str) -> None:
    """A link that opens ``procedure`` on this page (the same address SREs can share)."""
    st.page_link(
        PAGE,
        label=label,
        icon=":material/menu_book:",
        query_params={"procedure": procedure.anchor},
        help=f"docs/runbook.md#{procedure.anchor}",
    )


# Go-live criteria -------------------------------------------------------------------------------
st.subheader("Go-live criteria")
scope = "every workspace" if ident.role == authz.ADMIN else "this workspace"
st.caption(
    f"Live status, read now. Prompt deployments, drills and release checks are workbench-wide; paragraph "
    f"versions, false supports, costs and alert rules are read for {scope}."
)
with ui.session() as s:
    criteria = golive.status(s, viewer=ident)
for criterion in criteria:
    with st.container(border=True):
        # A badge, not st.error: a criterion not met yet is news for the release, not a fault of the page.
        badge = (
            ":green-badge[:material/check_circle: pass]" if criterion.passed else ":red-badge[:material/cancel: FAIL]"
        )
        st.markdown(f"**{ui.md_escape(criterion.title)}** {badge}")
        st.markdown("\n".join(f"- {ui.md_escape(line)}" for line in criterion.evidence))
        if not criterion.passed:
            st.caption(f"What to do: {ui.md_escape(criterion.action)}")
            if criterion.commands:
                st.code("\n".join(criterion.commands), language="sh")
            procedure = book.for_criterion(criterion.key)
            if procedure is not None:
                link(procedure, f"Procedure: {ui.md_escape(procedure.title)}")

# Procedures -------------------------------------------------------------------------------------
st.subheader("Procedures")
asked = st.query_params.get("procedure", "")
chosen = book.get(asked) if asked else None
if asked and chosen is None:
    st.warning(f"There is no procedure {ui.md_escape(asked)}; pick one below.", icon=":material/help:")
st.caption("From `docs/runbook.md` (the same text SREs read on GitHub). Each alert on the Operations page links here.")
st.dataframe(
    [
        {
            "Alert rule": rule.title,
            "Severity": rule.severity,
            "Procedure": getattr(book.for_alert(name), "title", "none"),
        }
        for name, rule in alerts.RULES.items()
    ],
    hide_index=True,
)


def show(procedure: runbook.Procedure) -> None:
    st.caption("Triggers: " + ", ".join(f"`{t}`" for t in procedure.triggers))  # [a-z0-9_:-] only
    st.markdown(runbook.without_anchor_links(procedure.body))
    for target in book.references(procedure):
        link(target, f"See: {ui.md_escape(target.title)}")


if chosen is not None:  # opened from a link: on top, whole, whatever state the list below was left in
    with st.container(border=True):
        st.markdown(f"#### {ui.md_escape(chosen.title)}")
        show(chosen)
for procedure in book.procedures:
    if procedure is not chosen:
        with st.expander(ui.md_escape(procedure.title)):
            show(procedure)
