"""Prompts (prompt engineers): the locked prompt versions and which ones drafts used."""

import streamlit as st

from core import ui
from core.errors import WorkbenchError
from core.prompts import AGENTS, DEFAULT_VERSION, load, read_lock
from core.ui_queries import prompt_versions_in_use

st.title("Prompts")
ui.not_built(
    7, "versions side by side with diffs, golden runs of two versions, canary deployments, promote and roll back"
)

st.subheader("Locked versions")
st.caption(
    f"Each agent uses {DEFAULT_VERSION} until deployments arrive. A locked file never changes: "
    "an edit is a new version file, pinned with `python -m core prompts lock`."
)
lock = read_lock()
for agent in AGENTS:
    versions = sorted(key.split("/", 1)[1] for key in lock if key.startswith(f"{agent}/"))
    for version in versions or [DEFAULT_VERSION]:
        try:
            prompt = load(agent, version)
        except WorkbenchError as exc:
            st.error(f"{agent}/{version}: {exc}")
            continue
        active = " · active" if version == DEFAULT_VERSION else ""
        with st.expander(f"{agent} / {version}{active} · sha256 {prompt.sha256[:12]}"):
            st.caption(f"temperature {prompt.temperature} · max tokens {prompt.max_tokens}")
            st.code(prompt.template, language=None, wrap_lines=True)

ident = ui.identity()
with ui.session() as s:
    in_use = prompt_versions_in_use(s, tenant_id=ident.tenant_id)
st.subheader("Versions in use")
st.caption("Prompt versions pinned by the most recent paragraph versions of this workspace.")
rows = [
    {"Agent": agent, "Prompt version": version, "Paragraph versions": n}
    for agent, versions in sorted(in_use.items())
    for version, n in sorted(versions.items())
]
if rows:
    st.dataframe(rows, hide_index=True)
else:
    st.caption("No paragraph has been drafted yet.")
