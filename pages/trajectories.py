"""Trajectories (developers, ops): traces seen so far; the trace viewer comes with issue 5."""

import streamlit as st

from core import ui
from core.ui_queries import recent_traces

st.title("Trajectories")
ui.not_built(
    5,
    "Stored trajectories (encrypted), filters by tenant, status, agent and time, and a trace as a timeline of "
    "spans with timings, tokens, cost, tool calls and decrypted content",
)

ident = ui.identity()
with ui.session() as s:
    traces = recent_traces(s, tenant_id=ident.tenant_id)

st.subheader("Recent traces")
st.caption("Grouped from usage events by trace id; each paragraph version records the trace id that made it.")
if traces:
    st.dataframe(
        [
            {
                "Trace": t.trace_id,
                "Agent calls": t.calls,
                "Tokens": t.tokens,
                "Errors": t.errors,
                "Started": t.started,
                "Ended": t.ended,
            }
            for t in traces
        ],
        hide_index=True,
    )
else:
    st.caption("No traces yet: draft a paragraph on the Write page.")
