"""Prompts (prompt engineers): the prompt files and versions in use; the registry comes with issue 7."""

import streamlit as st

from core import ui
from core.ui_queries import prompt_files, prompt_versions_in_use

st.title("Prompts")
ui.not_built(
    7,
    "Prompt versions with diffs, golden runs of two versions side by side, canary deployments, promote and roll back",
)

ident = ui.identity()
with ui.session() as s:
    in_use = prompt_versions_in_use(s, tenant_id=ident.tenant_id)

left, right = st.columns(2)
with left:
    st.subheader("Prompt files")
    files = prompt_files()
    if files:
        st.dataframe([{"Agent": f.agent, "File": f.name, "Bytes": f.size_bytes} for f in files], hide_index=True)
    else:
        st.caption("No prompt files found under prompts/.")
with right:
    st.subheader("Versions in use")
    st.caption("Prompt versions pinned by the most recent paragraph versions.")
    rows = [
        {"Agent": agent, "Prompt version": version, "Paragraph versions": n}
        for agent, versions in sorted(in_use.items())
        for version, n in sorted(versions.items())
    ]
    if rows:
        st.dataframe(rows, hide_index=True)
    else:
        st.caption("No paragraph has been drafted yet.")
