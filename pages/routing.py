"""Routing (ops, prompt engineers): which models served which agents; the router comes with issue 3."""

import streamlit as st

from core import ui
from core.ui_queries import usage_by_model

st.title("Routing")
ui.not_built(
    3,
    "The LLM gateway's router (complexity tiers and their thresholds, a model per tier per agent, overrides, "
    "a dry run for a brief, the decision log) and token budgets",
)
st.caption(f"Today every agent uses one provider: {ui.md_escape(ui.runtime_status()['Provider'])}.")

ident = ui.identity()
with ui.session() as s:
    models = usage_by_model(s, tenant_id=ident.tenant_id)

st.subheader("Models that served each agent")
if models:
    st.dataframe(
        [
            {
                "Agent": m.agent,
                "Provider": m.provider,
                "Model": m.model,
                "Tier": m.routing_tier or "(none)",
                "Calls": m.calls,
            }
            for m in models
        ],
        hide_index=True,
    )
else:
    st.caption("No agent calls recorded yet.")
