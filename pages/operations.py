"""Operations (ops, admins): what runs where today; queues, workers, accounts and audit come later."""

import streamlit as st

from core import ui
from core.db import schema_is_current
from core.jobs import recent_jobs
from core.ui_queries import job_state_counts

st.title("Operations")
ui.not_built(4, "RQ workers and their health, the facts, generation and verification queues, cancel and retry")
ui.not_built(3, "circuit breakers and the kill switch")
ui.not_built(5, "alerts and SLOs")
ui.not_built(6, "accounts and roles, the audit log, the model registry and its lifecycle")

st.subheader("Runtime")
runtime = ui.runtime_status() | {
    "Schema": "at head" if schema_is_current(ui.engine()) else "behind: run python -m core migrate"
}
st.dataframe([{"Component": k, "Mode": v} for k, v in runtime.items()], hide_index=True, width=640)

ident = ui.identity()
st.subheader("Jobs")
st.caption("Every upload, draft, edit and re-verification runs as a job; today they run in-process, one at a time.")
with ui.session() as s:
    counts = job_state_counts(s, tenant_id=ident.tenant_id)
    jobs = [
        {
            "Created": j.created_at,
            "Kind": j.kind,
            "Queue": j.queue,
            "State": j.state,
            "Progress": j.progress,
            "Finished": j.finished_at,
            "Error": j.error or "",
            "Trace": j.trace_id,
            "Job": j.id,
        }
        for j in recent_jobs(s, tenant_id=ident.tenant_id)
    ]
if jobs:
    st.caption(" · ".join(f"{state}: {n}" for state, n in sorted(counts.items())))
    st.dataframe(
        jobs,
        hide_index=True,
        column_config={"Progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0)},
    )
else:
    st.caption("No jobs recorded yet for this workspace.")
