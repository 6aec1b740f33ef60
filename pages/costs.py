"""Costs (ops): what has been recorded so far; the full cost view comes with issue 5."""

import streamlit as st

from core import ui
from core.ui_queries import usage_by_agent

st.title("Costs")
ui.not_built(
    5,
    "Cost, tokens and latency (P50/P95) over day, week and month; breakdowns by model, prompt version and "
    "tenant; cost per paragraph; budget and alert thresholds",
)

ident = ui.identity()
with ui.session() as s:
    usage = usage_by_agent(s, tenant_id=ident.tenant_id)

st.subheader("Recorded so far")
st.caption("Every agent call writes a usage event; these are the totals for this workspace.")
calls = sum(u.calls for u in usage)
tokens = sum(u.input_tokens + u.output_tokens for u in usage)
cost = sum(u.cost_usd for u in usage)
a, b, c = st.columns(3)
a.metric("Agent calls", f"{calls:,}")
b.metric("Tokens (in + out)", f"{tokens:,}")
c.metric("Recorded cost", f"${cost:,.4f}", help="The local provider is offline and costs nothing.")
if usage:
    st.dataframe(
        [
            {
                "Agent": u.agent,
                "Calls": u.calls,
                "Input tokens": u.input_tokens,
                "Output tokens": u.output_tokens,
                "Cache hits": u.cached_calls,
                "Cost (USD)": round(u.cost_usd, 6),
            }
            for u in usage
        ],
        hide_index=True,
    )
else:
    st.caption("No agent calls recorded yet: draft a paragraph on the Write page.")
