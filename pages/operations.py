"""Operations (ops, admins): what runs where today; queues, workers, accounts and audit come later."""

import streamlit as st

from core import ui
from core.db import schema_is_current
from core.ui_queries import job_state_counts, recent_jobs

st.title("Operations")
ui.not_built(4, "Queues (facts, generation, verification), RQ workers and their health, cancel and retry")
ui.not_built(5, "Alerts and SLOs")
ui.not_built(6, "Accounts and roles, the audit log, the model registry and its lifecycle")
ui.not_built(3, "Circuit breakers and the kill switch")

st.subheader("Runtime")
cols = st.columns(4)
for col, (label, value) in zip(cols, ui.runtime_status().items(), strict=False):
    col.metric(label, value)
cols[3].metric("Schema", "current" if schema_is_current(ui.engine()) else "needs migrate")

ident = ui.identity()
with ui.session() as s:
    counts = job_state_counts(s, tenant_id=ident.tenant_id)
    jobs = recent_jobs(s, tenant_id=ident.tenant_id)

st.subheader("Jobs")
if jobs:
    st.caption(" · ".join(f"{state}: {n}" for state, n in sorted(counts.items())))
    st.dataframe(
        [
            {
                "Job": j.id,
                "Kind": j.kind,
                "Queue": j.queue,
                "State": j.state,
                "Stage": j.stage or "",
                "Progress": j.progress,
                "Created": j.created_at,
                "Finished": j.finished_at,
                "Error": j.error or "",
            }
            for j in jobs
        ],
        hide_index=True,
        column_config={"Progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0)},
    )
else:
    st.caption("No jobs recorded yet for this workspace.")
